//! TTL and eviction as a client sees them over TCP. Exact TTL arithmetic is unit-tested with a
//! controlled clock in `src/store`; these few tests use real time on purpose.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, stats};
use kvcache::config::Config;

#[test]
fn ttl_expires_in_real_time_and_put_clears_it() {
    let s = TestServer::default();
    let mut c = s.client();
    assert_eq!(c.cmd("PUT short v 1"), "OK stored");
    assert_eq!(c.cmd("PUT cleared v 1"), "OK stored");
    assert_eq!(
        c.cmd("PUT cleared w"),
        "OK stored",
        "PUT without TTL clears the old one"
    );
    assert_eq!(c.cmd("PUT zero v 1"), "OK stored");
    assert_eq!(c.cmd("PUT zero w 0"), "OK stored", "TTL 0 clears it too");
    assert_eq!(c.cmd("PUT renewed v 1"), "OK stored");
    assert_eq!(
        c.cmd("PUT renewed v 100"),
        "OK stored",
        "a new TTL replaces the old"
    );
    assert_eq!(c.cmd("GET short"), "OK v");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.cmd("GET short"), "ERROR key not found");
    assert_eq!(c.cmd("EXISTS short"), "OK 0");
    assert_eq!(c.cmd("DELETE short"), "ERROR key not found");
    assert_eq!(c.cmd("GET cleared"), "OK w");
    assert_eq!(c.cmd("GET zero"), "OK w");
    assert_eq!(c.cmd("GET renewed"), "OK v");
}

#[test]
fn expired_keys_are_reclaimed_without_being_touched() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut batch = String::new();
    for i in 0..5000 {
        batch.push_str(&format!("PUT k{i} some-value-{i} 1\n"));
    }
    c.send(batch.as_bytes());
    for _ in 0..5000 {
        assert_eq!(c.line(), "OK stored");
    }
    assert_eq!(c.cmd("PUT stays v"), "OK stored");
    let before = stats(&mut c);
    assert_eq!(before["keys"], 5001);
    // Nobody reads the keys: the background sweep alone must free them within seconds.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let st = stats(&mut c);
        if st["keys"] == 1 {
            assert_eq!(st["expired"], 5000);
            assert!(st["memory"] < before["memory"] / 4, "memory freed: {st:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not reclaimed in time: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.cmd("GET stays"), "OK v");
}

#[test]
fn max_keys_evicts_exactly_the_least_recently_used() {
    for shards in [1, 16] {
        let s = TestServer::start(Config {
            max_keys: 5,
            shards,
            ..Config::default()
        });
        let mut c = s.client();
        for i in 0..5 {
            assert_eq!(c.cmd(&format!("PUT k{i} v{i}")), "OK stored");
        }
        assert_eq!(c.cmd("GET k0"), "OK v0");
        assert_eq!(c.cmd("EXISTS k1"), "OK 1", "EXISTS must not refresh k1");
        assert_eq!(c.cmd("PUT k5 v5"), "OK stored");
        assert_eq!(
            c.cmd("EXISTS k1"),
            "OK 0",
            "{shards} shards: k1 was least recently used"
        );
        assert_eq!(c.cmd("GET k0"), "OK v0");
        // PUT refreshes too: overwrite k2, then k3 is next to go.
        assert_eq!(c.cmd("PUT k2 again"), "OK stored");
        assert_eq!(c.cmd("PUT k6 v6"), "OK stored");
        assert_eq!(c.cmd("EXISTS k3"), "OK 0");
        assert_eq!(c.cmd("GET k2"), "OK again");
        // DELETE frees a slot: no eviction for the next insert.
        assert_eq!(c.cmd("DELETE k4"), "OK deleted");
        assert_eq!(c.cmd("PUT k7 v7"), "OK stored");
        for k in ["k0", "k2", "k5", "k6", "k7"] {
            assert_eq!(c.cmd(&format!("EXISTS {k}")), "OK 1", "{k}");
        }
        let st = stats(&mut c);
        assert_eq!((st["keys"], st["evictions"]), (5, 2));
    }
}

#[test]
fn max_memory_bounds_the_store_and_keeps_the_newest() {
    let s = TestServer::start(Config {
        max_memory: 2 << 20,
        ..Config::default()
    });
    let mut c = s.client();
    let value = "x".repeat(200);
    let total = 40_000;
    for start in (0..total).step_by(1000) {
        let mut batch = String::new();
        for i in start..start + 1000 {
            batch.push_str(&format!("PUT key{i:08} {value}\n"));
        }
        c.send(batch.as_bytes());
        for _ in 0..1000 {
            assert_eq!(c.line(), "OK stored");
        }
    }
    let st = stats(&mut c);
    assert!(st["memory"] <= 2 << 20, "{st:?}");
    assert!(st["evictions"] > 20_000, "{st:?}");
    assert_eq!(st["keys"] + st["evictions"], total);
    for i in total - 100..total {
        assert_eq!(c.cmd(&format!("EXISTS key{i:08}")), "OK 1");
    }
    assert_eq!(c.cmd("EXISTS key00000000"), "OK 0");
}

#[test]
fn stats_count_hits_misses_and_connections() {
    let s = TestServer::default();
    let mut c = s.client();
    let mut other = s.client();
    assert_eq!(
        other.cmd("PING"),
        "OK PONG",
        "the second connection is admitted"
    );
    assert_eq!(c.cmd("PUT a 1"), "OK stored");
    assert_eq!(c.cmd("GET a"), "OK 1");
    assert_eq!(c.cmd("GET a"), "OK 1");
    assert_eq!(c.cmd("GET b"), "ERROR key not found");
    let st = stats(&mut c);
    assert_eq!((st["keys"], st["hits"], st["misses"]), (1, 2, 1));
    assert_eq!(st["connections"], 2);
    assert!(st["memory"] > 0);
}
