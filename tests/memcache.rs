//! The memcached protocols on their own port, against the real server over TCP: every command
//! and flag, the error cases, noreply, pipelining, bad data chunks, oversized values, flush_all
//! with a delay, incr/decr wrap rules, CAS races, authentication, and values shared with RESP and
//! the line protocol byte for byte.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer, resp_frame};
use kvcache::config::Config;

fn server() -> TestServer {
    TestServer::start_memcache(Config::default())
}

/// Sends raw bytes and reads `n` reply lines.
fn lines(c: &mut Client, send: &[u8], n: usize) -> Vec<String> {
    c.send(send);
    (0..n).map(|_| c.line()).collect()
}

fn one(c: &mut Client, send: &str) -> String {
    c.send(send.as_bytes());
    c.line()
}

/// `mn` answers `MN` after everything sent before it: proves a noreply command sent nothing.
fn sync(c: &mut Client) {
    assert_eq!(one(c, "mn\r\n"), "MN");
}

/// The number in a `gets` VALUE line.
fn gets_cas(c: &mut Client, key: &str) -> u64 {
    c.send(format!("gets {key}\r\n").as_bytes());
    let header = c.line();
    let fields: Vec<&str> = header.split(' ').collect();
    let len: usize = fields[3].parse().unwrap();
    c.bytes(len + 2);
    assert_eq!(c.line(), "END");
    fields[4].parse().unwrap()
}

#[test]
fn storage_and_retrieval() {
    let s = server();
    let mut c = s.mc();
    assert_eq!(one(&mut c, "set a 5 0 3\r\nabc\r\n"), "STORED");
    assert_eq!(
        lines(&mut c, b"get a missing a\r\n", 5),
        ["VALUE a 5 3", "abc", "VALUE a 5 3", "abc", "END"]
    );
    assert_eq!(one(&mut c, "add a 0 0 1\r\nx\r\n"), "NOT_STORED");
    assert_eq!(one(&mut c, "add b 7 0 1\r\nx\r\n"), "STORED");
    assert_eq!(one(&mut c, "replace zz 0 0 1\r\nx\r\n"), "NOT_STORED");
    assert_eq!(one(&mut c, "replace b 8 0 2\r\nyy\r\n"), "STORED");
    assert_eq!(lines(&mut c, b"get b\r\n", 3), ["VALUE b 8 2", "yy", "END"]);
    // append / prepend keep the flags and ignore the new ones.
    assert_eq!(one(&mut c, "append a 9 0 2\r\nde\r\n"), "STORED");
    assert_eq!(one(&mut c, "prepend a 9 0 1\r\n>\r\n"), "STORED");
    assert_eq!(
        lines(&mut c, b"get a\r\n", 3),
        ["VALUE a 5 6", ">abcde", "END"]
    );
    assert_eq!(one(&mut c, "append zz 0 0 1\r\nx\r\n"), "NOT_STORED");
    // Flags are 32 bits.
    assert_eq!(one(&mut c, "set f 4294967295 0 0\r\n\r\n"), "STORED");
    assert_eq!(
        lines(&mut c, b"get f\r\n", 3),
        ["VALUE f 4294967295 0", "", "END"]
    );
    assert_eq!(
        one(&mut c, "set f 4294967296 0 0\r\n"),
        "CLIENT_ERROR bad command line format"
    );
    // delete, with memcached's legacy "0" argument.
    assert_eq!(one(&mut c, "delete a\r\n"), "DELETED");
    assert_eq!(one(&mut c, "delete a\r\n"), "NOT_FOUND");
    assert_eq!(one(&mut c, "delete b 0\r\n"), "DELETED");
    assert_eq!(one(&mut c, "get a b\r\n"), "END");
    let version = one(&mut c, "version\r\n");
    assert!(version.starts_with("VERSION 1.6.18-kvcache-"), "{version}");
    assert_eq!(
        version.split(' ').count(),
        2,
        "one token, as clients parse it"
    );
    assert_eq!(one(&mut c, "verbosity 1\r\n"), "OK");
}

#[test]
fn keys_up_to_250_bytes() {
    let s = server();
    let mut c = s.mc();
    let k250 = "k".repeat(250);
    assert_eq!(one(&mut c, &format!("set {k250} 0 0 1\r\nx\r\n")), "STORED");
    assert_eq!(
        lines(&mut c, format!("get {k250}\r\n").as_bytes(), 3)[1],
        "x"
    );
    let k251 = "k".repeat(251);
    assert_eq!(
        one(&mut c, &format!("get {k251}\r\n")),
        "CLIENT_ERROR bad command line format"
    );
    // The refused line's data block is then read as a command, as memcached does.
    assert_eq!(
        lines(&mut c, format!("set {k251} 0 0 1\r\nx\r\n").as_bytes(), 2),
        ["CLIENT_ERROR bad command line format", "ERROR"]
    );
}

