//! A latency probe: one connection sending one RESP `GET` every interval while something else
//! loads the server, as a user's light traffic would see it.
//!
//! The probe is open-loop: a sender thread sends on schedule whether or not earlier replies have
//! come back, and a reader thread matches replies to sends in order. A server stall therefore
//! shows up in every request sent during it (the first waits the whole stall, the next one
//! interval less, ...), with no coordinated omission, while the probe's own scheduling on a busy
//! machine does not pile up as phantom latency (a closed-loop probe that is late once stays late).
//! Latency is measured from the moment each request was written to the socket.
//!
//! `cargo run --release --example probe -- HOST:PORT [interval_us] [seconds]`
//! Runs until `seconds` pass (0 = until stdin closes) and prints one line:
//! `samples=N p50_us=.. p99_us=.. p999_us=.. max_us=..`. With `PROBE_SLOW_US=T` set, every
//! request slower than T microseconds is also printed to stderr as `slow at_ms=.. us=..` (its
//! send time from the start), to line stalls up with what the server was doing.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Send times of requests whose replies have not been read yet, oldest first.
#[derive(Default)]
struct InFlight {
    sent: Mutex<(VecDeque<Instant>, bool)>,
    ready: Condvar,
}

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
    let inflight = Arc::new(InFlight::default());
    let slow_us: Option<u64> = std::env::var("PROBE_SLOW_US")
        .ok()
        .and_then(|v| v.parse().ok());
    let start = Instant::now();
    let reader = {
        let inflight = inflight.clone();
        let stream = stream.try_clone().unwrap();
        std::thread::spawn(move || read_replies(stream, &inflight, start, slow_us))
    };
    let mut writer = stream;
    let request = b"*2\r\n$3\r\nGET\r\n$9\r\nprobe:key\r\n";
    let mut next = start;
    while !stop.load(Ordering::Relaxed) && (seconds == 0 || start.elapsed().as_secs() < seconds) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        // Push before writing so the reader can never see a reply without its send time.
        let sent = Instant::now();
        inflight.sent.lock().unwrap().0.push_back(sent);
        inflight.ready.notify_one();
        writer.write_all(request).expect("send");
        next += interval;
        // If the probe itself fell far behind (it was not scheduled), skip ahead rather
        // than sending a burst.
        if Instant::now() > next + interval * 4 {
            next = Instant::now();
        }
    }
    inflight.sent.lock().unwrap().1 = true;
    inflight.ready.notify_one();
    let hist = reader.join().expect("reader");
    println!(
        "samples={} p50_us={} p99_us={} p999_us={} max_us={}",
        hist.len(),
        hist.value_at_quantile(0.50),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
}

fn read_replies(
    stream: TcpStream,
    inflight: &InFlight,
    start: Instant,
    slow_us: Option<u64>,
) -> hdrhistogram::Histogram<u64> {
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let sent = {
            let mut guard = inflight.sent.lock().unwrap();
            loop {
                if let Some(t) = guard.0.pop_front() {
                    break t;
                }
                if guard.1 {
                    return hist;
                }
                guard = inflight.ready.wait(guard).unwrap();
            }
        };
        line.clear();
        reader.read_line(&mut line).expect("reply");
        if line.starts_with('$') && !line.starts_with("$-1") {
            let n: usize = line[1..].trim().parse().expect("bulk length");
            let mut body = vec![0u8; n + 2];
            reader.read_exact(&mut body).expect("bulk body");
        }
        let us = sent.elapsed().as_micros().max(1) as u64;
        hist.record(us).unwrap();
        if slow_us.is_some_and(|t| us > t) {
            eprintln!(
                "slow at_ms={} us={us}",
                sent.duration_since(start).as_millis()
            );
        }
    }
}
