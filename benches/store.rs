//! Store operations: `cargo bench --bench store`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvcache::store::{Store, Ttl};

const KEYS: usize = 100_000;

fn keys() -> Vec<Vec<u8>> {
    (0..KEYS)
        .map(|i| format!("key:{i:012}").into_bytes())
        .collect()
}

fn store_ops(c: &mut Criterion) {
    let keys = keys();
    let value = [b'v'; 64];
    let store = Store::builder().build();
    let deadline = store.now_ms() + 3_600_000;
    for k in &keys {
        store.set(k, &value, Ttl::At(deadline)).unwrap();
    }
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get(&keys[i], |v| v.len()))
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| black_box(store.get(b"no-such-key-here", |v| v.len())))
    });
    g.bench_function("set_overwrite", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.set(&keys[i], &value, Ttl::At(deadline)).unwrap()
        })
    });
    g.bench_function("exists", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.contains(&keys[i]))
        })
    });
    // Insert + LRU eviction at a full key limit: the steady state of a cache under churn.
    let full = Store::builder().max_keys(KEYS).build();
    for k in &keys {
        full.set(k, &value, Ttl::Persist).unwrap();
    }
    let mut n = 0u64;
    g.bench_function("set_new_with_eviction", |b| {
        b.iter(|| {
            n += 1;
            let k = format!("new:{n:012}");
            full.set(k.as_bytes(), &value, Ttl::Persist).unwrap()
        })
    });
    g.bench_function("delete_then_set", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            store.delete(&keys[i]);
            store.set(&keys[i], &value, Ttl::At(deadline)).unwrap()
        })
    });
    g.finish();
}

/// Inserts of new keys into a store that keeps growing across iterations: the amortised cost of
/// an insert including the index resizes it triggers (drained a group per insert) and segment
/// turnover. Compare before and after a change to the index.
fn growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("growth");
    g.throughput(Throughput::Elements(1));
    let value = [b'v'; 64];
    let store = Store::builder().build();
    let mut n = 0u64;
    let mut key = *b"grow:000000000000";
    g.bench_function("insert_growing", |b| {
        b.iter(|| {
            n += 1;
            let mut digits = itoa::Buffer::new();
            let d = digits.format(n).as_bytes();
            key[17 - d.len()..].copy_from_slice(d);
            store.set(&key, &value, Ttl::Persist).unwrap()
        })
    });
    g.finish();
    eprintln!("growth: {} keys inserted in total", store.len());
}

criterion_group!(benches, store_ops, growth);
criterion_main!(benches);
