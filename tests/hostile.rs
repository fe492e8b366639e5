//! Clients that misbehave on purpose: slowloris, never-reading pipeliners, floods, load at
//! the connection cap, and SIGTERM in the middle of it all. Assertions are about correctness
//! and bounds, never about speed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{BinServer, Client, TestServer, raise_fd_limit, stats};
use kvcache::config::Config;

fn rss_of(pid: u32) -> usize {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

#[test]
fn slowloris_connections_do_not_hold_up_others_and_are_cut_after_the_request_timeout() {
    let s = TestServer::start(Config {
        request_timeout: 2,
        ..Config::default()
    });
    let mut loris: Vec<Client> = (0..300)
        .map(|i| {
            let mut c = s.client();
            c.send(if i % 2 == 0 {
                b"PUT half-a-req"
            } else {
                b"*3\r\n$3\r\nSET\r\n$1\r\nk"
            });
            c
        })
        .collect();
    // A normal client is served correctly while the half requests hang.
    let mut normal = s.client();
    for i in 0..200 {
        assert_eq!(normal.cmd(&format!("PUT n{i} v")), "OK stored");
        assert_eq!(normal.cmd(&format!("GET n{i}")), "OK v");
    }
    // A client that streams slowly but keeps completing requests is not a slowloris.
    let mut steady = s.client();
    for _ in 0..6 {
        steady.send(b"PING\nPI");
        assert_eq!(steady.line(), "OK PONG");
        std::thread::sleep(Duration::from_millis(500));
        steady.send(b"NG\n");
        assert_eq!(steady.line(), "OK PONG");
    }
    // By now (3 s) every stalled request is past the 2 s timeout.
    for (i, c) in loris.iter_mut().enumerate() {
        let reply = c.line();
        if i % 2 == 0 {
            assert_eq!(reply, "ERROR request timeout");
        } else {
            assert_eq!(reply, "-ERR request timeout");
        }
        assert!(c.closed_within(Duration::from_secs(3)));
    }
    assert_eq!(normal.cmd("PING"), "OK PONG");
}

#[test]
fn a_client_that_never_reads_is_throttled_not_buffered() {
    let s = BinServer::start(&[], &[]);
    let mut setup = s.client();
    let big = "v".repeat(256);
    assert_eq!(setup.cmd(&format!("PUT big {big}")), "OK stored");
    let rss_before = rss_of(s.child.id());
    // Pipeline GETs forever without reading a byte of the ~1 GB of replies they ask for.
    let mut hog = TcpStream::connect(s.addr).unwrap();
    hog.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let request = b"GET big\n".repeat(8192);
    let mut written = 0usize;
    let started = Instant::now();
    while written < 200 << 20 && started.elapsed() < Duration::from_secs(30) {
        match hog.write(&request) {
            Ok(n) => written += n,
            Err(_) => break, // the server stopped reading: the write timed out
        }
    }
    assert!(
        written < 64 << 20,
        "the server kept reading: {written} bytes accepted"
    );
    // Others are served normally meanwhile.
    let mut other = s.client();
    for i in 0..100 {
        assert_eq!(other.cmd(&format!("PUT o{i} v")), "OK stored");
        assert_eq!(other.cmd(&format!("GET o{i}")), "OK v");
    }
    let growth = rss_of(s.child.id()).saturating_sub(rss_before);
    assert!(growth < 32 << 20, "server memory grew by {growth} bytes");
    let st = stats(&mut other);
    assert_eq!(st["connections"], 3);
    drop(hog);
}

#[test]
fn idle_connections_hold_no_buffers() {
    // 14 KiB per idle connection before buffers were released on an empty wake-up and the
    // close path's scratch space moved off the task; about 1.5 KiB after.
    raise_fd_limit();
    let s = BinServer::start(&[], &[]);
    let mut probe = s.client();
    assert_eq!(probe.cmd("PING"), "OK PONG");
    let rss_before = rss_of(s.child.id());
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(&mut probe)["connections"] < 1001 {
        assert!(Instant::now() < deadline, "connections not admitted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let per_connection = rss_of(s.child.id()).saturating_sub(rss_before) / idle.len();
    assert!(
        per_connection < 6 * 1024,
        "{per_connection} bytes of RSS per idle connection"
    );
    assert_eq!(probe.cmd("PING"), "OK PONG");
}

/// `n` clients, each storing fresh keys as fast as it can until `stop` is set; each thread
/// returns how many it stored.
fn busy_writers(
    addr: SocketAddr,
    n: usize,
    prefix: &'static str,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..n)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(c.cmd(&format!("PUT {prefix}{t}-{n} v")), "OK stored");
                    n += 1;
                }
                n
            })
        })
        .collect()
}

