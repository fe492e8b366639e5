//! Recording and reporting: per-thread counters and HDR histograms, the per-second timeline,
//! the summary table with pass/fail lines, and the JSON file (the original tester's field
//! names, latencies in milliseconds, error rate in percent).
//!
//! Only answered requests are throughput and latency samples. Requests lost with a broken
//! connection are failures; attempts to reopen a connection are counted apart (they sent
//! nothing); requests a stopped run never sent are counted as not sent. A run with any of
//! these never passes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::Op;

/// Highest latency the histograms resolve (longer ones are recorded as this): one hour.
const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;

/// The run-wide latency histogram: nanoseconds, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// A per-second histogram: 2 significant figures keep a long run's timeline small.
fn second_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("valid histogram bounds")
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; for GETs, whether the key was found.
    Success {
        /// `Some(found)` for GETs, `None` for PUTs.
        hit: Option<bool>,
    },
    /// Answered with an error, or lost to a broken connection.
    Failed,
    /// No answer within the timeout.
    TimedOut,
}

/// Request counts, summed over connections and threads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Every request counted (successful or not).
    pub total: u64,
    /// Requests answered without error (GET misses included).
    pub success: u64,
    /// Requests answered with an error, timed out or lost with their connection.
    pub failed: u64,
    /// The part of `failed` that timed out.
    pub timeouts: u64,
    /// PUTs counted.
    pub put: u64,
    /// GETs counted.
    pub get: u64,
    /// PUTs answered `OK`.
    pub put_success: u64,
    /// GETs answered (hit or miss).
    pub get_success: u64,
    /// GETs that found their key.
    pub hits: u64,
    /// GETs that did not.
    pub misses: u64,
    /// Answered GETs of keys stored earlier (deliberate misses excluded).
    pub stored_gets: u64,
    /// The hits among `stored_gets`.
    pub stored_hits: u64,
    /// Requests of a count-bound run that were never sent because the run stopped early.
    pub not_sent: u64,
    /// Failed attempts to reopen a lost connection (not requests).
    pub reconnect_failures: u64,
}

impl Counters {
    /// Adds another thread's or round's counts.
    pub fn add(&mut self, o: &Counters) {
        self.total += o.total;
        self.success += o.success;
        self.failed += o.failed;
        self.timeouts += o.timeouts;
        self.put += o.put;
        self.get += o.get;
        self.put_success += o.put_success;
        self.get_success += o.get_success;
        self.hits += o.hits;
        self.misses += o.misses;
        self.stored_gets += o.stored_gets;
        self.stored_hits += o.stored_hits;
        self.not_sent += o.not_sent;
        self.reconnect_failures += o.reconnect_failures;
    }
}

/// One thread's share of one second of the timeline, sent to the main thread as soon as
/// the thread moves past that second.
#[derive(Debug)]
pub struct SecondReport {
    /// Seconds since the measured part of the run began.
    pub second: u64,
    /// Requests sent (or, in rate mode, scheduled) during it that were answered.
    pub successes: u64,
    /// Requests sent during it that failed or timed out.
    pub failures: u64,
    /// Failed reconnect attempts during it.
    pub reconnect_failures: u64,
    /// Latencies of the successful ones.
    pub latencies: Histogram<u32>,
}

/// Where one thread's connections record their requests (no locking: each thread owns one).
#[derive(Debug)]
pub struct Recorder {
    measure_start: Instant,
    /// Counts so far.
    pub counters: Counters,
    /// Latencies of successful requests.
    pub latencies: Histogram<u64>,
    second: u64,
    second_successes: u64,
    second_failures: u64,
    second_reconnects: u64,
    second_latencies: Histogram<u32>,
    timeline: Sender<SecondReport>,
    /// The first failure seen, described (shown in the report to say *why*).
    pub first_error: Option<String>,
}

impl Recorder {
    /// A recorder whose timeline counts seconds from `measure_start`.
    pub fn new(measure_start: Instant, timeline: Sender<SecondReport>) -> Recorder {
        Recorder {
            measure_start,
            counters: Counters::default(),
            latencies: latency_histogram(),
            second: 0,
            second_successes: 0,
            second_failures: 0,
            second_reconnects: 0,
            second_latencies: second_histogram(),
            timeline,
            first_error: None,
        }
    }

    /// Counts one request that ended at `now`, timed from `start` (its scheduled send time in
    /// rate mode, its send time otherwise). The timeline files it under the second of
    /// `slot`: when it was scheduled (rate mode) or sent.
    pub fn record(
        &mut self,
        op: Op,
        outcome: Outcome,
        start: Instant,
        slot: Instant,
        now: Instant,
    ) {
        self.move_to(slot);
        let c = &mut self.counters;
        c.total += 1;
        match op {
            Op::Put => c.put += 1,
            Op::Get { .. } => c.get += 1,
        }
        match outcome {
            Outcome::Success { hit } => {
                c.success += 1;
                self.second_successes += 1;
                let ns = now.saturating_duration_since(start).as_nanos() as u64;
                self.latencies.saturating_record(ns.max(1));
                self.second_latencies.saturating_record(ns.max(1));
                match (op, hit) {
                    (Op::Put, _) => c.put_success += 1,
                    (Op::Get { expect_hit }, found) => {
                        let found = found.unwrap_or(false);
                        c.get_success += 1;
                        if found {
                            c.hits += 1;
                        } else {
                            c.misses += 1;
                        }
                        if expect_hit {
                            c.stored_gets += 1;
                            c.stored_hits += u64::from(found);
                        }
                    }
                }
            }
            Outcome::Failed => {
                c.failed += 1;
                self.second_failures += 1;
            }
            Outcome::TimedOut => {
                c.failed += 1;
                c.timeouts += 1;
                self.second_failures += 1;
            }
        }
    }

