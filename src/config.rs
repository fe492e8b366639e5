//! Server settings: built-in defaults, overridden by a TOML file (`--config`), then by
//! `KV_CACHE_*` environment variables, then by command-line flags.
//!
//! Every value is parsed and checked here, once, so a bad setting stops start-up with one line
//! that names it ([`ConfigError`]) instead of surfacing later as odd behaviour.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;

use crate::protocol::{Limits, MAX_DISCARD};

/// A setting that could not be used: which one, the value given and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {reason}")]
pub struct ConfigError {
    /// The setting, as `name (--flag / KV_CACHE_NAME)`.
    pub setting: String,
    /// What is wrong with it, including the offending value.
    pub reason: String,
}

/// Command-line flags. Every flag also reads its `KV_CACHE_*` environment variable; values stay
/// strings here so that [`Config::from_cli`] can report errors in one consistent form.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "kvcache-server",
    version,
    allow_negative_numbers = true,
    about = "kvcache: an in-memory key-value cache speaking the KV-Cache line protocol and Redis RESP on one port.",
    after_help = "Precedence: flags > KV_CACHE_* environment variables > --config file (TOML, same names with \
underscores) > built-in defaults. Sizes accept plain bytes or units in any case: 1k=1000, 1kb=1kib=1024, \
likewise m/mb/mib and g/gb/gib (64mb, 64MiB, 1g)."
)]
pub struct Cli {
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long, env = "KV_CACHE_HOST", value_name = "ADDR")]
    pub host: Option<String>,
    /// TCP port; 0 picks a free one, or with --tls-port set turns the plain port off [default: 7171]
    #[arg(long, env = "KV_CACHE_PORT")]
    pub port: Option<String>,
    /// Most simultaneous client connections; more are told "ERROR too many connections" [default: 10000]
    #[arg(long, env = "KV_CACHE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,
    /// Longest line-protocol line; a longer one gets "ERROR line too long" and a close [default: 64kb]
    #[arg(long, env = "KV_CACHE_MAX_LINE", value_name = "BYTES")]
    pub max_line: Option<String>,
    /// Close connections idle this many seconds; 0 = never [default: 0]
    #[arg(long, env = "KV_CACHE_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<String>,
    /// Close a connection whose request stays incomplete this many seconds (slowloris); 0 = never [default: 30]
    #[arg(long, env = "KV_CACHE_REQUEST_TIMEOUT", value_name = "SECS")]
    pub request_timeout: Option<String>,
    /// Most keys stored before LRU eviction; 0 = no count limit [default: 0]
    #[arg(long, env = "KV_CACHE_MAX_KEYS", value_name = "N")]
    pub max_keys: Option<String>,
    /// Memory cap for data and connection buffers, evicting LRU keys beyond it; 0 = none [default: 1gb]
    #[arg(long, env = "KV_CACHE_MAX_MEMORY", value_name = "BYTES")]
    pub max_memory: Option<String>,
    /// Store shards, a power of two; 0 = 4 per CPU, at least 16 [default: 0]
    #[arg(long, env = "KV_CACHE_SHARDS", value_name = "N")]
    pub shards: Option<String>,
    /// Worker threads serving connections; 0 = one per CPU [default: 0]
    #[arg(long, env = "KV_CACHE_THREADS", value_name = "N")]
    pub threads: Option<String>,
    /// Thread layout: per-core (one event loop per thread, each accepting on its own
    /// SO_REUSEPORT socket) or shared (one work-stealing runtime) [default: per-core]
    #[arg(long, env = "KV_CACHE_RUNTIME", value_name = "LAYOUT")]
    pub runtime: Option<String>,
    /// Longest key over the Redis protocol (the line protocol keeps 256) [default: 16kb]
    #[arg(long, env = "KV_CACHE_MAX_KEY_SIZE", value_name = "BYTES")]
    pub max_key_size: Option<String>,
    /// Longest value over the Redis protocol (the line protocol keeps 256) [default: 512mb]
    #[arg(long, env = "KV_CACHE_MAX_VALUE_SIZE", value_name = "BYTES")]
    pub max_value_size: Option<String>,
    /// Most arguments in one Redis command [default: 1048576]
    #[arg(long, env = "KV_CACHE_MAX_ARGS", value_name = "N")]
    pub max_args: Option<String>,
    /// Most requests run from one read before replies are flushed and other connections get a turn [default: 1024]
    #[arg(long, env = "KV_CACHE_MAX_BATCH", value_name = "N")]
    pub max_batch: Option<String>,
    /// Unsent reply bytes per connection before the server stops reading from it [default: 1mb]
    #[arg(long, env = "KV_CACHE_OUTPUT_LIMIT", value_name = "BYTES")]
    pub output_limit: Option<String>,
    /// Serve Prometheus metrics over HTTP on this port (GET /metrics); 0 = off [default: 0]
    #[arg(long, env = "KV_CACHE_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<String>,
    /// Require AUTH with this password (prefer --password-file: flags show in process lists)
    #[arg(
        long,
        env = "KV_CACHE_PASSWORD",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Read the password from this file (first line)
    #[arg(long, env = "KV_CACHE_PASSWORD_FILE", value_name = "PATH")]
    pub password_file: Option<String>,
    /// Log connections and other debug detail (same as --log-level debug)
    #[arg(long, env = "KV_CACHE_DEBUG", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub debug: Option<String>,
    /// Log level: error, warn, info, debug or trace [default: info]
    #[arg(long, env = "KV_CACHE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// TOML file with settings (lowest precedence above the defaults)
    #[arg(long, env = "KV_CACHE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve TLS (both protocols) on this port; 0 = off [default: 0]
    #[arg(long, env = "KV_CACHE_TLS_PORT", value_name = "PORT")]
    pub tls_port: Option<String>,
    /// Server certificate chain (PEM), leaf first; reloaded on SIGHUP
    #[arg(long, env = "KV_CACHE_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// Private key of the certificate (PEM: PKCS#8, PKCS#1 or SEC1); reloaded on SIGHUP
    #[arg(long, env = "KV_CACHE_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<String>,
    /// CA certificates (PEM); when set, TLS clients must present a certificate signed by one
    #[arg(long, env = "KV_CACHE_TLS_CA_CERT_FILE", value_name = "FILE")]
    pub tls_ca_cert_file: Option<String>,
    /// Serve the memcached text and meta protocols on this port (same store); 0 = off [default: 0]
    #[arg(long, env = "KV_CACHE_MEMCACHE_PORT", value_name = "PORT")]
    pub memcache_port: Option<String>,
    /// Serve the memcached protocols over TLS on this port (needs --tls-cert-file/--tls-key-file); 0 = off [default: 0]
    #[arg(long, env = "KV_CACHE_MEMCACHE_TLS_PORT", value_name = "PORT")]
    pub memcache_tls_port: Option<String>,
    /// Snapshot file: loaded at start-up, saved on SIGTERM/SIGINT, SAVE, BGSAVE; empty = off [default: off]
    #[arg(long, env = "KV_CACHE_SNAPSHOT_FILE", value_name = "PATH")]
    pub snapshot_file: Option<String>,
    /// Also save the snapshot every this many seconds when keys changed; 0 = off [default: 0]
    #[arg(long, env = "KV_CACHE_SNAPSHOT_INTERVAL", value_name = "SECS")]
    pub snapshot_interval: Option<String>,
    /// Refuse to start (exit 2) when the snapshot file is bad, instead of moving it aside and starting empty
    #[arg(long, env = "KV_CACHE_SNAPSHOT_STRICT", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub snapshot_strict: Option<String>,
}

