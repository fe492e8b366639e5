//! `kvcache-bench`: the load tester. Same options, defaults, table and JSON fields as the
//! original `scripts/load_test.py`, plus RESP, pipelining, time-bound and fixed-rate (open
//! loop) runs, HDR-histogram percentiles and a per-second timeline.
//!
//! Shape (after rpc-perf): a seeded [`workload`] decides each request, [`driver`] tasks (one
//! per connection, spread over `--threads` single-threaded runtimes) send them, and
//! [`report`] merges what each thread recorded into the table and the JSON file.
//!
//! Exit status: 0 when every request succeeded, 1 when some failed or timed out, 2 when the
//! run could not start (bad option, server unreachable) or the results could not be saved.

mod driver;
mod report;
mod workload;

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use kvcache::client::Protocol;
use tokio::sync::watch;

use driver::{Clock, DriverSpec, Limit};
use report::{Counters, Recorder, RunInfo, SecondReport, ThreadTotals, Timeline};
use workload::{Workload, WorkloadSpec};

/// Exit status when every request succeeded.
const EXIT_OK: u8 = 0;
/// Exit status when some requests failed.
const EXIT_FAILURES: u8 = 1;
/// Exit status when the run could not be carried out.
const EXIT_CANNOT_RUN: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "kvcache-bench",
    version,
    about = "Load tester for kvcache (line protocol) and anything speaking Redis RESP.",
    after_help = "Closed loop by default: each connection keeps --pipeline requests in flight and sends the next as soon \
as a reply arrives. With --rate the load is open loop: requests are scheduled on a fixed grid and latency is \
timed from each scheduled send time, so a stalled server is charged for the requests it delayed.\n\n\
Exit status: 0 all requests succeeded, 1 some failed or timed out, 2 could not run (bad option, cannot connect)."
)]
struct Args {
    /// Server host
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Server port
    #[arg(long, default_value_t = 7171)]
    port: u16,
    /// Number of concurrent connections
    #[arg(short = 'c', long, default_value_t = 100)]
    connections: u64,
    /// Number of requests per connection (ignored with --duration)
    #[arg(short = 'r', long, default_value_t = 1000)]
    requests: u64,
    /// Fraction of requests that are PUTs (0.5 = 50% PUT, 50% GET)
    #[arg(long, default_value_t = 0.5)]
    ratio: f64,
    /// Size of random keys in bytes
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Size of random values in bytes
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// TTL in seconds sent with every PUT (0 = no TTL)
    #[arg(long, default_value_t = 0)]
    ttl: u64,
    /// Write the results as JSON to this file
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Fraction of GETs sent on purpose to keys that were never stored
    #[arg(long, default_value_t = 0.0)]
    miss_ratio: f64,
    /// Wire protocol: text (PUT/GET lines), resp (SET/GET, for kvcache's Redis side or Redis) or memcache (set/get, for kvcache's memcache port or memcached)
    #[arg(long, value_enum, default_value_t = Protocol::Text)]
    protocol: Protocol,
    /// Requests in flight per connection
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// Run for this many seconds instead of a request count
    #[arg(short = 'd', long, value_name = "SECS")]
    duration: Option<f64>,
    /// Open loop: send this many requests per second in total, on a fixed schedule
    #[arg(long, value_name = "RPS")]
    rate: Option<f64>,
    /// Seconds to wait for a connection or a reply; a request without a reply in time fails
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    timeout: f64,
    /// Load generator threads [default: CPUs, at most one per connection]
    #[arg(long)]
    threads: Option<usize>,
    /// Workload seed, for repeatable key and operation sequences [default: random]
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of load before counting starts (not included in any number)
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    warmup: f64,
    /// Distinct keys per connection before PUTs overwrite old ones (0 = new key every PUT)
    #[arg(long, default_value_t = 0, value_name = "N")]
    keys: u64,
    /// Send AUTH with this password on every connection
    #[arg(long, env = "KV_CACHE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[command(flatten)]
    tls: kvcache::client::TlsArgs,
}

/// Everything decided before the run starts.
struct Plan {
    info: RunInfo,
    driver: DriverSpec,
    workload: WorkloadSpec,
    threads: usize,
    output: Option<PathBuf>,
    warmup: Duration,
}

fn fraction(name: &str, v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("--{name} must be between 0 and 1 (got {v})"))
    }
}

fn seconds(name: &str, v: f64, allow_zero: bool) -> Result<Duration, String> {
    if v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!(
            "--{name} must be a positive number of seconds (got {v})"
        ))
    }
}

fn default_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Odd multiplier spreads nearby start times over the whole range.
    (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1
}