    /// Counts one failed attempt to reopen a connection, at `now` (not a request).
    pub fn reconnect_failed(&mut self, now: Instant) {
        self.move_to(now);
        self.counters.reconnect_failures += 1;
        self.second_reconnects += 1;
    }

    /// Makes the second of `at` the current one, sending the previous second's numbers on.
    fn move_to(&mut self, at: Instant) {
        let second = at.saturating_duration_since(self.measure_start).as_secs();
        if second != self.second {
            self.flush_second();
            self.second = second;
        }
    }

    /// Remembers the first failure's description (built only when it is the first).
    pub fn note_error(&mut self, describe: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(describe());
        }
    }

    /// Sends the current second's numbers (if any) to the main thread.
    fn flush_second(&mut self) {
        if self.second_successes + self.second_failures + self.second_reconnects == 0 {
            return;
        }
        let latencies = std::mem::replace(&mut self.second_latencies, second_histogram());
        let _ = self.timeline.send(SecondReport {
            second: self.second,
            successes: self.second_successes,
            failures: self.second_failures,
            reconnect_failures: self.second_reconnects,
            latencies,
        });
        self.second_successes = 0;
        self.second_failures = 0;
        self.second_reconnects = 0;
    }

    /// Flushes the timeline and hands back the totals.
    pub fn finish(mut self) -> ThreadTotals {
        self.flush_second();
        ThreadTotals {
            counters: self.counters,
            latencies: self.latencies,
            first_error: self.first_error,
        }
    }
}

/// What a load thread hands back at the end.
#[derive(Debug)]
pub struct ThreadTotals {
    /// Its counts.
    pub counters: Counters,
    /// Its latency histogram.
    pub latencies: Histogram<u64>,
    /// Its first failure, described.
    pub first_error: Option<String>,
}

/// Merges the threads' per-second reports into one timeline.
#[derive(Debug, Default)]
pub struct Timeline {
    seconds: BTreeMap<u64, SecondReport>,
}

impl Timeline {
    /// Adds one thread's report for one second.
    pub fn add(&mut self, r: SecondReport) {
        match self.seconds.get_mut(&r.second) {
            Some(t) => {
                t.successes += r.successes;
                t.failures += r.failures;
                t.reconnect_failures += r.reconnect_failures;
                let _ = t.latencies.add(&r.latencies);
            }
            None => {
                self.seconds.insert(r.second, r);
            }
        }
    }

    /// One entry per second from the first to the last with anything in it, quiet seconds
    /// included; `elapsed` is the round's measured time (the last second may be shorter),
    /// `offset` when its measurement began in the session (for `t`), `round` its number.
    pub fn entries(&self, elapsed: Duration, offset: Duration, round: u32) -> Vec<TimelineEntry> {
        let elapsed = elapsed.as_secs_f64();
        let Some(&last) = self.seconds.keys().next_back() else {
            return Vec::new();
        };
        let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
        (0..=last)
            .map(|second| {
                // The last second may be cut short by the end of the run.
                let span = (elapsed - second as f64).clamp(0.001, 1.0);
                let mut e = TimelineEntry {
                    round,
                    second,
                    t: round3(offset.as_secs_f64() + second as f64),
                    span: round3(span),
                    requests: 0,
                    failed: 0,
                    reconnect_failures: 0,
                    p50_ms: None,
                    p99_ms: None,
                };
                if let Some(r) = self.seconds.get(&second) {
                    e.requests = r.successes;
                    e.failed = r.failures;
                    e.reconnect_failures = r.reconnect_failures;
                    if !r.latencies.is_empty() {
                        e.p50_ms = Some(ms(r.latencies.value_at_quantile(0.5)));
                        e.p99_ms = Some(ms(r.latencies.value_at_quantile(0.99)));
                    }
                }
                e
            })
            .collect()
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Which round (1-based; always 1 without `--rounds`/`--compare`).
    pub round: u32,
    /// Seconds since the round's measured part began (this entry covers [s, s+1)).
    pub second: u64,
    /// Seconds since the session's first measurement began, where this entry starts (the
    /// x axis of the report's charts).
    pub t: f64,
    /// Seconds this entry covers: 1, or less for the last second of a round.
    pub span: f64,
    /// Requests sent (rate mode: scheduled) during it that were answered; throughput is
    /// `requests / span`.
    pub requests: u64,
    /// Requests sent during it that failed or timed out.
    pub failed: u64,
    /// Failed attempts to reopen a connection during it.
    pub reconnect_failures: u64,
    /// Median latency of its successful requests, ms (null without any).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency of its successful requests, ms (null without any).
    pub p99_ms: Option<f64>,
}

/// One point of the latency percentile curve.
#[derive(Debug, Clone, Serialize)]
pub struct PercentilePoint {
    /// Percentile, 50 to 99.99.
    pub percentile: f64,
    /// Latency at it, ms.
    pub latency_ms: f64,
}

/// The HDR-style percentile curve: points evenly spaced on a log scale of 1/(1-q), from the
/// median to p99.99, 10 per decade, plus the usual named percentiles.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> = (0..=37)
        .map(|k| 1.0 - 0.5 * 10f64.powf(-(k as f64) / 10.0))
        .collect();
    qs.extend([0.75, 0.9, 0.95, 0.99, 0.999, 0.9999]);
    qs.sort_by(f64::total_cmp);
    let mut out: Vec<PercentilePoint> = Vec::with_capacity(qs.len());
    for q in qs {
        let percentile = (q * 100.0 * 1e4).round() / 1e4;
        if out.last().is_some_and(|p| p.percentile >= percentile) {
            continue;
        }
        out.push(PercentilePoint {
            percentile,
            latency_ms: ms(h.value_at_quantile(q)),
        });
    }
    out
}

