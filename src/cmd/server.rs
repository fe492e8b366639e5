//! The server as a whole: PING, STATS, INFO, CONFIG, COMMAND and TIME.

use super::{Context, REDIS_COMPAT_VERSION, Reply, glob_match};
use crate::protocol::resp::docs;
use crate::protocol::{self, Args, CommandCmd, FunctionCmd, Response};

pub(super) fn ping(w: &mut Reply<'_>, msg: Option<&[u8]>) {
    match msg {
        None => w.send(Response::Pong),
        Some(msg) => w.send(Response::Bulk(msg)),
    }
}

/// The line protocol's one-line STATS.
pub(super) fn stats_line(ctx: &Context, w: &mut Reply<'_>) {
    let st = ctx.store.stats();
    let used = st.memory + ctx.store.external_bytes();
    let rss = crate::stats::rss_bytes();
    let line = format!(
        "keys={} memory={} hits={} misses={} evictions={} expired={} connections={} uptime={} \
         rss={rss} mem_fragmentation_ratio={:.2}",
        st.keys,
        used,
        st.hits,
        st.misses,
        st.evictions,
        st.expired,
        ctx.stats.connections.get(),
        ctx.stats.uptime_secs(),
        if used > 0 {
            rss as f64 / used as f64
        } else {
            0.0
        },
    );
    let mut line = line;
    if ctx.config.tls_enabled() {
        use std::fmt::Write as _;
        for c in ctx.stats.tls_counters() {
            let _ = write!(line, " {}={}", c.name, c.get());
        }
    }
    w.send(Response::Simple(&line));
}

pub(super) fn config_get(ctx: &Context, w: &mut Reply<'_>, patterns: Args<'_>) {
    let params = ctx.config.redis_params();
    let matched: Vec<&(&str, String)> = params
        .iter()
        .filter(|(name, _)| {
            patterns
                .iter()
                .any(|p| glob_match(p, name.as_bytes(), true))
        })
        .collect();
    w.send(Response::Map(matched.len()));
    for (name, value) in matched {
        w.bulk_str(name);
        w.bulk_str(value);
    }
}

pub(super) fn config_other(w: &mut Reply<'_>, sub: &[u8]) {
    if sub.eq_ignore_ascii_case(b"help") {
        return help(w, "config");
    }
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    w.error(&format!(
        "ERR CONFIG {sub} is not supported by kvcache; change settings with flags, KV_CACHE_* or --config and restart"
    ));
}

pub(super) fn info(ctx: &Context, w: &mut Reply<'_>, sections: Args<'_>) {
    let text = info_text(ctx, sections);
    w.send(Response::Verbatim(text.as_bytes()));
}

/// FUNCTION: kvcache runs no scripts, so its function library is always empty and FLUSH has
/// nothing to do (Redis's test harness sends it before every test file).
pub(super) fn function(w: &mut Reply<'_>, cmd: FunctionCmd) {
    match cmd {
        FunctionCmd::Flush => w.send(Response::Ok),
        FunctionCmd::Help => {
            const HELP: &[&str] = &[
                "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "FLUSH [ASYNC|SYNC]",
                "    Delete all the libraries (kvcache runs no scripts: there are none).",
                "HELP",
                "    Prints this help.",
            ];
            w.send(Response::Array(HELP.len()));
            for line in HELP {
                w.send(Response::Simple(line));
            }
        }
    }
}

pub(super) fn time(w: &mut Reply<'_>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    w.send(Response::Array(2));
    w.bulk_str(itoa::Buffer::new().format(now.as_secs()));
    w.bulk_str(itoa::Buffer::new().format(now.subsec_micros()));
}

fn command_info(w: &mut Reply<'_>, c: &protocol::resp::CommandSpec) {
    w.send(Response::Array(10));
    w.bulk_str(c.name);
    w.send(Response::Int(c.arity as i64));
    w.send(Response::Set(c.flags.len()));
    for f in c.flags {
        w.send(Response::Simple(f));
    }
    w.send(Response::Int(c.first_key as i64));
    w.send(Response::Int(c.last_key as i64));
    w.send(Response::Int(c.step as i64));
    w.send(Response::Set(0));
    w.send(Response::Set(0));
    w.send(Response::Array(0));
    w.send(Response::Array(0));
}

