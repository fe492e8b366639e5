//! Library-level snapshot tests: a store written to bytes and read into another store, with
//! hand-driven clocks, so deadlines and LRU order are checked exactly.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::*;
use crate::store::{Access, ManualClock, Store, Ttl, Write};

const T0: u64 = 1_800_000_000_000;

fn snapshot_of(store: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    write_to(store, &mut out, &AtomicU64::new(0)).unwrap();
    out
}

fn store_at(clock: &Arc<ManualClock>, shards: usize, max_keys: usize) -> Store {
    Store::builder()
        .shards(shards)
        .max_keys(max_keys)
        .clock(clock.clone())
        .build()
}

fn get(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    store
        .update(key, Access::Peek, |e| {
            (Write::Keep, e.map(|e| e.value.to_vec()))
        })
        .unwrap()
}

fn deadline(store: &Store, key: &[u8]) -> Option<Option<u64>> {
    store
        .update(key, Access::Peek, |e| {
            (Write::Keep, e.map(|e| e.expires_at))
        })
        .unwrap()
}

#[test]
fn round_trip_keeps_values_deadlines_flags_and_cas() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store_at(&clock, 4, 0);
    for i in 0..2000u32 {
        let key = format!("key:{i:06}");
        let value = format!("value-{i}-").repeat(1 + i as usize % 7);
        let ttl = if i % 3 == 0 {
            Ttl::Persist
        } else {
            Ttl::At(T0 + 1000 * i as u64 + 1)
        };
        a.set(key.as_bytes(), value.as_bytes(), ttl).unwrap();
    }
    // Binary keys and values, an empty value, a large value, memcached flags and a CAS.
    a.set(b"\x00\xff bin", &[0u8, 1, 2, 255], Ttl::Persist)
        .unwrap();
    a.set(b"empty", b"", Ttl::Persist).unwrap();
    let big = vec![b'x'; 300_000];
    a.set(b"big", &big, Ttl::At(T0 + 5)).unwrap();
    a.update(b"mc", Access::Write, |_| {
        (Write::PutMc(b"v".as_slice().into(), Ttl::Persist, 42), ())
    })
    .unwrap();
    a.update(b"mc", Access::Peek, |_| (Write::AssignCas, ()))
        .unwrap();
    let mc = a
        .update(b"mc", Access::Peek, |e| {
            let e = e.unwrap();
            (Write::Keep, (e.flags, e.cas))
        })
        .unwrap();
    let bytes = snapshot_of(&a);

    let b = store_at(&clock, 16, 0);
    let r = load_from(&b, bytes.as_slice()).unwrap();
    assert_eq!(
        (r.records, r.loaded, r.expired, r.refused),
        (a.len() as u64, a.len() as u64, 0, 0)
    );
    assert_eq!(b.len(), a.len());
    for i in 0..2000u32 {
        let key = format!("key:{i:06}");
        assert_eq!(get(&b, key.as_bytes()), get(&a, key.as_bytes()), "{key}");
        assert_eq!(
            deadline(&b, key.as_bytes()),
            deadline(&a, key.as_bytes()),
            "{key}"
        );
    }
    assert_eq!(get(&b, b"\x00\xff bin").unwrap(), [0u8, 1, 2, 255]);
    assert_eq!(get(&b, b"empty").unwrap(), b"");
    assert_eq!(get(&b, b"big").unwrap(), big);
    assert_eq!(deadline(&b, b"big"), Some(Some(T0 + 5)));
    let restored = b
        .update(b"mc", Access::Peek, |e| {
            let e = e.unwrap();
            (Write::Keep, (e.flags, e.cas))
        })
        .unwrap();
    assert_eq!(restored, mc);
    assert_eq!(mc.0, 42);
}

#[test]
fn keys_that_expired_while_down_are_not_loaded() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store_at(&clock, 2, 0);
    for i in 0..100u64 {
        a.set(
            format!("k{i}").as_bytes(),
            b"v",
            Ttl::At(T0 + 1000 + i * 1000),
        )
        .unwrap();
    }
    a.set(b"forever", b"v", Ttl::Persist).unwrap();
    let bytes = snapshot_of(&a);
    // The server is "down" for 50.5 seconds: keys k0..k49 (deadlines T0+1s..T0+50s) expired.
    clock.set(T0 + 50_500);
    let b = store_at(&clock, 2, 0);
    let r = load_from(&b, bytes.as_slice()).unwrap();
    assert_eq!((r.loaded, r.expired), (51, 50));
    assert!(!b.contains(b"k49"));
    assert!(b.contains(b"k50") && b.contains(b"forever"));
    assert_eq!(b.len(), 51);
}

