//! Measures snapshot save and load with and without LZ4 on value shapes a cache holds, for the
//! compression decision in docs/SNAPSHOT.md: `cargo run --release --example snapshot_measure
//! [items]` (default 1,000,000; 16-byte keys, 64-byte values, a TTL).

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use kvcache::snapshot::{load_with, write_with};
use kvcache::store::{Store, Ttl};

/// Makes the value of item `i` from a random source.
type Shape = Box<dyn Fn(usize, &mut dyn FnMut() -> u64) -> Vec<u8>>;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let shapes: [(&str, Shape); 4] = [
        (
            "random bytes",
            Box::new(|_, r| (0..8).flat_map(|_| r().to_le_bytes()).collect()),
        ),
        (
            "base64 text (random tokens)",
            Box::new(|_, r| (0..64).map(|_| ALNUM[(r() % 64) as usize]).collect()),
        ),
        (
            "JSON record",
            Box::new(|i, r| {
                let mut v = format!(
                    "{{\"id\":{i},\"name\":\"user{}\",\"score\":{},\"ok\":true}}",
                    r() % 100_000,
                    r() % 1000
                )
                .into_bytes();
                v.resize(64, b' ');
                v
            }),
        ),
        (
            "repeated byte (redis-benchmark style)",
            Box::new(|_, _| vec![b'x'; 64]),
        ),
    ];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    println!("items: {n} (16 B keys, 64 B values, TTL)\n");
    println!(
        "| values | LZ4 | file MB | bytes/item | save ms | load ms, 1 thread | load ms, parallel |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, make) in &shapes {
        let store = Store::builder().shards(16).max_memory(0).build();
        let fill = Instant::now();
        for i in 0..n {
            let key = format!("key:{:012}", next() % 1_000_000_000_000);
            let value = make(i, &mut next);
            let ttl = Ttl::At(now + 3_600_000 + next() % 3_600_000);
            store.set(key.as_bytes(), &value, ttl).unwrap();
        }
        if std::env::var_os("FILL_TIME").is_some() {
            eprintln!("fill (generate + set): {} ms", fill.elapsed().as_millis());
        }
        for compress in [false, true] {
            let mut out = Vec::with_capacity(n * 100);
            let t = Instant::now();
            let (keys, bytes) = write_with(&store, &mut out, &AtomicU64::new(0), compress).unwrap();
            let save = t.elapsed();
            let mut loads = Vec::new();
            for threads in [Some(1), None] {
                let back = Store::builder().shards(16).max_memory(0).build();
                let (t, cpu) = (Instant::now(), cpu_ms());
                let r = load_with(&back, out.as_slice(), threads).unwrap();
                loads.push(t.elapsed());
                if std::env::var_os("CPU_TIME").is_some() {
                    eprintln!(
                        "{name}: load with {threads:?} threads used {} ms of CPU",
                        cpu_ms() - cpu
                    );
                }
                assert_eq!(r.loaded, keys);
            }
            println!(
                "| {name} | {} | {:.1} | {:.1} | {} | {} | {} |",
                if compress { "yes" } else { "no" },
                bytes as f64 / 1e6,
                bytes as f64 / keys as f64,
                save.as_millis(),
                loads[0].as_millis(),
                loads[1].as_millis()
            );
        }
    }
}

/// CPU time of the whole process (all threads), user + system, in ms.
fn cpu_ms() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one struct through the pointer, which points at a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}
