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

criterion_group!(benches, store_ops);
criterion_main!(benches);
