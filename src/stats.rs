//! Server-wide counters, each named and described once, so STATS, INFO and any metrics
//! exporter read the same figures. Store counters (hits, evictions...) live in the store's
//! shards; these are the connection and command counters the store cannot see.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Whether a figure only grows (a counter) or goes up and down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only increases.
    Counter,
    /// Rises and falls.
    Gauge,
}

/// Slots per counter: each thread adds to its own (128-byte aligned) slot, so counting a
/// request writes no cache line another core writes; reads sum the slots. More threads than
/// slots share slots, still correct (the adds are atomic), just less spread out.
const SLOTS: usize = 16;

#[repr(align(128))]
#[derive(Debug)]
struct Slot(AtomicU64);

/// This thread's slot index, handed out round-robin the first time a thread counts something.
fn slot_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Relaxed) % SLOTS;
    }
    INDEX.with(|i| *i)
}

/// A named, described figure: a monotonically increasing counter or a gauge, kept per thread
/// and folded when read.
#[derive(Debug)]
pub struct Counter {
    slots: [Slot; SLOTS],
    /// Metric name (unique; see the test).
    pub name: &'static str,
    /// What it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// An older metric name still exported beside `name` for one release, so dashboards
    /// built on it keep working while they move over.
    pub deprecated_alias: Option<&'static str>,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Counter {
            slots: [const { Slot(AtomicU64::new(0)) }; SLOTS],
            name,
            help,
            kind: Kind::Counter,
            deprecated_alias: None,
        }
    }

    const fn with_alias(mut self, old: &'static str) -> Self {
        self.deprecated_alias = Some(old);
        self
    }

    const fn gauge(name: &'static str, help: &'static str) -> Self {
        Counter {
            slots: [const { Slot(AtomicU64::new(0)) }; SLOTS],
            name,
            help,
            kind: Kind::Gauge,
            deprecated_alias: None,
        }
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.slots[slot_index()].0.fetch_add(n, Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// Subtracts one (gauges only).
    #[inline]
    pub fn decr(&self) {
        self.slots[slot_index()].0.fetch_sub(1, Relaxed);
    }

    /// Current value: the sum of the threads' slots (a gauge's slots may each have wrapped
    /// below zero; the wrapping sum is the true figure).
    pub fn get(&self) -> u64 {
        self.slots
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Relaxed)))
    }
}

/// The server's counters. One instance per server, so servers in one process (tests) do not mix.
#[derive(Debug)]
pub struct Stats {
    /// Client connections open now.
    pub connections: Counter,
    /// Client connections accepted since start.
    pub connections_total: Counter,
    /// Connections refused at the cap.
    pub connections_rejected: Counter,
    /// Commands executed.
    pub commands: Counter,
    /// Malformed requests answered with an error.
    pub protocol_errors: Counter,
    /// Connections closed for idleness.
    pub idle_closed: Counter,
    /// Connections closed because a request stayed incomplete too long.
    pub request_timeouts: Counter,
    /// Connections closed for sending an oversized or corrupt request.
    pub oversize_closed: Counter,
    /// Times a connection was paused because its unsent replies passed the output limit.
    pub output_stalls: Counter,
    /// Failed AUTH attempts.
    pub auth_failures: Counter,
    /// TLS handshakes completed.
    pub tls_handshakes: Counter,
    /// Connections to the TLS port that sent something other than TLS (plain text).
    pub tls_not_tls: Counter,
    /// TLS handshakes that did not finish within the handshake timeout.
    pub tls_handshake_timeouts: Counter,
    /// TLS clients refused for a missing or untrusted client certificate.
    pub tls_client_cert_rejected: Counter,
    /// TLS handshakes that failed for any other reason (no common version or cipher, the
    /// client rejecting our certificate, a reset mid-handshake ...).
    pub tls_handshake_failures: Counter,
    /// Certificate reloads (SIGHUP) that took effect.
    pub tls_reloads: Counter,
    /// Certificate reloads refused (bad files); the previous certificate stayed in use.
    pub tls_reload_failures: Counter,
    /// memcached command counters (what memcached's `stats` reports), indexed by [`Mc`].
    pub memcache: [Counter; MC_COUNTERS],
    started: Instant,
    started_unix: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            connections: Counter::gauge("connected_clients", "Client connections open now"),
            connections_total: Counter::new(
                "connections_received",
                "Client connections accepted since start",
            )
            .with_alias("total_connections_received"),
            connections_rejected: Counter::new(
                "rejected_connections",
                "Connections refused at the connection cap",
            ),
            commands: Counter::new("commands_processed", "Commands executed since start")
                .with_alias("total_commands_processed"),
            protocol_errors: Counter::new(
                "protocol_errors",
                "Malformed requests answered with an error",
            ),
            idle_closed: Counter::new(
                "idle_closed_connections",
                "Connections closed by the idle timeout",
            ),
            request_timeouts: Counter::new(
                "request_timeout_closed_connections",
                "Connections closed because a request stayed incomplete past the request timeout",
            ),
            oversize_closed: Counter::new(
                "oversize_closed_connections",
                "Connections closed for an oversized or corrupt request",
            ),
            output_stalls: Counter::new(
                "output_limit_stalls",
                "Times reading paused because unsent replies passed the output limit",
            ),
            auth_failures: Counter::new("auth_failures", "Failed AUTH attempts"),
            tls_handshakes: Counter::new("tls_handshakes", "TLS handshakes completed"),
            tls_not_tls: Counter::new(
                "tls_not_tls_closed_connections",
                "Connections to the TLS port closed for sending something other than TLS",
            ),
            tls_handshake_timeouts: Counter::new(
                "tls_handshake_timeouts",
                "TLS connections closed because the handshake did not finish in time",
            ),
            tls_client_cert_rejected: Counter::new(
                "tls_client_cert_rejected",
                "TLS clients refused for a missing or untrusted client certificate",
            ),
            tls_handshake_failures: Counter::new(
                "tls_handshake_failures",
                "TLS handshakes that failed for another reason (version, cipher, reset ...)",
            ),
            tls_reloads: Counter::new(
                "tls_certificate_reloads",
                "TLS certificate reloads (SIGHUP) that took effect",
            ),
            tls_reload_failures: Counter::new(
                "tls_certificate_reload_failures",
                "TLS certificate reloads refused; the previous certificate stayed in use",
            ),
            memcache: MC_NAMES.map(|(name, help)| Counter::new(name, help)),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

impl Stats {
    /// Every counter, for exporters and INFO.
    pub fn counters(&self) -> [&Counter; 17] {
        [
            &self.connections,
            &self.connections_total,
            &self.connections_rejected,
            &self.commands,
            &self.protocol_errors,
            &self.idle_closed,
            &self.request_timeouts,
            &self.oversize_closed,
            &self.output_stalls,
            &self.auth_failures,
            &self.tls_handshakes,
            &self.tls_not_tls,
            &self.tls_handshake_timeouts,
            &self.tls_client_cert_rejected,
            &self.tls_handshake_failures,
            &self.tls_reloads,
            &self.tls_reload_failures,
        ]
    }

