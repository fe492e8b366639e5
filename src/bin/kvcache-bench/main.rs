//! `kvcache-bench`: the load tester. Same options, defaults, table and JSON fields as the
//! original Python tester, plus RESP, pipelining, time-bound and fixed-rate (open loop) runs,
//! HDR-histogram percentiles, a per-second timeline, a self-contained HTML report, and
//! alternating rounds against a second server (`--compare`).
//!
//! Shape (after rpc-perf): a seeded [`workload`] decides each request, [`driver`] tasks (one
//! per connection, spread over `--threads` single-threaded runtimes) send them, and
//! [`report`] merges what each thread recorded into the table and the JSON file, which
//! [`html`] draws.
//!
//! Exit status: 0 when every request succeeded, 1 when some failed, were not sent or the run
//! stopped early (server unreachable), 2 when the run could not start (bad option, server
//! unreachable) or the results could not be saved.

mod driver;
mod html;
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
use kvcache::client::{Protocol, addr_string, connect_host, parse_port};
use tokio::sync::watch;

use driver::{Clock, DriverSpec, Health, Limit};
use report::{Counters, Recorder, RunInfo, SecondReport, TargetRun, ThreadTotals, Timeline};
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
    allow_negative_numbers = true,
    about = "Load tester for kvcache (line protocol) and anything speaking Redis RESP.",
    after_help = "Closed loop by default: each connection keeps --pipeline requests in flight and sends the next as soon \
as a reply arrives. With --rate the load is open loop: requests are scheduled on a fixed grid and latency is \
timed from each scheduled send time, so a stalled server is charged for the requests it delayed. Only answered \
requests count as throughput and latency; a server unreachable for --give-up seconds stops the run.\n\n\
Exit status: 0 all requests succeeded, 1 some failed or the run stopped early, 2 could not run (bad option, \
cannot connect)."
)]
struct Args {
    /// Server host; 0.0.0.0 (a server's listen address) means this machine
    #[arg(long, env = "KV_CACHE_HOST", default_value = "localhost")]
    host: String,
    /// Server port
    #[arg(long, env = "KV_CACHE_PORT", default_value = "7171", value_parser = parse_port)]
    port: u16,
    /// Number of concurrent connections
    #[arg(short = 'c', long, default_value_t = 100, value_name = "N")]
    connections: u64,
    /// Number of requests per connection (ignored with --duration)
    #[arg(short = 'r', long, default_value_t = 1000, value_name = "N")]
    requests: u64,
    /// Fraction of requests that are PUTs (0.5 = 50% PUT, 50% GET)
    #[arg(long, default_value_t = 0.5, value_name = "FRACTION")]
    ratio: f64,
    /// Size of random keys (bytes, or 1kb/1kib ...)
    #[arg(long, default_value = "16", value_parser = size, value_name = "BYTES")]
    key_size: usize,
    /// Size of random values (bytes, or 1kb/1kib ...)
    #[arg(long, default_value = "64", value_parser = size, value_name = "BYTES")]
    value_size: usize,
    /// TTL in seconds sent with every PUT (0 = no TTL)
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    ttl: u64,
    /// Write the results as JSON to this file
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Write a self-contained HTML report (charts, parameters, the JSON) to this file
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Run the same workload against this second server too, in alternating rounds
    #[arg(long, value_name = "HOST:PORT")]
    compare: Option<String>,
    /// Rounds per server [default: 3 with --compare, else 1]
    #[arg(long, value_name = "N")]
    rounds: Option<u32>,
    /// Fraction of GETs sent on purpose to keys that were never stored
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    miss_ratio: f64,
    /// Wire protocol: text (PUT/GET lines), resp (SET/GET, for kvcache's Redis side or Redis) or
    /// memcache (set/get, for kvcache's memcache port or memcached)
    #[arg(long, value_enum, default_value_t = Protocol::Text, hide_possible_values = true)]
    protocol: Protocol,
    /// Requests in flight per connection
    #[arg(short = 'P', long, default_value_t = 1, value_name = "N")]
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
    /// Stop the run once the server has been unreachable this long
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    give_up: f64,
    /// Load generator threads [default: CPUs, at most one per connection]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Workload seed, for repeatable key and operation sequences [default: random]
    #[arg(long, value_name = "N")]
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

/// `--key-size` / `--value-size`: bytes, or the units the server's settings take.
fn size(s: &str) -> Result<usize, String> {
    kvcache::config::parse_size(s)
        .ok_or_else(|| format!("'{s}' is not a size (bytes, or e.g. 64, 1kb, 1kib)"))
}

/// One server the run loads.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
}

