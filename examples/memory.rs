//! Measures process RSS per item: `cargo run --release --example memory -- [items] [key] [value]`.
//! Defaults to 1,000,000 items with a 16-byte key, a 64-byte value and a TTL, the reference item
//! of the memory target.

use kvcache::store::{Store, Ttl};

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("numeric argument"));
    let items = args.next().unwrap_or(1_000_000);
    let key_len = args.next().unwrap_or(16);
    let value_len = args.next().unwrap_or(64);
    let store = Store::builder().build();
    let deadline = store.now_ms() + 3_600_000;
    let value = vec![b'v'; value_len];
    let before = rss_bytes();
    let mut key = vec![b'k'; key_len];
    for i in 0..items {
        let digits = format!("{i:0width$}", width = key_len.min(20));
        key[key_len - digits.len().min(key_len)..]
            .copy_from_slice(&digits.as_bytes()[digits.len().saturating_sub(key_len)..]);
        store.set(&key, &value, Ttl::At(deadline)).unwrap();
    }
    // At rest: once writes stop, the background sweeper finishes index resizes (1,024 groups
    // per shard per 100 ms tick) and unmaps drained tables; run it here until that is done.
    let mut sweeps = 0;
    loop {
        store.sweep();
        sweeps += 1;
        if store.memory_report().resizing == 0 {
            break;
        }
    }
    let after = rss_bytes();
    let stats = store.stats();
    assert_eq!(stats.keys, items);
    println!(
        "items={items} key={key_len}B value={value_len}B shards={} sweeps={sweeps} rss_growth={} bytes_per_item={:.1} accounted_per_item={:.1}",
        store.shard_count(),
        after - before,
        (after - before) as f64 / items as f64,
        stats.memory as f64 / items as f64,
    );
}