    /// The TLS counters, for STATS and INFO when TLS is on.
    pub fn tls_counters(&self) -> [&Counter; 7] {
        [
            &self.tls_handshakes,
            &self.tls_not_tls,
            &self.tls_handshake_timeouts,
            &self.tls_client_cert_rejected,
            &self.tls_handshake_failures,
            &self.tls_reloads,
            &self.tls_reload_failures,
        ]
    }

    /// Seconds since the server started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Unix time the server started.
    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }
}

/// The memcached command counters, in the order of [`MC_NAMES`]; connections count them
/// locally and add them to [`Stats::memcache`] once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Mc {
    CmdGet,
    CmdSet,
    CmdFlush,
    CmdTouch,
    GetHits,
    GetMisses,
    DeleteHits,
    DeleteMisses,
    IncrHits,
    IncrMisses,
    DecrHits,
    DecrMisses,
    CasHits,
    CasMisses,
    CasBadval,
    TouchHits,
    TouchMisses,
    AuthCmds,
    AuthErrors,
    TotalItems,
}

/// Number of memcached counters.
pub const MC_COUNTERS: usize = 20;

/// memcached's names for its counters (as `stats` prints them) and what each counts; the
/// Prometheus names add a `memcache_` prefix.
pub const MC_NAMES: [(&str, &str); MC_COUNTERS] = [
    (
        "cmd_get",
        "memcached keys looked up (get, gets, gat, gats, mg)",
    ),
    (
        "cmd_set",
        "memcached storage commands (set, add, replace, append, prepend, cas, ms)",
    ),
    ("cmd_flush", "memcached flush_all commands"),
    ("cmd_touch", "memcached keys touched (touch, gat, gats)"),
    ("get_hits", "memcached key lookups that found the key"),
    ("get_misses", "memcached key lookups that found nothing"),
    ("delete_hits", "memcached deletes that removed a key"),
    ("delete_misses", "memcached deletes of missing keys"),
    ("incr_hits", "memcached increments of existing keys"),
    ("incr_misses", "memcached increments of missing keys"),
    ("decr_hits", "memcached decrements of existing keys"),
    ("decr_misses", "memcached decrements of missing keys"),
    ("cas_hits", "memcached CAS writes that matched and stored"),
    ("cas_misses", "memcached CAS writes to missing keys"),
    (
        "cas_badval",
        "memcached CAS writes refused because the key changed",
    ),
    ("touch_hits", "memcached touches of existing keys"),
    ("touch_misses", "memcached touches of missing keys"),
    ("auth_cmds", "memcached authentication attempts"),
    ("auth_errors", "memcached authentication failures"),
    (
        "total_items",
        "Items stored through the memcached protocol since start",
    ),
];

