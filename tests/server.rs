//! The server as a process and a network peer: many clients, disconnects, limits, idle
//! timeout, graceful shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{BinServer, TestServer, raise_fd_limit, stats};
use kvcache::config::Config;

#[test]
fn a_thousand_simultaneous_connections() {
    raise_fd_limit();
    let s = BinServer::start(&[], &[]);
    let mut clients: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let c = TcpStream::connect(s.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c
        })
        .collect();
    // Every connection writes before any reads, so all 1000 are open and active at once.
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("PUT key{i} value{i}\nGET key{i}\n").as_bytes())
            .unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let expected = format!("OK stored\nOK value{i}\n");
        let mut got = vec![0u8; expected.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expected);
    }
    let mut probe = s.client();
    let st = stats(&mut probe);
    assert_eq!(st["keys"], 1000);
    assert_eq!(st["connections"], 1001);
    drop(clients);
}

#[test]
fn concurrent_clients_see_their_own_writes() {
    let s = TestServer::default();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = common::Client::connect(addr);
                for i in 0..300 {
                    assert_eq!(c.cmd(&format!("PUT t{t}k{i} v{i}")), "OK stored");
                    assert_eq!(c.cmd(&format!("GET t{t}k{i}")), format!("OK v{i}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(stats(&mut s.client())["keys"], 16 * 300);
}

#[test]
fn abrupt_disconnects_are_harmless() {
    let s = TestServer::default();
    for i in 0..50 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        // Half a request, a full one, or a pipelined burst, then vanish without reading.
        let payload: &[u8] = match i % 3 {
            0 => b"PUT half",
            1 => b"PUT whole v\n",
            _ => b"GET a\nGET b\nGET c\nGET d\n",
        };
        c.write_all(payload).unwrap();
        drop(c);
    }
    // Resets mid-reply too.
    for _ in 0..20 {
        let c = TcpStream::connect(s.addr).unwrap();
        let sock = socket2::SockRef::from(&c);
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        (&c).write_all(&b"GET x\n".repeat(1000)).unwrap();
        drop(c);
    }
    let mut c = s.client();
    assert_eq!(c.cmd("PING"), "OK PONG");
    assert_eq!(c.cmd("GET whole"), "OK v");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats(&mut c)["connections"] != 1 {
        assert!(
            Instant::now() < deadline,
            "disconnected clients are released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_endless_line_is_cut_off_while_others_carry_on() {
    let s = TestServer::default();
    let mut good = s.client();
    let mut bad = s.client();
    let started = Instant::now();
    // 2 MiB without a newline, written from a thread because the server may close mid-way.
    let mut writer = bad.stream.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..32 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    assert_eq!(good.cmd("PUT k v"), "OK stored");
    let reply = bad.line();
    assert_eq!(reply, "ERROR line too long (max 65536 bytes)");
    assert!(bad.closed_within(Duration::from_secs(3)));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(good.cmd("GET k"), "OK v");
    w.join().unwrap();
}

#[test]
fn max_line_is_a_setting() {
    let s = TestServer::start(Config {
        max_line: 1024,
        ..Config::default()
    });
    let mut c = s.client();
    // Exactly 1024 bytes before the newline is fine (the key is too long, but the line is not).
    let line = format!("GET {}", "k".repeat(1020));
    assert!(c.cmd(&line).starts_with("ERROR key too long '"));
    c.send(format!("GET {}\n", "k".repeat(1021)).as_bytes());
    assert_eq!(c.line(), "ERROR line too long (max 1024 bytes)");
    assert!(c.closed_within(Duration::from_secs(3)));
}

#[test]
fn connection_cap_refuses_with_an_error() {
    let s = TestServer::start(Config {
        max_connections: 3,
        ..Config::default()
    });
    let mut held: Vec<_> = (0..3).map(|_| s.client()).collect();
    for c in &mut held {
        assert_eq!(c.cmd("PING"), "OK PONG");
    }
    let mut extra = s.client();
    assert_eq!(extra.line(), "ERROR too many connections");
    assert!(extra.closed_within(Duration::from_secs(3)));
    drop(held.pop());
    // The freed slot is usable again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = s.client();
        c.send(b"PING\n");
        if c.line() == "OK PONG" {
            break;
        }
        assert!(Instant::now() < deadline, "slot not released");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let s = TestServer::start(Config {
        idle_timeout: 1,
        ..Config::default()
    });
    let mut idle = s.client();
    let mut busy = s.client();
    assert_eq!(idle.cmd("PING"), "OK PONG");
    let started = Instant::now();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(busy.cmd("PING"), "OK PONG");
    }
    assert!(idle.closed_within(Duration::from_secs(3)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert_eq!(busy.cmd("PING"), "OK PONG", "an active client is not idle");
}

#[test]
fn no_idle_timeout_by_default() {
    let s = TestServer::default();
    let mut c = s.client();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.cmd("PING"), "OK PONG");
}

#[test]
fn sigterm_finishes_in_flight_batches_and_exits_zero() {
    let mut s = BinServer::start(&[], &[]);
    let mut c = s.client();
    assert_eq!(c.cmd("PUT k v"), "OK stored");
    let mut batch = Vec::new();
    for _ in 0..2000 {
        batch.extend_from_slice(b"GET k\n");
    }
    c.send(&batch);
    // Read the first reply so the batch is known to be in hand, then ask the server to stop.
    assert_eq!(c.line(), "OK v");
    let (code, took) = s.signal_and_wait(libc::SIGTERM);
    for _ in 1..2000 {
        assert_eq!(c.line(), "OK v", "every accepted request is answered");
    }
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(c.closed_within(Duration::from_secs(2)));
}

#[test]
fn sigint_with_idle_clients_exits_promptly() {
    let mut s = BinServer::start(&[], &[]);
    let _idle: Vec<_> = (0..20).map(|_| s.client()).collect();
    let (code, took) = s.signal_and_wait(libc::SIGINT);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
}

#[test]
fn address_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, err) = common::run_server_binary(&["--host", "127.0.0.1", "--port", &port], &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
    assert!(err.contains("another process holds this port"), "{err}");
}

#[test]
fn debug_logging_shows_connections_and_info_does_not() {
    let s = BinServer::start(&["--debug"], &[]);
    let mut c = s.client();
    assert_eq!(c.cmd("PING"), "OK PONG");
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.stderr.lock().unwrap().contains("connection closed") {
        assert!(
            Instant::now() < deadline,
            "no debug log: {}",
            s.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let quiet = BinServer::start(&[], &[]);
    let mut c = quiet.client();
    for _ in 0..10 {
        assert_eq!(c.cmd("PUT a b"), "OK stored");
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    let log = quiet.stderr.lock().unwrap().clone();
    assert!(log.contains("kvcache-server listening"), "{log}");
    assert_eq!(
        log.lines().count(),
        1,
        "nothing per connection or request at info: {log}"
    );
}

#[test]
fn idle_connections_hold_no_read_buffers() {
    let s = TestServer::default();
    let mut clients: Vec<_> = (0..200).map(|_| s.client()).collect();
    for c in &mut clients {
        assert_eq!(c.cmd("PING"), "OK PONG");
    }
    let mut probe = s.client();
    let info = probe.resp(&[b"INFO", b"memory"]);
    let buffers: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("kvcache_connection_buffers:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // 200 connections with 16 KiB read buffers would account 3.2 MiB; idle ones hold only a
    // few bytes of write buffer each (the probe itself holds one read buffer while it runs).
    assert!(
        buffers < 64 * 1024,
        "idle connections account {buffers} bytes of buffers"
    );
}

#[test]
fn a_second_server_on_the_same_port_is_refused_even_with_per_core_listeners() {
    // Per-core workers listen with SO_REUSEPORT; without care a second kvcache on the same
    // port would silently share it. It must fail as for any other holder.
    let first = BinServer::start(&["--threads", "2", "--runtime", "per-core"], &[]);
    let port = first.addr.port().to_string();
    let (code, _, err) = common::run_server_binary(
        &["--host", "127.0.0.1", "--port", &port, "--threads", "2"],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another process holds this port"), "{err}");
}

#[test]
fn both_thread_layouts_serve_many_connections_and_stop_cleanly() {
    for layout in ["per-core", "shared"] {
        let mut s = BinServer::start(&["--threads", "2", "--runtime", layout], &[]);
        assert!(s.startup_field("runtime").contains(layout));
        let mut clients: Vec<_> = (0..16).map(|_| s.client()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.cmd(&format!("PUT k{i} v{i}")), "OK stored", "{layout}");
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let j = (i + 5) % 16;
            assert_eq!(c.cmd(&format!("GET k{j}")), format!("OK v{j}"), "{layout}");
        }
        let (code, took) = s.signal_and_wait(libc::SIGTERM);
        assert_eq!(code, Some(0), "{layout}");
        assert!(
            took < Duration::from_secs(5),
            "{layout}: shutdown took {took:?}"
        );
    }
}
