//! Where requests meet the store: [`execute`] runs one decoded [`Request`] and encodes its
//! reply for the connection's protocol. Nothing else in the crate touches both.

use std::borrow::Cow;
use std::sync::Arc;

use crate::config::Config;
use crate::protocol::{
    self, Args, ClientCmd, CommandCmd, ExpireCond, ExpireSpec, GetExMode, Proto, Request, Response,
    SetCond, SetKind,
};
use crate::stats::Stats;
use crate::store::{Access, Store, StoreError, Ttl, Write};

/// The version INFO and HELLO report for Redis compatibility (clients gate features on it).
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// Everything a command may need besides its connection: shared by all connections.
pub struct Context {
    /// The data.
    pub store: Arc<Store>,
    /// Server counters.
    pub stats: Arc<Stats>,
    /// Settings (for CONFIG GET, INFO and limits).
    pub config: Arc<Config>,
}

/// Per-connection state commands read and change.
#[derive(Debug)]
pub struct Session {
    /// Protocol (and RESP version) of the connection.
    pub proto: Proto,
    /// Whether AUTH succeeded (always true without a password).
    pub authenticated: bool,
    /// Connection id (CLIENT ID).
    pub id: u64,
    /// CLIENT SETNAME.
    pub name: Option<Vec<u8>>,
    /// Peer address, for CLIENT INFO.
    pub peer: String,
}

/// Whether the connection carries on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Flush replies and close (QUIT).
    Close,
}

/// Encodes responses for one connection into its output buffer.
struct Reply<'o> {
    proto: Proto,
    out: &'o mut Vec<u8>,
}

impl Reply<'_> {
    #[inline]
    fn send(&mut self, r: Response<'_>) {
        protocol::encode(self.proto, r, self.out);
    }

    fn error(&mut self, msg: &str) {
        self.send(Response::Error(msg));
    }

    fn bulk_str(&mut self, s: &str) {
        self.send(Response::Bulk(s.as_bytes()));
    }
}

const NOT_INT: &str = "ERR value is not an integer or out of range";

fn store_error(e: StoreError) -> &'static str {
    match e {
        StoreError::KeyTooLong => "ERR key too long",
        StoreError::TooLarge => "ERR value too large for max-memory",
        StoreError::Full => "ERR store is full",
    }
}

/// Compares secrets without an early exit, so response time does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box((x ^ y) as usize);
    }
    diff == 0
}

/// Turns a requested expiry into an absolute deadline in unix ms. `Err` when it overflows;
/// a result at or before `now` means "already expired".
fn deadline(spec: ExpireSpec, now: u64, cmd: &str) -> Result<u64, String> {
    let now = now as i128;
    let at: i128 = match spec {
        ExpireSpec::Seconds(s) => now + s as i128 * 1000,
        ExpireSpec::Millis(ms) => now + ms as i128,
        ExpireSpec::UnixSeconds(s) => s as i128 * 1000,
        ExpireSpec::UnixMillis(ms) => ms as i128,
    };
    if at > i64::MAX as i128
        || matches!(spec, ExpireSpec::Seconds(s) | ExpireSpec::UnixSeconds(s) if s.checked_mul(1000).is_none())
    {
        return Err(format!("ERR invalid expire time in '{cmd}' command"));
    }
    Ok(at.max(0) as u64)
}

