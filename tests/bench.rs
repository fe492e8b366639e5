//! `kvcache-bench` against a real server over TCP: the JSON fields and their consistency,
//! both protocols with pipelining, deliberate misses, fixed-rate runs, timeouts, AUTH, an
//! unreachable server, a server that goes away mid-run, the HTML report and `--compare`.
//! Small request counts; no assertion depends on speed.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::{TestServer, closed_port};
use serde_json::Value;

/// The original load tester's JSON fields, which must all be present.
const ORIGINAL_FIELDS: &[&str] = &[
    "host",
    "port",
    "connections",
    "requests_per_connection",
    "put_ratio",
    "start_time",
    "end_time",
    "total_duration_seconds",
    "total_requests",
    "successful_requests",
    "failed_requests",
    "put_count",
    "get_count",
    "put_success",
    "get_success",
    "cache_hits",
    "cache_misses",
    "latency_min",
    "latency_max",
    "latency_mean",
    "latency_median",
    "latency_p95",
    "latency_p99",
    "latency_stddev",
    "requests_per_second",
    "error_rate",
];

fn temp_json(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "kvcache-bench-test-{}-{name}.json",
        std::process::id()
    ))
}

fn bench(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kvcache-bench"));
    c.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--threads",
        "2",
    ])
    .args(args)
    .env_remove("KV_CACHE_PASSWORD");
    c
}

/// Runs the bench with `-o` and returns its output and the parsed JSON.
fn run_json(port: u16, name: &str, args: &[&str]) -> (Output, Value) {
    let path = temp_json(name);
    let out = bench(port, args)
        .arg("--output")
        .arg(&path)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no JSON written ({e}); stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&path);
    (out, serde_json::from_str(&text).unwrap())
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not an integer: {}", v[k]))
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number: {}", v[k]))
}

/// The server's key count, from STATS.
fn server_keys(port: u16) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let line = rt.block_on(async {
        let mut c = kvcache::client::Client::connect(
            "127.0.0.1",
            port,
            kvcache::client::Protocol::Text,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        c.command_line(b"STATS").await.unwrap()
    });
    let line = String::from_utf8(line).unwrap();
    let keys = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("keys="))
        .unwrap_or_else(|| panic!("no keys= in {line}"));
    keys.parse().unwrap()
}

/// Invariants every successful run's JSON keeps.
fn check_consistent(v: &Value) {
    for k in ORIGINAL_FIELDS
        .iter()
        .chain(&["latency_p999", "protocol", "pipeline", "timeline"])
    {
        assert!(v.get(k).is_some(), "missing field {k}");
    }
    let total = u(v, "total_requests");
    assert_eq!(u(v, "put_count") + u(v, "get_count"), total);
    assert_eq!(u(v, "successful_requests") + u(v, "failed_requests"), total);
    assert_eq!(
        u(v, "cache_hits") + u(v, "cache_misses"),
        u(v, "get_success")
    );
    let lat: Vec<f64> = [
        "latency_min",
        "latency_median",
        "latency_p95",
        "latency_p99",
        "latency_p999",
        "latency_max",
    ]
    .iter()
    .map(|k| f(v, k))
    .collect();
    assert!(lat[0] > 0.0, "latency_min {}", lat[0]);
    assert!(
        lat.windows(2).all(|w| w[0] <= w[1]),
        "latencies out of order: {lat:?}"
    );
    let mean = f(v, "latency_mean");
    assert!(
        lat[0] <= mean && mean <= lat[5],
        "mean {mean} outside {lat:?}"
    );
    check_timeline(v);
    for k in ["start_time", "end_time"] {
        let t = v[k].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{k} = {t}");
    }
    assert!(f(v, "total_duration_seconds") > 0.0);
    assert!(f(v, "requests_per_second") > 0.0);
    check_throughput(v);
}

/// Throughput counts answered requests only.
fn check_throughput(v: &Value) {
    let secs = f(v, "total_duration_seconds");
    let expected = u(v, "successful_requests") as f64 / secs;
    let rps = f(v, "requests_per_second");
    // Both figures are rounded: the time to 1 µs, the rate to 0.01.
    assert!(
        (rps - expected).abs() <= 0.01 + expected * 1e-6 / secs,
        "requests_per_second {rps} is not answered requests / time ({expected})"
    );
}

