use super::*;

/// A store on a manual clock with step recency (exact order for single-threaded tests).
fn store_with(shards: usize, max_keys: usize) -> (Arc<Store>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store = Store::builder()
        .shards(shards)
        .max_keys(max_keys)
        .clock(clock.clone())
        .exact_recency_for_tests()
        .build();
    (Arc::new(store), clock)
}

fn get(store: &Store, key: &str) -> Option<String> {
    store.get(key.as_bytes(), |v| String::from_utf8(v.to_vec()).unwrap())
}

fn put(store: &Store, key: &str, value: &str) {
    store
        .set(key.as_bytes(), value.as_bytes(), Ttl::Persist)
        .unwrap();
}

#[test]
fn per_item_sizes_stay_compact() {
    // These sizes are the memory budget: a change here changes bytes per item.
    assert_eq!(
        item_size(16, 64, true),
        106,
        "worst case for 16 B key + 64 B value + TTL (long form, wide deadline)"
    );
    let (s, clock) = store_with(1, 0);
    s.set(
        &[b'k'; 16],
        &[b'v'; 64],
        Ttl::At(clock.now_ms() + 3_600_000),
    )
    .unwrap();
    let sh = s.shards[0].shard.lock();
    let b = sh.log_bytes();
    assert_eq!(b.live, 98, "record for 16 B key + 64 B value + TTL");
    // The index: 1 control byte + a 4-byte id per slot.
    assert_eq!(sh.index_stats().slots * 5, sh.index_bytes());
}

#[test]
fn set_get_delete_contains() {
    let (s, _) = store_with(4, 0);
    assert_eq!(get(&s, "a"), None);
    put(&s, "a", "1");
    assert_eq!(get(&s, "a").as_deref(), Some("1"));
    assert!(s.contains(b"a"));
    put(
        &s,
        "a",
        "a much longer value that moves to another size class",
    );
    assert_eq!(
        get(&s, "a").as_deref(),
        Some("a much longer value that moves to another size class")
    );
    assert_eq!(s.len(), 1);
    assert!(s.delete(b"a"));
    assert!(!s.delete(b"a"));
    assert!(!s.contains(b"a"));
    assert_eq!(s.len(), 0);
    s.sweep(); // an emptied head segment is handed back by the sweeper
    assert_eq!(
        s.stats().held_bytes,
        0,
        "record memory is given back once empty"
    );
    assert!(
        s.memory_used() < 4096,
        "only table bookkeeping remains: {}",
        s.memory_used()
    );
    let st = s.stats();
    assert_eq!((st.hits, st.misses), (2, 1));
}

#[test]
fn exact_lru_whatever_the_shard_count() {
    for shards in [1, 2, 4, 16, 64] {
        let (s, _) = store_with(shards, 5);
        for i in 0..5 {
            put(&s, &format!("k{i}"), "v");
        }
        assert!(get(&s, "k0").is_some());
        put(&s, "k5", "v");
        assert!(!s.contains(b"k1"), "{shards} shards: k1 is the LRU");
        assert!(
            s.contains(b"k0"),
            "{shards} shards: k0 was refreshed by GET"
        );
        assert_eq!(s.len(), 5);
        // EXISTS peeks: k2 is still the oldest although it was just checked.
        assert!(s.contains(b"k2"));
        put(&s, "k6", "v");
        assert!(
            !s.contains(b"k2"),
            "{shards} shards: contains must not refresh"
        );
        // PUT refreshes: overwrite k3, then two inserts evict k4 and k0 (k3 survives).
        put(&s, "k3", "w");
        put(&s, "k7", "v");
        put(&s, "k8", "v");
        assert!(s.contains(b"k3"));
        assert!(!s.contains(b"k4"));
        assert!(!s.contains(b"k0"));
        assert_eq!(s.stats().evictions, 4);
    }
}