#[test]
fn cas_unique_per_modification() {
    let s = server();
    let mut c = s.mc();
    one(&mut c, "set a 0 0 1\r\nx\r\n");
    let c1 = gets_cas(&mut c, "a");
    assert_eq!(gets_cas(&mut c, "a"), c1, "reading does not change the CAS");
    assert_eq!(one(&mut c, "touch a 100\r\n"), "TOUCHED");
    assert_eq!(
        gets_cas(&mut c, "a"),
        c1,
        "touch keeps the CAS, as in memcached"
    );
    assert_eq!(
        one(&mut c, &format!("cas a 3 0 1 {}\r\ny\r\n", c1 + 1)),
        "EXISTS"
    );
    assert_eq!(one(&mut c, &format!("cas a 3 0 1 {c1}\r\ny\r\n")), "STORED");
    assert_eq!(one(&mut c, &format!("cas a 3 0 1 {c1}\r\nz\r\n")), "EXISTS");
    let c2 = gets_cas(&mut c, "a");
    assert_ne!(c1, c2);
    one(&mut c, "append a 0 0 1\r\n!\r\n");
    let c3 = gets_cas(&mut c, "a");
    one(&mut c, "incr n 1\r\n");
    one(&mut c, "set n 0 0 1\r\n1\r\n");
    let c4 = gets_cas(&mut c, "n");
    one(&mut c, "incr n 1\r\n");
    let c5 = gets_cas(&mut c, "n");
    let all = [c1, c2, c3, c4, c5];
    let mut unique = all.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "{all:?}");
    assert_eq!(one(&mut c, "cas missing 0 0 1 5\r\nx\r\n"), "NOT_FOUND");
}