/// The timeline adds up to the totals, second by second, and a second without an answered
/// request has no latency (not a latency of zero).
fn check_timeline(v: &Value) {
    let timeline = v["timeline"].as_array().unwrap();
    assert!(!timeline.is_empty());
    let sum = |k: &str| timeline.iter().map(|e| u(e, k)).sum::<u64>();
    assert_eq!(
        sum("requests"),
        u(v, "successful_requests"),
        "answered per second"
    );
    assert_eq!(sum("failed"), u(v, "failed_requests"), "failed per second");
    assert_eq!(
        sum("reconnect_failures"),
        u(v, "reconnect_failures"),
        "reconnect failures per second"
    );
    let mut second = 0;
    let mut round = 1;
    for e in timeline {
        if u(e, "round") != round {
            round = u(e, "round");
            second = 0;
        }
        assert_eq!(u(e, "second"), second);
        second += 1;
        let span = f(e, "span");
        assert!(span > 0.0 && span <= 1.0, "{e}");
        if u(e, "requests") == 0 {
            assert!(e["p99_ms"].is_null() && e["p50_ms"].is_null(), "{e}");
        } else {
            assert!(f(e, "p99_ms") >= f(e, "p50_ms"), "{e}");
        }
    }
}

#[test]
fn text_run_reports_consistent_json() {
    let server = TestServer::default();
    let (out, v) = run_json(server.port, "text", &["-c", "4", "-r", "50"]);
    assert_eq!(out.status.code(), Some(0));
    check_consistent(&v);
    assert_eq!(u(&v, "total_requests"), 200);
    assert_eq!(u(&v, "successful_requests"), 200);
    assert_eq!(u(&v, "failed_requests"), 0);
    assert_eq!(f(&v, "error_rate"), 0.0);
    // Every GET asks for a key its connection stored: all hits.
    assert_eq!(u(&v, "cache_hits"), u(&v, "get_count"));
    assert!(u(&v, "put_count") >= 4, "each connection starts with a PUT");
    assert_eq!(v["protocol"], "text");
    assert_eq!(u(&v, "pipeline"), 1);
    assert_eq!(u(&v, "connections"), 4);
    assert_eq!(u(&v, "requests_per_connection"), 50);
    assert_eq!(v["host"], "127.0.0.1");
    assert_eq!(u(&v, "port"), u64::from(server.port));
    let table = String::from_utf8_lossy(&out.stdout);
    for line in [
        "LOAD TEST RESULTS",
        "Total Requests:     200",
        "Failed:             0 (0.00%)",
        "P99.9:",
        "Cache Hits:",
        "Error rate",
        "Results saved to:",
    ] {
        assert!(table.contains(line), "missing {line:?} in:\n{table}");
    }
    // Every PUT wrote a distinct key, and the server holds them all.
    assert_eq!(server_keys(server.port), u(&v, "put_count"));
    // The progress bar is for terminals only.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn resp_pipelined_run_against_kvcache() {
    let server = TestServer::default();
    let (out, v) = run_json(
        server.port,
        "resp",
        &[
            "--protocol",
            "resp",
            "-P",
            "8",
            "-c",
            "3",
            "-r",
            "400",
            "--ttl",
            "60",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    check_consistent(&v);
    assert_eq!(u(&v, "total_requests"), 1200);
    assert_eq!(u(&v, "failed_requests"), 0);
    assert_eq!(u(&v, "cache_hits"), u(&v, "get_count"));
    assert_eq!(v["protocol"], "resp");
    assert_eq!(u(&v, "pipeline"), 8);
    assert_eq!(server_keys(server.port), u(&v, "put_count"));
}

#[test]
fn deliberate_misses_are_counted_apart() {
    let server = TestServer::default();
    let (out, v) = run_json(
        server.port,
        "miss",
        &["-c", "2", "-r", "300", "--miss-ratio", "0.5", "--seed", "7"],
    );
    assert_eq!(out.status.code(), Some(0));
    check_consistent(&v);
    assert!(u(&v, "cache_misses") > 20, "{}", v["cache_misses"]);
    assert!(u(&v, "cache_hits") > 20, "{}", v["cache_hits"]);
    // Misses were only the deliberate ones: stored keys all hit.
    assert_eq!(f(&v, "stored_key_hit_rate"), 100.0);
}

#[test]
fn fixed_rate_run_sends_exactly_the_schedule() {
    let server = TestServer::default();
    let (out, v) = run_json(
        server.port,
        "rate",
        &[
            "-c",
            "2",
            "--duration",
            "1",
            "--rate",
            "100",
            "--pipeline",
            "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    check_consistent(&v);
    // 100 req/s for 1 s: the grid has exactly 100 slots, however fast the machine.
    assert_eq!(u(&v, "total_requests"), 100);
    assert!(v["requests_per_connection"].is_null());
    assert_eq!(f(&v, "rate"), 100.0);
}

#[test]
fn duration_run_with_warmup() {
    let server = TestServer::default();
    let (out, v) = run_json(
        server.port,
        "duration",
        &["-c", "2", "--duration", "0.5", "--warmup", "0.2"],
    );
    assert_eq!(out.status.code(), Some(0));
    check_consistent(&v);
    assert!(u(&v, "total_requests") > 0);
    assert_eq!(u(&v, "failed_requests"), 0);
}

#[test]
fn closed_port_is_one_line_and_nonzero() {
    let out = bench(closed_port(), &["-c", "3", "-r", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn silent_server_times_out_instead_of_hanging() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            let mut reader = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut sink = [0u8; 1024];
                while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            });
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let (out, v) = run_json(port, "timeout", &["-c", "1", "-r", "3", "--timeout", "0.2"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(u(&v, "total_requests"), 3);
    assert_eq!(u(&v, "failed_requests"), 3);
    assert_eq!(u(&v, "timeouts"), 3);
    assert_eq!(f(&v, "error_rate"), 100.0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("no reply within 0.2 s"), "{table}");
    assert!(table.contains("FAIL"), "{table}");
    assert!(!table.contains("PASS"), "{table}");
    assert_eq!(v["verdict"], "FAIL");
    // Nothing was answered: no throughput and no latency.
    assert_eq!(f(&v, "requests_per_second"), 0.0);
    assert_eq!(u(&v, "successful_requests"), 0);
    assert!(v["percentiles"].as_array().unwrap().is_empty());
}

#[test]
fn password_is_sent_with_auth() {
    let server = TestServer::with(|c| c.password = Some("s3cret".into()));
    let (out, v) = run_json(
        server.port,
        "auth",
        &["-c", "2", "-r", "20", "--password", "s3cret"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(u(&v, "failed_requests"), 0);
    let out = bench(server.port, &["-c", "2", "-r", "20", "--password", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication failed"), "{err}");
    // Without a password every request is refused: reported as failures, exit 1.
    let (out, v) = run_json(server.port, "noauth", &["-c", "1", "-r", "5"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(u(&v, "failed_requests"), 5);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("authentication required"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_options_are_rejected() {
    for args in [
        &["--ratio", "1.5"][..],
        &["--connections", "0"],
        &["--key-size", "300"],
        &["--pipeline", "0"],
        &["--rate", "-1"],
        &["--timeout", "0"],
        &["--port", "-1"],
        &["--give-up", "0"],
        &["--rounds", "0"],
        &["--report", "report.txt"],
        &["--compare", "nohost"],
        &["--compare", "127.0.0.1:99999"],
        &["--value-size", "1tb"],
    ] {
        let out = bench(closed_port(), args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("kvcache-bench: "), "{err}");
    }
}

#[test]
fn host_and_port_come_from_the_server_variables() {
    let server = TestServer::default();
    let path = temp_json("env");
    let out = Command::new(env!("CARGO_BIN_EXE_kvcache-bench"))
        .args(["-c", "2", "-r", "10", "--threads", "1", "--output"])
        .arg(&path)
        .env("KV_CACHE_PORT", server.port.to_string())
        // The server's listen address: to a client it means this machine.
        .env("KV_CACHE_HOST", "0.0.0.0")
        .env_remove("KV_CACHE_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(u(&v, "port"), u64::from(server.port));
    assert_eq!(v["host"], "127.0.0.1");
    assert_eq!(u(&v, "successful_requests"), 20);
}

#[test]
fn all_three_tools_print_compact_help() {
    for bin in [
        env!("CARGO_BIN_EXE_kvcache-server"),
        env!("CARGO_BIN_EXE_kvcache-cli"),
        env!("CARGO_BIN_EXE_kvcache-bench"),
    ] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8(out.stdout).unwrap();
        let options = help.split("Options:\n").nth(1).unwrap();
        let options = options.split("\n\n").next().unwrap();
        // One line per option, its description beside it: no "[default: ...]" on a line of
        // its own and no blank lines between options.
        for line in options.lines() {
            let flag = line.trim_start();
            assert!(flag.starts_with('-'), "{bin}: not an option line: {line:?}");
            let description = flag.split("  ").filter(|p| !p.trim().is_empty()).nth(1);
            assert!(description.is_some(), "{bin}: no description: {line:?}");
        }
        assert!(options.lines().count() >= 6, "{bin}: {options}");
        assert!(!help.contains("Possible values"), "{bin}");
    }
}

/// Starts the bench in the background with `-o`; returns the child and the JSON path.
fn spawn_json(port: u16, name: &str, args: &[&str]) -> (std::process::Child, PathBuf) {
    let path = temp_json(name);
    let child = bench(port, args)
        .arg("--output")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, path)
}

/// Waits until the server holds at least one key (the bench is under way).
fn wait_for_load(port: u16) {
    for _ in 0..500 {
        if server_keys(port) > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the bench never wrote a key");
}

#[test]
fn a_server_that_goes_away_stops_the_run_without_fake_throughput() {
    let mut server = TestServer::default();
    let port = server.port;
    let (child, path) = spawn_json(
        port,
        "gone",
        &["-c", "4", "--duration", "120", "--give-up", "1"],
    );
    wait_for_load(port);
    server.stop();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let (table, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{table}\n{err}");
    // Stopped early, long before its 120 s, and says why.
    let why = v["stopped_early"].as_str().unwrap();
    assert!(why.contains("unreachable for"), "{why}");
    assert!(f(&v, "total_duration_seconds") < 120.0);
    // Reconnect attempts were shown while they happened, and counted apart from requests.
    assert!(err.contains("reconnect attempts failed"), "{err}");
    assert!(err.contains("stopping the run early"), "{err}");
    assert!(u(&v, "reconnect_failures") > 0);
    // Only requests in flight when the server went can have failed: attempts to reconnect
    // are not requests, and they are neither throughput nor latency samples.
    assert!(u(&v, "failed_requests") <= 4, "{}", v["failed_requests"]);
    assert_eq!(
        u(&v, "successful_requests") + u(&v, "failed_requests"),
        u(&v, "total_requests")
    );
    check_throughput(&v);
    check_timeline(&v);
    let timeline = v["timeline"].as_array().unwrap();
    let last = |k: &str| timeline.iter().rposition(|e| u(e, k) > 0).unwrap();
    assert!(
        last("reconnect_failures") >= last("requests"),
        "the outage ends the timeline: {timeline:?}"
    );
    // Never a pass, and the table says what happened.
    assert_eq!(v["verdict"], "FAIL");
    assert!(!table.contains("PASS"), "{table}");
    assert!(table.contains("Stopped early:"), "{table}");
    assert!(table.contains("Reconnects failed:"), "{table}");
    assert!(table.contains("Verdict: FAIL (stopped early:"), "{table}");
}

#[test]
fn a_count_bound_run_reports_what_it_never_sent() {
    let mut server = TestServer::default();
    let port = server.port;
    let (child, path) = spawn_json(
        port,
        "gone-count",
        &["-c", "2", "-r", "100000000", "--give-up", "1"],
    );
    wait_for_load(port);
    server.stop();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1));
    let planned = 2 * 100_000_000;
    assert!(u(&v, "not_sent_requests") > 0);
    assert_eq!(
        u(&v, "total_requests") + u(&v, "not_sent_requests"),
        planned,
        "every planned request was sent or counted as not sent"
    );
    assert_eq!(v["verdict"], "FAIL");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("Not sent:"), "{table}");
    assert!(!table.contains("PASS"), "{table}");
}

#[test]
fn the_verdicts_read_plainly() {
    let server = TestServer::default();
    let (out, v) = run_json(server.port, "verdict", &["-c", "2", "-r", "50"]);
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("minimum only"), "{table}");
    let verdict = v["verdict"].as_str().unwrap();
    assert!(["PASS", "MARGINAL", "FAIL"].contains(&verdict), "{verdict}");
    assert!(table.contains(&format!("Verdict: {verdict} (")), "{table}");
    assert_eq!(v["assessment"].as_array().unwrap().len(), 5);
}

#[test]
fn compare_alternates_rounds_and_the_report_embeds_the_json() {
    let a = TestServer::default();
    let b = TestServer::default();
    let html = std::env::temp_dir().join(format!(
        "kvcache-bench-test-{}-compare.html",
        std::process::id()
    ));
    let (out, v) = run_json(
        a.port,
        "compare",
        &[
            "-c",
            "2",
            "-r",
            "40",
            "--rounds",
            "2",
            "--compare",
            &format!("127.0.0.1:{}", b.port),
            "--report",
            html.to_str().unwrap(),
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    check_consistent(&v);
    let other = &v["compared_with"];
    check_consistent(other);
    assert_eq!(u(other, "port"), u64::from(b.port));
    assert_eq!(other["label"], format!("127.0.0.1:{}", b.port));
    // The same workload against each, in alternating rounds.
    for s in [&v, other] {
        assert_eq!(u(s, "total_requests"), 2 * 2 * 40);
        assert_eq!(s["round_results"].as_array().unwrap().len(), 2);
    }
    let t = |s: &Value, r: usize| f(&s["round_results"][r], "t");
    assert!(t(&v, 0) < t(other, 0) && t(other, 0) < t(&v, 1) && t(&v, 1) < t(other, 1));
    assert!(server_keys(a.port) > 0 && server_keys(b.port) > 0);
    assert!(
        table.contains(&format!("Round 2/2 127.0.0.1:{}", b.port)),
        "{table}"
    );

    // The page carries exactly the JSON --output wrote, and fetches nothing.
    let page = std::fs::read_to_string(&html).unwrap();
    let _ = std::fs::remove_file(&html);
    let open = r#"<script type="application/json" id="kvcache-data">"#;
    let start = page.find(open).unwrap() + open.len();
    let end = start + page[start..].find("</script>").unwrap();
    let embedded: Value = serde_json::from_str(&page[start..end]).unwrap();
    assert_eq!(embedded, v);
    assert!(page.contains("default-src 'none'"));
    for banned in [" src=", " href=", "url(", "@import", "fetch("] {
        assert!(!page.contains(banned), "{banned}");
    }
}

#[test]
fn memcache_pipelined_run_against_kvcache() {
    let server = TestServer::start_memcache(kvcache::config::Config::default());
    let mc_port = server.mc_addr.unwrap().port();
    let (out, v) = run_json(
        mc_port,
        "memcache",
        &[
            "--protocol",
            "memcache",
            "-P",
            "8",
            "-c",
            "3",
            "-r",
            "400",
            "--ttl",
            "60",
            "--value-size",
            "300",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    check_consistent(&v);
    assert_eq!(u(&v, "total_requests"), 1200);
    assert_eq!(u(&v, "failed_requests"), 0);
    assert_eq!(u(&v, "cache_hits"), u(&v, "get_count"));
    assert_eq!(v["protocol"], "memcache");
    assert_eq!(server_keys(server.port), u(&v, "put_count"));
}