/// One round of a run with rounds (`--rounds`, `--compare`).
#[derive(Debug, Clone, Serialize)]
pub struct RoundSummary {
    /// Round number, from 1.
    pub round: u32,
    /// When its measurement began, seconds into the session.
    pub t: f64,
    /// Its measured seconds.
    pub duration_seconds: f64,
    /// Answered requests.
    pub successful_requests: u64,
    /// Failed requests.
    pub failed_requests: u64,
    /// Answered requests per second.
    pub requests_per_second: f64,
    /// Its median latency, ms.
    pub latency_median: f64,
    /// Its 99th percentile latency, ms.
    pub latency_p99: f64,
}

/// Nanoseconds to milliseconds, rounded to 0.1 µs.
fn ms(ns: u64) -> f64 {
    ms_f(ns as f64)
}

fn ms_f(ns: f64) -> f64 {
    (ns / 100.0).round() / 10_000.0
}

/// Everything written to the JSON file: the original tester's fields first, in its order,
/// then this tool's additions.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Server host as given.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connections opened.
    pub connections: u64,
    /// `--requests` (null in `--duration` mode).
    pub requests_per_connection: Option<u64>,
    /// `--ratio`: fraction of PUTs.
    pub put_ratio: f64,
    /// Start of the measured part, ISO-8601 UTC.
    pub start_time: String,
    /// End of the run, ISO-8601 UTC.
    pub end_time: String,
    /// Measured seconds (connection set-up and warm-up excluded).
    pub total_duration_seconds: f64,
    /// Requests counted.
    pub total_requests: u64,
    /// Requests answered without error.
    pub successful_requests: u64,
    /// Requests that failed or timed out.
    pub failed_requests: u64,
    /// PUTs.
    pub put_count: u64,
    /// GETs.
    pub get_count: u64,
    /// Successful PUTs.
    pub put_success: u64,
    /// Successful GETs.
    pub get_success: u64,
    /// GET hits.
    pub cache_hits: u64,
    /// GET misses.
    pub cache_misses: u64,
    /// Fastest successful request, ms.
    pub latency_min: f64,
    /// Slowest successful request, ms.
    pub latency_max: f64,
    /// Mean, ms.
    pub latency_mean: f64,
    /// Median, ms.
    pub latency_median: f64,
    /// 95th percentile, ms.
    pub latency_p95: f64,
    /// 99th percentile, ms.
    pub latency_p99: f64,
    /// Standard deviation, ms.
    pub latency_stddev: f64,
    /// Answered requests per measured second (`successful_requests / total_duration_seconds`);
    /// failed requests are not throughput.
    pub requests_per_second: f64,
    /// `failed_requests / total_requests`, in percent.
    pub error_rate: f64,
    /// 99.9th percentile, ms.
    pub latency_p999: f64,
    /// `text` or `resp`.
    pub protocol: String,
    /// Requests in flight per connection.
    pub pipeline: u64,
    /// Per second: answered and failed requests, reconnect failures, p50 and p99.
    pub timeline: Vec<TimelineEntry>,
    /// The part of `failed_requests` that timed out.
    pub timeouts: u64,
    /// GETs sent on purpose to unstored keys, as a fraction of GETs.
    pub miss_ratio: f64,
    /// Key length.
    pub key_size: u64,
    /// Value length.
    pub value_size: u64,
    /// TTL sent with PUTs (0 = none).
    pub ttl: u64,
    /// Target rate in requests/s (null = as fast as possible).
    pub rate: Option<f64>,
    /// `--duration` in seconds (null = fixed request count).
    pub duration: Option<f64>,
    /// Warm-up seconds excluded from the numbers.
    pub warmup: f64,
    /// Load generator threads.
    pub threads: u64,
    /// Workload seed (rerun with `--seed` for the same requests).
    pub seed: u64,
    /// Hit rate over GETs of stored keys, in percent (null without such GETs).
    pub stored_key_hit_rate: Option<f64>,
    /// What the first failure was (null without failures).
    pub first_error: Option<String>,
    /// `host:port` of this target, as the report labels it.
    pub label: String,
    /// Requests of a count-bound run never sent because the run stopped early.
    pub not_sent_requests: u64,
    /// Failed attempts to reopen lost connections (not requests).
    pub reconnect_failures: u64,
    /// Why the run stopped before its end (null if it ran to the end).
    pub stopped_early: Option<String>,
    /// `--timeout` in seconds.
    pub timeout: f64,
    /// `--give-up` in seconds: how long the server may stay unreachable.
    pub give_up: f64,
    /// `--keys`: distinct keys per connection (0 = a new key every PUT).
    pub keys_per_connection: u64,
    /// Rounds run against this target (`--rounds`).
    pub rounds: u32,
    /// Per round, when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub round_results: Vec<RoundSummary>,
    /// The latency percentile curve (HDR style), p50 to p99.99.
    pub percentiles: Vec<PercentilePoint>,
    /// The assessment lines, as printed.
    pub assessment: Vec<CheckRow>,
    /// The overall verdict: PASS, MARGINAL or FAIL.
    pub verdict: String,
    /// Why, in a few words.
    pub verdict_reason: String,
    /// With `--compare`: the same workload's results against the second server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<Box<Summary>>,
    /// Whether the connections used TLS.
    pub tls: bool,
}