#[test]
fn cas_race_has_one_winner() {
    let s = server();
    let mut c = s.mc();
    one(&mut c, "set race 0 0 1\r\n0\r\n");
    let cas = gets_cas(&mut c, "race");
    // Eight clients hold the same CAS and race to store; exactly one may win.
    let addr = s.mc_addr.unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                one(&mut c, &format!("cas race 0 0 1 {cas}\r\n{i}\r\n"))
            })
        })
        .collect();
    let replies: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        replies.iter().filter(|r| *r == "STORED").count(),
        1,
        "{replies:?}"
    );
    assert_eq!(
        replies.iter().filter(|r| *r == "EXISTS").count(),
        7,
        "{replies:?}"
    );
    // Read-modify-write loops with gets/cas lose no update under contention.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                one(&mut c, "add counter 0 0 1\r\n0\r\n");
                for _ in 0..50 {
                    loop {
                        c.send(b"gets counter\r\n");
                        let header = c.line();
                        let cas: u64 = header.rsplit(' ').next().unwrap().parse().unwrap();
                        let n: u64 = c.line().parse().unwrap();
                        assert_eq!(c.line(), "END");
                        let v = (n + 1).to_string();
                        let r = one(
                            &mut c,
                            &format!("cas counter 0 0 {} {cas}\r\n{v}\r\n", v.len()),
                        );
                        if r == "STORED" {
                            break;
                        }
                        assert_eq!(r, "EXISTS");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(lines(&mut c, b"get counter\r\n", 3)[1], "200");
}

#[test]
fn incr_decr_wrap_rules() {
    let s = server();
    let mut c = s.mc();
    assert_eq!(one(&mut c, "incr n 1\r\n"), "NOT_FOUND");
    one(&mut c, "set n 3 0 2\r\n10\r\n");
    assert_eq!(one(&mut c, "incr n 5\r\n"), "15");
    assert_eq!(one(&mut c, "decr n 100\r\n"), "0", "decr stops at 0");
    assert_eq!(
        one(&mut c, "incr n 18446744073709551615\r\n"),
        "18446744073709551615"
    );
    assert_eq!(one(&mut c, "incr n 2\r\n"), "1", "incr wraps at 2^64");
    assert_eq!(
        lines(&mut c, b"get n\r\n", 3),
        ["VALUE n 3 1", "1", "END"],
        "flags kept"
    );
    assert_eq!(
        one(&mut c, "incr n 18446744073709551616\r\n"),
        "CLIENT_ERROR invalid numeric delta argument"
    );
    assert_eq!(
        one(&mut c, "incr n -1\r\n"),
        "CLIENT_ERROR invalid numeric delta argument"
    );
    one(&mut c, "set t 0 0 3\r\n12a\r\n");
    assert_eq!(
        one(&mut c, "incr t 1\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value"
    );
    one(&mut c, "set t 0 0 3\r\n 12\r\n");
    assert_eq!(one(&mut c, "decr t 2\r\n"), "10");
    one(&mut c, "set t 0 0 21\r\n118446744073709551615\r\n");
    assert_eq!(
        one(&mut c, "incr t 1\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value"
    );
    // The deadline stays.
    one(&mut c, "set ttl 0 100 1\r\n1\r\n");
    one(&mut c, "incr ttl 1\r\n");
    assert_eq!(lines(&mut c, b"mg ttl t v\r\n", 2), ["VA 1 t100", "2"]);
}

#[test]
fn expiration_times() {
    let s = server();
    let mut c = s.mc();
    // Negative: expired at once (still STORED, as memcached answers).
    assert_eq!(one(&mut c, "set a 0 -1 1\r\nx\r\n"), "STORED");
    assert_eq!(one(&mut c, "get a\r\n"), "END");
    // Above 30 days: an absolute unix time (one in the past expires at once).
    assert_eq!(one(&mut c, "set a 0 2592001 1\r\nx\r\n"), "STORED");
    assert_eq!(one(&mut c, "get a\r\n"), "END");
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1000;
    assert_eq!(
        one(&mut c, &format!("set a 0 {future} 1\r\nx\r\n")),
        "STORED"
    );
    let t: i64 = lines(&mut c, b"mg a t\r\n", 1)[0][4..].parse().unwrap();
    assert!((990..=1000).contains(&t), "{t}");
    // Relative seconds, and 0 = never.
    one(&mut c, "set r 0 100 1\r\nx\r\n");
    assert_eq!(one(&mut c, "mg r t\r\n"), "HD t100");
    one(&mut c, "set r 0 0 1\r\nx\r\n");
    assert_eq!(one(&mut c, "mg r t\r\n"), "HD t-1");
    // touch: new deadline, flags and value kept; negative expires.
    one(&mut c, "set t 4 0 1\r\nx\r\n");
    assert_eq!(one(&mut c, "touch t 50\r\n"), "TOUCHED");
    assert_eq!(one(&mut c, "mg t t f v\r\n"), "VA 1 t50 f4");
    c.line();
    assert_eq!(one(&mut c, "touch zz 50\r\n"), "NOT_FOUND");
    assert_eq!(one(&mut c, "touch t -1\r\n"), "TOUCHED");
    assert_eq!(one(&mut c, "get t\r\n"), "END");
    // gat / gats: value back and the deadline changed.
    one(&mut c, "set g 2 0 1\r\nx\r\n");
    assert_eq!(
        lines(&mut c, b"gat 30 g zz\r\n", 3),
        ["VALUE g 2 1", "x", "END"]
    );
    assert_eq!(one(&mut c, "mg g t\r\n"), "HD t30");
    let r = lines(&mut c, b"gats 0 g\r\n", 3);
    assert!(r[0].starts_with("VALUE g 2 1 "), "{r:?}");
    assert_eq!(one(&mut c, "mg g t\r\n"), "HD t-1");
    assert_eq!(
        one(&mut c, "gat x g\r\n"),
        "CLIENT_ERROR invalid exptime argument"
    );
}

#[test]
fn noreply_sends_nothing() {
    let s = server();
    let mut c = s.mc();
    c.send(
        b"set a 0 0 1 noreply\r\nx\r\nadd a 0 0 1 noreply\r\ny\r\nappend a 0 0 1 noreply\r\nz\r\n\
          incr n 1 noreply\r\ndelete zz noreply\r\ntouch a 10 noreply\r\nflush_all 100 noreply\r\n\
          verbosity 1 noreply\r\nset n 0 0 1 noreply\r\n5\r\nincr n 2 noreply\r\n",
    );
    sync(&mut c);
    assert_eq!(
        lines(&mut c, b"get a n\r\n", 5),
        ["VALUE a 0 2", "xz", "VALUE n 0 1", "7", "END"]
    );
    // A bad data chunk with noreply is silent too (memcached): the stray byte is a command.
    c.send(b"set a 0 0 1 noreply\r\nab\r\n");
    assert_eq!(c.line(), "ERROR");
    sync(&mut c);
}

#[test]
fn errors_keep_the_connection() {
    let s = server();
    let mut c = s.mc();
    for (send, reply) in [
        ("\r\n", "ERROR"),
        ("bogus\r\n", "ERROR"),
        ("GET a\r\n", "ERROR"),
        ("get\r\n", "ERROR"),
        ("set a 0 0\r\n", "ERROR"),
        ("set a 0 0 -1\r\n", "CLIENT_ERROR bad command line format"),
        ("set a 0 0 abc\r\n", "CLIENT_ERROR bad command line format"),
        ("incr a\r\n", "ERROR"),
        ("touch a\r\n", "ERROR"),
        ("stats nonsense\r\n", "ERROR"),
        (
            "delete a 5\r\n",
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]",
        ),
        ("flush_all x\r\n", "CLIENT_ERROR invalid exptime argument"),
        ("mg\r\n", "ERROR"),
        ("mg a zz\r\n", "CLIENT_ERROR invalid flag"),
        ("mg a v v\r\n", "CLIENT_ERROR duplicate flag"),
        (
            "mg a Tx\r\n",
            "CLIENT_ERROR bad token in command line format",
        ),
        ("ma a Dx\r\n", "CLIENT_ERROR invalid or duplicate flag"),
        ("mg a b\r\n", "CLIENT_ERROR error decoding key"),
    ] {
        assert_eq!(one(&mut c, send), reply, "{send:?}");
    }
    sync(&mut c);
}

#[test]
fn bad_data_chunk_keeps_the_stream_in_sync() {
    let s = server();
    let mut c = s.mc();
    one(&mut c, "set a 0 0 3\r\nold\r\n");
    // Data longer than declared: memcached reads 3 + 2 bytes, answers, and reads on from there.
    assert_eq!(
        lines(&mut c, b"set a 0 0 3\r\nabcd\r\nget a\r\n", 5),
        [
            "CLIENT_ERROR bad data chunk",
            "ERROR",
            "VALUE a 0 3",
            "old",
            "END"
        ]
    );
    // Shorter than declared.
    assert_eq!(
        lines(&mut c, b"set a 0 0 3\r\nab\r\n\r\nget a\r\n", 5),
        [
            "CLIENT_ERROR bad data chunk",
            "ERROR",
            "VALUE a 0 3",
            "old",
            "END"
        ]
    );
    // Meta set: same.
    assert_eq!(
        lines(&mut c, b"ms a 1\r\nxy\r\n", 2),
        ["CLIENT_ERROR bad data chunk", "ERROR"]
    );
    sync(&mut c);
    let st = stats(&mut c);
    assert_eq!(st["curr_items"], 1);
}

#[test]
fn oversized_values_are_refused_and_skipped() {
    let s = TestServer::start_memcache(Config {
        max_value_size: 1024,
        ..Config::default()
    });
    let mut c = s.mc();
    one(&mut c, "set big 0 0 1\r\nx\r\n");
    // The declared length is checked before anything is buffered; the data is discarded as
    // it comes (here: 2 MB), and a failed set removes the old value, as memcached does.
    let mut req = b"set big 0 0 2000000\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'x', 2_000_000));
    req.extend_from_slice(b"\r\nget big\r\n");
    let writer = {
        let mut w = c.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut w, &req).unwrap())
    };
    assert_eq!(c.line(), "SERVER_ERROR object too large for cache");
    assert_eq!(c.line(), "END");
    writer.join().unwrap();
    // Exactly at the limit is fine; append past it is refused.
    let v = "y".repeat(1024);
    assert_eq!(one(&mut c, &format!("set v 0 0 1024\r\n{v}\r\n")), "STORED");
    assert_eq!(
        one(&mut c, "append v 0 0 1\r\nz\r\n"),
        "SERVER_ERROR out of memory storing object"
    );
    assert_eq!(
        lines(&mut c, b"ms m 5000 T0\r\n", 1),
        ["SERVER_ERROR object too large for cache"]
    );
    c.send(&[b'z'; 5002]);
    sync(&mut c);
}

