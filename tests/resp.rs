//! The Redis side of the port over raw TCP: framing, limits, RESP2/RESP3 replies and the
//! sharing of data with the line protocol. (Real clients are exercised in tests/peers/.)

mod common;

use std::time::Duration;

use common::{TestServer, resp_frame};
use kvcache::config::Config;

#[test]
fn both_protocols_share_one_port_and_one_store() {
    let s = TestServer::default();
    let mut text = s.client();
    let mut resp = s.client();
    assert_eq!(text.cmd("PUT k fromtext"), "OK stored");
    assert_eq!(resp.resp(&[b"GET", b"k"]), "fromtext");
    assert_eq!(resp.resp(&[b"SET", b"r", b"from resp"]), "+OK");
    assert_eq!(resp.resp(&[b"SET", b"r2", b"plain"]), "+OK");
    assert_eq!(text.cmd("GET r2"), "OK plain");
    assert_eq!(
        text.cmd("GET r"),
        "ERROR value not representable in the text protocol"
    );
    assert_eq!(resp.resp(&[b"SET", b"bin", b"\x00\x01\xff"]), "+OK");
    assert_eq!(
        text.cmd("GET bin"),
        "ERROR value not representable in the text protocol"
    );
    assert_eq!(resp.resp(&[b"SET", b"long", &[b'x'; 257]]), "+OK");
    assert_eq!(
        text.cmd("GET long"),
        "ERROR value not representable in the text protocol"
    );
    assert_eq!(resp.resp(&[b"SET", b"empty", b""]), "+OK");
    assert_eq!(
        text.cmd("GET empty"),
        "ERROR value not representable in the text protocol"
    );
    assert_eq!(text.cmd("EXISTS r"), "OK 1");
    assert_eq!(text.cmd("DELETE r"), "OK deleted");
    assert_eq!(resp.resp(&[b"EXISTS", b"r"]), ":0");
}

#[test]
fn inline_commands_on_a_fresh_connection_are_line_protocol() {
    let s = TestServer::default();
    let mut c = s.client();
    // Redis would answer "+PONG"; here a non-'*' first byte means the line protocol.
    assert_eq!(c.cmd("PING"), "OK PONG");
    assert_eq!(
        c.cmd("SET a b"),
        "ERROR unknown command 'SET' (commands: PUT GET DELETE EXISTS PING STATS AUTH SAVE QUIT)"
    );
}

#[test]
fn a_connection_stays_in_its_protocol() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(c.resp(&[b"PING"]), "+PONG");
    // After RESP, an inline line is a Redis inline command, not a line-protocol one.
    c.send(b"SET inline value\r\n");
    assert_eq!(c.resp_value(), "+OK");
    assert_eq!(c.resp(&[b"GET", b"inline"]), "value");
}