#[test]
fn lru_order_survives_and_limits_keep_the_most_recent() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = Store::builder()
        .shards(4)
        .clock(clock.clone())
        .exact_recency_for_tests()
        .build();
    for i in 0..100 {
        a.set(format!("k{i:02}").as_bytes(), b"v", Ttl::Persist)
            .unwrap();
    }
    // Reading k00..k09 makes them the most recently used.
    for i in 0..10 {
        assert!(a.get(format!("k{i:02}").as_bytes(), |_| ()).is_some());
    }
    let bytes = snapshot_of(&a);

    // Restart with room for 50 keys and another shard count: the 50 most recently used stay
    // (k00..k09, then k60..k99), whichever shards they land in.
    let b = store_at(&clock, 8, 50);
    let r = load_from(&b, bytes.as_slice()).unwrap();
    assert_eq!((r.loaded, r.evicted), (100, 50));
    let kept: Vec<usize> = (0..100)
        .filter(|i| b.contains(format!("k{i:02}").as_bytes()))
        .collect();
    let want: Vec<usize> = (0..10).chain(60..100).collect();
    assert_eq!(kept, want);

    // New writes evict in the old LRU order: k60..k69 first, and never k00..k09.
    for i in 0..10 {
        b.set(format!("new{i}").as_bytes(), b"v", Ttl::Persist)
            .unwrap();
    }
    let kept: Vec<usize> = (0..100)
        .filter(|i| b.contains(format!("k{i:02}").as_bytes()))
        .collect();
    let want: Vec<usize> = (0..10).chain(70..100).collect();
    assert_eq!(kept, want);
}

#[test]
fn memory_limit_on_load_keeps_the_most_recent() {
    let clock = Arc::new(ManualClock::new(T0));
    // Every write its own recency tick, so "the oldest" is one exact set of keys.
    let a = Store::builder()
        .shards(4)
        .clock(clock.clone())
        .exact_recency_for_tests()
        .build();
    let value = vec![b'v'; 1000];
    for i in 0..20_000 {
        a.set(format!("k{i:05}").as_bytes(), &value, Ttl::Persist)
            .unwrap();
    }
    let bytes = snapshot_of(&a);
    let b = Store::builder()
        .shards(4)
        .max_memory(4 << 20)
        .clock(clock.clone())
        .build();
    let r = load_from(&b, bytes.as_slice()).unwrap();
    assert!(r.evicted > 10_000, "{r:?}");
    assert!(b.stats().memory <= 4 << 20);
    // The newest key stays; the oldest went.
    assert!(b.contains(b"k19999"));
    assert!(!b.contains(b"k00000"));
    let n = b.len();
    assert!((0..20_000 - n).all(|i| !b.contains(format!("k{i:05}").as_bytes())));
}

#[test]
fn an_empty_store_round_trips() {
    let a = Store::builder().shards(4).build();
    let bytes = snapshot_of(&a);
    let b = Store::builder().shards(2).build();
    let r = load_from(&b, bytes.as_slice()).unwrap();
    assert_eq!((r.records, r.loaded), (0, 0));
}

fn sample() -> Vec<u8> {
    let clock = Arc::new(ManualClock::new(T0));
    let a = store_at(&clock, 4, 0);
    for i in 0..5000 {
        a.set(
            format!("key{i}").as_bytes(),
            format!("value{i}").repeat(5).as_bytes(),
            Ttl::At(T0 + 100_000),
        )
        .unwrap();
    }
    snapshot_of(&a)
}