/// Renders every server counter and the store's figures in the Prometheus text format
/// (version 0.0.4), each with its help line and type.
pub fn prometheus(
    stats: &Stats,
    store: &crate::store::StoreStats,
    external: usize,
    config: &crate::config::Config,
) -> String {
    use std::fmt::Write as _;
    let mut o = String::with_capacity(4096);
    let mut metric = |name: &str, help: &str, kind: Kind, value: u64| {
        let (kind, suffix) = match kind {
            Kind::Counter if !name.ends_with("_total") => ("counter", "_total"),
            Kind::Counter => ("counter", ""),
            Kind::Gauge => ("gauge", ""),
        };
        let _ = writeln!(o, "# HELP kvcache_{name}{suffix} {help}");
        let _ = writeln!(o, "# TYPE kvcache_{name}{suffix} {kind}");
        let _ = writeln!(o, "kvcache_{name}{suffix} {value}");
    };
    for c in stats.counters() {
        metric(c.name, c.help, c.kind, c.get());
    }
    // Old names (which said "total" twice) for one release; see the README's Monitoring.
    for c in stats.counters() {
        if let Some(old) = c.deprecated_alias {
            let help = format!(
                "Deprecated alias of kvcache_{}_total, removed in the next release",
                c.name
            );
            metric(old, &help, c.kind, c.get());
        }
    }
    for c in &stats.memcache {
        // memcached's own `total_items` would export as ..._total_items_total.
        let name = c.name.strip_prefix("total_").unwrap_or(c.name);
        metric(&format!("memcache_{name}"), c.help, c.kind, c.get());
    }
    let g = Kind::Gauge;
    let c = Kind::Counter;
    metric(
        "keys",
        "Keys stored (expired ones count until reclaimed)",
        g,
        store.keys as u64,
    );
    metric(
        "keys_with_ttl",
        "Keys that carry a TTL",
        g,
        store.keys_with_ttl as u64,
    );
    metric(
        "memory_used_bytes",
        "Accounted bytes: live records, indexes, bookkeeping and connection buffers",
        g,
        (store.memory + external) as u64,
    );
    metric(
        "connection_buffer_bytes",
        "Bytes held by connection read and write buffers",
        g,
        external as u64,
    );
    metric(
        "record_held_bytes",
        "Memory the records hold: segments (live records, garbage awaiting the cleaner, unused head space) and huge-record mappings",
        g,
        store.held_bytes as u64,
    );
    metric(
        "max_memory_bytes",
        "The memory limit (0 = none)",
        g,
        config.max_memory as u64,
    );
    metric(
        "max_keys",
        "The key-count limit (0 = none)",
        g,
        config.max_keys as u64,
    );
    metric(
        "resident_memory_bytes",
        "Resident set size of the process",
        g,
        rss_bytes() as u64,
    );
    metric(
        "keyspace_hits",
        "Value reads that found a live key",
        c,
        store.hits,
    );
    metric(
        "keyspace_misses",
        "Value reads that found nothing",
        c,
        store.misses,
    );
    metric(
        "evicted_keys",
        "Keys evicted to respect max-keys or max-memory",
        c,
        store.evictions,
    );
    metric(
        "expired_keys",
        "Keys removed because their TTL passed",
        c,
        store.expired,
    );
    metric(
        "uptime_seconds",
        "Seconds since the server started",
        g,
        stats.uptime_secs(),
    );
    o
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * page_size())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions; it only reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_unique_and_described() {
        let s = Stats::default();
        let mut names: Vec<_> = s.counters().iter().map(|c| c.name).collect();
        names.extend(s.memcache.iter().map(|c| c.name));
        assert!(s.counters().iter().all(|c| !c.help.is_empty()));
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }

    #[test]
    fn prometheus_text_has_help_type_and_unique_names() {
        let s = Stats::default();
        s.commands.add(3);
        let text = prometheus(
            &s,
            &crate::store::StoreStats::default(),
            0,
            &crate::config::Config::default(),
        );
        assert!(text.contains(
            "# TYPE kvcache_commands_processed_total counter\nkvcache_commands_processed_total 3\n"
        ));
        // No metric says "total" twice, except the documented deprecated aliases.
        let aliases: Vec<String> = s
            .counters()
            .iter()
            .filter_map(|c| c.deprecated_alias)
            .map(|a| format!("kvcache_{a}_total"))
            .collect();
        assert_eq!(aliases.len(), 2);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(' ').next().unwrap();
            assert!(
                name.matches("total").count() < 2 || aliases.iter().any(|a| a == name),
                "{name}"
            );
        }
        assert!(text.contains("# HELP kvcache_total_connections_received_total Deprecated alias of kvcache_connections_received_total"));
        assert!(text.contains("# TYPE kvcache_connected_clients gauge\n"));
        assert!(text.contains("\nkvcache_tls_handshake_timeouts_total 0\n"));
        assert!(text.contains("\nkvcache_tls_client_cert_rejected_total 0\n"));
        let names: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "metric names are unique");
    }

    #[test]
    fn counters_count() {
        let s = Stats::default();
        s.connections.incr();
        s.connections.incr();
        s.connections.decr();
        s.commands.add(5);
        assert_eq!((s.connections.get(), s.commands.get()), (1, 5));
        assert!(rss_bytes() > 0);
    }
}