/// How connection-serving threads are organised (see docs/ARCHITECTURE.md, "Threads").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeLayout {
    /// One single-threaded event loop per worker thread, each accepting on its own
    /// `SO_REUSEPORT` listener: a connection lives on one thread, no work stealing, no
    /// cross-thread wake-ups.
    PerCore,
    /// One multi-threaded tokio runtime whose workers steal tasks from each other.
    Shared,
}

impl RuntimeLayout {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeLayout::PerCore => "per-core",
            RuntimeLayout::Shared => "shared",
        }
    }
}

/// The resolved, validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Listen address.
    pub host: String,
    /// Listen port (0 = any free port).
    pub port: u16,
    /// Connection cap.
    pub max_connections: usize,
    /// Line-protocol line limit in bytes.
    pub max_line: usize,
    /// Idle timeout in seconds (0 = never).
    pub idle_timeout: u64,
    /// Seconds a partly received request may take to complete (0 = no limit).
    pub request_timeout: u64,
    /// Key-count cap (0 = none).
    pub max_keys: usize,
    /// Memory cap in bytes (0 = none).
    pub max_memory: usize,
    /// When `max_memory` was not set and comes from the cgroup memory limit: that limit.
    pub max_memory_from_cgroup: Option<u64>,
    /// Shard count (0 = automatic).
    pub shards: usize,
    /// Runtime worker threads (0 = one per CPU).
    pub threads: usize,
    /// How the worker threads are organised.
    pub runtime: RuntimeLayout,
    /// RESP key limit.
    pub max_key_size: usize,
    /// RESP value limit.
    pub max_value_size: usize,
    /// RESP argument-count limit.
    pub max_args: usize,
    /// Requests per batch before a flush and a yield.
    pub max_batch: usize,
    /// Per-connection unsent-reply bound.
    pub output_limit: usize,
    /// Port of the Prometheus endpoint (0 = off).
    pub metrics_port: u16,
    /// Password required by AUTH, if any.
    pub password: Option<String>,
    /// Log level name.
    pub log_level: String,
    /// The config file used, if any.
    pub config_file: Option<PathBuf>,
    /// TLS port (0 = no TLS).
    pub tls_port: u16,
    /// Server certificate chain (PEM); set whenever `tls_port` is.
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM); set whenever `tls_port` is.
    pub tls_key_file: Option<PathBuf>,
    /// CA bundle that client certificates must chain to (mutual TLS), if any.
    pub tls_ca_cert_file: Option<PathBuf>,
    /// memcached protocol port (0 = off).
    pub memcache_port: u16,
    /// memcached protocol over TLS (0 = off).
    pub memcache_tls_port: u16,
    /// Snapshot file (`None` = snapshots off).
    pub snapshot_file: Option<PathBuf>,
    /// Seconds between periodic saves (0 = only on shutdown and on request).
    pub snapshot_interval: u64,
    /// Refuse to start on a bad snapshot file instead of moving it aside.
    pub snapshot_strict: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "0.0.0.0".into(),
            port: 7171,
            max_connections: 10_000,
            max_line: 64 * 1024,
            idle_timeout: 0,
            request_timeout: 30,
            max_keys: 0,
            max_memory: 1 << 30,
            max_memory_from_cgroup: None,
            shards: 0,
            threads: 0,
            runtime: RuntimeLayout::PerCore,
            max_key_size: 16 * 1024,
            max_value_size: 512 << 20,
            max_args: 1 << 20,
            max_batch: 1024,
            output_limit: 1 << 20,
            metrics_port: 0,
            password: None,
            log_level: "info".into(),
            config_file: None,
            tls_port: 0,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_cert_file: None,
            memcache_port: 0,
            memcache_tls_port: 0,
            snapshot_file: None,
            snapshot_interval: 0,
            snapshot_strict: false,
        }
    }
}