/// One assessment line in the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    /// What is checked.
    pub name: String,
    /// The measured value, formatted.
    pub measured: String,
    /// The target and limit.
    pub target: String,
    /// The verdict, as printed.
    pub verdict: String,
}

/// The run parameters the summary repeats.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Host as given.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connections.
    pub connections: u64,
    /// Requests per connection, or None in duration mode.
    pub requests_per_connection: Option<u64>,
    /// PUT fraction.
    pub put_ratio: f64,
    /// Deliberate-miss fraction.
    pub miss_ratio: f64,
    /// Protocol name.
    pub protocol: &'static str,
    /// Pipeline depth.
    pub pipeline: u64,
    /// Key size.
    pub key_size: u64,
    /// Value size.
    pub value_size: u64,
    /// TTL.
    pub ttl: u64,
    /// Rate, if open loop.
    pub rate: Option<f64>,
    /// Duration, if time-bound.
    pub duration: Option<f64>,
    /// Warm-up seconds.
    pub warmup: f64,
    /// Threads.
    pub threads: u64,
    /// Seed.
    pub seed: u64,
    /// Per-request timeout, seconds.
    pub timeout: f64,
    /// Unreachable seconds before the run stops.
    pub give_up: f64,
    /// Distinct keys per connection.
    pub keys: u64,
    /// Rounds per target.
    pub rounds: u32,
    /// Over TLS.
    pub tls: bool,
}

/// Everything one target accumulated over its rounds.
#[derive(Debug)]
pub struct TargetRun {
    /// Host as given.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Counts over every round.
    pub counters: Counters,
    /// Latencies over every round.
    pub latencies: Histogram<u64>,
    /// Per-second entries of every round, in session time.
    pub timeline: Vec<TimelineEntry>,
    /// One line per round.
    pub rounds: Vec<RoundSummary>,
    /// The first failure.
    pub first_error: Option<String>,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<String>,
    /// Measured time over every round.
    pub elapsed: Duration,
    /// Wall-clock start of the first round's measurement.
    pub start: Option<SystemTime>,
    /// Wall-clock end of the last round.
    pub end: Option<SystemTime>,
}

impl TargetRun {
    /// Nothing run yet against `host:port`.
    pub fn new(host: &str, port: u16) -> TargetRun {
        TargetRun {
            host: host.to_string(),
            port,
            counters: Counters::default(),
            latencies: latency_histogram(),
            timeline: Vec::new(),
            rounds: Vec::new(),
            first_error: None,
            stopped_early: None,
            elapsed: Duration::ZERO,
            start: None,
            end: None,
        }
    }

    /// The label the report uses.
    pub fn label(&self) -> String {
        kvcache::client::addr_string(&self.host, self.port)
    }
}

fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Builds one target's summary from what its rounds recorded.
pub fn summarize(info: &RunInfo, run: &TargetRun) -> Summary {
    let (counters, latencies) = (&run.counters, &run.latencies);
    let secs = run.elapsed.as_secs_f64();
    let q = |x: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            ms(latencies.value_at_quantile(x))
        }
    };
    let (min, max, mean, stddev) = if latencies.is_empty() {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (
            ms(latencies.min()),
            ms(latencies.max()),
            ms_f(latencies.mean()),
            ms_f(latencies.stdev()),
        )
    };
    let start = run.start.unwrap_or_else(SystemTime::now);
    let mut s = Summary {
        host: run.host.clone(),
        port: run.port,
        connections: info.connections,
        requests_per_connection: info.requests_per_connection,
        put_ratio: info.put_ratio,
        start_time: iso(start),
        end_time: iso(run.end.unwrap_or(start)),
        total_duration_seconds: (secs * 1e6).round() / 1e6,
        total_requests: counters.total,
        successful_requests: counters.success,
        failed_requests: counters.failed,
        put_count: counters.put,
        get_count: counters.get,
        put_success: counters.put_success,
        get_success: counters.get_success,
        cache_hits: counters.hits,
        cache_misses: counters.misses,
        latency_min: min,
        latency_max: max,
        latency_mean: mean,
        latency_median: q(0.5),
        latency_p95: q(0.95),
        latency_p99: q(0.99),
        latency_stddev: stddev,
        requests_per_second: if secs > 0.0 {
            (counters.success as f64 / secs * 100.0).round() / 100.0
        } else {
            0.0
        },
        error_rate: if counters.total > 0 {
            counters.failed as f64 / counters.total as f64 * 100.0
        } else {
            0.0
        },
        latency_p999: q(0.999),
        protocol: info.protocol.to_string(),
        pipeline: info.pipeline,
        timeline: run.timeline.clone(),
        timeouts: counters.timeouts,
        miss_ratio: info.miss_ratio,
        key_size: info.key_size,
        value_size: info.value_size,
        ttl: info.ttl,
        rate: info.rate,
        duration: info.duration,
        warmup: info.warmup,
        threads: info.threads,
        tls: info.tls,
        seed: info.seed,
        stored_key_hit_rate: (counters.stored_gets > 0)
            .then(|| counters.stored_hits as f64 / counters.stored_gets as f64 * 100.0),
        first_error: run.first_error.clone(),
        label: run.label(),
        not_sent_requests: counters.not_sent,
        reconnect_failures: counters.reconnect_failures,
        stopped_early: run.stopped_early.clone(),
        timeout: info.timeout,
        give_up: info.give_up,
        keys_per_connection: info.keys,
        rounds: info.rounds,
        round_results: if run.rounds.len() > 1 {
            run.rounds.clone()
        } else {
            Vec::new()
        },
        percentiles: percentile_curve(latencies),
        assessment: Vec::new(),
        verdict: String::new(),
        verdict_reason: String::new(),
        compared_with: None,
    };
    let checks = checks(&s);
    let (verdict, why) = overall(&s, &checks);
    s.verdict = verdict.to_string();
    s.verdict_reason = why;
    s.assessment = checks
        .iter()
        .map(|c| CheckRow {
            name: c.name.to_string(),
            measured: c.measured.clone(),
            target: c.target.to_string(),
            verdict: c.verdict.label().to_string(),
        })
        .collect();
    s
}

/// Summarises one round (for the per-round lines).
pub fn round_summary(
    round: u32,
    t: Duration,
    elapsed: Duration,
    counters: &Counters,
    latencies: &Histogram<u64>,
) -> RoundSummary {
    let secs = elapsed.as_secs_f64();
    let q = |x: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            ms(latencies.value_at_quantile(x))
        }
    };
    RoundSummary {
        round,
        t: (t.as_secs_f64() * 1000.0).round() / 1000.0,
        duration_seconds: (secs * 1e6).round() / 1e6,
        successful_requests: counters.success,
        failed_requests: counters.failed,
        requests_per_second: if secs > 0.0 {
            (counters.success as f64 / secs * 100.0).round() / 100.0
        } else {
            0.0
        },
        latency_median: q(0.5),
        latency_p99: q(0.99),
    }
}

/// Formats an integer with thousands separators.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64 * 100.0
    }
}

/// A verdict against the original's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Meets the target.
    Pass,
    /// Misses the target but meets the minimum.
    Minimum,
    /// Misses the minimum.
    Fail,
    /// Does not apply (e.g. no GETs for a hit rate).
    NotApplicable,
    /// Not judged: the run had failures, so its figures describe a broken run.
    NotAssessed,
}

impl Verdict {
    /// How the verdict is printed.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Minimum => "MARGINAL (missed the target, within the limit)",
            Verdict::Fail => "FAIL",
            Verdict::NotApplicable => "n/a",
            Verdict::NotAssessed => "NOT ASSESSED (the run had failures)",
        }
    }
}

/// Whether anything went wrong in the run: failed requests, requests never sent, or an
/// early stop. Such a run never passes.
fn had_failures(s: &Summary) -> bool {
    s.failed_requests > 0 || s.not_sent_requests > 0 || s.stopped_early.is_some()
}

/// The overall verdict and why.
pub fn overall(s: &Summary, checks: &[Check]) -> (&'static str, String) {
    if let Some(why) = &s.stopped_early {
        return ("FAIL", format!("stopped early: {why}"));
    }
    if s.failed_requests > 0 || s.not_sent_requests > 0 {
        let mut why = format!("{} requests failed", thousands(s.failed_requests));
        if s.not_sent_requests > 0 {
            why += &format!(", {} not sent", thousands(s.not_sent_requests));
        }
        return ("FAIL", why);
    }
    if s.successful_requests == 0 {
        return ("FAIL", "no request was answered".into());
    }
    let missed: Vec<&str> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.name)
        .collect();
    if !missed.is_empty() {
        return ("FAIL", format!("over the limit: {}", missed.join(", ")));
    }
    let marginal: Vec<&str> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Minimum)
        .map(|c| c.name)
        .collect();
    if !marginal.is_empty() {
        return (
            "MARGINAL",
            format!("within the limits, targets missed: {}", marginal.join(", ")),
        );
    }
    ("PASS", "every target met".into())
}