fn plan(a: Args) -> Result<Plan, String> {
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if a.duration.is_none() && a.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    if a.pipeline == 0 || a.pipeline > 1 << 20 {
        return Err("--pipeline must be between 1 and 1048576".into());
    }
    let put_ratio = fraction("ratio", a.ratio)?;
    let miss_ratio = fraction("miss-ratio", a.miss_ratio)?;
    let text_limit = kvcache::protocol::text::MAX_TOKEN;
    if a.key_size == 0 || a.value_size == 0 {
        return Err("--key-size and --value-size must be at least 1".into());
    }
    if a.protocol == Protocol::Text && (a.key_size > text_limit || a.value_size > text_limit) {
        return Err(format!(
            "--key-size and --value-size must be at most {text_limit} with the text protocol (use --protocol resp for larger)"
        ));
    }
    if a.protocol == Protocol::Memcache && a.key_size > 250 {
        return Err("--key-size must be at most 250 with the memcache protocol".into());
    }
    if a.protocol == Protocol::Memcache && a.ttl > 30 * 86400 {
        return Err("--ttl must be at most 2592000 (30 days) with the memcache protocol".into());
    }
    if a.value_size > 512 << 20 || a.key_size > 512 << 20 {
        return Err("--key-size and --value-size must be at most 512 MiB".into());
    }
    if a.ttl > kvcache::protocol::text::MAX_TTL {
        return Err(format!(
            "--ttl must be at most {}",
            kvcache::protocol::text::MAX_TTL
        ));
    }
    let timeout = seconds("timeout", a.timeout, false)?;
    let warmup = seconds("warmup", a.warmup, true)?;
    let duration = a
        .duration
        .map(|d| seconds("duration", d, false))
        .transpose()?;
    if let Some(r) = a.rate
        && !(r.is_finite() && r > 0.0 && r <= 1e9)
    {
        return Err(format!(
            "--rate must be a positive number of requests per second (got {r})"
        ));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match a.threads {
        Some(0) => return Err("--threads must be at least 1".into()),
        Some(t) => t,
        None => cpus,
    }
    .min(a.connections as usize);
    let seed = a.seed.unwrap_or_else(default_seed);
    let tls = a.tls.connector().map_err(|e| e.to_string())?;
    let password = a.password.filter(|p| !p.is_empty());
    let limit = match duration {
        Some(d) => Limit::Duration(d),
        None => Limit::Requests(a.requests),
    };
    Ok(Plan {
        info: RunInfo {
            host: a.host.clone(),
            port: a.port,
            connections: a.connections,
            requests_per_connection: duration.is_none().then_some(a.requests),
            put_ratio,
            miss_ratio,
            protocol: a.protocol.name(),
            pipeline: a.pipeline as u64,
            key_size: a.key_size as u64,
            value_size: a.value_size as u64,
            ttl: a.ttl,
            rate: a.rate,
            duration: a.duration,
            warmup: a.warmup,
            threads: threads as u64,
            seed,
            tls: tls.is_some(),
        },
        driver: DriverSpec {
            host: a.host,
            port: a.port,
            protocol: a.protocol,
            pipeline: a.pipeline,
            timeout,
            password,
            limit,
            rate: a.rate,
            connections: a.connections,
            tls,
        },
        workload: WorkloadSpec {
            protocol: a.protocol,
            put_ratio,
            miss_ratio,
            key_size: a.key_size,
            value_size: a.value_size,
            ttl: a.ttl,
            keys_per_connection: a.keys,
            seed,
        },
        threads,
        output: a.output,
        warmup,
    })
}

/// What the main thread tells the load threads once every connection is open.
#[derive(Debug, Clone, Copy)]
enum Go {
    Wait,
    Start(Clock),
    Abort,
}

type ThreadResult = Option<ThreadTotals>;

/// One load thread: opens its connections, reports readiness, waits for the start, runs
/// its drivers on a single-threaded runtime and returns what it recorded.
fn load_thread(
    plan_driver: DriverSpec,
    plan_workload: WorkloadSpec,
    connections: Vec<u64>,
    ready: mpsc::Sender<Result<(), String>>,
    mut go: watch::Receiver<Go>,
    timeline: mpsc::Sender<SecondReport>,
    progress: Arc<AtomicU64>,
) -> ThreadResult {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
            return None;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let streams = match driver::open_all(&plan_driver, connections.len()).await {
            Ok(s) => {
                let _ = ready.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return None;
            }
        };
        let clock = loop {
            match *go.borrow_and_update() {
                Go::Start(clock) => break clock,
                Go::Abort => return None,
                Go::Wait => {}
            }
            if go.changed().await.is_err() {
                return None;
            }
        };
        let recorder = Rc::new(RefCell::new(Recorder::new(clock.measure_start, timeline)));
        let spec = Rc::new(plan_driver);
        let mut tasks = Vec::with_capacity(streams.len());
        for (stream, index) in streams.into_iter().zip(connections) {
            let workload = Workload::new(plan_workload.clone(), index);
            let (spec, recorder, progress) = (spec.clone(), recorder.clone(), progress.clone());
            tasks.push(tokio::task::spawn_local(async move {
                driver::drive(stream, &spec, index, workload, clock, &recorder, &progress).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let recorder = Rc::try_unwrap(recorder).ok()?.into_inner();
        Some(recorder.finish())
    })
}

fn progress_bar(plan: &Plan) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (len, template) = match plan.driver.limit {
        Limit::Requests(n) => (
            n * plan.info.connections,
            "{bar:40} {human_pos}/{human_len} requests, {elapsed} {msg}",
        ),
        Limit::Duration(d) => (d.as_millis() as u64, "{bar:40} {elapsed} of the run, {msg}"),
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn main() -> ExitCode {
    let plan = match plan(Args::parse()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kvcache-bench: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    ExitCode::from(run(plan))
}

fn run(plan: Plan) -> u8 {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (timeline_tx, timeline_rx) = mpsc::channel();
    let (go_tx, go_rx) = watch::channel(Go::Wait);
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(plan.threads);
    for t in 0..plan.threads {
        let connections: Vec<u64> = (t as u64..plan.info.connections)
            .step_by(plan.threads)
            .collect();
        let (d, w) = (plan.driver.clone(), plan.workload.clone());
        let (ready, go, timeline, progress) = (
            ready_tx.clone(),
            go_rx.clone(),
            timeline_tx.clone(),
            progress.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || load_thread(d, w, connections, ready, go, timeline, progress));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                let _ = go_tx.send(Go::Abort);
                eprintln!("kvcache-bench: cannot start a thread: {e}");
                return EXIT_CANNOT_RUN;
            }
        }
    }
    drop((ready_tx, timeline_tx));

    // Every connection must open before the clock starts.
    let mut failure = None;
    for _ in 0..plan.threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some("a load thread stopped unexpectedly".into());
                break;
            }
        }
    }
    if let Some(e) = failure {
        let _ = go_tx.send(Go::Abort);
        for h in handles {
            let _ = h.join();
        }
        eprintln!("kvcache-bench: {e}");
        return EXIT_CANNOT_RUN;
    }

    let mut stdout = std::io::stdout().lock();
    let _ = report::print_header(&mut stdout, &plan.info);
    let _ = stdout.flush();
    let start = Instant::now();
    let start_wall = SystemTime::now();
    let clock = Clock {
        start,
        measure_start: start + plan.warmup,
    };
    let _ = go_tx.send(Go::Start(clock));
    let bar = progress_bar(&plan);
    let mut timeline = Timeline::default();
    let mut last = (Instant::now(), 0u64);
    while !handles.iter().all(|h| h.is_finished()) {
        match timeline_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => timeline.add(r),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
        let now = Instant::now();
        if now.duration_since(last.0) >= Duration::from_millis(250) {
            let done = progress.load(Relaxed);
            let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            match plan.driver.limit {
                Limit::Requests(_) => bar.set_position(done),
                Limit::Duration(_) => bar.set_position(
                    now.saturating_duration_since(clock.measure_start)
                        .as_millis() as u64,
                ),
            }
            bar.set_message(format!("{rate:.0} req/s"));
            last = (now, done);
        }
    }
    let end = Instant::now();
    bar.finish_and_clear();

    let mut counters = Counters::default();
    let mut latencies = report::latency_histogram();
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Some(t)) => {
                counters.add(&t.counters);
                let _ = latencies.add(&t.latencies);
                first_error = first_error.or(t.first_error);
            }
            Ok(None) | Err(_) => {
                eprintln!("kvcache-bench: a load thread failed; results are incomplete");
                return EXIT_CANNOT_RUN;
            }
        }
    }
    for r in timeline_rx.try_iter() {
        timeline.add(r);
    }
    let elapsed = end.saturating_duration_since(clock.measure_start);
    let measured_wall = start_wall + plan.warmup;
    let summary = report::summarize(
        &plan.info,
        first_error,
        &counters,
        &latencies,
        &timeline,
        measured_wall,
        elapsed,
    );
    let _ = report::print_table(&mut stdout, &summary);
    if let Some(path) = &plan.output {
        let json = match serde_json::to_string_pretty(&summary) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("kvcache-bench: cannot encode the results: {e}");
                return EXIT_CANNOT_RUN;
            }
        };
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("kvcache-bench: cannot write {}: {e}", path.display());
            return EXIT_CANNOT_RUN;
        }
        let _ = writeln!(stdout, "Results saved to: {}", path.display());
    }
    let _ = stdout.flush();
    if counters.failed > 0 {
        EXIT_FAILURES
    } else {
        EXIT_OK
    }
}
