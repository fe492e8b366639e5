use super::*;

fn store_with(shards: usize, max_keys: usize) -> (Store, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let store = Store::builder()
        .shards(shards)
        .max_keys(max_keys)
        .clock(clock.clone())
        .build();
    (store, clock)
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
    assert_eq!(std::mem::size_of::<shard::Slot>(), 3, "hash bucket payload");
    assert_eq!(
        item::record_len(16, 64, true),
        98,
        "record for 16 B key + 64 B value + TTL"
    );
    assert_eq!(
        slab::chunk_size_for(98),
        98,
        "no class rounding for the reference record"
    );
    // One page descriptor serves up to 64 small records: under a byte per item.
    assert_eq!(slab::PAGE_DESCRIPTOR_SIZE, 40, "page descriptor");
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
    assert_eq!(
        s.stats().page_bytes,
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
fn lru_survives_stamp_wraparound() {
    let (s, _) = store_with(8, 3);
    s.stamp.store(u32::MAX as u64 - 2, Relaxed);
    put(&s, "a", "1"); // stamp 2^32-3
    put(&s, "b", "1"); // 2^32-2
    put(&s, "c", "1"); // 2^32-1
    put(&s, "d", "1"); // wraps to 0: evicts a
    assert!(!s.contains(b"a"));
    get(&s, "b");
    put(&s, "e", "1"); // evicts c
    assert!(!s.contains(b"c"));
    assert!(s.contains(b"b") && s.contains(b"d") && s.contains(b"e"));
}

#[test]
fn stamp_clamping_keeps_ancient_records_oldest() {
    let (s, _) = store_with(1, 0);
    put(&s, "old", "1");
    put(&s, "new", "1");
    // Pretend 1.8 billion accesses happened since.
    s.stamp.fetch_add(1_800_000_000, Relaxed);
    let now32 = s.stamp.load(Relaxed) as u32;
    let clamped = s.shards[0].shard.lock().clamp_stamps(now32, 100);
    assert_eq!(clamped, 2);
    let sh = s.shards[0].shard.lock();
    assert_eq!(sh.lru_keys(), vec![b"new".to_vec(), b"old".to_vec()]);
    assert_eq!(
        now32.wrapping_sub((sh.tail_mark() & 0xFFFF_FFFF) as u32),
        1 << 30
    );
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
        st.page_bytes <= cap + 8 * 16 * 1024,
        "pages track accounting: {}",
        st.page_bytes
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
    assert_eq!(s.stats().page_bytes, 0);
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
    assert!(calls >= 50, "COUNT bounds each step ({calls} calls)");
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