/// Runs one request and appends its reply (if any) to `out`.
pub fn execute(ctx: &Context, s: &mut Session, req: Request<'_>, out: &mut Vec<u8>) -> Flow {
    let mut w = Reply {
        proto: s.proto,
        out,
    };
    if !s.authenticated
        && !matches!(
            req,
            Request::Auth(..) | Request::Quit | Request::Hello { .. } | Request::Error(_)
        )
    {
        w.send(Response::NoAuth);
        return Flow::Continue;
    }
    let store = &*ctx.store;
    match req {
        Request::Get(key) => {
            if store.get(key, |v| w.send(Response::Bulk(v))).is_none() {
                w.send(Response::Nil);
            }
        }
        Request::Set {
            kind,
            key,
            value,
            expire,
            cond,
            keep_ttl,
            get,
        } => set(ctx, &mut w, kind, key, value, expire, cond, keep_ttl, get),
        Request::Delete(key) => w.send(if store.delete(key) {
            Response::Deleted
        } else {
            Response::Nil
        }),
        Request::Exists(key) => w.send(Response::Int(store.contains(key) as i64)),
        Request::ExistsMany(keys) => {
            let n = keys.iter().filter(|k| store.contains(k)).count();
            w.send(Response::Int(n as i64));
        }
        Request::Del(keys) => {
            let n = keys.iter().filter(|k| store.delete(k)).count();
            w.send(Response::Int(n as i64));
        }
        Request::GetDel(key) => {
            let found = store.update(key, Access::Read, |e| match e {
                Some(e) => {
                    w.send(Response::Bulk(e.value));
                    (Write::Delete, true)
                }
                None => (Write::Keep, false),
            });
            if !matches!(found, Ok(true)) {
                w.send(Response::Nil);
            }
        }
        Request::GetEx(key, mode) => {
            let ttl = match mode {
                GetExMode::Keep => None,
                GetExMode::Persist => Some(None),
                GetExMode::Expire(spec) => match deadline(spec, store.now_ms(), "getex") {
                    Ok(at) => Some(Some(at)),
                    Err(e) => return error(&mut w, &e),
                },
            };
            let found = store.update(key, Access::Read, |e| match e {
                Some(e) => {
                    w.send(Response::Bulk(e.value));
                    (ttl.map_or(Write::Keep, Write::Expire), true)
                }
                None => (Write::Keep, false),
            });
            if !matches!(found, Ok(true)) {
                w.send(Response::Nil);
            }
        }
        Request::MGet(keys) => {
            w.send(Response::Array(keys.len()));
            for k in keys.iter() {
                if store.get(k, |v| w.send(Response::Bulk(v))).is_none() {
                    w.send(Response::Nil);
                }
            }
        }
        Request::MSet(pairs) => {
            if let Err(e) = check_values(ctx, pairs) {
                return error(&mut w, &e);
            }
            match mset(store, pairs) {
                Ok(()) => w.send(Response::Ok),
                Err(e) => w.error(store_error(e)),
            }
        }
        Request::MSetNx(pairs) => {
            if let Err(e) = check_values(ctx, pairs) {
                return error(&mut w, &e);
            }
            let any = (0..pairs.len())
                .step_by(2)
                .any(|i| store.contains(pairs.get(i)));
            if any {
                w.send(Response::Int(0));
            } else {
                match mset(store, pairs) {
                    Ok(()) => w.send(Response::Int(1)),
                    Err(e) => w.error(store_error(e)),
                }
            }
        }
        Request::Append(key, tail) => {
            let max = ctx.config.max_value_size;
            let r = store.update(key, Access::Write, |e| match e {
                Some(e) if e.value.len() + tail.len() > max => (Write::Keep, Err(())),
                Some(e) => {
                    let mut v = Vec::with_capacity(e.value.len() + tail.len());
                    v.extend_from_slice(e.value);
                    v.extend_from_slice(tail);
                    let n = v.len();
                    (Write::Put(Cow::Owned(v), Ttl::Keep), Ok(n))
                }
                None => (
                    Write::Put(Cow::Borrowed(tail), Ttl::Persist),
                    Ok(tail.len()),
                ),
            });
            match r {
                Ok(Ok(n)) => w.send(Response::Int(n as i64)),
                Ok(Err(())) => {
                    w.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
                }
                Err(e) => w.error(store_error(e)),
            }
        }
        Request::StrLen(key) => {
            let n = store
                .update(key, Access::Peek, |e| {
                    (Write::Keep, e.map_or(0, |e| e.value.len()))
                })
                .unwrap_or(0);
            w.send(Response::Int(n as i64));
        }
        Request::IncrBy(key, by) => {
            let mut digits = itoa::Buffer::new();
            let r = store.update(key, Access::Write, |e| {
                let current = match e {
                    Some(e) => match protocol::resp::parse_i64(e.value) {
                        Some(n) => n,
                        None => return (Write::Keep, Err(NOT_INT)),
                    },
                    None => 0,
                };
                match current.checked_add(by) {
                    Some(n) => {
                        let text = digits.format(n).as_bytes();
                        (Write::Put(Cow::Borrowed(text), Ttl::Keep), Ok(n))
                    }
                    None => (
                        Write::Keep,
                        Err("ERR increment or decrement would overflow"),
                    ),
                }
            });
            match r {
                Ok(Ok(n)) => w.send(Response::Int(n)),
                Ok(Err(msg)) => w.error(msg),
                Err(e) => w.error(store_error(e)),
            }
        }
        Request::Type(key) => w.send(Response::Simple(if store.contains(key) {
            "string"
        } else {
            "none"
        })),
        Request::Expire(key, spec, cond, name) => expire(ctx, &mut w, key, spec, cond, name),
        Request::Ttl(key, millis) => {
            let now = store.now_ms();
            let ttl = store
                .update(key, Access::Peek, |e| {
                    let t = match e {
                        None => -2,
                        Some(e) => match e.expires_at {
                            None => -1,
                            Some(at) => at.saturating_sub(now) as i64,
                        },
                    };
                    (Write::Keep, t)
                })
                .unwrap_or(-2);
            let ttl = if ttl < 0 || millis {
                ttl
            } else {
                (ttl + 500) / 1000
            };
            w.send(Response::Int(ttl));
        }
        Request::Persist(key) => {
            let r = store.update(key, Access::Write, |e| match e {
                Some(e) if e.expires_at.is_some() => (Write::Expire(None), 1),
                _ => (Write::Keep, 0),
            });
            match r {
                Ok(n) => w.send(Response::Int(n)),
                Err(e) => w.error(store_error(e)),
            }
        }
        Request::Scan {
            cursor,
            pattern,
            count,
            kind,
        } => {
            let strings_only = kind.is_none_or(|k| k.eq_ignore_ascii_case(b"string"));
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let next = store.scan(cursor, count, |k| {
                if strings_only && pattern.is_none_or(|p| glob_match(p, k, false)) {
                    keys.push(k.to_vec());
                }
            });
            w.send(Response::Array(2));
            w.bulk_str(itoa::Buffer::new().format(next));
            w.send(Response::Array(keys.len()));
            for k in &keys {
                w.send(Response::Bulk(k));
            }
        }
        Request::Keys(pattern) => {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            let mut cursor = 0;
            loop {
                cursor = store.scan(cursor, 4096, |k| {
                    if glob_match(pattern, k, false) {
                        keys.push(k.to_vec());
                    }
                });
                if cursor == 0 {
                    break;
                }
            }
            w.send(Response::Array(keys.len()));
            for k in &keys {
                w.send(Response::Bulk(k));
            }
        }
        Request::RandomKey => match store.random_key() {
            Some(k) => w.send(Response::Bulk(&k)),
            None => w.send(Response::Nil),
        },
        Request::DbSize => w.send(Response::Int(store.len() as i64)),
        Request::Flush(background) => {
            store.flush(background);
            w.send(Response::Ok);
        }
        Request::Ping(None) => w.send(Response::Pong),
        Request::Ping(Some(msg)) | Request::Echo(msg) => w.send(Response::Bulk(msg)),
        Request::Quit => {
            if s.proto != Proto::Text {
                w.send(Response::Ok);
            }
            return Flow::Close;
        }
        Request::Stats => {
            let st = store.stats();
            let line = format!(
                "keys={} memory={} hits={} misses={} evictions={} expired={} connections={} uptime={}",
                st.keys,
                st.memory,
                st.hits,
                st.misses,
                st.evictions,
                st.expired,
                ctx.stats.connections.get(),
                ctx.stats.uptime_secs()
            );
            w.send(Response::Simple(&line));
        }
        Request::Auth(user, password) => {
            let Some(expected) = &ctx.config.password else {
                // As Redis with no password: the default user takes any password; other
                // users do not exist.
                if let Some(u) = user {
                    if u == b"default" {
                        w.send(Response::Authenticated);
                    } else {
                        w.send(Response::WrongPass);
                    }
                    return Flow::Continue;
                }
                w.error(
                    "ERR AUTH <password> called without any password configured for the default user. \
                     Are you sure your configuration is correct?",
                );
                return Flow::Continue;
            };
            let user_ok = user.is_none_or(|u| u == b"default");
            if user_ok & constant_time_eq(password, expected.as_bytes()) {
                s.authenticated = true;
                w.send(Response::Authenticated);
            } else {
                ctx.stats.auth_failures.incr();
                w.send(Response::WrongPass);
            }
        }
        Request::Select(db) => {
            if db == 0 {
                w.send(Response::Ok);
            } else {
                w.error("ERR DB index is out of range");
            }
        }
        Request::Hello { proto, auth, name } => hello(ctx, s, &mut w, proto, auth, name),
        Request::Client(cmd) => client(s, &mut w, cmd),
        Request::Command(cmd) => command(&mut w, cmd),
        Request::ConfigGet(patterns) => {
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
        Request::ConfigOther(sub) => {
            let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
            w.error(&format!(
                "ERR CONFIG {sub} is not supported by kvcache; change settings with flags, KV_CACHE_* or --config and restart"
            ));
        }
        Request::Info(sections) => {
            let text = info(ctx, sections);
            w.send(Response::Verbatim(text.as_bytes()));
        }
        Request::Time => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            w.send(Response::Array(2));
            w.bulk_str(itoa::Buffer::new().format(now.as_secs()));
            w.bulk_str(itoa::Buffer::new().format(now.subsec_micros()));
        }
        Request::Error(msg) => w.error(&msg),
    }
    Flow::Continue
}