#[test]
fn long_random_sequence_matches_a_global_lru() {
    // A reference LRU (Vec ordered oldest first) against the sharded store, single-threaded.
    let (s, _) = store_with(16, 50);
    let mut model: Vec<u32> = Vec::new();
    let mut x: u64 = 12345;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (x % 120) as u32;
        let key = format!("key{k}");
        if x.is_multiple_of(3) {
            let hit = s.get(key.as_bytes(), |_| ()).is_some();
            let pos = model.iter().position(|&m| m == k);
            assert_eq!(hit, pos.is_some());
            if let Some(p) = pos {
                model.remove(p);
                model.push(k);
            }
        } else {
            put(&s, &key, "v");
            if let Some(p) = model.iter().position(|&m| m == k) {
                model.remove(p);
            }
            model.push(k);
            if model.len() > 50 {
                model.remove(0);
            }
        }
    }
    for k in 0..120 {
        assert_eq!(s.contains(format!("key{k}").as_bytes()), model.contains(&k));
    }
}

#[test]
fn old_stamps_turn_coarse_and_stay_oldest() {
    let (s, _) = store_with(4, 3);
    put(&s, "old1", "1");
    put(&s, "old2", "1");
    // Ten minutes of recency time pass: both are past the fine range and get converted.
    let Ticker::Step(t) = &s.ticker else {
        unreachable!()
    };
    t.fetch_add(600_000_000, Relaxed);
    s.sweep();
    let converted: usize = (0..4)
        .map(|i| {
            let sh = s.shards[i].shard.lock();
            sh.coarse_count()
        })
        .sum();
    assert_eq!(converted, 2);
    put(&s, "new", "1");
    // A coarse record touched again becomes fine and newest.
    get(&s, "old1");
    put(&s, "newer", "1"); // 4 keys > 3: evicts old2, the only idle one
    assert!(!s.contains(b"old2"));
    assert!(s.contains(b"old1") && s.contains(b"new") && s.contains(b"newer"));
}

#[test]
fn real_clock_recency_orders_accesses_across_shards() {
    // The production clock: accesses a few microseconds apart are ordered exactly.
    let s = Store::builder().shards(16).max_keys(20).build();
    let pause = || {
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_micros(3) {}
    };
    for i in 0..20 {
        put(&s, &format!("k{i}"), "v");
        pause();
    }
    for i in (0..20).step_by(2) {
        get(&s, &format!("k{i}"));
        pause();
    }
    for i in 0..10 {
        put(&s, &format!("n{i}"), "v");
        pause();
    }
    // The ten odd keys were least recently used.
    for i in 0..20 {
        assert_eq!(s.contains(format!("k{i}").as_bytes()), i % 2 == 0, "k{i}");
    }
}

#[test]
fn ttl_expires_on_access_exactly() {
    let (s, clock) = store_with(4, 0);
    let now = clock.now_ms();
    s.set(b"t", b"v", Ttl::At(now + 1000)).unwrap();
    clock.advance(999);
    assert_eq!(get(&s, "t").as_deref(), Some("v"));
    clock.advance(1);
    assert_eq!(get(&s, "t"), None);
    assert!(!s.contains(b"t"));
    assert_eq!(s.len(), 0);
    assert_eq!(s.stats().expired, 1);
}

#[test]
fn put_without_ttl_clears_it_and_keep_preserves_it() {
    let (s, clock) = store_with(4, 0);
    let now = clock.now_ms();
    s.set(b"k", b"v", Ttl::At(now + 100)).unwrap();
    s.set(b"k", b"w", Ttl::Persist).unwrap();
    clock.advance(1000);
    assert_eq!(get(&s, "k").as_deref(), Some("w"));
    s.set(b"k", b"x", Ttl::At(now + 5000)).unwrap();
    s.set(b"k", b"y", Ttl::Keep).unwrap();
    let ttl = s
        .update(b"k", Access::Peek, |e| (Write::Keep, e.unwrap().expires_at))
        .unwrap();
    assert_eq!(ttl, Some(now + 5000));
    clock.advance(4000);
    assert_eq!(get(&s, "k"), None);
}

#[test]
fn past_deadline_deletes() {
    let (s, clock) = store_with(4, 0);
    put(&s, "k", "v");
    s.set(b"k", b"v", Ttl::At(clock.now_ms())).unwrap();
    assert!(!s.contains(b"k"));
    put(&s, "k", "v");
    s.update(b"k", Access::Write, |_| (Write::Expire(Some(1)), ()))
        .unwrap();
    assert!(!s.contains(b"k"));
}

