//! Multi-key commands are atomic, as Redis promises: concurrent clients never see part of a
//! multi-key write, and overlapping MSETNX calls never both win.
//!
//! Each test runs against the real server. `KVCACHE_TEST_ADDR=host:port` points them at an
//! already running server instead (how the note shows them failing on the old code).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{Client, TestServer};

/// The server under test: an external one if asked for, else a fresh in-process one.
fn target() -> (Option<TestServer>, SocketAddr) {
    if let Ok(addr) = std::env::var("KVCACHE_TEST_ADDR") {
        return (None, addr.parse().expect("KVCACHE_TEST_ADDR is host:port"));
    }
    let server = TestServer::with(|c| c.shards = 16);
    let addr = server.addr;
    (Some(server), addr)
}

fn keys(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .collect()
}

/// `[a, b, c]` -> the elements.
fn elements(reply: &str) -> Vec<String> {
    reply
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(", ")
        .map(str::to_string)
        .collect()
}

#[test]
fn mget_never_sees_half_of_an_mset() {
    let (_server, addr) = target();
    let keys = keys("atomic:mset:", 16);
    let stop = Arc::new(AtomicBool::new(false));
    let mut setup = Client::connect(addr);
    let mut args: Vec<&[u8]> = vec![b"MSET"];
    for k in &keys {
        args.push(k);
        args.push(b"aaaa");
    }
    assert_eq!(setup.resp(&args), "+OK");
    let writers: Vec<_> = [b"aaaa", b"bbbb"]
        .into_iter()
        .map(|value| {
            let (keys, stop) = (keys.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut args: Vec<&[u8]> = vec![b"MSET"];
                for k in &keys {
                    args.push(k);
                    args.push(value);
                }
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(c.resp(&args), "+OK");
                }
            })
        })
        .collect();
    let reads = Arc::new(AtomicUsize::new(0));
    let mixed = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (keys, stop, reads, mixed) =
                (keys.clone(), stop.clone(), reads.clone(), mixed.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| k.as_slice()));
                while !stop.load(Ordering::Relaxed) {
                    let values = elements(&c.resp(&args));
                    assert_eq!(values.len(), 16);
                    if values.iter().any(|v| v != &values[0]) {
                        mixed.fetch_add(1, Ordering::Relaxed);
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    let (reads, mixed) = (reads.load(Ordering::Relaxed), mixed.load(Ordering::Relaxed));
    assert!(reads > 1000, "too few reads to mean anything: {reads}");
    assert_eq!(mixed, 0, "{mixed} of {reads} MGET replies mixed two MSETs");
}

#[test]
fn overlapping_msetnx_calls_have_one_owner_per_key_set() {
    let (_server, addr) = target();
    // Client c claims keys 64c..64c+256 of 448, so every pair of clients overlaps; long key lists
    // make a non-atomic check-then-set window wide enough to be hit.
    const CLIENTS: usize = 4;
    const SPAN: usize = 256;
    const STEP: usize = 64;
    let keys = keys("atomic:nx:", STEP * (CLIENTS - 1) + SPAN);
    let rounds = 1500;
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let done = Arc::new(Barrier::new(CLIENTS + 1));
    let won: Arc<Vec<AtomicUsize>> = Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (keys, barrier, done, won) =
                (keys.clone(), barrier.clone(), done.clone(), won.clone());
            std::thread::spawn(move || {
                let mut conn = Client::connect(addr);
                let value = format!("owner{c}").into_bytes();
                let mut args: Vec<&[u8]> = vec![b"MSETNX"];
                for k in &keys[STEP * c..STEP * c + SPAN] {
                    args.push(k);
                    args.push(&value);
                }
                for _ in 0..rounds {
                    barrier.wait();
                    let r = conn.resp(&args);
                    won[c].store((r == ":1") as usize, Ordering::Relaxed);
                    done.wait();
                }
            })
        })
        .collect();
    let mut check = Client::connect(addr);
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(|k| k.as_slice()));
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_slice()));
    let mut violations = Vec::new();
    for round in 0..rounds {
        check.resp(&del);
        barrier.wait();
        done.wait();
        let values = elements(&check.resp(&mget));
        let winners: Vec<usize> = (0..CLIENTS)
            .filter(|&c| won[c].load(Ordering::Relaxed) == 1)
            .collect();
        // Whoever won owns all of its keys; nobody else's value is anywhere.
        let ok = winners.iter().all(|&c| {
            values[STEP * c..STEP * c + SPAN]
                .iter()
                .all(|v| v == &format!("owner{c}"))
        }) && values
            .iter()
            .all(|v| v == "(nil)" || winners.iter().any(|&c| v == &format!("owner{c}")));
        if winners.is_empty() || !ok {
            violations.push(format!(
                "round {round}: winners {winners:?}, keys {values:?}"
            ));
        }
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        violations.is_empty(),
        "{} bad rounds, e.g. {}",
        violations.len(),
        violations[0]
    );
}