#[test]
fn long_command_line_closes() {
    let s = server();
    let mut c = s.mc();
    let line = format!("get {}\r\n", "k ".repeat(40_000));
    c.send(line.as_bytes());
    assert_eq!(c.line(), "CLIENT_ERROR line too long");
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn pipelining_keeps_order() {
    let s = server();
    let mut c = s.mc();
    let mut req = Vec::new();
    for i in 0..500 {
        req.extend_from_slice(
            format!("set k{i} {i} 0 {}\r\n{i}\r\n", i.to_string().len()).as_bytes(),
        );
        req.extend_from_slice(format!("get k{i}\r\n").as_bytes());
        req.extend_from_slice(format!("mg k{i} v f O{i}\r\n").as_bytes());
    }
    c.send(&req);
    for i in 0..500 {
        assert_eq!(c.line(), "STORED");
        assert_eq!(c.line(), format!("VALUE k{i} {i} {}", i.to_string().len()));
        assert_eq!(c.line(), i.to_string());
        assert_eq!(c.line(), "END");
        assert_eq!(c.line(), format!("VA {} f{i} O{i}", i.to_string().len()));
        assert_eq!(c.line(), i.to_string());
    }
    // A multi-get of many keys.
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
    for i in 0..500 {
        assert_eq!(c.line(), format!("VALUE k{i} {i} {}", i.to_string().len()));
        c.line();
    }
    assert_eq!(c.line(), "END");
}

#[test]
fn flush_all_now_and_with_a_delay() {
    let s = server();
    let mut c = s.mc();
    one(&mut c, "set a 0 0 1\r\nx\r\n");
    assert_eq!(one(&mut c, "flush_all\r\n"), "OK");
    assert_eq!(one(&mut c, "get a\r\n"), "END");
    one(&mut c, "set a 0 0 1\r\nx\r\n");
    assert_eq!(one(&mut c, "flush_all 2\r\n"), "OK");
    // Not yet: the key is there right after.
    assert_eq!(lines(&mut c, b"get a\r\n", 3)[1], "x");
    // Within a generous bound it goes (a wait, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if one(&mut c, "get a\r\n") == "END" {
            break;
        }
        c.line();
        c.line();
        assert!(Instant::now() < deadline, "flush_all 2 never flushed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A later immediate flush cancels a pending delayed one.
    assert_eq!(one(&mut c, "flush_all 1\r\n"), "OK");
    assert_eq!(one(&mut c, "flush_all 0\r\n"), "OK");
    one(&mut c, "set b 0 0 1\r\ny\r\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        lines(&mut c, b"get b\r\n", 3)[1],
        "y",
        "the cancelled flush must not run"
    );
}

#[test]
fn values_are_shared_with_resp_and_the_line_protocol() {
    let s = server();
    let mut m = s.mc();
    let mut r = s.client();
    // Binary value set over memcached, read over RESP unchanged.
    let bin: Vec<u8> = (0..=255u8).collect();
    let mut req = b"set bin 9 0 256\r\n".to_vec();
    req.extend_from_slice(&bin);
    req.extend_from_slice(b"\r\n");
    m.send(&req);
    assert_eq!(m.line(), "STORED");
    r.send(&resp_frame(&[b"GET", b"bin"]));
    assert_eq!(r.line(), "$256");
    assert_eq!(r.bytes(258)[..256], bin[..]);
    // Set over RESP, read over memcached (flags 0), binary-safe.
    r.send(&resp_frame(&[b"SET", b"fromresp", b"a\r\nb\0c"]));
    assert_eq!(r.line(), "+OK");
    m.send(b"get fromresp\r\n");
    assert_eq!(m.line(), "VALUE fromresp 0 6");
    assert_eq!(m.bytes(8), b"a\r\nb\0c\r\n");
    assert_eq!(m.line(), "END");
    // gets gives a RESP-written value a CAS, and cas works against it.
    let cas = gets_cas(&mut m, "fromresp");
    assert_ne!(cas, 0);
    assert_eq!(
        one(&mut m, &format!("cas fromresp 1 0 1 {cas}\r\nz\r\n")),
        "STORED"
    );
    // The line protocol sees memcached's value; a RESP write changes the CAS.
    let mut l = s.client();
    assert_eq!(l.cmd("GET fromresp"), "OK z");
    let cas = gets_cas(&mut m, "fromresp");
    r.send(&resp_frame(&[b"SET", b"fromresp", b"w"]));
    r.line();
    assert_eq!(
        one(&mut m, &format!("cas fromresp 0 0 1 {cas}\r\nq\r\n")),
        "EXISTS"
    );
    // TTLs cross too.
    one(&mut m, "set t 0 100 1\r\nx\r\n");
    assert_eq!(r.resp(&[b"TTL", b"t"]), ":100");
    r.resp(&[b"EXPIRE", b"t", b"50"]);
    assert_eq!(one(&mut m, "mg t t\r\n"), "HD t50");
    // incr over memcached, INCR over RESP on the same counter.
    r.resp(&[b"SET", b"n", b"5"]);
    assert_eq!(one(&mut m, "incr n 5\r\n"), "10");
    assert_eq!(r.resp(&[b"INCR", b"n"]), ":11");
    assert_eq!(one(&mut m, "decr n 1\r\n"), "10");
}

#[test]
fn meta_commands() {
    let s = server();
    let mut c = s.mc();
    assert_eq!(
        one(&mut c, "ms a 2 T0 F5 c\r\nhi\r\n").split(' ').next(),
        Some("HD")
    );
    assert_eq!(
        lines(&mut c, b"mg a v f t s k O123 q\r\n", 2),
        ["VA 2 f5 t-1 s2 ka O123", "hi"]
    );
    // Misses: EN (with k and O echoed), nothing at all with q.
    assert_eq!(one(&mut c, "mg zz v k O9\r\n"), "EN kzz O9");
    c.send(b"mg zz v q\r\n");
    sync(&mut c);
    // ms modes.
    assert_eq!(one(&mut c, "ms b 1 ME\r\nx\r\n"), "HD");
    assert_eq!(one(&mut c, "ms b 1 ME\r\ny\r\n"), "NS");
    assert_eq!(one(&mut c, "ms b 1 MA\r\n!\r\n"), "HD");
    assert_eq!(one(&mut c, "ms b 1 MP\r\n<\r\n"), "HD");
    assert_eq!(lines(&mut c, b"mg b v\r\n", 2), ["VA 3", "<x!"]);
    assert_eq!(one(&mut c, "ms nope 1 MR\r\nx\r\n"), "NS");
    assert_eq!(one(&mut c, "ms nope 1 MA\r\nx\r\n"), "NS");
    assert_eq!(
        one(&mut c, "ms viv 1 MA N30\r\nx\r\n"),
        "HD",
        "append with N vivifies"
    );
    assert_eq!(
        one(&mut c, "ms b 1 MZ\r\nx\r\n"),
        "CLIENT_ERROR invalid mode for ms M token"
    );
    // CAS compare on ms, md, ma; c returns the CAS.
    let cas: u64 = one(&mut c, "mg b c\r\n")[4..].parse().unwrap();
    assert_eq!(one(&mut c, &format!("ms b 1 C{}\r\nx\r\n", cas + 1)), "EX");
    let stored = one(&mut c, &format!("ms b 1 C{cas} c\r\nx\r\n"));
    let new_cas: u64 = stored[4..].parse().unwrap();
    assert_ne!(new_cas, cas);
    assert_eq!(one(&mut c, "ms zz 1 C1\r\nx\r\n"), "NF");
    assert_eq!(one(&mut c, &format!("md b C{cas}\r\n")), "EX");
    assert_eq!(one(&mut c, &format!("md b C{new_cas} k\r\n")), "HD kb");
    assert_eq!(one(&mut c, "md b\r\n"), "NF");
    c.send(b"md b q\r\nms q 1 q\r\nx\r\n");
    assert_eq!(c.line(), "NF", "q hides only the usual outcome");
    sync(&mut c);
    // ma: create with N/J, deltas, modes, v/t/c, decrement floor, wrap.
    assert_eq!(one(&mut c, "ma n\r\n"), "NF");
    assert_eq!(lines(&mut c, b"ma n N0 J10 v\r\n", 2), ["VA 2", "10"]);
    assert_eq!(lines(&mut c, b"ma n v\r\n", 2), ["VA 2", "11"]);
    assert_eq!(lines(&mut c, b"ma n MD D20 v t\r\n", 2), ["VA 1 t-1", "0"]);
    assert_eq!(
        lines(&mut c, b"ma n M+ D18446744073709551615 v\r\n", 2)[1],
        "18446744073709551615"
    );
    assert_eq!(lines(&mut c, b"ma n MI D2 v\r\n", 2)[1], "1");
    assert_eq!(one(&mut c, "ma n T100 t\r\n"), "HD t100");
    c.send(b"ma n q\r\n");
    sync(&mut c);
    assert_eq!(
        one(&mut c, "ma n MX\r\n"),
        "CLIENT_ERROR invalid mode for ma M token"
    );
    one(&mut c, "ms s 1\r\nx\r\n");
    assert_eq!(
        one(&mut c, "ma s\r\n"),
        "CLIENT_ERROR cannot increment or decrement non-numeric value"
    );
    // mg T touches; u does not count as a hit; P and L are ignored.
    assert_eq!(one(&mut c, "mg s T100 t Pfoo Lbar\r\n"), "HD t100");
    assert_eq!(one(&mut c, "mg s u t\r\n"), "HD t100");
    assert_eq!(one(&mut c, "mn\r\n"), "MN");
}

#[test]
fn meta_base64_keys() {
    let s = server();
    let mut c = s.mc();
    // "a b" (with a space) is only expressible in base64.
    assert_eq!(one(&mut c, "ms YSBi 1 b\r\nx\r\n"), "HD");
    assert_eq!(
        lines(&mut c, b"mg YSBi b v k\r\n", 2),
        ["VA 1 kYSBi b", "x"]
    );
    let mut r = s.client();
    assert_eq!(r.resp(&[b"GET", b"a b"]), "x");
}

#[test]
fn meta_vivify_and_invalidate() {
    let s = server();
    let mut c = s.mc();
    // First miss with N wins the right to recache (W); later readers see Z.
    assert_eq!(
        lines(&mut c, b"mg new s v N30 t\r\n", 2),
        ["VA 0 s0 t30 W", ""]
    );
    assert_eq!(lines(&mut c, b"mg new v N30 t\r\n", 2), ["VA 0 t30 Z", ""]);
    let mut other = s.mc();
    assert_eq!(one(&mut other, "mg new N30\r\n"), "HD Z");
    // A real set clears the state.
    assert_eq!(one(&mut c, "ms new 1\r\nz\r\n"), "HD");
    assert_eq!(lines(&mut c, b"mg new v\r\n", 2), ["VA 1", "z"]);
    // md I: stale (X), new CAS, first reader wins (W), later ones see Z.
    let cas: u64 = one(&mut c, "mg new c\r\n")[4..].parse().unwrap();
    assert_eq!(one(&mut c, "md new I T30\r\n"), "HD");
    let r = one(&mut c, "mg new c t\r\n");
    assert!(r.ends_with(" t30 X W"), "{r}");
    let stale_cas: u64 = r.split(' ').nth(1).unwrap()[1..].parse().unwrap();
    assert_ne!(stale_cas, cas);
    assert_eq!(one(&mut other, "mg new t\r\n"), "HD t30 Z X");
    // ms with I and an older CAS is accepted, and the item stays stale.
    assert_eq!(one(&mut c, &format!("ms new 1 I C{cas}\r\ny\r\n")), "HD");
    assert_eq!(one(&mut c, "mg new\r\n"), "HD X W");
    // R: the first reader below the threshold wins.
    one(&mut c, "ms r 1 T100\r\nx\r\n");
    assert_eq!(one(&mut c, "mg r R200\r\n"), "HD W");
    assert_eq!(one(&mut c, "mg r R200\r\n"), "HD Z");
    one(&mut c, "ms r2 1 T100\r\nx\r\n");
    assert_eq!(one(&mut c, "mg r2 R5\r\n"), "HD");
}

fn stats(c: &mut Client) -> std::collections::HashMap<String, u64> {
    c.send(b"stats\r\n");
    let mut m = std::collections::HashMap::new();
    loop {
        let l = c.line();
        if l == "END" {
            return m;
        }
        let mut parts = l.splitn(3, ' ');
        assert_eq!(parts.next(), Some("STAT"));
        let name = parts.next().unwrap().to_string();
        if let Ok(v) = parts.next().unwrap().parse() {
            m.insert(name, v);
        }
    }
}

#[test]
fn stats_count_memcached_commands() {
    let s = server();
    let mut c = s.mc();
    c.send(b"set a 0 0 1\r\nx\r\nget a b\r\ngets a\r\ndelete a\r\ndelete a\r\nincr zz 1\r\ntouch zz 1\r\nmg a\r\nmn\r\n");
    for _ in 0..12 {
        c.line();
    }
    assert_eq!(c.line(), "MN");
    let st = stats(&mut c);
    for (name, want) in [
        ("cmd_get", 4),
        ("get_hits", 2),
        ("get_misses", 2),
        ("cmd_set", 1),
        ("delete_hits", 1),
        ("delete_misses", 1),
        ("incr_misses", 1),
        ("touch_misses", 1),
        ("cmd_touch", 1),
        ("curr_items", 0),
        ("total_items", 1),
        ("limit_maxbytes", 1 << 30),
    ] {
        assert_eq!(st.get(name), Some(&want), "{name}");
    }
    for name in [
        "pid",
        "uptime",
        "time",
        "curr_connections",
        "evictions",
        "bytes",
        "threads",
    ] {
        assert!(st.contains_key(name), "{name}");
    }
    c.send(b"stats settings\r\n");
    let mut settings = Vec::new();
    loop {
        let l = c.line();
        if l == "END" {
            break;
        }
        settings.push(l);
    }
    assert!(
        settings.iter().any(|l| l == "STAT cas_enabled yes"),
        "{settings:?}"
    );
    assert_eq!(one(&mut c, "stats slabs\r\n"), "END");
}

#[test]
fn limits_apply_as_everywhere_else() {
    let s = TestServer::start_memcache(Config {
        max_keys: 3,
        ..Config::default()
    });
    let mut c = s.mc();
    for k in ["a", "b", "c"] {
        one(&mut c, &format!("set {k} 0 0 1\r\nx\r\n"));
    }
    assert_eq!(lines(&mut c, b"get a\r\n", 3)[1], "x"); // a is now the newest
    one(&mut c, "set d 0 0 1\r\nx\r\n"); // evicts b, the least recently used
    assert_eq!(one(&mut c, "get b\r\n"), "END");
    let st = stats(&mut c);
    assert_eq!((st["curr_items"], st["evictions"]), (3, 1));
}

#[test]
fn quit_closes() {
    let s = server();
    let mut c = s.mc();
    c.send(b"quit\r\nget a\r\n");
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn password_needs_memcached_text_auth() {
    let s = TestServer::start_memcache(Config {
        password: Some("s3cret".into()),
        ..Config::default()
    });
    let mut c = s.mc();
    assert_eq!(one(&mut c, "get a\r\n"), "CLIENT_ERROR unauthenticated");
    assert_eq!(one(&mut c, "mg a v\r\n"), "CLIENT_ERROR unauthenticated");
    assert_eq!(
        one(&mut c, "set auth 0 0 12\r\ndefault nope\r\n"),
        "CLIENT_ERROR authentication failure"
    );
    assert_eq!(
        one(&mut c, "set auth 0 0 14\r\ndefault s3cret\r\n"),
        "STORED"
    );
    assert_eq!(one(&mut c, "set a 0 0 1\r\nx\r\n"), "STORED");
    assert_eq!(
        lines(&mut c, b"get a auth\r\n", 3),
        ["VALUE a 0 1", "x", "END"],
        "auth stores nothing"
    );
    // Before auth, data blocks are small (a stranger cannot make the server buffer much).
    let mut d = s.mc();
    assert_eq!(
        one(&mut d, "set x 0 0 100000\r\n"),
        "SERVER_ERROR object too large for cache"
    );
    let st = stats(&mut c);
    assert_eq!((st["auth_cmds"], st["auth_errors"]), (2, 1));
}

#[test]
fn the_binary_serves_the_memcache_port_from_flag_env_and_file() {
    use common::{BinServer, TempFile, free_port, run_server_binary};
    // Off by default.
    let plain = BinServer::start(&[], &[]);
    assert_eq!(plain.startup_field("memcache_address"), "off");
    drop(plain);
    let port = free_port().to_string();
    let s = BinServer::start(&[], &[("KV_CACHE_MEMCACHE_PORT", &port)]);
    let addr: std::net::SocketAddr = s.startup_field("memcache_address").parse().unwrap();
    assert_eq!(addr.port().to_string(), port);
    let mut c = Client::connect(addr);
    assert_eq!(one(&mut c, "set k 1 0 2\r\nhi\r\n"), "STORED");
    // The RESP port of the same process sees it.
    let mut r = s.client();
    assert_eq!(r.resp(&[b"GET", b"k"]), "hi");
    drop(s);
    let file = TempFile::new("mc-config", "kv.toml", &format!("memcache_port = {port}\n"));
    let s = BinServer::start(&["--config", file.as_str()], &[]);
    assert!(
        s.startup_field("memcache_address")
            .ends_with(&format!(":{port}"))
    );
    drop(s);
    // A bad setting is one line naming it, exit 2.
    let (code, _, err) = run_server_binary(&["--memcache-port", "99999"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("invalid memcache_port (--memcache-port / KV_CACHE_MEMCACHE_PORT)"),
        "{err}"
    );
    let (code, _, err) = run_server_binary(&["--port", "7000", "--memcache-port", "7000"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is the same as port"), "{err}");
}