/// Names accepted in the config file (underscores or dashes), in `--help` order.
const FILE_KEYS: &[&str] = &[
    "host",
    "port",
    "max_connections",
    "max_line",
    "idle_timeout",
    "request_timeout",
    "max_keys",
    "max_memory",
    "shards",
    "threads",
    "runtime",
    "max_key_size",
    "max_value_size",
    "max_args",
    "max_batch",
    "output_limit",
    "metrics_port",
    "password",
    "password_file",
    "debug",
    "log_level",
    "tls_port",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_cert_file",
    "memcache_port",
    "memcache_tls_port",
    "snapshot_file",
    "snapshot_interval",
    "snapshot_strict",
];

fn label(name: &str) -> String {
    format!(
        "{name} (--{} / KV_CACHE_{})",
        name.replace('_', "-"),
        name.to_ascii_uppercase()
    )
}

/// Parses the process arguments with clap, but reports a usage error as one line
/// (`<program>: unexpected argument '--prot' found (see --help)`) with exit status 2, like
/// every other start-up error; `--help` and `--version` print as usual.
pub fn parse_args_or_exit<P: Parser>(program: &str) -> P {
    match P::try_parse() {
        Ok(p) => p,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{program}: {} (see --help)", clap_error_line(&e));
            std::process::exit(2);
        }
    }
}

/// A clap error on one line: its first line without the `error: ` prefix, plus clap's tips
/// (`a similar argument exists: '--port'`).
pub fn clap_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for tip in lines.filter_map(|l| l.trim().strip_prefix("tip: ")) {
        out.push_str("; ");
        out.push_str(tip);
    }
    out
}

/// The error for setting `name` given `value`, refused because of `why`.
/// The memory limit of the cgroup this process runs in (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`), if there is one. `KV_CACHE_CGROUP_ROOT` replaces `/sys/fs/cgroup`
/// (for tests).
pub fn cgroup_memory_limit() -> Option<u64> {
    let root = std::env::var("KV_CACHE_CGROUP_ROOT").unwrap_or_else(|_| "/sys/fs/cgroup".into());
    let read = |p: &str| std::fs::read_to_string(format!("{root}/{p}")).ok();
    // v2: this process's own cgroup ("0::/path" in /proc/self/cgroup; "/" in a container).
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_default();
    let own = own.trim().trim_matches('/');
    let v2 = if own.is_empty() {
        read("memory.max")
    } else {
        read(&format!("{own}/memory.max")).or_else(|| read("memory.max"))
    };
    if let Some(v) = v2 {
        return v.trim().parse().ok(); // "max" = no limit
    }
    let n: u64 = read("memory/memory.limit_in_bytes")?.trim().parse().ok()?;
    // v1 says "no limit" with a huge number (PAGE_COUNTER_MAX rounded to pages).
    (n < 1 << 60).then_some(n)
}

/// The default `--max-memory` under a cgroup limit: three quarters of it, less 8 MiB for what
/// the cap does not cover (the binary, thread stacks, the per-shard segment slack), so the whole
/// process stays under the limit (RSS is at most about 1.15x the cap plus that).
pub fn max_memory_for_limit(limit: u64) -> usize {
    ((limit / 4 * 3).saturating_sub(8 << 20)).max(1 << 20) as usize
}

pub(crate) fn bad(name: &str, value: &str, why: &str) -> ConfigError {
    ConfigError {
        setting: label(name),
        reason: format!("'{value}' {why}"),
    }
}