fn load_err(bytes: &[u8]) -> FormatError {
    let b = Store::builder()
        .shards(2)
        .clock(Arc::new(ManualClock::new(T0)))
        .build();
    match load_from(&b, bytes) {
        Err(LoadError::Format(e)) => e,
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = sample();
    // Every cut point in the first and last kilobytes, and a spread through the middle.
    let cuts = (0..1024)
        .chain((1024..bytes.len()).step_by(997))
        .chain(bytes.len() - 1024..bytes.len());
    for cut in cuts {
        let e = load_err(&bytes[..cut]);
        let s = e.to_string();
        assert!(
            s.starts_with("truncated") || (cut < 8 && matches!(e, FormatError::Foreign)),
            "cut at {cut}: {s}"
        );
    }
}

#[test]
fn every_flipped_bit_is_detected() {
    let bytes = sample();
    // One bit flipped in each of many positions (all of the header and tail, a spread
    // elsewhere): each is detected, never loaded as data.
    let mut positions: Vec<usize> = (0..200).chain(bytes.len() - 200..bytes.len()).collect();
    positions.extend((200..bytes.len() - 200).step_by(131));
    for p in positions {
        let mut bad = bytes.clone();
        bad[p] ^= 1 << (p % 8);
        let e = load_err(&bad);
        let s = e.to_string();
        assert!(
            s.starts_with("corrupted")
                || s.starts_with("truncated")
                || s.contains("not a kvcache snapshot")
                || matches!(e, FormatError::Version { .. }),
            "bit at {p}: {s}"
        );
    }
}

#[test]
fn other_versions_and_foreign_files_are_named() {
    let mut bytes = sample();
    bytes[8] = 9;
    assert_eq!(load_err(&bytes), FormatError::Version { found: 9 });
    assert!(load_err(&bytes).to_string().contains("format version 9"));
    assert_eq!(
        load_err(b"REDIS0011\xfa\x09redis-ver"),
        FormatError::Foreign
    );
    assert_eq!(load_err(b""), FormatError::Foreign);
    assert_eq!(load_err(&[0u8; 4096]), FormatError::Foreign);
}

#[test]
fn a_corrupt_file_is_moved_aside_and_the_store_emptied() {
    let dir = std::env::temp_dir().join(format!("kvcache-snap-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.snap");
    let mut bytes = sample();
    let n = bytes.len();
    bytes[n / 2] ^= 0xFF; // a block in the middle: some records load before the error
    std::fs::write(&path, &bytes).unwrap();
    let store = Arc::new(
        Store::builder()
            .shards(2)
            .clock(Arc::new(ManualClock::new(T0)))
            .build(),
    );
    match load_at_startup(&store, &path, true) {
        Err(StartupError::Strict { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(store.is_empty(), "a partial load is undone");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "strict leaves the file in place"
    );
    let Ok(Startup::MovedAside { to, .. }) = load_at_startup(&store, &path, false) else {
        panic!()
    };
    assert!(store.is_empty());
    assert!(!path.exists());
    assert_eq!(std::fs::read(&to).unwrap(), bytes);
    // A second bad file in the same second gets its own name: nothing is overwritten.
    std::fs::write(&path, b"garbage").unwrap();
    let Ok(Startup::MovedAside { to: to2, .. }) = load_at_startup(&store, &path, false) else {
        panic!()
    };
    assert_ne!(to, to2);
    assert_eq!(std::fs::read(&to).unwrap(), bytes);
    assert_eq!(std::fs::read(&to2).unwrap(), b"garbage");
    assert!(matches!(
        load_at_startup(&store, &path, false),
        Ok(Startup::NoFile)
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_replaces_the_file_and_leaves_no_temporary() {
    let dir = std::env::temp_dir().join(format!("kvcache-snap-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.snap");
    let store = Store::builder().shards(2).build();
    store.set(b"a", b"1", Ttl::Persist).unwrap();
    let r = save(&store, &path, &AtomicU64::new(0)).unwrap();
    assert_eq!(r.keys, 1);
    assert_eq!(r.bytes, std::fs::metadata(&path).unwrap().len());
    store.set(b"b", b"2", Ttl::Persist).unwrap();
    assert_eq!(save(&store, &path, &AtomicU64::new(0)).unwrap().keys, 2);
    assert!(!temp_path(&path).exists());
    // A directory where the temporary file goes: the save fails, the old file stays.
    std::fs::create_dir(temp_path(&path)).unwrap();
    store.set(b"c", b"3", Ttl::Persist).unwrap();
    let e = save(&store, &path, &AtomicU64::new(0)).unwrap_err();
    assert!(e.to_string().starts_with("cannot create"), "{e}");
    let back = Store::default();
    assert_eq!(load(&back, &path).unwrap().loaded, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn utc_stamps() {
    assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
    assert_eq!(
        utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
        "20000229T010101Z"
    );
}

#[test]
fn large_files_load_in_parallel_with_lru_order_exact_between_batches() {
    let clock = Arc::new(ManualClock::new(T0));
    let a = Store::builder()
        .shards(8)
        .clock(clock.clone())
        .exact_recency_for_tests()
        .build();
    let n = 2 * PARALLEL_FROM as usize;
    for i in 0..n {
        let ttl = if i % 2 == 0 {
            Ttl::Persist
        } else {
            Ttl::At(T0 + 1_000_000 + i as u64)
        };
        a.set(
            format!("k{i:07}").as_bytes(),
            format!("v{i}").as_bytes(),
            ttl,
        )
        .unwrap();
    }
    let bytes = snapshot_of(&a);
    assert_eq!(restore_threads(PARALLEL_FROM - 1), 1);
    // Everything comes back (two restoring threads, whatever this machine's CPU count).
    let b = store_at(&clock, 16, 0);
    let r = load_with(&b, bytes.as_slice(), Some(2)).unwrap();
    assert_eq!((r.loaded, r.expired, r.refused), (n as u64, 0, 0));
    for i in (0..n).step_by(997) {
        let k = format!("k{i:07}");
        assert_eq!(get(&b, k.as_bytes()), Some(format!("v{i}").into_bytes()));
        assert_eq!(deadline(&b, k.as_bytes()), deadline(&a, k.as_bytes()));
    }
    // Half the room: the newest half stays, give or take the records of one batch at the edge.
    let half = n / 2;
    let c = store_at(&clock, 16, half);
    let r = load_with(&c, bytes.as_slice(), Some(3)).unwrap();
    assert_eq!(r.evicted, half as u64);
    let slack = 2 * BATCH;
    assert!((0..half - slack).all(|i| !c.contains(format!("k{i:07}").as_bytes())));
    assert!((half + slack..n).all(|i| c.contains(format!("k{i:07}").as_bytes())));
}