#[test]
fn expire_can_be_added_changed_and_removed() {
    let (s, clock) = store_with(2, 0);
    let now = clock.now_ms();
    put(&s, "k", "value");
    let exp = |s: &Store| {
        s.update(b"k", Access::Peek, |e| {
            (Write::Keep, e.map(|e| e.expires_at))
        })
        .unwrap()
    };
    s.update(b"k", Access::Write, |_| (Write::Expire(Some(now + 10)), ()))
        .unwrap();
    assert_eq!(exp(&s), Some(Some(now + 10)));
    s.update(b"k", Access::Write, |_| (Write::Expire(Some(now + 20)), ()))
        .unwrap();
    assert_eq!(exp(&s), Some(Some(now + 20)));
    s.update(b"k", Access::Write, |_| (Write::Expire(None), ()))
        .unwrap();
    assert_eq!(exp(&s), Some(None));
    assert_eq!(get(&s, "k").as_deref(), Some("value"));
}

#[test]
fn sweep_reclaims_expired_memory_in_the_background() {
    let (s, clock) = store_with(4, 0);
    let now = clock.now_ms();
    for i in 0..10_000 {
        s.set(
            format!("key{i}").as_bytes(),
            b"0123456789",
            Ttl::At(now + 1000),
        )
        .unwrap();
    }
    for i in 0..100 {
        put(&s, &format!("keep{i}"), "v");
    }
    assert_eq!(s.len(), 10_100);
    clock.advance(1001);
    let mut removed = 0;
    for _ in 0..20 {
        removed += s.sweep().removed;
    }
    assert_eq!(removed, 10_000);
    assert_eq!(s.len(), 100);
    assert_eq!(s.stats().expired, 10_000);
    for i in 0..100 {
        assert!(s.contains(format!("keep{i}").as_bytes()));
    }
}

#[test]
fn memory_limit_evicts_lru_and_bounds_accounting() {
    let cap = 2 << 20;
    let s = Store::builder().shards(8).max_memory(cap).build();
    let value = [b'x'; 64];
    for i in 0..200_000u32 {
        s.set(format!("key{i:012}").as_bytes(), &value, Ttl::Persist)
            .unwrap();
        assert!(s.memory_used() <= cap);
    }
    let st = s.stats();
    assert!(st.evictions > 100_000);
    assert!(
        st.keys > 10_000,
        "most of the cap holds data: {} keys",
        st.keys
    );
    assert!(
        st.held_bytes <= cap + cap / 8 + 8 * 3 * 128 * 1024,
        "held memory tracks accounting: {}",
        st.held_bytes
    );
    // The newest keys survive.
    for i in 199_000..200_000u32 {
        assert!(s.contains(format!("key{i:012}").as_bytes()));
    }
}

#[test]
fn external_bytes_count_against_the_limit() {
    let s = Store::builder().shards(2).max_memory(1 << 20).build();
    for i in 0..1000 {
        s.set(format!("k{i}").as_bytes(), &[0u8; 100], Ttl::Persist)
            .unwrap();
    }
    s.adjust_external(1 << 20);
    s.set(b"one-more", b"v", Ttl::Persist).unwrap();
    assert!(
        s.len() <= 1,
        "with the budget used elsewhere only the newest key can stay"
    );
    s.adjust_external(-(1 << 20));
    assert_eq!(s.external_bytes(), 0);
}

#[test]
fn oversized_items_are_refused_without_side_effects() {
    let s = Store::builder().max_memory(1000).build();
    put(&s, "small", "v");
    assert_eq!(
        s.set(b"big", &[0u8; 2000], Ttl::Persist),
        Err(StoreError::TooLarge)
    );
    assert!(s.contains(b"small"));
    assert_eq!(
        s.set(&vec![b'k'; MAX_KEY_LEN + 1], b"v", Ttl::Persist),
        Err(StoreError::KeyTooLong)
    );
}

#[test]
fn large_values_roundtrip() {
    let (s, _) = store_with(4, 0);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    s.set(b"big", &big, Ttl::Persist).unwrap();
    assert_eq!(s.get(b"big", |v| v.to_vec()).unwrap(), big);
    s.set(b"big", b"small now", Ttl::Persist).unwrap();
    assert_eq!(get(&s, "big").as_deref(), Some("small now"));
    assert!(s.delete(b"big"));
    s.sweep();
    assert_eq!(s.stats().held_bytes, 0);
}