fn error(w: &mut Reply<'_>, msg: &str) -> Flow {
    w.error(msg);
    Flow::Continue
}

/// SET's value limit, applied to every value of an MSET/MSETNX before anything is written: the
/// decoder bounds a bulk only by the larger of the key and value limits, and an inline request
/// only by the line limit.
fn check_values(ctx: &Context, pairs: Args<'_>) -> Result<(), String> {
    let max = ctx.config.max_value_size;
    if pairs.iter().skip(1).step_by(2).any(|v| v.len() > max) {
        return Err(format!("ERR value too long (max {max} bytes)"));
    }
    Ok(())
}

fn mset(store: &Store, pairs: Args<'_>) -> Result<(), StoreError> {
    for i in (0..pairs.len()).step_by(2) {
        store.set(pairs.get(i), pairs.get(i + 1), Ttl::Persist)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn set(
    ctx: &Context,
    w: &mut Reply<'_>,
    kind: SetKind,
    key: &[u8],
    value: &[u8],
    expire: Option<ExpireSpec>,
    cond: SetCond,
    keep_ttl: bool,
    get: bool,
) {
    let store = &*ctx.store;
    if value.len() > ctx.config.max_value_size {
        w.error(&format!(
            "ERR value too long (max {} bytes)",
            ctx.config.max_value_size
        ));
        return;
    }
    let ttl = match expire {
        None if keep_ttl => Ttl::Keep,
        None => Ttl::Persist,
        Some(spec) => {
            let cmd = match kind {
                SetKind::SetEx if matches!(spec, ExpireSpec::Millis(_)) => "psetex",
                SetKind::SetEx => "setex",
                _ => "set",
            };
            match deadline(spec, store.now_ms(), cmd) {
                Ok(at) => Ttl::At(at),
                Err(e) => return w.error(&e),
            }
        }
    };
    let access = if get { Access::Read } else { Access::Write };
    let result = store.update(key, access, |e| {
        // SET ... GET is rare: copy the old value so a failed write can still answer an error.
        let old = if get {
            e.as_ref().map(|e| e.value.to_vec())
        } else {
            None
        };
        let exists = e.is_some();
        let go = match cond {
            SetCond::Always => true,
            SetCond::IfAbsent => !exists,
            SetCond::IfPresent => exists,
        };
        let write = if go {
            Write::Put(Cow::Borrowed(value), ttl)
        } else {
            Write::Keep
        };
        (write, (go, old))
    });
    match result {
        Err(e) => w.error(store_error(e)),
        Ok((_, old)) if get => match old {
            Some(v) => w.send(Response::Bulk(&v)),
            None => w.send(Response::Nil),
        },
        Ok((done, _)) => match kind {
            SetKind::SetNx => w.send(Response::Int(done as i64)),
            _ if done => w.send(Response::Stored),
            _ => w.send(Response::Nil),
        },
    }
}

fn expire(
    ctx: &Context,
    w: &mut Reply<'_>,
    key: &[u8],
    spec: ExpireSpec,
    cond: ExpireCond,
    name: &str,
) {
    let store = &*ctx.store;
    let at = match deadline(spec, store.now_ms(), name) {
        Ok(at) => at,
        Err(e) => return w.error(&e),
    };
    let r = store.update(key, Access::Write, |e| {
        let Some(e) = e else { return (Write::Keep, 0) };
        let current = e.expires_at;
        let refused = (cond.nx && current.is_some())
            || (cond.xx && current.is_none())
            || (cond.gt && current.is_none_or(|c| at <= c))
            || (cond.lt && current.is_some_and(|c| at >= c));
        if refused {
            (Write::Keep, 0)
        } else {
            (Write::Expire(Some(at)), 1)
        }
    });
    match r {
        Ok(n) => w.send(Response::Int(n)),
        Err(e) => w.error(store_error(e)),
    }
}

fn hello(
    ctx: &Context,
    s: &mut Session,
    w: &mut Reply<'_>,
    proto: Option<i64>,
    auth: Option<(&[u8], &[u8])>,
    name: Option<&[u8]>,
) {
    let version = match proto {
        None => None,
        Some(2) => Some(Proto::Resp2),
        Some(3) => Some(Proto::Resp3),
        Some(_) => return w.error("NOPROTO unsupported protocol version"),
    };
    if let Some((user, password)) = auth {
        let ok = user == b"default"
            && ctx
                .config
                .password
                .as_ref()
                .is_none_or(|p| constant_time_eq(password, p.as_bytes()));
        if !ok {
            ctx.stats.auth_failures.incr();
            return w.send(Response::WrongPass);
        }
        s.authenticated = true;
    }
    if !s.authenticated {
        return w.error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH \
             <user> <pass> option can be used to authenticate the client and select the RESP protocol version at \
             the same time",
        );
    }
    if let Some(name) = name {
        if !valid_client_name(name) {
            return w
                .error("ERR Client names cannot contain spaces, newlines or special characters.");
        }
        s.name = (!name.is_empty()).then(|| name.to_vec());
    }
    if let Some(v) = version
        && s.proto != Proto::Text
    {
        s.proto = v;
        w.proto = v;
    }
    let proto_num = if s.proto == Proto::Resp3 { 3 } else { 2 };
    w.send(Response::Map(7));
    w.bulk_str("server");
    w.bulk_str("redis");
    w.bulk_str("version");
    w.bulk_str(REDIS_COMPAT_VERSION);
    w.bulk_str("proto");
    w.send(Response::Int(proto_num));
    w.bulk_str("id");
    w.send(Response::Int(s.id as i64));
    w.bulk_str("mode");
    w.bulk_str("standalone");
    w.bulk_str("role");
    w.bulk_str("master");
    w.bulk_str("modules");
    w.send(Response::Array(0));
}

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (0x21..=0x7E).contains(&b))
}

