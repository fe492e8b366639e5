//! Recording and reporting: per-thread counters and HDR histograms, the per-second timeline,
//! the summary table with pass/fail lines, and the JSON file (the original tester's field
//! names, latencies in milliseconds, error rate in percent).

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
}

impl Counters {
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
    }
}

/// One thread's share of one second of the timeline, sent to the main thread as soon as
/// the thread moves past that second.
#[derive(Debug)]
pub struct SecondReport {
    /// Seconds since the measured part of the run began.
    pub second: u64,
    /// Requests sent (or, in rate mode, scheduled) during it, failures included.
    pub requests: u64,
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
    second_requests: u64,
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
            second_requests: 0,
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
        let second = slot.saturating_duration_since(self.measure_start).as_secs();
        if second != self.second {
            self.flush_second();
            self.second = second;
        }
        self.second_requests += 1;
        let c = &mut self.counters;
        c.total += 1;
        match op {
            Op::Put => c.put += 1,
            Op::Get { .. } => c.get += 1,
        }
        match outcome {
            Outcome::Success { hit } => {
                c.success += 1;
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
            Outcome::Failed => c.failed += 1,
            Outcome::TimedOut => {
                c.failed += 1;
                c.timeouts += 1;
            }
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
        if self.second_requests == 0 {
            return;
        }
        let latencies = std::mem::replace(&mut self.second_latencies, second_histogram());
        let _ = self.timeline.send(SecondReport {
            second: self.second,
            requests: self.second_requests,
            latencies,
        });
        self.second_requests = 0;
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
    seconds: BTreeMap<u64, (u64, Histogram<u32>)>,
}

impl Timeline {
    /// Adds one thread's report for one second.
    pub fn add(&mut self, r: SecondReport) {
        match self.seconds.get_mut(&r.second) {
            Some((n, h)) => {
                *n += r.requests;
                let _ = h.add(&r.latencies);
            }
            None => {
                self.seconds.insert(r.second, (r.requests, r.latencies));
            }
        }
    }

    /// One entry per second from the first to the last, quiet seconds included.
    pub fn entries(&self) -> Vec<TimelineEntry> {
        let Some(&last) = self.seconds.keys().next_back() else {
            return Vec::new();
        };
        (0..=last)
            .map(|second| match self.seconds.get(&second) {
                Some((requests, h)) => TimelineEntry {
                    second,
                    requests: *requests,
                    p99_ms: if h.is_empty() {
                        0.0
                    } else {
                        ms(h.value_at_quantile(0.99))
                    },
                },
                None => TimelineEntry {
                    second,
                    requests: 0,
                    p99_ms: 0.0,
                },
            })
            .collect()
    }
}

/// One second of the run: requests completed in it and their p99.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// Seconds since the measured part of the run began (this entry covers [s, s+1)).
    pub second: u64,
    /// Requests sent (rate mode: scheduled) during that second, failures included.
    pub requests: u64,
    /// 99th percentile latency of that second's successful requests, in ms.
    pub p99_ms: f64,
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
    /// `total_requests / total_duration_seconds`, as the original computed it.
    pub requests_per_second: f64,
    /// `failed_requests / total_requests`, in percent.
    pub error_rate: f64,
    /// 99.9th percentile, ms.
    pub latency_p999: f64,
    /// `text` or `resp`.
    pub protocol: String,
    /// Requests in flight per connection.
    pub pipeline: u64,
    /// Per-second requests and p99.
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
    /// Whether the connections used TLS.
    pub tls: bool,
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
    /// Over TLS.
    pub tls: bool,
}

fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// Builds the summary from the merged counters and histogram.
pub fn summarize(
    info: &RunInfo,
    first_error: Option<String>,
    counters: &Counters,
    latencies: &Histogram<u64>,
    timeline: &Timeline,
    start: SystemTime,
    elapsed: Duration,
) -> Summary {
    let secs = elapsed.as_secs_f64();
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
    Summary {
        host: info.host.clone(),
        port: info.port,
        connections: info.connections,
        requests_per_connection: info.requests_per_connection,
        put_ratio: info.put_ratio,
        start_time: iso(start),
        end_time: iso(start + elapsed),
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
            (counters.total as f64 / secs * 100.0).round() / 100.0
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
        timeline: timeline.entries(),
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
        first_error,
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
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Minimum => "PASS (minimum only)",
            Verdict::Fail => "FAIL",
            Verdict::NotApplicable => "n/a",
        }
    }
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
            measured: format!("{:.2}%", s.error_rate),
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
    if s.successful_requests == 0 {
        for c in &mut v {
            if c.name != "Error rate" {
                c.verdict = Verdict::Fail;
            }
        }
    }
    v
}

/// Prints the run's parameters before it starts (like the original).
pub fn print_header(out: &mut impl Write, info: &RunInfo) -> io::Result<()> {
    writeln!(
        out,
        "Load test against {} ({} protocol{})",
        kvcache::client::addr_string(&info.host, info.port),
        info.protocol,
        if info.tls { " over TLS" } else { "" }
    )?;
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
    writeln!(out)
}

/// Prints the result table, the per-second timeline and the assessment.
pub fn print_table(out: &mut impl Write, s: &Summary) -> io::Result<()> {
    let rule = "=".repeat(60);
    let thin = "-".repeat(60);
    writeln!(out, "{rule}")?;
    writeln!(out, "                    LOAD TEST RESULTS")?;
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
    if let Some(e) = &s.first_error {
        writeln!(out, "First failure:      {e}")?;
    }
    writeln!(out, "{thin}")?;
    writeln!(
        out,
        "Total Time:         {:.2} seconds",
        s.total_duration_seconds
    )?;
    writeln!(out, "Requests/Second:    {:.2}", s.requests_per_second)?;
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
    if !s.timeline.is_empty() {
        writeln!(out)?;
        writeln!(out, "Per second:         requests      p99 (ms)")?;
        for e in &s.timeline {
            writeln!(
                out,
                "  {:>4}s          {:>11}  {:>12.3}",
                e.second,
                thousands(e.requests),
                e.p99_ms
            )?;
        }
    }
    writeln!(out, "{rule}")?;
    writeln!(out)?;
    writeln!(out, "Performance Assessment:")?;
    for c in checks(s) {
        writeln!(
            out,
            "  {:<24}{:<18}{:<34}{}",
            c.name,
            c.measured,
            format!("({})", c.target),
            c.verdict.label()
        )?;
    }
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
        let ThreadTotals {
            counters: c,
            latencies: h,
            ..
        } = r.finish();
        assert_eq!((c.total, c.success, c.failed, c.timeouts), (4, 3, 1, 1));
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
        let e = t.entries();
        assert_eq!(
            e.iter().map(|e| (e.second, e.requests)).collect::<Vec<_>>(),
            vec![(0, 2), (1, 1), (2, 0), (3, 1)]
        );
        assert!((e[0].p99_ms - 1.0).abs() < 0.02, "{}", e[0].p99_ms);
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