/// Everything decided before the run starts.
struct Plan {
    info: RunInfo,
    driver: DriverSpec,
    workload: WorkloadSpec,
    threads: usize,
    output: Option<PathBuf>,
    report: Option<PathBuf>,
    warmup: Duration,
    give_up: Duration,
    targets: Vec<Target>,
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
    // Odd multiplier spreads nearby start times over the whole range; 53 bits, so the seed
    // survives a trip through JavaScript's numbers in the HTML report.
    (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11
}

/// `HOST:PORT` (or `[v6]:PORT`) of `--compare`.
fn parse_target(s: &str) -> Result<Target, String> {
    let bad = || format!("--compare must be HOST:PORT (got '{s}')");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let port = parse_port(port).map_err(|e| format!("--compare port {e}"))?;
    Ok(Target {
        host: connect_host(host).to_string(),
        port,
    })
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
    let give_up = seconds("give-up", a.give_up, false)?;
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
    let mut targets = vec![Target {
        host: connect_host(&a.host).to_string(),
        port: a.port,
    }];
    if let Some(c) = &a.compare {
        targets.push(parse_target(c)?);
    }
    let rounds = match a.rounds {
        Some(0) => return Err("--rounds must be at least 1".into()),
        Some(n) if n > 1000 => return Err("--rounds must be at most 1000".into()),
        Some(n) => n,
        None if a.compare.is_some() => 3,
        None => 1,
    };
    if let Some(r) = &a.report
        && r.extension()
            .is_none_or(|e| !e.eq_ignore_ascii_case("html"))
    {
        return Err(format!(
            "--report writes HTML: give a file name ending in .html (got '{}')",
            r.display()
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
            host: targets[0].host.clone(),
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
            timeout: a.timeout,
            give_up: a.give_up,
            keys: a.keys,
            rounds,
            tls: tls.is_some(),
        },
        driver: DriverSpec {
            host: targets[0].host.clone(),
            port: a.port,
            protocol: a.protocol,
            pipeline: a.pipeline,
            timeout,
            password,
            limit,
            rate: a.rate,
            connections: a.connections,
            health: Arc::new(Health::default()),
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
        report: a.report,
        warmup,
        give_up,
        targets,
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
    let args: Args = kvcache::config::parse_args_or_exit("kvcache-bench");
    let plan = match plan(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kvcache-bench: {e}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    ExitCode::from(run(plan))
}

/// What one round against one target recorded.
struct Round {
    counters: Counters,
    latencies: hdrhistogram::Histogram<u64>,
    timeline: Timeline,
    first_error: Option<String>,
    stopped_early: Option<String>,
    /// Measured time.
    elapsed: Duration,
    /// When the measurement began, since the session began.
    offset: Duration,
    start_wall: SystemTime,
}

/// Why a round did not run.
enum RoundError {
    /// Its connections could not be opened (the message says why).
    Connect(String),
    /// Something in the tester itself failed.
    Internal(String),
}

/// Checks every target answers before anything is measured, so a wrong address is one line
/// and exit 2, not a report full of failures.
fn probe(plan: &Plan) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    for t in &plan.targets {
        let spec = DriverSpec {
            host: t.host.clone(),
            port: t.port,
            ..plan.driver.clone()
        };
        rt.block_on(driver::open(&spec))?;
    }
    Ok(())
}

fn run(plan: Plan) -> u8 {
    if let Err(e) = probe(&plan) {
        eprintln!("kvcache-bench: {e}");
        return EXIT_CANNOT_RUN;
    }
    let mut stdout = std::io::stdout().lock();
    let compare_label = plan.targets.get(1).map(|t| addr_string(&t.host, t.port));
    let _ = report::print_header(&mut stdout, &plan.info, compare_label.as_deref());
    let _ = stdout.flush();
    let session = Instant::now();
    let mut runs: Vec<TargetRun> = plan
        .targets
        .iter()
        .map(|t| TargetRun::new(&t.host, t.port))
        .collect();
    let many = plan.info.rounds > 1 || plan.targets.len() > 1;
    'rounds: for round in 1..=plan.info.rounds {
        for (ti, target) in plan.targets.iter().enumerate() {
            let r = match run_round(&plan, target, session) {
                Ok(r) => r,
                Err(RoundError::Connect(e)) => {
                    // The server went away between rounds.
                    let run = &mut runs[ti];
                    run.first_error.get_or_insert(e.clone());
                    run.stopped_early = Some(format!("cannot connect for round {round}: {e}"));
                    break 'rounds;
                }
                Err(RoundError::Internal(e)) => {
                    eprintln!("kvcache-bench: {e}");
                    return EXIT_CANNOT_RUN;
                }
            };
            let run = &mut runs[ti];
            let rs = report::round_summary(round, r.offset, r.elapsed, &r.counters, &r.latencies);
            if many {
                let _ = writeln!(
                    stdout,
                    "Round {round}/{} {}: {} answered/s, p50 {:.3} ms, p99 {:.3} ms, {} failed",
                    plan.info.rounds,
                    run.label(),
                    rs.requests_per_second.round(),
                    rs.latency_median,
                    rs.latency_p99,
                    rs.failed_requests
                );
                let _ = stdout.flush();
            }
            run.counters.add(&r.counters);
            let _ = run.latencies.add(&r.latencies);
            run.timeline
                .extend(r.timeline.entries(r.elapsed, r.offset, round));
            run.rounds.push(rs);
            run.first_error = run.first_error.take().or(r.first_error);
            run.elapsed += r.elapsed;
            run.start.get_or_insert(r.start_wall);
            run.end = Some(r.start_wall + r.elapsed);
            if r.stopped_early.is_some() {
                run.stopped_early = r.stopped_early;
                break 'rounds;
            }
        }
    }
    if many {
        let _ = writeln!(stdout);
    }
    let mut summaries: Vec<report::Summary> = runs
        .iter()
        .map(|r| report::summarize(&plan.info, r))
        .collect();
    for s in &summaries {
        let _ = report::print_table(&mut stdout, s);
    }
    let failed = runs
        .iter()
        .any(|r| r.counters.failed > 0 || r.counters.not_sent > 0 || r.stopped_early.is_some());
    let mut summary = summaries.remove(0);
    summary.compared_with = summaries.pop().map(Box::new);
    let json = match serde_json::to_string_pretty(&summary) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("kvcache-bench: cannot encode the results: {e}");
            return EXIT_CANNOT_RUN;
        }
    };
    if let Some(path) = &plan.output {
        if let Err(e) = std::fs::write(path, json.clone() + "\n") {
            eprintln!("kvcache-bench: cannot write {}: {e}", path.display());
            return EXIT_CANNOT_RUN;
        }
        let _ = writeln!(stdout, "Results saved to: {}", path.display());
    }
    if let Some(path) = &plan.report {
        if let Err(e) = std::fs::write(path, html::page(&summary, &json)) {
            eprintln!("kvcache-bench: cannot write {}: {e}", path.display());
            return EXIT_CANNOT_RUN;
        }
        let _ = writeln!(stdout, "Report saved to: {}", path.display());
    }
    let _ = stdout.flush();
    if failed { EXIT_FAILURES } else { EXIT_OK }
}

/// Prints one status line (above the progress bar when there is one).
fn status(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Runs the workload once against `target`: opens every connection, starts the clock,
/// watches progress and reachability, and collects what the threads recorded.
fn run_round(plan: &Plan, target: &Target, session: Instant) -> Result<Round, RoundError> {
    let health = Arc::new(Health::default());
    let driver_spec = DriverSpec {
        host: target.host.clone(),
        port: target.port,
        health: Arc::clone(&health),
        ..plan.driver.clone()
    };
    let label = addr_string(&target.host, target.port);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (timeline_tx, timeline_rx) = mpsc::channel();
    let (go_tx, go_rx) = watch::channel(Go::Wait);
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(plan.threads);
    for t in 0..plan.threads {
        let connections: Vec<u64> = (t as u64..plan.info.connections)
            .step_by(plan.threads)
            .collect();
        let (d, w) = (driver_spec.clone(), plan.workload.clone());
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
                return Err(RoundError::Internal(format!("cannot start a thread: {e}")));
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
                failure = Some(RoundError::Connect(e));
                break;
            }
            Err(_) => {
                failure = Some(RoundError::Internal(
                    "a load thread stopped unexpectedly".into(),
                ));
                break;
            }
        }
    }
    if let Some(e) = failure {
        let _ = go_tx.send(Go::Abort);
        for h in handles {
            let _ = h.join();
        }
        return Err(e);
    }