#[test]
fn scan_visits_every_key_once() {
    let (s, _) = store_with(8, 0);
    for i in 0..5000 {
        put(&s, &format!("k{i}"), "v");
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = 0;
    let mut calls = 0;
    loop {
        cursor = s.scan(cursor, 100, |k| {
            assert!(seen.insert(k.to_vec()), "duplicate key")
        });
        calls += 1;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 5000);
    assert!(calls >= 35, "COUNT bounds each step ({calls} calls)");
}

#[test]
fn random_key_and_flush() {
    let (s, _) = store_with(8, 0);
    assert_eq!(s.random_key(), None);
    for i in 0..100 {
        put(&s, &format!("k{i}"), "v");
    }
    let k = s.random_key().unwrap();
    assert!(s.contains(&k));
    s.flush(false);
    assert_eq!(s.len(), 0);
    assert_eq!(s.memory_used(), 0, "flush frees the tables too");
    assert_eq!(s.stats().held_bytes, 0);
    assert!(!s.contains(&k));
    put(&s, "after", "v");
    s.flush(true);
    assert!(s.is_empty());
}

#[test]
fn concurrent_writers_keep_counters_consistent() {
    let s = Arc::new(Store::builder().shards(8).max_keys(1000).build());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    let key = format!("t{t}-{i}");
                    s.set(key.as_bytes(), b"value", Ttl::Persist).unwrap();
                    s.get(key.as_bytes(), |_| ());
                    if i % 7 == 0 {
                        s.delete(key.as_bytes());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert!(
        st.keys <= 1000 + 4,
        "limit holds under concurrency (approximately): {}",
        st.keys
    );
    let mut counted = 0;
    let mut cursor = 0;
    loop {
        cursor = s.scan(cursor, 1000, |_| counted += 1);
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(counted, st.keys);
    for i in 0..s.shard_count() {
        s.lru_of_shard(i);
    }
}

#[test]
fn relocation_keeps_values_deadlines_and_lru_order() {
    let (s, clock) = store_with(4, 0);
    let now = clock.now_ms();
    for i in 0..3000 {
        let ttl = if i % 3 == 0 {
            Ttl::At(now + 10_000 + i)
        } else {
            Ttl::Persist
        };
        s.set(
            format!("k{i}").as_bytes(),
            format!("value-{i}").repeat(i as usize % 7 + 1).as_bytes(),
            ttl,
        )
        .unwrap();
    }
    for i in (0..3000).step_by(5) {
        get(&s, &format!("k{i}"));
    }
    let before: Vec<Vec<Vec<u8>>> = (0..4).map(|i| s.lru_of_shard(i)).collect();
    let moved = s.relocate_all_for_tests();
    assert_eq!(moved, 3000);
    let after: Vec<Vec<Vec<u8>>> = (0..4).map(|i| s.lru_of_shard(i)).collect();
    assert_eq!(before, after, "LRU order survives relocation");
    for i in 0..3000u64 {
        let k = format!("k{i}");
        let want = format!("value-{i}").repeat(i as usize % 7 + 1);
        let got = s
            .update(k.as_bytes(), Access::Peek, |e| {
                (Write::Keep, e.map(|e| (e.value.to_vec(), e.expires_at)))
            })
            .unwrap()
            .unwrap();
        assert_eq!(got.0, want.as_bytes());
        assert_eq!(got.1, (i % 3 == 0).then_some(now + 10_000 + i));
    }
    // Deadlines still bite after the move.
    clock.advance(20_000);
    assert!(!s.contains(b"k0"));
    assert!(s.contains(b"k1"));
}

#[test]
fn the_cleaner_bounds_garbage_under_churn_of_mixed_sizes() {
    let (s, _) = store_with(4, 0);
    let mut x = 7u64;
    let mut live = std::collections::HashMap::new();
    for round in 0..200_000u64 {
        x = shard::splitmix(x);
        let k = x % 20_000;
        let len = 1 + (x >> 20) as usize % 900;
        let key = format!("key{k}");
        if x.is_multiple_of(10) {
            s.delete(key.as_bytes());
            live.remove(&k);
        } else {
            let v = vec![b'a' + (round % 26) as u8; len];
            s.set(key.as_bytes(), &v, Ttl::Persist).unwrap();
            live.insert(k, v);
        }
    }
    let r = s.memory_report();
    let st = s.stats();
    let live_bytes: usize = (0..4)
        .map(|i| s.shards[i].shard.lock().log_bytes().live)
        .sum();
    assert!(r.moved > 0, "the cleaner ran");
    // Per shard: the write path's threshold (half a segment + live/16), plus the victim being
    // cleaned, whose moved records are dead until it is released whole.
    let seg = 256 * 1024;
    assert!(
        r.garbage <= live_bytes / 16 + 4 * (seg / 2 + seg),
        "garbage {} with {} live",
        r.garbage,
        live_bytes
    );
    assert!(st.held_bytes <= live_bytes + r.garbage + 4 * 256 * 1024);
    for (k, v) in &live {
        assert_eq!(
            s.get(format!("key{k}").as_bytes(), |b| b.to_vec()).as_ref(),
            Some(v)
        );
    }
    assert_eq!(s.len(), live.len());
}

#[test]
fn a_size_shift_under_the_cap_gives_the_new_size_the_memory() {
    // memcached's starvation case: fill with small values, then write large ones.
    let cap = 16 << 20;
    let s = Store::builder().shards(4).max_memory(cap).build();
    for i in 0..400_000u32 {
        s.set(format!("small{i:08}").as_bytes(), &[b's'; 40], Ttl::Persist)
            .unwrap();
    }
    let small_held = s.stats().held_bytes;
    for i in 0..40_000u32 {
        s.set(format!("big{i:08}").as_bytes(), &[b'b'; 1000], Ttl::Persist)
            .unwrap();
        assert!(s.memory_used() <= cap);
    }
    let st = s.stats();
    let bigs = (30_000..40_000u32)
        .filter(|i| s.contains(format!("big{i:08}").as_bytes()))
        .count();
    assert_eq!(bigs, 10_000, "the newest large values are all held");
    assert!(
        st.keys > 14_000,
        "large values fill the cap: {} keys",
        st.keys
    );
    assert!(
        st.held_bytes <= cap + cap / 8,
        "held {} after the shift (small phase held {})",
        st.held_bytes,
        small_held
    );
    // The small values' segments went back to the pool and, beyond its reserve, the kernel.
    let pool = s.memory_report().pool;
    assert!(pool.warm <= POOL_RESERVE);
}

#[test]
fn multi_key_writes_are_seen_whole_or_not_at_all() {
    let s = Arc::new(Store::builder().shards(16).build());
    let keys: Vec<Vec<u8>> = (0..16).map(|i| format!("mk{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    s.multi(&refs, |t| {
        for i in 0..t.len() {
            t.set(i, b"a", Ttl::Persist).unwrap();
        }
    });
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = [b"a", b"b"]
        .into_iter()
        .map(|v| {
            let (s, keys, stop) = (s.clone(), keys.clone(), stop.clone());
            std::thread::spawn(move || {
                let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
                // Reverse order on one writer: lock ordering must not depend on key order.
                let refs: Vec<&[u8]> = if v == b"b" {
                    refs.into_iter().rev().collect()
                } else {
                    refs
                };
                while !stop.load(Relaxed) {
                    s.multi(&refs, |t| {
                        for i in 0..t.len() {
                            t.set(i, v, Ttl::Persist).unwrap();
                        }
                    });
                }
            })
        })
        .collect();
    let mut mixed = 0;
    for _ in 0..20_000 {
        let vals = s.multi(&refs, |t| {
            (0..t.len())
                .map(|i| t.get(i, |v| v[0]).unwrap())
                .collect::<Vec<u8>>()
        });
        if vals.iter().any(|&v| v != vals[0]) {
            mixed += 1;
        }
    }
    stop.store(true, Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(mixed, 0, "a reader saw half of a multi-key write");
}

#[test]
fn random_key_is_uniform_over_keys_and_shards() {
    // Chi-squared over 10 keys, 20,000 draws: 9 degrees of freedom, the 1e-6 tail is ~45.
    for shards in [1, 16] {
        let (s, _) = store_with(shards, 0);
        for i in 0..10 {
            put(&s, &format!("k{i}"), "v");
        }
        let mut counts = std::collections::HashMap::new();
        let draws = 20_000;
        for _ in 0..draws {
            *counts.entry(s.random_key().unwrap()).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), 10);
        let expected = draws as f64 / 10.0;
        let chi2: f64 = counts
            .values()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            chi2 < 45.0,
            "{shards} shards: chi2 {chi2}, counts {counts:?}"
        );
    }
}

#[test]
fn flush_returns_memory_and_index_tables() {
    let (s, _) = store_with(4, 0);
    for i in 0..100_000 {
        put(
            &s,
            &format!("key{i}"),
            "0123456789012345678901234567890123456789",
        );
    }
    assert!(s.stats().held_bytes > 4 << 20);
    s.flush(false);
    assert_eq!(s.stats().held_bytes, 0);
    assert_eq!(s.memory_used(), 0);
    let pool = s.memory_report().pool;
    assert!(pool.warm <= POOL_RESERVE, "{pool:?}");
}

#[test]
fn multi_key_locking_never_deadlocks_with_eviction_and_single_key_traffic() {
    // Key sets in random orders across all shards, a key limit that makes writes evict from
    // other shards, and single-key traffic on the side. Taking shard locks in any order but
    // ascending (or evicting while holding one) deadlocks this within a few iterations; the
    // watchdog turns a hang into a failure.
    let s = Arc::new(Store::builder().shards(8).max_keys(40).build());
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..6u64 {
        let (s, tx) = (s.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut x = t + 1;
            for _ in 0..3000 {
                x = shard::splitmix(x);
                let n = 1 + (x % 12) as usize;
                let keys: Vec<Vec<u8>> = (0..n)
                    .map(|i| format!("k{}", shard::splitmix(x + i as u64) % 64).into_bytes())
                    .collect();
                let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
                match x % 4 {
                    0 => s.multi(&refs, |t| {
                        for i in 0..t.len() {
                            t.set(i, b"v", Ttl::Persist).unwrap();
                        }
                    }),
                    1 => s.multi(&refs, |t| {
                        for i in 0..t.len() {
                            t.get(i, |_| ());
                        }
                    }),
                    2 => s.multi(&refs, |t| {
                        for i in 0..t.len() {
                            t.delete(i);
                        }
                    }),
                    _ => {
                        s.set(&keys[0], b"single", Ttl::Persist).unwrap();
                        s.get(&keys[n - 1], |_| ());
                    }
                }
            }
            tx.send(()).unwrap();
        });
    }
    drop(tx);
    for _ in 0..6 {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a worker hung: lock-order deadlock");
    }
    assert!(s.len() <= 40);
}

#[test]
fn images_restore_keys_deadlines_memcached_fields_and_lru_order() {
    let (s, clock) = store_with(8, 0);
    let now = clock.now_ms();
    for i in 0..500 {
        let ttl = if i % 4 == 0 {
            Ttl::At(now + 60_000)
        } else {
            Ttl::Persist
        };
        s.set(format!("k{i}").as_bytes(), format!("v{i}").as_bytes(), ttl)
            .unwrap();
    }
    s.update(b"mc", Access::Write, |_| {
        (
            Write::PutMc(Cow::Borrowed(b"memcached"), Ttl::Persist, 0xABCD),
            (),
        )
    })
    .unwrap();
    for i in (0..500).step_by(3) {
        get(&s, &format!("k{i}"));
    }
    // Save: all shards' records, merged oldest first by last use.
    let saved_at = s.recency_now();
    let mut all = Vec::new();
    for i in 0..s.shard_count() {
        s.shard_image(i).for_each_oldest_first(|r| {
            all.push((
                r.last_used,
                r.key.to_vec(),
                r.value.to_vec(),
                r.expires_at,
                r.flags,
                r.cas,
            ))
        });
    }
    assert_eq!(all.len(), 501);
    all.sort_by_key(|r| r.0);
    // Load into a store with room for only the 100 most recently used keys.
    let (t, _) = store_with(4, 100);
    for (last, k, v, exp, flags, cas) in &all {
        t.restore(k, v, *exp, *flags, *cas, saved_at - last)
            .unwrap();
    }
    let kept: Vec<&Vec<u8>> = all.iter().rev().take(100).map(|r| &r.1).collect();
    assert_eq!(t.len(), 100);
    for k in &kept {
        assert!(
            t.contains(k),
            "{:?} was among the most recent",
            String::from_utf8_lossy(k)
        );
    }
    // memcached's fields come back too (the key was written before the reads, so it is in the
    // full load even if the limited one dropped it).
    let (full, _) = store_with(4, 0);
    for (last, k, v, exp, flags, cas) in &all {
        full.restore(k, v, *exp, *flags, *cas, saved_at - last)
            .unwrap();
    }
    let mc = full
        .update(b"mc", Access::Peek, |e| {
            (
                Write::Keep,
                e.map(|e| (e.flags, e.cas != 0, e.value.to_vec())),
            )
        })
        .unwrap();
    assert_eq!(mc, Some((0xABCD, true, b"memcached".to_vec())));
    // The next key evicted is the oldest of the kept ones.
    put(&t, "new", "v");
    assert!(!t.contains(kept[99]));
    // A deadline that passed while "down" is not loaded.
    let (u, clock_u) = store_with(2, 0);
    clock_u.set(now + 120_000);
    assert_eq!(
        u.restore(b"k0", b"v", Some(now + 60_000), 0, 0, 0),
        Ok(false)
    );
    assert!(u.is_empty());
}

#[test]
fn cas_uniques_change_on_every_modification_and_survive_reads() {
    let (s, _) = store_with(4, 0);
    let cas = |s: &Store| {
        s.update_cas(b"k", Access::Read, |_| (Write::AssignCas, ()))
            .unwrap()
            .1
    };
    put(&s, "k", "v1");
    let c1 = cas(&s);
    assert_ne!(c1, 0);
    assert_eq!(cas(&s), c1, "reads keep the CAS");
    s.update(b"k", Access::Write, |_| {
        (Write::Expire(Some(u64::MAX / 2)), ())
    })
    .unwrap();
    assert_eq!(
        cas(&s),
        c1,
        "touching the TTL keeps it (as memcached's touch)"
    );
    put(&s, "k", "v2");
    let c2 = cas(&s);
    assert!(c2 != 0 && c2 != c1, "a RESP write is a modification");
    let (_, c3) = s
        .update_cas(b"k", Access::Write, |_| {
            (Write::PutMc(Cow::Borrowed(b"v3"), Ttl::Persist, 7), ())
        })
        .unwrap();
    assert!(c3 != c2 && c3 != 0);
    let mut seen = std::collections::HashSet::new();
    for i in 0..1000 {
        let k = format!("u{i}");
        let (_, c) = s
            .update_cas(k.as_bytes(), Access::Write, |_| {
                (Write::PutMc(Cow::Borrowed(b"x"), Ttl::Persist, 0), ())
            })
            .unwrap();
        assert!(seen.insert(c), "CAS {c} issued twice");
    }
}

#[test]
fn the_expiry_sweep_survives_its_segment_being_released_and_reused() {
    // Found by a mixed-size TTL workload: the sweep's cursor pointed into a segment that had
    // since been emptied, released and reused for other records, and parsed mid-record bytes
    // (then removed a "record" no index held). The new values below are a byte pattern that
    // reads as an expired record at many offsets, so a stale cursor cannot go unnoticed.
    let pattern: Vec<u8> = [0u8, 0, 1, 1, 0x81, 0, 0, 0].repeat(25);
    for stale in (1..400).step_by(37) {
        let (s, clock) = store_with(1, 0);
        let now = clock.now_ms();
        for i in 0..3000 {
            s.set(format!("old{i}").as_bytes(), &[b'o'; 37], Ttl::At(now + 10))
                .unwrap();
        }
        {
            let mut sh = s.shards[0].shard.lock();
            sh.sweep(now, stale, &s.pool); // the cursor now sits inside the first segment
        }
        for i in 0..3000 {
            s.delete(format!("old{i}").as_bytes());
        }
        s.sweep(); // hands the emptied head back; its slot is reused below
        for i in 0..3000 {
            s.set(format!("n{i}").as_bytes(), &pattern, Ttl::At(now + 10))
                .unwrap();
        }
        clock.advance(20);
        let expired_before = s.stats().expired;
        for _ in 0..10 {
            s.sweep();
        }
        assert!(s.is_empty(), "stale {stale}");
        // Every one counted once, as expired (the sweep or the cleaner met it first).
        assert_eq!(s.stats().expired - expired_before, 3000);
    }
}