#[test]
fn pipelined_resp_is_answered_in_order() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(resp_frame(&[
            b"SET",
            format!("k{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ]));
        batch.extend(resp_frame(&[b"GET", format!("k{i}").as_bytes()]));
        batch.extend(resp_frame(&[b"INCR", b"counter"]));
    }
    c.send(&batch);
    for i in 0..1000 {
        assert_eq!(c.resp_value(), "+OK");
        assert_eq!(c.resp_value(), format!("v{i}"));
        assert_eq!(c.resp_value(), format!(":{}", i + 1));
    }
}

#[test]
fn frames_split_at_every_byte_are_reassembled() {
    let s = TestServer::default();
    let mut c = s.client();
    let frame = resp_frame(&[b"SET", b"split", b"a value\r\nwith CRLF"]);
    for b in &frame {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.resp_value(), "+OK");
    assert_eq!(c.resp(&[b"GET", b"split"]), "a value\r\nwith CRLF");
}

#[test]
fn malformed_frames_get_a_protocol_error_and_a_close() {
    let s = TestServer::default();
    for (input, msg) in [
        (
            &b"*x\r\n"[..],
            "-ERR Protocol error: invalid multibulk length",
        ),
        (
            b"*1\r\n$abc\r\n",
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n+PING\r\n",
            "-ERR Protocol error: expected '$', got '+'",
        ),
        (
            b"*1\r\n$9999999999\r\n",
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            b"*99999999\r\n",
            "-ERR Protocol error: invalid multibulk length",
        ),
    ] {
        let mut c = s.client();
        c.send(input);
        assert_eq!(c.line(), msg);
        assert!(c.closed_within(Duration::from_secs(3)));
    }
    // Other connections never noticed.
    assert_eq!(s.client().resp(&[b"PING"]), "+PONG");
}

#[test]
fn oversized_values_get_an_error_and_the_connection_goes_on() {
    let s = TestServer::start(Config {
        max_value_size: 1024,
        max_key_size: 256,
        ..Config::default()
    });
    let mut c = s.client();
    // The bulk's length is in its header, so the server skips the declared bytes, answers an
    // error and stays in step with the stream, even when the request arrives in pieces.
    let mut frame = resp_frame(&[b"SET", b"k", &[b'v'; 5000], b"EX", b"100"]);
    frame.extend(resp_frame(&[b"PING"]));
    for piece in frame.chunks(700) {
        c.send(piece);
    }
    assert_eq!(c.line(), "-ERR value too long (max 1024 bytes)");
    assert_eq!(c.resp_value(), "+PONG");
    assert_eq!(c.resp(&[b"EXISTS", b"k"]), ":0");
    assert_eq!(c.resp(&[b"SET", b"k", &[b'v'; 1024]]), "+OK");
    assert_eq!(
        c.resp(&[b"APPEND", b"k", b"x"]),
        "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(
        c.resp(&[b"SETRANGE", b"k", b"1024", b"x"]),
        "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(
        c.resp(&[b"SETBIT", b"k", b"8192", b"1"]),
        "-ERR bit offset is not an integer or out of range"
    );
    assert_eq!(c.resp(&[b"SETBIT", b"k", b"8191", b"1"]), ":0");
}

#[test]
fn skipped_values_are_not_buffered() {
    let s = TestServer::start(Config {
        max_value_size: 1024,
        max_key_size: 256,
        ..Config::default()
    });
    let mut c = s.client();
    let mut watch = s.client();
    let buffers = |w: &mut common::Client| -> u64 {
        let info = w.resp(&[b"INFO", b"memory"]);
        let line = info
            .lines()
            .find(|l| l.starts_with("kvcache_connection_buffers:"))
            .expect("kvcache_connection_buffers in INFO");
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    // 64 MiB of a value that is over the limit: skipped as it arrives.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$67108864\r\n");
    let chunk = vec![b'v'; 1 << 20];
    for i in 0..64 {
        c.send(&chunk);
        if i == 32 {
            let held = buffers(&mut watch);
            assert!(
                held < 4 << 20,
                "{held} bytes of connection buffers mid-value"
            );
        }
    }
    c.send(b"\r\n");
    assert_eq!(c.line(), "-ERR value too long (max 1024 bytes)");
    assert_eq!(c.resp(&[b"PING"]), "+PONG");
}

#[test]
fn a_declared_length_alone_reserves_little() {
    // The default value limit is Redis's 512 MB; a header announcing 500 MB must not make the
    // server hold (and count against max-memory) 500 MB before the bytes come.
    let s = TestServer::default();
    let mut c = s.client();
    let mut watch = s.client();
    let held = |w: &mut common::Client| -> u64 {
        let info = w.resp(&[b"INFO", b"memory"]);
        info.lines()
            .find_map(|l| l.strip_prefix("kvcache_connection_buffers:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n");
    c.send(&[b'v'; 200_000]);
    // Wait until the server has read past its first buffer (which then had to grow).
    let mut seen = 0;
    for _ in 0..500 {
        seen = held(&mut watch);
        if seen >= 64 << 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        seen >= 64 << 10,
        "the server never read the header ({seen} bytes held)"
    );
    assert!(
        seen < 4 << 20,
        "{seen} bytes of connection buffers for a bare header"
    );
}

#[test]
fn values_of_several_megabytes_work_with_the_defaults() {
    let s = TestServer::default();
    let mut c = s.client();
    let big: Vec<u8> = b"abcd".repeat(1_000_000);
    assert_eq!(c.resp(&[b"SET", b"foo", &big]), "+OK");
    c.send(&resp_frame(&[b"GET", b"foo"]));
    assert_eq!(c.line(), "$4000000");
    assert_eq!(c.bytes(4_000_002)[..4_000_000], big[..]);
    assert_eq!(c.resp(&[b"STRLEN", b"foo"]), ":4000000");
}

#[test]
fn key_size_limit_is_a_setting() {
    let s = TestServer::start(Config {
        max_key_size: 300,
        ..Config::default()
    });
    let mut c = s.client();
    assert_eq!(c.resp(&[b"SET", &[b'k'; 300], b"v"]), "+OK");
    assert_eq!(
        c.resp(&[b"SET", &[b'k'; 301], b"v"]),
        "-ERR key too long (max 300 bytes)"
    );
    assert_eq!(
        c.resp(&[b"MGET", b"a", &[b'k'; 301]]),
        "-ERR key too long (max 300 bytes)"
    );
}

#[test]
fn hello_switches_protocol_versions() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(c.resp(&[b"GET", b"missing"]), "(nil)");
    c.send(&resp_frame(&[b"GET", b"missing"]));
    assert_eq!(c.line(), "$-1");
    let hello = c.resp(&[b"HELLO", b"3"]);
    assert!(
        hello.starts_with("[server, redis, version, 7.2.0, proto, :3, id, :"),
        "{hello}"
    );
    assert!(
        hello.ends_with("mode, standalone, role, master, modules, []]"),
        "{hello}"
    );
    c.send(&resp_frame(&[b"GET", b"missing"]));
    assert_eq!(c.line(), "_", "RESP3 null");
    c.send(&resp_frame(&[b"CONFIG", b"GET", b"maxmemory"]));
    assert_eq!(c.line(), "%1", "RESP3 map");
    c.resp_value();
    c.resp_value();
    let info = c.resp(&[b"INFO", b"server"]);
    assert!(
        info.starts_with("txt:# Server"),
        "INFO is verbatim text in RESP3: {info}"
    );
    let hello = c.resp(&[b"HELLO", b"2"]);
    assert!(hello.contains("proto, :2"));
    c.send(&resp_frame(&[b"GET", b"missing"]));
    assert_eq!(c.line(), "$-1");
    assert_eq!(
        c.resp(&[b"HELLO", b"4"]),
        "-NOPROTO unsupported protocol version"
    );
}

#[test]
fn quit_over_resp_replies_then_closes() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut batch = resp_frame(&[b"SET", b"a", b"1"]);
    batch.extend(resp_frame(&[b"QUIT"]));
    batch.extend(resp_frame(&[b"SET", b"b", b"2"]));
    c.send(&batch);
    assert_eq!(c.resp_value(), "+OK");
    assert_eq!(c.resp_value(), "+OK");
    assert!(c.closed_within(Duration::from_secs(3)));
    assert_eq!(s.client().resp(&[b"EXISTS", b"a", b"b"]), ":1");
}

#[test]
fn ttl_and_expiry_commands_share_the_store_rules() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut text = s.client();
    assert_eq!(text.cmd("PUT t v 100"), "OK stored");
    let ttl: i64 = c.resp(&[b"TTL", b"t"])[1..].parse().unwrap();
    assert!((99..=100).contains(&ttl));
    assert_eq!(c.resp(&[b"PERSIST", b"t"]), ":1");
    assert_eq!(c.resp(&[b"TTL", b"t"]), ":-1");
    assert_eq!(c.resp(&[b"PEXPIRE", b"t", b"150"]), ":1");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(text.cmd("GET t"), "ERROR key not found");
    assert_eq!(c.resp(&[b"TTL", b"t"]), ":-2");
}

#[test]
fn scan_covers_everything_with_count_and_match() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut batch = Vec::new();
    for i in 0..2000 {
        batch.extend(resp_frame(&[b"SET", format!("user:{i}").as_bytes(), b"v"]));
        batch.extend(resp_frame(&[b"SET", format!("item:{i}").as_bytes(), b"v"]));
    }
    c.send(&batch);
    for _ in 0..4000 {
        assert_eq!(c.resp_value(), "+OK");
    }
    let mut cursor = "0".to_string();
    let mut seen = std::collections::HashSet::new();
    let mut rounds = 0;
    loop {
        c.send(&resp_frame(&[
            b"SCAN",
            cursor.as_bytes(),
            b"MATCH",
            b"user:*",
            b"COUNT",
            b"100",
        ]));
        assert_eq!(c.line(), "*2");
        let next = c.resp_value();
        c.send(b"");
        let keys = c.resp_value();
        for k in keys
            .trim_matches(['[', ']'])
            .split(", ")
            .filter(|k| !k.is_empty())
        {
            assert!(k.starts_with("user:"), "{k}");
            seen.insert(k.to_string());
        }
        rounds += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 2000);
    assert!(
        rounds >= 20,
        "COUNT bounds the work per call: {rounds} rounds"
    );
}

#[test]
fn info_reports_redis_fields() {
    let s = TestServer::default();
    let mut c = s.client();
    c.resp(&[b"SET", b"a", b"1"]);
    c.resp(&[b"GET", b"a"]);
    c.resp(&[b"GET", b"b"]);
    let info = c.resp(&[b"INFO"]);
    for field in [
        "redis_version:",
        "kvcache_version:",
        "used_memory:",
        "connected_clients:1",
        "keyspace_hits:1",
        "keyspace_misses:1",
        "evicted_keys:0",
        "expired_keys:0",
        "# Keyspace",
        "db0:keys=1,expires=0",
    ] {
        assert!(info.contains(field), "INFO lacks {field}: {info}");
    }
    let stats_only = c.resp(&[b"INFO", b"stats"]);
    assert!(stats_only.starts_with("# Stats") && !stats_only.contains("# Server"));
}

#[test]
fn unknown_commands_and_arity_errors_keep_the_connection() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(
        c.resp(&[b"FOO", b"bar", b"baz"]),
        "-ERR unknown command 'FOO', with args beginning with: 'bar' 'baz' "
    );
    assert_eq!(
        c.resp(&[b"GET"]),
        "-ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        c.resp(&[b"SET", b"k", b"v", b"EX", b"nope"]),
        "-ERR value is not an integer or out of range"
    );
    assert_eq!(
        c.resp(&[b"SET", b"k", b"v", b"NX", b"XX"]),
        "-ERR syntax error"
    );
    assert_eq!(c.resp(&[b"SELECT", b"1"]), "-ERR DB index is out of range");
    assert_eq!(c.resp(&[b"SELECT", b"0"]), "+OK");
    assert_eq!(c.resp(&[b"PING"]), "+PONG");
}