#[test]
fn multi_key_del_and_exists_are_atomic_against_mset() {
    let (_server, addr) = target();
    let keys = keys("atomic:del:", 12);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (keys, stop) = (keys.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut mset: Vec<&[u8]> = vec![b"MSET"];
            for k in &keys {
                mset.push(k);
                mset.push(b"v");
            }
            let mut del: Vec<&[u8]> = vec![b"DEL"];
            del.extend(keys.iter().map(|k| k.as_slice()));
            let mut deleted = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                c.resp(&mset);
                deleted.push(c.resp(&del));
            }
            deleted
        })
    };
    let mut c = Client::connect(addr);
    let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
    exists.extend(keys.iter().map(|k| k.as_slice()));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut partial = 0;
    let mut reads = 0;
    while Instant::now() < deadline {
        let r = c.resp(&exists);
        if r != ":0" && r != ":12" {
            partial += 1;
        }
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let deleted = writer.join().unwrap();
    assert!(reads > 500);
    assert_eq!(
        partial, 0,
        "EXISTS saw a half-done MSET or DEL {partial} times of {reads}"
    );
    assert!(
        deleted.iter().all(|d| d == ":12"),
        "DEL always removes all twelve"
    );
}

#[test]
fn rename_is_never_seen_half_done() {
    let (_server, addr) = target();
    let mut setup = Client::connect(addr);
    setup.resp(&[b"DEL", b"atomic:ra", b"atomic:rb"]);
    assert_eq!(setup.resp(&[b"SET", b"atomic:ra", b"payload"]), "+OK");
    let stop = Arc::new(AtomicBool::new(false));
    let renamer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(c.resp(&[b"RENAME", b"atomic:ra", b"atomic:rb"]), "+OK");
                assert_eq!(c.resp(&[b"RENAME", b"atomic:rb", b"atomic:ra"]), "+OK");
                n += 2;
            }
            n
        })
    };
    // Several readers, so some run on another worker thread than the renamer.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let deadline = Instant::now() + Duration::from_secs(2);
                let (mut reads, mut bad) = (0, Vec::new());
                while Instant::now() < deadline {
                    // One name or the other, never both and never neither; the value travels
                    // with it.
                    let values = elements(&c.resp(&[b"MGET", b"atomic:ra", b"atomic:rb"]));
                    let present = values.iter().filter(|v| *v != "(nil)").count();
                    if present != 1 || !values.iter().any(|v| v == "payload") {
                        bad.push(values);
                    }
                    reads += 1;
                }
                (reads, bad)
            })
        })
        .collect();
    let (mut reads, mut bad) = (0, Vec::new());
    for r in readers {
        let (n, b) = r.join().unwrap();
        reads += n;
        bad.extend(b);
    }
    stop.store(true, Ordering::Relaxed);
    let renames = renamer.join().unwrap();
    assert!(
        reads > 500 && renames > 500,
        "{reads} reads, {renames} renames"
    );
    assert!(
        bad.is_empty(),
        "{} of {reads} reads saw a half-done RENAME: {:?}",
        bad.len(),
        bad[0]
    );
}