/// The snapshot path: empty means off; otherwise a file path (not a directory) whose
/// directory exists, so a typo is reported at start-up rather than at the first save.
fn check_snapshot_file(v: &str) -> Result<Option<PathBuf>, ConfigError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    let path = PathBuf::from(v);
    if path.is_dir() || v.ends_with('/') {
        return Err(bad(
            "snapshot_file",
            v,
            "is a directory; give a file path in it",
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(bad(
            "snapshot_file",
            v,
            &format!(
                "is in {}, which is not an existing directory",
                dir.display()
            ),
        ));
    }
    Ok(Some(path))
}

/// Parses a byte size the way Redis and memcached users write it, in any letter case:
/// `1k` = 1000, `1kb` = `1kib` = 1024, likewise m/mb/mib and g/gb/gib; `b` or no unit = bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" | "kib" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mib" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    usize::try_from(n.checked_mul(mult)?).ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn int_in(name: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = v.trim().parse().map_err(|_| {
        // "-1" is a whole number, just not one in range.
        let why = if v.trim().parse::<i128>().is_ok() {
            "is out of range"
        } else {
            "is not a whole number"
        };
        bad(name, v, &format!("{why} (expected {min} to {max})"))
    })?;
    if n < min || n > max {
        return Err(bad(
            name,
            v,
            &format!("is out of range (expected {min} to {max})"),
        ));
    }
    Ok(n)
}

fn size_in(name: &str, v: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    let n = parse_size(v).ok_or_else(|| {
        bad(
            name,
            v,
            "is not a size (bytes, or a number with k/kb/kib, m/mb/mib or g/gb/gib, e.g. 64mb)",
        )
    })?;
    if n < min || n > max {
        return Err(bad(
            name,
            v,
            &format!("is out of range (expected {min} to {max} bytes)"),
        ));
    }
    Ok(n)
}

/// How a setting read from the config file is named in errors: the file and the key as written.
fn file_label(name: &str, key: &str, path: &std::path::Path) -> String {
    format!("{name} (key '{key}' in config file {})", path.display())
}