#[test]
fn the_connection_cap_holds_under_load() {
    let s = TestServer::start(Config {
        max_connections: 8,
        ..Config::default()
    });
    let stop = Arc::new(AtomicBool::new(false));
    let workers = busy_writers(s.addr, 6, "w", &stop);
    std::thread::sleep(Duration::from_millis(200));
    // 6 busy + 2 more fill the cap; every further connection is refused with the error.
    let _a = s.client();
    let _b = s.client();
    std::thread::sleep(Duration::from_millis(100));
    let mut refused = 0;
    for _ in 0..20 {
        let mut c = s.client();
        if c.line() == "ERROR too many connections" && c.closed_within(Duration::from_secs(2)) {
            refused += 1;
        }
    }
    assert_eq!(refused, 20);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(
            w.join().unwrap() > 0,
            "busy clients kept working at the cap"
        );
    }
}

#[test]
fn idle_timeout_applies_under_load_but_not_to_busy_clients() {
    let s = TestServer::start(Config {
        idle_timeout: 1,
        ..Config::default()
    });
    let mut idle: Vec<Client> = (0..20).map(|_| s.client()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let workers = busy_writers(s.addr, 4, "b", &stop);
    for c in &mut idle {
        assert!(c.closed_within(Duration::from_secs(4)));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn a_unique_key_flood_stays_within_the_memory_cap() {
    let cap: usize = 64 << 20;
    let s = BinServer::start(&["--max-memory", "64mb"], &[]);
    let rss_before = rss_of(s.child.id());
    let mut c = s.client();
    let value = "v".repeat(200);
    let total = 800_000usize; // about three times what fits
    let batch = 2000;
    for start in (0..total).step_by(batch) {
        let mut req = String::with_capacity(batch * 240);
        for i in start..start + batch {
            req.push_str(&format!("PUT flood:{i:010} {value}\n"));
        }
        c.send(req.as_bytes());
        for _ in 0..batch {
            let reply = c.line();
            assert_eq!(reply, "OK stored");
        }
    }
    let growth = rss_of(s.child.id()).saturating_sub(rss_before);
    let st = stats(&mut c);
    assert!(
        growth < cap * 3 / 2,
        "RSS grew {growth} bytes for a {cap}-byte cap ({st:?})"
    );
    assert!(st["memory"] <= cap as u64);
    assert!(st["evictions"] > total as u64 / 2, "{st:?}");
    assert_eq!(st["keys"] + st["evictions"], total as u64);
    for i in total - 1000..total {
        assert_eq!(
            c.cmd(&format!("EXISTS flood:{i:010}")),
            "OK 1",
            "newest keys are readable"
        );
    }
    let mut r = s.client();
    let info = r.resp(&[b"INFO", b"stats"]);
    assert!(
        info.contains(&format!("evicted_keys:{}", st["evictions"])),
        "{info}"
    );
    eprintln!(
        "flood: rss growth {} MiB for a 64 MiB cap, {} keys kept",
        growth >> 20,
        st["keys"]
    );
}

#[test]
fn sigterm_under_load_loses_no_accepted_reply() {
    let mut s = BinServer::start(&[], &[]);
    let addr = s.addr;
    let clients: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let writer = stream.try_clone().unwrap();
                // Writer: an endless pipeline of PUT/GET pairs until the server goes away.
                let w = std::thread::spawn(move || {
                    let mut writer = writer;
                    let mut i = 0u64;
                    loop {
                        let mut batch = String::new();
                        for _ in 0..100 {
                            batch.push_str(&format!("PUT c{t}-{i} v{i}\nGET c{t}-{i}\n"));
                            i += 1;
                        }
                        if writer.write_all(batch.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
                // Reader: every reply must be exactly the expected one, in order, and the stream
                // must end on a line boundary.
                let mut data = Vec::new();
                let mut buf = [0u8; 65536];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = w.join();
                assert!(
                    data.is_empty() || data.ends_with(b"\n"),
                    "a reply was cut in half"
                );
                let text = String::from_utf8(data).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                for (n, line) in lines.iter().enumerate() {
                    let i = n / 2;
                    let expected = if n % 2 == 0 {
                        "OK stored".to_string()
                    } else {
                        format!("OK v{i}")
                    };
                    assert_eq!(*line, expected, "client {t} reply {n}");
                }
                lines.len() as u64
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let (code, took) = s.signal_and_wait(libc::SIGTERM);
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    let replies: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(replies > 1000, "the load was real: {replies} replies");
    // Every command the server executed was answered: its final count matches what arrived.
    let log = s.stderr.lock().unwrap().clone();
    // Logged once, by the last worker to finish: a worker finishing early would log a count
    // that the others' connections were still adding to.
    assert_eq!(
        log.matches("all connections closed").count(),
        1,
        "one final count: {log}"
    );
    let executed: u64 = log
        .lines()
        .find(|l| l.contains("all connections closed"))
        .and_then(|l| l.split("commands=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no final count in log: {log}"));
    assert_eq!(executed, replies, "commands executed vs replies received");
}