/// One line of the assessment: what was measured against which target.
#[derive(Debug, Clone)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// The measured value, formatted.
    pub measured: String,
    /// The target and minimum, formatted.
    pub target: &'static str,
    /// The verdict.
    pub verdict: Verdict,
}

fn grade(ok_target: bool, ok_minimum: bool) -> Verdict {
    if ok_target {
        Verdict::Pass
    } else if ok_minimum {
        Verdict::Minimum
    } else {
        Verdict::Fail
    }
}

/// The original's targets: throughput >10,000 req/s (5,000 minimum), mean <1 ms (10 ms),
/// p99 <5 ms (20 ms), no errors, hit rate >99%.
pub fn checks(s: &Summary) -> Vec<Check> {
    let rps = s.requests_per_second;
    let mut v = vec![
        Check {
            name: "Throughput",
            measured: format!("{} req/s", thousands(rps.round() as u64)),
            target: "target >10,000, minimum 5,000",
            verdict: grade(rps > 10_000.0, rps >= 5_000.0),
        },
        Check {
            name: "Mean latency",
            measured: format!("{:.3} ms", s.latency_mean),
            target: "target <1 ms, maximum 10 ms",
            verdict: grade(s.latency_mean < 1.0, s.latency_mean <= 10.0),
        },
        Check {
            name: "P99 latency",
            measured: format!("{:.3} ms", s.latency_p99),
            target: "target <5 ms, maximum 20 ms",
            verdict: grade(s.latency_p99 < 5.0, s.latency_p99 <= 20.0),
        },
        Check {
            name: "Error rate",
            // Enough digits that a few failures in a long run do not read as 0.00%.
            measured: if s.error_rate > 0.0 && s.error_rate < 0.01 {
                format!("{:.4}%", s.error_rate)
            } else {
                format!("{:.2}%", s.error_rate)
            },
            target: "target 0%",
            verdict: grade(s.failed_requests == 0, false),
        },
    ];
    v.push(match s.stored_key_hit_rate {
        Some(rate) => Check {
            name: "Hit rate (stored keys)",
            measured: format!("{rate:.2}%"),
            target: "target >99%",
            verdict: grade(rate > 99.0, false),
        },
        None => Check {
            name: "Hit rate (stored keys)",
            measured: "no GETs of stored keys".into(),
            target: "target >99%",
            verdict: Verdict::NotApplicable,
        },
    });
    // Figures of a run with failures describe a broken run: never call them a pass.
    if had_failures(s) || s.successful_requests == 0 {
        for c in &mut v {
            if c.name != "Error rate" {
                c.verdict = Verdict::NotAssessed;
            }
        }
        if s.not_sent_requests > 0 || s.stopped_early.is_some() {
            v[3].verdict = Verdict::Fail;
        }
    }
    v
}

/// Prints the run's parameters before it starts (like the original).
pub fn print_header(out: &mut impl Write, info: &RunInfo, compare: Option<&str>) -> io::Result<()> {
    let against = kvcache::client::addr_string(&info.host, info.port);
    let tls = if info.tls { " over TLS" } else { "" };
    match compare {
        Some(other) => writeln!(
            out,
            "Load test comparing {against} with {other} ({} protocol{tls}), {} alternating rounds each",
            info.protocol, info.rounds
        )?,
        None => writeln!(
            out,
            "Load test against {against} ({} protocol{tls})",
            info.protocol
        )?,
    }
    let load = match (info.requests_per_connection, info.duration) {
        (Some(n), _) => format!(
            "{} connections x {} requests = {} requests",
            info.connections,
            thousands(n),
            thousands(n * info.connections)
        ),
        (None, Some(d)) => format!("{} connections for {d} s", info.connections),
        (None, None) => format!("{} connections", info.connections),
    };
    writeln!(
        out,
        "{load}, pipeline {}, {} threads",
        info.pipeline, info.threads
    )?;
    writeln!(
        out,
        "PUT/GET {:.0}%/{:.0}%, key {} B, value {} B, ttl {}, deliberate misses {:.0}%, seed {}",
        info.put_ratio * 100.0,
        (1.0 - info.put_ratio) * 100.0,
        info.key_size,
        info.value_size,
        info.ttl,
        info.miss_ratio * 100.0,
        info.seed
    )?;
    match info.rate {
        Some(r) => writeln!(
            out,
            "Open loop at {r} req/s: latency timed from each request's scheduled send time"
        )?,
        None => writeln!(
            out,
            "Closed loop: each connection sends as fast as replies return"
        )?,
    }
    if info.warmup > 0.0 {
        writeln!(out, "Warm-up: {} s (not counted)", info.warmup)?;
    }
    if compare.is_none() && info.rounds > 1 {
        writeln!(out, "{} rounds", info.rounds)?;
    }
    writeln!(out)
}