/// Reads the TOML config file into setting-name -> (string value, key as written).
fn read_file(path: &PathBuf) -> Result<BTreeMap<String, (String, String)>, ConfigError> {
    let setting = || format!("config (--config / KV_CACHE_CONFIG) '{}'", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        setting: setting(),
        reason: format!("cannot be read: {e}"),
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
        setting: setting(),
        reason: format!("is not valid TOML: {}", e.message()),
    })?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let name = key.replace('-', "_");
        if !FILE_KEYS.contains(&name.as_str()) {
            return Err(ConfigError {
                setting: setting(),
                reason: format!("has unknown setting '{key}'"),
            });
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(ConfigError {
                    setting: file_label(&name, &key, path),
                    reason: format!(
                        "must be a string, number or boolean, not {}",
                        other.type_str()
                    ),
                });
            }
        };
        out.insert(name, (text, key));
    }
    Ok(out)
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the config file over the
    /// defaults, and validates everything. A bad value from the file is reported with the
    /// file and the key as written there.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let path = cli.config.clone();
        let mut from_file = Vec::new();
        Config::resolve(cli, &mut from_file).map_err(|mut e| {
            if let Some(path) = &path
                && let Some((name, key)) = from_file.iter().find(|(n, _)| e.setting == label(n))
            {
                e.setting = file_label(name, key, path);
            }
            e
        })
    }

    /// [`Config::from_cli`] without the error relabelling; notes in `from_file` which settings
    /// came from the file, under which key.
    fn resolve(
        cli: Cli,
        from_file: &mut Vec<(&'static str, String)>,
    ) -> Result<Config, ConfigError> {
        let mut file = match &cli.config {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let mut pick = |flag: Option<String>, name: &'static str| {
            flag.or_else(|| {
                let (value, key) = file.remove(name)?;
                from_file.push((name, key));
                Some(value)
            })
        };
        let d = Config::default();
        let mut c = Config {
            config_file: cli.config.clone(),
            ..Config::default()
        };
        if let Some(v) = pick(cli.host, "host") {
            if v.trim().is_empty() || v.contains(char::is_whitespace) {
                return Err(bad("host", &v, "is not a host name or address"));
            }
            c.host = v;
        }
        if let Some(v) = pick(cli.port, "port") {
            c.port = int_in("port", &v, 0, 65535)? as u16;
        }
        if let Some(v) = pick(cli.max_connections, "max_connections") {
            c.max_connections = int_in("max_connections", &v, 1, 1_000_000)? as usize;
        }
        if let Some(v) = pick(cli.max_line, "max_line") {
            c.max_line = size_in("max_line", &v, 1024, 1 << 30)?;
        }
        if let Some(v) = pick(cli.idle_timeout, "idle_timeout") {
            c.idle_timeout = int_in("idle_timeout", &v, 0, 100 * 365 * 86400)?;
        }
        if let Some(v) = pick(cli.request_timeout, "request_timeout") {
            c.request_timeout = int_in("request_timeout", &v, 0, 100 * 365 * 86400)?;
        }
        if let Some(v) = pick(cli.max_keys, "max_keys") {
            c.max_keys = int_in("max_keys", &v, 0, u32::MAX as u64 * 256)? as usize;
        }
        if let Some(v) = pick(cli.max_memory, "max_memory") {
            c.max_memory = size_in("max_memory", &v, 0, usize::MAX)?;
            if c.max_memory != 0 && c.max_memory < 1 << 20 {
                return Err(bad(
                    "max_memory",
                    &v,
                    "is too small (at least 1mb, or 0 for no limit)",
                ));
            }
        } else if let Some(limit) = cgroup_memory_limit() {
            c.max_memory = max_memory_for_limit(limit);
            c.max_memory_from_cgroup = Some(limit);
        }
        if let Some(v) = pick(cli.shards, "shards") {
            let n = int_in("shards", &v, 0, 4096)? as usize;
            if n != 0 && !n.is_power_of_two() {
                return Err(bad(
                    "shards",
                    &v,
                    "is not a power of two (or 0 for automatic)",
                ));
            }
            c.shards = n;
        }
        if let Some(v) = pick(cli.threads, "threads") {
            c.threads = int_in("threads", &v, 0, 1024)? as usize;
        }
        if let Some(v) = pick(cli.runtime, "runtime") {
            c.runtime = match v.to_ascii_lowercase().as_str() {
                "per-core" | "percore" => RuntimeLayout::PerCore,
                "shared" => RuntimeLayout::Shared,
                _ => return Err(bad("runtime", &v, "is not per-core or shared")),
            };
        }
        if let Some(v) = pick(cli.max_key_size, "max_key_size") {
            c.max_key_size = size_in("max_key_size", &v, 256, crate::store::MAX_KEY_LEN)?;
        }
        if let Some(v) = pick(cli.max_value_size, "max_value_size") {
            c.max_value_size = size_in("max_value_size", &v, 256, 512 << 20)?;
        }
        if let Some(v) = pick(cli.max_args, "max_args") {
            c.max_args = int_in("max_args", &v, 3, 1 << 24)? as usize;
        }
        if let Some(v) = pick(cli.max_batch, "max_batch") {
            c.max_batch = int_in("max_batch", &v, 1, 1 << 20)? as usize;
        }
        if let Some(v) = pick(cli.output_limit, "output_limit") {
            c.output_limit = size_in("output_limit", &v, 16 * 1024, 1 << 30)?;
        }
        if let Some(v) = pick(cli.metrics_port, "metrics_port") {
            c.metrics_port = int_in("metrics_port", &v, 0, 65535)? as u16;
        }
        let password = pick(cli.password, "password");
        let password_file = pick(cli.password_file, "password_file");
        c.password = match (password, password_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    setting: label("password"),
                    reason: "and password_file are both set; use one".into(),
                });
            }
            (Some(p), None) => Some(p),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| bad("password_file", &path, &format!("cannot be read: {e}")))?;
                Some(text.lines().next().unwrap_or("").to_string())
            }
            (None, None) => None,
        };
        if let Some(p) = &c.password {
            if p.is_empty() {
                return Err(ConfigError {
                    setting: label("password"),
                    reason: "is empty".into(),
                });
            }
            if p.len() > 512 || !p.bytes().all(|b| (0x21..=0x7E).contains(&b)) {
                return Err(ConfigError {
                    setting: label("password"),
                    reason: "must be 1-512 printable ASCII characters without spaces".into(),
                });
            }
        }
        let debug = match pick(cli.debug, "debug") {
            Some(v) => parse_bool(&v)
                .ok_or_else(|| bad("debug", &v, "is not a boolean (true/false/1/0)"))?,
            None => false,
        };
        if let Some(v) = pick(cli.log_level, "log_level") {
            let l = v.trim().to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&l.as_str()) {
                return Err(bad(
                    "log_level",
                    &v,
                    "is not one of error, warn, info, debug, trace",
                ));
            }
            c.log_level = l;
        }
        if debug && matches!(c.log_level.as_str(), "error" | "warn" | "info") {
            c.log_level = "debug".into();
        }
        if let Some(v) = pick(cli.tls_port, "tls_port") {
            c.tls_port = int_in("tls_port", &v, 0, 65535)? as u16;
        }
        let mut path = |flag: Option<String>, name: &'static str| match pick(flag, name) {
            Some(v) if v.trim().is_empty() => Err(bad(name, &v, "is empty")),
            other => Ok(other.map(PathBuf::from)),
        };
        c.tls_cert_file = path(cli.tls_cert_file, "tls_cert_file")?;
        c.tls_key_file = path(cli.tls_key_file, "tls_key_file")?;
        c.tls_ca_cert_file = path(cli.tls_ca_cert_file, "tls_ca_cert_file")?;
        if let Some(v) = pick(cli.memcache_port, "memcache_port") {
            c.memcache_port = int_in("memcache_port", &v, 0, 65535)? as u16;
        }
        if let Some(v) = pick(cli.memcache_tls_port, "memcache_tls_port") {
            c.memcache_tls_port = int_in("memcache_tls_port", &v, 0, 65535)? as u16;
        }
        c.check_tls()?;
        c.check_memcache()?;
        if let Some(v) = pick(cli.snapshot_file, "snapshot_file") {
            c.snapshot_file = check_snapshot_file(&v)?;
        }
        if let Some(v) = pick(cli.snapshot_interval, "snapshot_interval") {
            c.snapshot_interval = int_in("snapshot_interval", &v, 0, 100 * 365 * 86400)?;
            if c.snapshot_interval > 0 && c.snapshot_file.is_none() {
                return Err(bad(
                    "snapshot_interval",
                    &v,
                    "is set but snapshot_file is empty (off); set --snapshot-file too",
                ));
            }
        }
        if let Some(v) = pick(cli.snapshot_strict, "snapshot_strict") {
            c.snapshot_strict = parse_bool(&v)
                .ok_or_else(|| bad("snapshot_strict", &v, "is not a boolean (true/false/1/0)"))?;
        }
        debug_assert_eq!(d.port, 7171);
        Ok(c)
    }

    /// TLS settings must come together: a TLS port needs a certificate and key, and TLS files
    /// without a port would silently leave traffic in clear text.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let files = [
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
            ("tls_ca_cert_file", &self.tls_ca_cert_file),
        ];
        let why = |reason: String, name: &str| ConfigError {
            setting: label(name),
            reason,
        };
        if self.tls_port == 0 && self.memcache_tls_port == 0 {
            if let Some((name, _)) = files.iter().find(|(_, f)| f.is_some()) {
                return Err(why(
                    "is set but tls_port is 0 (off); set --tls-port to serve TLS".into(),
                    name,
                ));
            }
            return Ok(());
        }
        let (port_name, port) = if self.tls_port != 0 {
            ("tls_port", self.tls_port)
        } else {
            ("memcache_tls_port", self.memcache_tls_port)
        };
        for (name, file) in &files[..2] {
            if file.is_none() {
                return Err(why(format!("is required with {port_name} {port}"), name));
            }
        }
        if self.tls_port != 0 && self.tls_port == self.port {
            return Err(bad(
                "tls_port",
                &self.tls_port.to_string(),
                "is the same as port; give TLS its own port (or --port 0 to serve TLS only)",
            ));
        }
        Ok(())
    }

    /// The memcache ports must not collide with each other or with the RESP ports (a port
    /// speaks one family of protocols: `get k` means different things in the two).
    fn check_memcache(&self) -> Result<(), ConfigError> {
        let others = [("port", self.port), ("tls_port", self.tls_port)];
        for (name, mc) in [
            ("memcache_port", self.memcache_port),
            ("memcache_tls_port", self.memcache_tls_port),
        ] {
            if mc == 0 {
                continue;
            }
            if let Some((other, _)) = others.iter().find(|(_, p)| *p == mc) {
                return Err(bad(
                    name,
                    &mc.to_string(),
                    &format!("is the same as {other}; the memcached protocol needs its own port"),
                ));
            }
        }
        if self.memcache_port != 0 && self.memcache_port == self.memcache_tls_port {
            return Err(bad(
                "memcache_tls_port",
                &self.memcache_tls_port.to_string(),
                "is the same as memcache_port",
            ));
        }
        Ok(())
    }

    /// Whether the plain (unencrypted) port is served: `--port 0` means "any free port"
    /// without TLS and "no plain port" with TLS, as in Redis.
    pub fn serves_plain(&self) -> bool {
        self.port != 0 || self.tls_port == 0
    }

    /// Whether TLS is configured (for RESP, the memcached protocol, or both).
    pub fn tls_enabled(&self) -> bool {
        self.tls_port != 0 || self.memcache_tls_port != 0
    }

    /// Parses the process arguments and environment; on a bad setting or an unknown flag
    /// prints one line and exits with status 2.
    pub fn load() -> Config {
        let cli = parse_args_or_exit::<Cli>("kvcache-server");
        match Config::from_cli(cli) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kvcache-server: {e}");
                std::process::exit(2);
            }
        }
    }

    /// The decoder limits these settings imply.
    pub fn limits(&self) -> Limits {
        Limits {
            max_line: self.max_line,
            max_key: self.max_key_size,
            max_value: self.max_value_size,
            max_args: self.max_args,
            // A request may carry many values (MSET), but not unboundedly many: at most Redis's
            // default client-query-buffer-limit (1 GiB).
            max_request: (self.max_value_size.saturating_mul(4)).clamp(64 << 20, MAX_DISCARD),
            max_batch: self.max_batch,
            max_discard: MAX_DISCARD,
        }
    }

    /// `host:port` as given.
    pub fn addr(&self) -> String {
        self.addr_with_port(self.port)
    }

    /// `host:port` for another port on the same host (the metrics endpoint).
    pub fn addr_with_port(&self, port: u16) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, port)
        } else {
            format!("{}:{}", self.host, port)
        }
    }

    /// Settings as Redis `CONFIG GET` names them, with our values.
    pub fn redis_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("bind", self.host.clone()),
            ("port", self.port.to_string()),
            ("maxclients", self.max_connections.to_string()),
            ("maxmemory", self.max_memory.to_string()),
            ("maxmemory-policy", "allkeys-lru".into()),
            ("timeout", self.idle_timeout.to_string()),
            ("databases", "1".into()),
            ("proto-max-bulk-len", self.max_value_size.to_string()),
            (
                "client-query-buffer-limit",
                self.limits().max_request.to_string(),
            ),
            (
                "save",
                match (&self.snapshot_file, self.snapshot_interval) {
                    (Some(_), n) if n > 0 => format!("{n} 1"),
                    _ => String::new(),
                },
            ),
            (
                "dir",
                self.snapshot_file
                    .as_ref()
                    .and_then(|p| p.parent())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "dbfilename",
                self.snapshot_file
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            ("appendonly", "no".into()),
            ("tcp-keepalive", "300".into()),
            ("loglevel", self.log_level.clone()),
            ("kvcache-max-keys", self.max_keys.to_string()),
            ("kvcache-max-line", self.max_line.to_string()),
            ("kvcache-max-key-size", self.max_key_size.to_string()),
            ("kvcache-shards", self.shards.to_string()),
            ("kvcache-threads", self.threads.to_string()),
            ("kvcache-runtime", self.runtime.as_str().to_string()),
            ("tls-port", self.tls_port.to_string()),
            ("kvcache-memcache-port", self.memcache_port.to_string()),
            (
                "tls-auth-clients",
                if self.tls_ca_cert_file.is_some() {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["kvcache-server"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::from_cli(Cli::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.port, 7171);
        assert_eq!(c.max_memory, 1 << 30);
        assert_eq!(c.addr(), "0.0.0.0:7171");
    }

    #[test]
    fn sizes_follow_redis_units() {
        assert_eq!(parse_size("64mb"), Some(64 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("1k"), Some(1000));
        assert_eq!(parse_size("1kb"), Some(1024));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("12 mb"), Some(12 << 20));
        // memcached and Redis users write units every way; all of these are accepted.
        for (text, bytes) in [
            ("64mib", 64 << 20),
            ("64MiB", 64 << 20),
            ("64MB", 64 << 20),
            ("64m", 64_000_000),
            ("64M", 64_000_000),
            ("2KiB", 2048),
            ("2kb", 2048),
            ("2K", 2000),
            ("1gib", 1 << 30),
            ("1G", 1_000_000_000),
            ("512b", 512),
            ("512B", 512),
        ] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        for bad in ["", "mb", "1tb", "-1", "1.5gb", "abc", "1kibi", "1 k b"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let c = Config::from_cli(cli(&[
            "--port",
            "0",
            "--max-memory",
            "64mb",
            "--max-keys",
            "5",
            "--debug",
        ]))
        .unwrap();
        assert_eq!((c.port, c.max_memory, c.max_keys), (0, 64 << 20, 5));
        assert_eq!(c.log_level, "debug");
        let e = Config::from_cli(cli(&["--port", "70000"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid port (--port / KV_CACHE_PORT): '70000' is out of range (expected 0 to 65535)"
        );
        let e = Config::from_cli(cli(&["--max-memory", "lots"])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid max_memory (--max-memory / KV_CACHE_MAX_MEMORY): 'lots'")
        );
        // A negative number is a value, not a flag, and gets the same one-line error.
        let e = Config::from_cli(cli(&["--port", "-1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid port (--port / KV_CACHE_PORT): '-1' is out of range (expected 0 to 65535)"
        );
        let c = Config::from_cli(cli(&["--max-memory", "64MiB", "--max-line", "2k"])).unwrap();
        assert_eq!((c.max_memory, c.max_line), (64 << 20, 2000));
        let e = Config::from_cli(cli(&["--shards", "3"])).unwrap_err();
        assert!(e.to_string().contains("power of two"));
        let e = Config::from_cli(cli(&["--log-level", "loud"])).unwrap_err();
        assert!(e.to_string().contains("log_level"));
    }

    #[test]
    fn file_sits_below_flags() {
        let dir = std::env::temp_dir().join(format!("kvcache-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kv.toml");
        std::fs::write(&path, "port = 9000\nmax-memory = \"64mb\"\nmax_keys = 10\n").unwrap();
        let p = path.to_str().unwrap();
        let c = Config::from_cli(cli(&["--config", p, "--max-keys", "20"])).unwrap();
        assert_eq!((c.port, c.max_memory, c.max_keys), (9000, 64 << 20, 20));
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let e = Config::from_cli(cli(&["--config", p])).unwrap_err();
        assert!(e.to_string().contains("unknown setting 'prot'"), "{e}");
        // A bad value names the file and the key as written there.
        std::fs::write(&path, "port = [1]\n").unwrap();
        let e = Config::from_cli(cli(&["--config", p])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid port (key 'port' in config file {p}): must be a string, number or boolean, not array"
            )
        );
        std::fs::write(&path, "max-memory = \"lots\"\nport = 1\n").unwrap();
        let e = Config::from_cli(cli(&["--config", p])).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "invalid max_memory (key 'max-memory' in config file {p}): 'lots' is not a size"
            )),
            "{e}"
        );
        // The same setting given as a flag is named as the flag, even with a file.
        let e = Config::from_cli(cli(&["--config", p, "--max-memory", "nope"])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid max_memory (--max-memory / KV_CACHE_MAX_MEMORY): 'nope'"),
            "{e}"
        );
        std::fs::write(&path, "max_memory = \"64MiB\"\n").unwrap();
        let c = Config::from_cli(cli(&["--config", p])).unwrap();
        assert_eq!(c.max_memory, 64 << 20);
        std::fs::write(&path, "port = \n").unwrap();
        assert!(
            Config::from_cli(cli(&["--config", p]))
                .unwrap_err()
                .to_string()
                .contains("TOML")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_settings_come_together() {
        let c = Config::from_cli(cli(&[
            "--tls-port",
            "6380",
            "--tls-cert-file",
            "c.pem",
            "--tls-key-file",
            "k.pem",
        ]))
        .unwrap();
        assert_eq!(c.tls_port, 6380);
        assert_eq!(
            c.tls_cert_file.as_deref(),
            Some(std::path::Path::new("c.pem"))
        );
        assert!(c.tls_enabled() && c.serves_plain());
        let e = Config::from_cli(cli(&["--tls-port", "6380"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid tls_cert_file (--tls-cert-file / KV_CACHE_TLS_CERT_FILE): is required with tls_port 6380"
        );
        let e = Config::from_cli(cli(&["--tls-port", "6380", "--tls-cert-file", "c"])).unwrap_err();
        assert!(e.to_string().starts_with("invalid tls_key_file"), "{e}");
        let e = Config::from_cli(cli(&["--tls-cert-file", "c.pem"])).unwrap_err();
        assert!(e.to_string().contains("tls_port is 0 (off)"), "{e}");
        let e = Config::from_cli(cli(&["--tls-port", "http"])).unwrap_err();
        assert!(e.to_string().starts_with("invalid tls_port"), "{e}");
        let tls = ["--tls-cert-file", "c", "--tls-key-file", "k"];
        let e = Config::from_cli(cli(&[&["--tls-port", "7171"][..], &tls].concat())).unwrap_err();
        assert!(e.to_string().contains("same as port"), "{e}");
        // --port 0 with TLS: TLS only; without TLS: any free port.
        let c = Config::from_cli(cli(
            &[&["--port", "0", "--tls-port", "6380"][..], &tls].concat()
        ))
        .unwrap();
        assert!(!c.serves_plain());
        assert!(
            Config::from_cli(cli(&["--port", "0"]))
                .unwrap()
                .serves_plain()
        );
    }

    #[test]
    fn memcache_ports() {
        let c = Config::from_cli(cli(&["--memcache-port", "11211"])).unwrap();
        assert_eq!((c.memcache_port, c.memcache_tls_port), (11211, 0));
        assert!(!c.tls_enabled());
        let e = Config::from_cli(cli(&["--memcache-port", "7171"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid memcache_port (--memcache-port / KV_CACHE_MEMCACHE_PORT): '7171' is the same as port; the memcached protocol needs its own port"
        );
        let e = Config::from_cli(cli(&["--memcache-port", "x"])).unwrap_err();
        assert!(e.to_string().starts_with("invalid memcache_port"), "{e}");
        let e = Config::from_cli(cli(&["--memcache-tls-port", "11212"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("is required with memcache_tls_port 11212"),
            "{e}"
        );
        let tls = ["--tls-cert-file", "c", "--tls-key-file", "k"];
        let c =
            Config::from_cli(cli(&[&["--memcache-tls-port", "11212"][..], &tls].concat())).unwrap();
        assert!(c.tls_enabled() && c.tls_port == 0 && c.serves_plain());
    }

    #[test]
    fn snapshot_settings() {
        let c = Config::from_cli(cli(&[])).unwrap();
        assert_eq!(
            (c.snapshot_file, c.snapshot_interval, c.snapshot_strict),
            (None, 0, false)
        );
        let dir = std::env::temp_dir();
        let file = dir.join("kv.snap");
        let f = file.to_str().unwrap();
        let c = Config::from_cli(cli(&[
            "--snapshot-file",
            f,
            "--snapshot-interval",
            "60",
            "--snapshot-strict",
        ]))
        .unwrap();
        assert_eq!(c.snapshot_file.as_deref(), Some(file.as_path()));
        assert_eq!((c.snapshot_interval, c.snapshot_strict), (60, true));
        assert!(c.redis_params().contains(&("save", "60 1".into())));
        assert!(c.redis_params().contains(&("dbfilename", "kv.snap".into())));
        // Empty means off.
        let c = Config::from_cli(cli(&["--snapshot-file", ""])).unwrap();
        assert_eq!(c.snapshot_file, None);
        let e = Config::from_cli(cli(&["--snapshot-file", dir.to_str().unwrap()])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid snapshot_file (--snapshot-file / KV_CACHE_SNAPSHOT_FILE)"),
            "{e}"
        );
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e =
            Config::from_cli(cli(&["--snapshot-file", "/nonexistent-dir/kv.snap"])).unwrap_err();
        assert!(e.to_string().contains("not an existing directory"), "{e}");
        let e = Config::from_cli(cli(&["--snapshot-interval", "5"])).unwrap_err();
        assert!(e.to_string().contains("snapshot_file is empty"), "{e}");
        let e = Config::from_cli(cli(&["--snapshot-file", f, "--snapshot-interval", "soon"]))
            .unwrap_err();
        assert!(
            e.to_string().starts_with("invalid snapshot_interval"),
            "{e}"
        );
        let e = Config::from_cli(cli(&["--snapshot-strict", "maybe"])).unwrap_err();
        assert!(e.to_string().starts_with("invalid snapshot_strict"), "{e}");
    }

    #[test]
    fn password_rules() {
        let c = Config::from_cli(cli(&["--password", "s3cret"])).unwrap();
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert!(Config::from_cli(cli(&["--password", "has space"])).is_err());
        let e = Config::from_cli(cli(&["--password-file", "/nonexistent/pw"])).unwrap_err();
        assert!(e.to_string().contains("password_file"));
    }
}
