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

criterion_group!(benches, store_ops, growth, threads);
criterion_main!(benches);

/// Scaling with threads (issue: nothing shared written per request): GETs and SETs from 1 and
/// 2 threads at once, on disjoint halves of the key range and on the whole range. Each iteration is a
/// fixed batch of operations per thread, so the time per iteration stays flat if threads do not
/// slow each other down: throughput with 2 threads = 2 x batch / time.
fn threads(c: &mut Criterion) {
    use std::sync::{Arc, Barrier};
    const BATCH: usize = 20_000;
    let value = [b'v'; 64];
    let store = Arc::new(Store::builder().build());
    let keys: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..KEYS)
            .map(|i| format!("key:{i:012}").into_bytes())
            .collect(),
    );
    for k in keys.iter() {
        store.set(k, &value, Ttl::Persist).unwrap();
    }
    let mut g = c.benchmark_group("threads");
    g.sample_size(20);
    for (name, n, shared) in [
        ("1_thread", 1usize, false),
        ("2_threads_disjoint_keys", 2, false),
        ("2_threads_shared_keys", 2, true),
    ] {
        g.throughput(Throughput::Elements((n * BATCH) as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let barrier = Arc::new(Barrier::new(n));
                let handles: Vec<_> = (0..n)
                    .map(|t| {
                        let (store, keys, barrier) = (store.clone(), keys.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            // Disjoint threads split the one thread's key range, so the
                            // working set (and what the caches hold) is the same in every case.
                            let range = if shared { KEYS } else { KEYS / n };
                            let base = if shared { 0 } else { t * range };
                            let mut i = t * 7919;
                            barrier.wait();
                            let start = std::time::Instant::now();
                            for _ in 0..iters {
                                for j in 0..BATCH {
                                    i = (i + 7919) % range;
                                    let k = &keys[base + i];
                                    if j % 4 == 0 {
                                        store.set(k, &value, Ttl::Persist).unwrap();
                                    } else {
                                        black_box(store.get(k, |v| v.len()));
                                    }
                                }
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .max()
                    .unwrap()
            })
        });
    }
    g.finish();
}
