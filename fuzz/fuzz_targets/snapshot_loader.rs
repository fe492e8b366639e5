//! The snapshot loader on hostile bytes. The first byte picks a mode:
//! - 0: the rest is a whole file;
//! - 1: the rest is the decoded payload of one block, wrapped in a header, block and trailer
//!   with correct checksums, so the record decoder and the restore path see arbitrary records;
//! - 2: the rest becomes keys and values in a store, which is saved and loaded into another
//!   store: everything must come back.
//!
//! In every mode: no panic, no allocation beyond what the input's size justifies, and a load
//! either fails with an error or accounts for every record it read (loaded + expired +
//! refused = records) without breaking the store's limits.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use kvcache::snapshot::format::{self, CODEC_RAW, RunInfo, Trailer};
use kvcache::snapshot::{load_from, write_to};
use kvcache::store::{Access, ManualClock, Store, Ttl, Write};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000_000;

fn store(max_keys: usize) -> Store {
    Store::builder()
        .shards(4)
        .max_keys(max_keys)
        .max_memory(if max_keys == 0 { 0 } else { 1 << 20 })
        .clock(Arc::new(ManualClock::new(NOW)))
        .build()
}

fn check(store: &Store, data: &[u8], max_keys: usize) {
    if let Ok(r) = load_from(store, data) {
        assert_eq!(r.loaded + r.expired + r.refused, r.records, "{r:?}");
        assert!(store.len() as u64 <= r.loaded);
        if max_keys > 0 {
            assert!(store.len() <= max_keys);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check(&store(0), rest, 0),
        1 => {
            let Some((&n, payload)) = rest.split_first() else {
                return;
            };
            let mut file = Vec::new();
            format::encode_header(NOW, 1, &mut file);
            let start = file.len() as u64;
            format::encode_block(n as u32 + 1, payload.len() as u32, CODEC_RAW, payload, &mut file);
            let end = file.len() as u64;
            let t = Trailer {
                runs: vec![RunInfo { offset: start, end, records: n as u64 + 1, blocks: 1 }],
                records: n as u64 + 1,
                blocks: 1,
                ref_ticks: 1 << 40,
                finished_ms: NOW,
            };
            format::encode_trailer(&t, end, &mut file);
            check(&store(8), &file, 8);
        }
        _ => {
            let a = store(0);
            let mut pairs = Vec::new();
            for chunk in rest.chunks(7) {
                let (key, value) = chunk.split_at(chunk.len().min(3));
                let ttl = match value.first() {
                    Some(&b) if b % 4 == 0 => Ttl::At(NOW + 1 + b as u64),
                    _ => Ttl::Persist,
                };
                a.set(key, value, ttl).unwrap();
                pairs.push(key.to_vec());
            }
            let mut file = Vec::new();
            write_to(&a, &mut file, &AtomicU64::new(0)).unwrap();
            let b = store(0);
            let r = load_from(&b, file.as_slice()).unwrap();
            assert_eq!(r.loaded as usize, a.len());
            assert_eq!(b.len(), a.len());
            let entry = |s: &Store, k: &[u8]| {
                s.update(k, Access::Peek, |e| (Write::Keep, e.map(|e| (e.value.to_vec(), e.expires_at))))
                    .unwrap()
            };
            for k in pairs {
                assert_eq!(entry(&a, &k), entry(&b, &k));
            }
        }
    }
});