fn client(s: &mut Session, w: &mut Reply<'_>, cmd: ClientCmd<'_>) {
    match cmd {
        ClientCmd::SetName(name) => {
            if !valid_client_name(name) {
                return w.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            s.name = (!name.is_empty()).then(|| name.to_vec());
            w.send(Response::Ok);
        }
        ClientCmd::GetName => match &s.name {
            Some(n) => w.send(Response::Bulk(n)),
            None => w.send(Response::Nil),
        },
        ClientCmd::Id => w.send(Response::Int(s.id as i64)),
        ClientCmd::SetInfo => w.send(Response::Ok),
        ClientCmd::Info => {
            let line = format!(
                "id={} addr={} name={} db=0 resp={}\n",
                s.id,
                s.peer,
                String::from_utf8_lossy(s.name.as_deref().unwrap_or_default()),
                if s.proto == Proto::Resp3 { 3 } else { 2 }
            );
            w.send(Response::Verbatim(line.as_bytes()));
        }
    }
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

fn command(w: &mut Reply<'_>, cmd: CommandCmd<'_>) {
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
                w.send(Response::Map(3));
                w.bulk_str("summary");
                w.bulk_str(c.summary);
                w.bulk_str("since");
                w.bulk_str("1.0.0");
                w.bulk_str("group");
                w.bulk_str(c.group);
            }
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
fn info(ctx: &Context, sections: Args<'_>) -> String {
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
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
             used_memory_rss_human:{}\r\nused_memory_dataset:{}\r\nkvcache_connection_buffers:{}\r\n\
             kvcache_slab_page_bytes:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:allkeys-lru\r\n\
             mem_fragmentation_ratio:{:.2}\r\n\r\n",
            human(used),
            human(rss),
            st.memory,
            ctx.store.external_bytes(),
            st.page_bytes,
            cfg.max_memory,
            human(cfg.max_memory),
            if used > 0 {
                rss as f64 / used as f64
            } else {
                0.0
            },
        );
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

/// Redis-style glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), used by SCAN, KEYS and
/// CONFIG GET. Iterative with one backtrack point, so no pattern is exponential.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, s[i], nocase)
                        && matched
                    {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if eq(pattern[p + 1], s[i]) {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if eq(c, s[i]) {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the `[...]` class starting at `pattern[start]`; returns whether it
/// matched and the index after the class.
fn class_match(pattern: &[u8], start: usize, c: u8, nocase: bool) -> Option<(bool, usize)> {
    let norm = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let c = norm(c);
    let mut p = start + 1;
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    loop {
        let b = *pattern.get(p)?;
        if b == b']' {
            break;
        }
        if b == b'\\' && p + 1 < pattern.len() {
            matched |= norm(pattern[p + 1]) == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (mut lo, mut hi) = (norm(b), norm(pattern[p + 2]));
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            matched |= (lo..=hi).contains(&c);
            p += 3;
        } else {
            matched |= norm(b) == c;
            p += 1;
        }
    }
    Some((matched != negate, p + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes(), false);
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("key:*:end", "key:1:2:end"));
        assert!(!m("key:*:end", "key:1:2:en"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*a*a*a*a*a*a*a*a*b", &format!("{}b", "a".repeat(30))));
        assert!(!m("*a*a*a*a*a*a*a*a*a*a*b", &"a".repeat(60)));
        assert!(glob_match(b"MAX*", b"maxmemory", true));
    }

    #[test]
    fn deadlines() {
        assert_eq!(deadline(ExpireSpec::Seconds(10), 1000, "set"), Ok(11_000));
        assert_eq!(deadline(ExpireSpec::Millis(5), 1000, "set"), Ok(1005));
        assert_eq!(deadline(ExpireSpec::UnixSeconds(2), 1000, "set"), Ok(2000));
        assert_eq!(deadline(ExpireSpec::Seconds(-5), 1000, "expire"), Ok(0));
        assert!(deadline(ExpireSpec::Seconds(i64::MAX), 1000, "expire").is_err());
        assert!(deadline(ExpireSpec::Millis(i64::MAX), 1000, "expire").is_err());
    }

    #[test]
    fn mset_values_respect_the_value_limit() {
        // Found by the `commands` fuzz target: an inline MSET (bounded only by --max-line)
        // stored a value longer than --max-value-size.
        let ctx = Context {
            store: Arc::new(Store::default()),
            stats: Arc::new(Stats::default()),
            config: Arc::new(Config {
                max_value_size: 256,
                ..Config::default()
            }),
        };
        let mut session = Session {
            proto: Proto::Resp2,
            authenticated: true,
            id: 1,
            name: None,
            peer: String::new(),
        };
        let buf = [b"ab".as_slice(), &[b'x'; 257]].concat();
        let too_long = [(0, 1), (1, 1), (1, 2), (2, 259)];
        let fits = [(0, 1), (1, 2), (1, 2), (2, 258)];
        let mut run = |req: Request<'_>| {
            let mut out = Vec::new();
            execute(&ctx, &mut session, req, &mut out);
            String::from_utf8(out).unwrap()
        };
        let refused = "-ERR value too long (max 256 bytes)\r\n";
        assert_eq!(run(Request::MSet(Args::new(&buf, &too_long))), refused);
        assert_eq!(run(Request::MSetNx(Args::new(&buf, &too_long))), refused);
        assert!(
            ctx.store.is_empty(),
            "nothing is written when one value is too long"
        );
        assert_eq!(run(Request::MSet(Args::new(&buf, &fits))), "+OK\r\n");
        assert_eq!(ctx.store.len(), 2);
    }

    #[test]
    fn secrets_compare_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