/// Prints the result table, the per-second timeline and the assessment.
pub fn print_table(out: &mut impl Write, s: &Summary) -> io::Result<()> {
    let rule = "=".repeat(60);
    let thin = "-".repeat(60);
    writeln!(out, "{rule}")?;
    writeln!(out, "                    LOAD TEST RESULTS")?;
    if s.compared_with.is_some() || s.rounds > 1 {
        writeln!(out, "{:^60}", s.label)?;
    }
    writeln!(out, "{rule}")?;
    writeln!(out, "Total Requests:     {}", thousands(s.total_requests))?;
    writeln!(
        out,
        "Successful:         {} ({:.2}%)",
        thousands(s.successful_requests),
        pct(s.successful_requests, s.total_requests)
    )?;
    let timeouts = if s.timeouts > 0 {
        format!(", {} timed out", thousands(s.timeouts))
    } else {
        String::new()
    };
    writeln!(
        out,
        "Failed:             {} ({:.2}%{timeouts})",
        thousands(s.failed_requests),
        s.error_rate
    )?;
    if s.not_sent_requests > 0 {
        writeln!(
            out,
            "Not sent:           {} (the run stopped before sending them)",
            thousands(s.not_sent_requests)
        )?;
    }
    if s.reconnect_failures > 0 {
        writeln!(
            out,
            "Reconnects failed:  {} (attempts to reopen a connection; not requests)",
            thousands(s.reconnect_failures)
        )?;
    }
    if let Some(e) = &s.first_error {
        writeln!(out, "First failure:      {e}")?;
    }
    if let Some(why) = &s.stopped_early {
        writeln!(out, "Stopped early:      {why}")?;
    }
    writeln!(out, "{thin}")?;
    writeln!(
        out,
        "Total Time:         {:.2} seconds",
        s.total_duration_seconds
    )?;
    writeln!(
        out,
        "Requests/Second:    {:.2} (answered requests only)",
        s.requests_per_second
    )?;
    writeln!(out)?;
    writeln!(out, "Latency (ms):")?;
    for (name, v) in [
        ("Min", s.latency_min),
        ("Max", s.latency_max),
        ("Mean", s.latency_mean),
        ("Median", s.latency_median),
        ("P95", s.latency_p95),
        ("P99", s.latency_p99),
        ("P99.9", s.latency_p999),
        ("Stddev", s.latency_stddev),
    ] {
        writeln!(out, "  {:<18}{v:.3}", format!("{name}:"))?;
    }
    writeln!(out)?;
    writeln!(out, "Operations:")?;
    writeln!(
        out,
        "  PUT:              {} (success: {})",
        thousands(s.put_count),
        thousands(s.put_success)
    )?;
    writeln!(
        out,
        "  GET:              {} (success: {})",
        thousands(s.get_count),
        thousands(s.get_success)
    )?;
    let answered = s.cache_hits + s.cache_misses;
    if answered > 0 {
        writeln!(
            out,
            "  Cache Hits:       {} ({:.2}%)",
            thousands(s.cache_hits),
            pct(s.cache_hits, answered)
        )?;
        writeln!(out, "  Cache Misses:     {}", thousands(s.cache_misses))?;
    }
    if !s.round_results.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Per round:        answered/s      failed   p50 (ms)   p99 (ms)"
        )?;
        for r in &s.round_results {
            writeln!(
                out,
                "  {:>4}          {:>12}  {:>10}  {:>9.3}  {:>9.3}",
                r.round,
                thousands(r.requests_per_second.round() as u64),
                thousands(r.failed_requests),
                r.latency_median,
                r.latency_p99
            )?;
        }
    }
    let errors = s.failed_requests + s.reconnect_failures > 0;
    if !s.timeline.is_empty() && s.round_results.is_empty() {
        writeln!(out)?;
        if errors {
            writeln!(
                out,
                "Per second:         answered      p99 (ms)      failed  reconnects failed"
            )?;
        } else {
            writeln!(out, "Per second:         answered      p99 (ms)")?;
        }
        for e in &s.timeline {
            let p99 = e.p99_ms.map_or("-".to_string(), |p| format!("{p:.3}"));
            write!(
                out,
                "  {:>4}s          {:>11}  {:>12}",
                e.second,
                thousands(e.requests),
                p99
            )?;
            if errors {
                write!(
                    out,
                    "  {:>10}  {:>17}",
                    thousands(e.failed),
                    thousands(e.reconnect_failures)
                )?;
            }
            writeln!(out)?;
        }
    }
    writeln!(out, "{rule}")?;
    writeln!(out)?;
    writeln!(out, "Performance Assessment:")?;
    let checks = checks(s);
    for c in &checks {
        writeln!(
            out,
            "  {:<24}{:<18}{:<34}{}",
            c.name,
            c.measured,
            format!("({})", c.target),
            c.verdict.label()
        )?;
    }
    let (verdict, why) = overall(s, &checks);
    writeln!(out)?;
    writeln!(out, "Verdict: {verdict} ({why})")?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn recorder_counts_and_timeline() {
        let (tx, rx) = channel();
        let t0 = Instant::now();
        let mut r = Recorder::new(t0, tx);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        r.record(Op::Put, Outcome::Success { hit: None }, at(0), at(0), at(1));
        r.record(
            Op::Get { expect_hit: true },
            Outcome::Success { hit: Some(true) },
            at(1),
            at(1),
            at(2),
        );
        r.record(
            Op::Get { expect_hit: false },
            Outcome::Success { hit: Some(false) },
            at(1500),
            at(1500),
            at(1502),
        );
        r.record(Op::Put, Outcome::TimedOut, at(3000), at(3000), at(3100));
        r.reconnect_failed(at(3200));
        r.reconnect_failed(at(4100));
        let ThreadTotals {
            counters: c,
            latencies: h,
            ..
        } = r.finish();
        assert_eq!((c.total, c.success, c.failed, c.timeouts), (4, 3, 1, 1));
        assert_eq!(c.reconnect_failures, 2, "reconnects are counted apart");
        assert_eq!((c.put, c.get, c.put_success, c.get_success), (2, 2, 1, 2));
        assert_eq!(
            (c.hits, c.misses, c.stored_gets, c.stored_hits),
            (1, 1, 1, 1)
        );
        assert_eq!(h.len(), 3);
        let mut t = Timeline::default();
        for rep in rx.try_iter() {
            t.add(rep);
        }
        let e = t.entries(Duration::from_millis(4500), Duration::from_secs(10), 2);
        assert_eq!(
            e.iter()
                .map(|e| (e.second, e.requests, e.failed, e.reconnect_failures))
                .collect::<Vec<_>>(),
            vec![
                (0, 2, 0, 0),
                (1, 1, 0, 0),
                (2, 0, 0, 0),
                (3, 0, 1, 1),
                (4, 0, 0, 1)
            ]
        );
        let p99 = e[0].p99_ms.unwrap();
        assert!((p99 - 1.0).abs() < 0.02, "{p99}");
        // No answered request in a second: no latency, not a latency of zero.
        assert_eq!(e[3].p99_ms, None);
        assert_eq!(
            (e[1].t, e[1].span, e[4].span, e[4].round),
            (11.0, 1.0, 0.5, 2)
        );
    }

    #[test]
    fn percentile_curve_runs_from_the_median_to_four_nines() {
        let mut h = latency_histogram();
        for v in 1..=100_000u64 {
            h.record(v * 1000).unwrap();
        }
        let c = percentile_curve(&h);
        assert_eq!(c.first().unwrap().percentile, 50.0);
        assert_eq!(c.last().unwrap().percentile, 99.99);
        assert!(c.windows(2).all(|w| w[0].percentile < w[1].percentile));
        assert!(c.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms));
        for p in [75.0, 90.0, 99.0, 99.9] {
            assert!(c.iter().any(|x| x.percentile == p), "{p}");
        }
        let p99 = c.iter().find(|x| x.percentile == 99.0).unwrap().latency_ms;
        assert!((p99 - 99.0).abs() < 0.1, "{p99}");
        assert!(percentile_curve(&latency_histogram()).is_empty());
    }

    fn summary_with(failed: u64, not_sent: u64, stopped: Option<&str>) -> Summary {
        let info = RunInfo {
            host: "h".into(),
            port: 1,
            connections: 1,
            requests_per_connection: Some(10),
            put_ratio: 0.5,
            miss_ratio: 0.0,
            protocol: "text",
            pipeline: 1,
            key_size: 16,
            value_size: 64,
            ttl: 0,
            rate: None,
            duration: None,
            warmup: 0.0,
            threads: 1,
            seed: 1,
            timeout: 5.0,
            give_up: 5.0,
            keys: 0,
            rounds: 1,
            tls: false,
        };
        let mut run = TargetRun::new("h", 1);
        run.elapsed = Duration::from_secs(1);
        run.counters.total = 100_000 + failed;
        run.counters.success = 100_000;
        run.counters.failed = failed;
        run.counters.not_sent = not_sent;
        run.stopped_early = stopped.map(String::from);
        for _ in 0..100 {
            run.latencies.record(100_000).unwrap();
        }
        summarize(&info, &run)
    }

    #[test]
    fn a_run_with_failures_never_passes() {
        let good = summary_with(0, 0, None);
        assert_eq!(good.verdict, "PASS");
        assert!(
            good.assessment
                .iter()
                .all(|c| c.verdict == "PASS" || c.verdict == "n/a")
        );
        for s in [
            summary_with(1, 0, None),
            summary_with(0, 5, None),
            summary_with(0, 0, Some("server unreachable for 5.0 s")),
        ] {
            assert_eq!(s.verdict, "FAIL");
            assert!(
                s.assessment.iter().all(|c| !c.verdict.starts_with("PASS")),
                "{:?}",
                s.assessment
            );
            let mut out = Vec::new();
            print_table(&mut out, &s).unwrap();
            let table = String::from_utf8(out).unwrap();
            assert!(!table.contains("PASS"), "{table}");
            assert!(table.contains("Verdict: FAIL ("), "{table}");
        }
    }

    #[test]
    fn marginal_says_what_it_means() {
        assert_eq!(
            Verdict::Minimum.label(),
            "MARGINAL (missed the target, within the limit)"
        );
        let mut s = summary_with(0, 0, None);
        s.latency_mean = 2.0;
        let checks = checks(&s);
        assert_eq!(checks[1].verdict, Verdict::Minimum);
        assert_eq!(overall(&s, &checks).0, "MARGINAL");
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(ms(1_234_567), 1.2346);
    }
}