fn lookup_spec(name: &[u8]) -> Option<&'static protocol::resp::CommandSpec> {
    let lower = name.to_ascii_lowercase();
    protocol::resp::command_spec(&lower)
}

pub(super) fn command(w: &mut Reply<'_>, cmd: CommandCmd<'_>) {
    let all = protocol::resp::COMMANDS;
    match cmd {
        CommandCmd::All => {
            w.send(Response::Array(all.len()));
            for c in all {
                command_info(w, c);
            }
        }
        CommandCmd::Count => w.send(Response::Int(all.len() as i64)),
        CommandCmd::List => {
            w.send(Response::Array(all.len()));
            for c in all {
                w.bulk_str(c.name);
            }
        }
        CommandCmd::Info(names) => {
            w.send(Response::Array(names.len()));
            for n in names.iter() {
                match lookup_spec(n) {
                    Some(c) => command_info(w, c),
                    None => w.send(Response::NilArray),
                }
            }
        }
        CommandCmd::Docs(names) => {
            let specs: Vec<&protocol::resp::CommandSpec> = if names.is_empty() {
                all.iter().collect()
            } else {
                names.iter().filter_map(lookup_spec).collect()
            };
            w.send(Response::Map(specs.len()));
            for c in specs {
                w.bulk_str(c.name);
                let args = docs::syntax(c.name).and_then(|s| docs::parse(s).ok());
                let subs: Vec<&docs::Subcommand> = docs::subcommands(c.name).collect();
                command_doc(w, c.summary, c.group, args.as_deref(), &subs);
            }
        }
        CommandCmd::Help => help(w, "command"),
    }
}

/// `<CONTAINER> HELP`: the subcommands with their syntax, as status lines.
fn help(w: &mut Reply<'_>, container: &str) {
    let lines = docs::help_lines(container);
    w.send(Response::Array(lines.len()));
    for l in &lines {
        w.send(Response::Simple(l));
    }
}

/// One command's COMMAND DOCS map: summary, since, group, then its arguments and
/// subcommands when it has any (redis-cli builds its hints and `help` from these).
fn command_doc(
    w: &mut Reply<'_>,
    summary: &str,
    group: &str,
    args: Option<&[docs::DocArg]>,
    subs: &[&docs::Subcommand],
) {
    let args = args.filter(|a| !a.is_empty());
    w.send(Response::Map(
        3 + usize::from(args.is_some()) + usize::from(!subs.is_empty()),
    ));
    w.bulk_str("summary");
    w.bulk_str(summary);
    w.bulk_str("since");
    w.bulk_str("1.0.0");
    w.bulk_str("group");
    w.bulk_str(group);
    if let Some(args) = args {
        w.bulk_str("arguments");
        doc_args(w, args);
    }
    if !subs.is_empty() {
        w.bulk_str("subcommands");
        w.send(Response::Map(subs.len()));
        for sub in subs {
            w.bulk_str(sub.name);
            let args = docs::parse(sub.syntax).ok();
            command_doc(w, sub.summary, group, args.as_deref(), &[]);
        }
    }
}

/// An argument list in Redis's COMMAND DOCS shape: one map per argument with name, type,
/// display_text, token, flags (a set of status strings) and nested arguments.
fn doc_args(w: &mut Reply<'_>, args: &[docs::DocArg]) {
    w.send(Response::Array(args.len()));
    for a in args {
        let container = matches!(a.kind, "oneof" | "block");
        let display = !container && a.kind != "pure-token";
        let flags: Vec<&str> = [(a.optional, "optional"), (a.multiple, "multiple")]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect();
        let fields = 2
            + usize::from(display)
            + usize::from(a.token.is_some())
            + usize::from(!flags.is_empty())
            + usize::from(container);
        w.send(Response::Map(fields));
        w.bulk_str("name");
        w.bulk_str(&a.name);
        w.bulk_str("type");
        w.bulk_str(a.kind);
        if display {
            w.bulk_str("display_text");
            w.bulk_str(&a.name);
        }
        if let Some(t) = &a.token {
            w.bulk_str("token");
            w.bulk_str(t);
        }
        if !flags.is_empty() {
            w.bulk_str("flags");
            w.send(Response::Set(flags.len()));
            for f in flags {
                w.send(Response::Simple(f));
            }
        }
        if container {
            w.bulk_str("arguments");
            doc_args(w, &a.args);
        }
    }
}

