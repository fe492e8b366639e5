//! A latency probe: one connection sending one RESP `GET` every interval while something else
//! loads the server, as a user's light traffic would see it. Latency is measured from when the
//! request was *scheduled*, not when it was sent, so a server stall shows up in full in every
//! request it delays (no coordinated omission).
//!
//! `cargo run --release --example probe -- HOST:PORT [interval_us] [seconds]`
//! Runs until `seconds` pass (0 = until stdin closes) and prints one line:
//! `samples=N p50_us=.. p99_us=.. p999_us=.. max_us=..`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7171".into());
    let interval =
        Duration::from_micros(args.next().map_or(500, |s| s.parse().expect("interval_us")));
    let seconds: u64 = args.next().map_or(0, |s| s.parse().expect("seconds"));
    let stop = Arc::new(AtomicBool::new(false));
    if seconds == 0 {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let stream = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let request = b"*2\r\n$3\r\nGET\r\n$9\r\nprobe:key\r\n";
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let start = Instant::now();
    let mut next = start;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) && (seconds == 0 || start.elapsed().as_secs() < seconds) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        writer.write_all(request).expect("send");
        line.clear();
        reader.read_line(&mut line).expect("reply");
        if line.starts_with('$') && !line.starts_with("$-1") {
            let n: usize = line[1..].trim().parse().expect("bulk length");
            let mut body = vec![0u8; n + 2];
            reader.read_exact(&mut body).expect("bulk body");
        }
        let done = Instant::now();
        hist.record(done.duration_since(next).as_micros().max(1) as u64)
            .unwrap();
        next += interval;
        // A stall longer than the interval delays the requests behind it; they still count
        // from their scheduled times (that is the point), but do not pile up without end.
        if done > next + Duration::from_secs(1) {
            next = done;
        }
    }
    println!(
        "samples={} p50_us={} p99_us={} p999_us={} max_us={}",
        hist.len(),
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
}