    let start = Instant::now();
    let start_wall = SystemTime::now();
    let clock = Clock {
        start,
        measure_start: start + plan.warmup,
    };
    let _ = go_tx.send(Go::Start(clock));
    let bar = progress_bar(plan);
    let mut timeline = Timeline::default();
    let mut last = (Instant::now(), 0u64);
    let mut last_status = Instant::now();
    let mut stopped_early = None;
    while !handles.iter().all(|h| h.is_finished()) {
        match timeline_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => timeline.add(r),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(20))
            }
        }
        let now = Instant::now();
        // Reachability: report each second of an outage, and stop after --give-up.
        if let Some(outage) = health.outage()
            && stopped_early.is_none()
        {
            let attempts = health.reconnect_failures.load(Relaxed);
            let error = health.last_error.lock().clone().unwrap_or_default();
            if outage >= plan.give_up {
                let why = format!(
                    "{label} unreachable for {:.1} s ({attempts} reconnect attempts failed; last: {error})",
                    outage.as_secs_f64()
                );
                status(
                    &bar,
                    format!("kvcache-bench: stopping the run early: {why}"),
                );
                health.stop();
                stopped_early = Some(why);
            } else if now.duration_since(last_status) >= Duration::from_secs(1) {
                status(
                    &bar,
                    format!(
                        "kvcache-bench: {label} unreachable for {:.1} s: {attempts} reconnect attempts failed ({error}); giving up after {} s",
                        outage.as_secs_f64(),
                        plan.give_up.as_secs_f64()
                    ),
                );
                last_status = now;
            }
        }
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
                return Err(RoundError::Internal(
                    "a load thread failed; results are incomplete".into(),
                ));
            }
        }
    }
    for r in timeline_rx.try_iter() {
        timeline.add(r);
    }
    Ok(Round {
        counters,
        latencies,
        timeline,
        first_error,
        stopped_early,
        elapsed: end.saturating_duration_since(clock.measure_start),
        offset: clock.measure_start.saturating_duration_since(session),
        start_wall: start_wall + plan.warmup,
    })
}