fn human(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.2}G", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.2}M", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// The INFO text: Redis section and field names where the meaning matches.
fn info_text(ctx: &Context, sections: Args<'_>) -> String {
    use std::fmt::Write as _;
    let wants = |name: &str| {
        sections.is_empty()
            || sections.iter().any(|s| {
                s.eq_ignore_ascii_case(name.as_bytes())
                    || s.eq_ignore_ascii_case(b"all")
                    || s.eq_ignore_ascii_case(b"everything")
                    || (s.eq_ignore_ascii_case(b"default") && name != "commandstats")
            })
    };
    let st = ctx.store.stats();
    let stats = &ctx.stats;
    let cfg = &ctx.config;
    let mut o = String::new();
    if wants("server") {
        let uptime = stats.uptime_secs();
        let _ = write!(
            o,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nkvcache_version:{}\r\nredis_mode:standalone\r\n\
             os:{} {}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\n\
             uptime_in_days:{}\r\nexecutable:kvcache-server\r\nconfig_file:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            cfg.port,
            uptime / 86400,
            cfg.config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        );
    }
    if wants("clients") {
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
            stats.connections.get(),
            cfg.max_connections
        );
    }
    if wants("memory") {
        let rss = crate::stats::rss_bytes();
        let used = st.memory + ctx.store.external_bytes();
        let m = ctx.store.memory_report();
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
             used_memory_rss_human:{}\r\nused_memory_dataset:{}\r\nkvcache_connection_buffers:{}\r\n\
             kvcache_record_held_bytes:{}\r\nkvcache_garbage_bytes:{}\r\nkvcache_cleaner_moved_records:{}\r\n\
             kvcache_free_segments_resident:{}\r\nkvcache_free_segments_released:{}\r\n\
             kvcache_index_slots:{}\r\nkvcache_index_resizing_shards:{}\r\n\
             maxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:allkeys-lru\r\n\
             mem_fragmentation_ratio:{:.2}\r\n\r\n",
            human(used),
            human(rss),
            st.memory,
            ctx.store.external_bytes(),
            st.held_bytes,
            m.garbage,
            m.moved,
            m.pool.warm,
            m.pool.cold,
            m.index_slots,
            m.resizing,
            cfg.max_memory,
            human(cfg.max_memory),
            if used > 0 {
                rss as f64 / used as f64
            } else {
                0.0
            },
        );
    }
    if wants("persistence") {
        super::persist::info_section(ctx, &mut o);
    }
    if wants("stats") {
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n\
             expired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\n\
             kvcache_protocol_errors:{}\r\nkvcache_idle_closed_connections:{}\r\nkvcache_request_timeout_closed_connections:{}\r\n\
             kvcache_oversize_closed_connections:{}\r\n\
             kvcache_output_limit_stalls:{}\r\nkvcache_auth_failures:{}\r\n\r\n",
            stats.connections_total.get(),
            stats.commands.get(),
            stats.connections_rejected.get(),
            st.expired,
            st.evictions,
            st.hits,
            st.misses,
            stats.protocol_errors.get(),
            stats.idle_closed.get(),
            stats.request_timeouts.get(),
            stats.oversize_closed.get(),
            stats.output_stalls.get(),
            stats.auth_failures.get(),
        );
        if cfg.tls_enabled() {
            o.truncate(o.len() - 2);
            for c in stats.tls_counters() {
                let _ = write!(o, "kvcache_{}:{}\r\n", c.name, c.get());
            }
            o.push_str("\r\n");
        }
    }
    if wants("keyspace") {
        o.push_str("# Keyspace\r\n");
        if st.keys > 0 {
            let _ = write!(
                o,
                "db0:keys={},expires={},avg_ttl=0\r\n",
                st.keys, st.keys_with_ttl
            );
        }
        o.push_str("\r\n");
    }
    while o.ends_with("\r\n\r\n") {
        o.truncate(o.len() - 2);
    }
    o
}
