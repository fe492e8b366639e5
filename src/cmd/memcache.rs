//! memcached semantics over the shared store: storage commands with client flags and CAS
//! uniques, incr/decr with memcached's wrap rules, touch and get-and-touch, flush_all with a
//! delay, stats, and the meta commands (mg, ms, md, ma, mn).
//!
//! Values are the same bytes whichever protocol wrote them: a key set here is read unchanged
//! over RESP and the line protocol, and the reverse (with flags 0). A value written elsewhere has
//! no CAS unique until a memcached command asks for one ([`Write::AssignCas`]).
//!
//! Meta-protocol item state the store does not keep (stale after `md I`, recache token already
//! handed out) lives in [`Marks`], keyed by key and valid only while the item keeps the CAS
//! unique it had when marked: any write gives the item a new CAS, which clears its marks, as a
//! new item in memcached starts clean.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{Context, Flow, Session};
use crate::protocol::memcache::{
    self as mc, GetKind, Keys, McRequest, MetaCmd, MetaFlags, REALTIME_MAXDELTA, StoreCmd,
};
use crate::stats::{MC_COUNTERS, MC_NAMES, Mc};
use crate::store::{Access, Entry, Store, StoreError, Ttl, Write};

/// The memcached version kvcache's memcached protocol corresponds to (meta commands as of it);
/// `version` answers `VERSION 1.6.18-kvcache-<version>`, one token as clients expect.
pub const MEMCACHED_COMPAT_VERSION: &str = "1.6.18";

/// Most keys with meta marks kept at once; beyond it an arbitrary mark is dropped (its item then
/// looks fresh: no `X`, no `Z`).
const MARKS_MAX: usize = 65_536;

/// memcached state shared by every connection of a server: item marks and the delayed flush.
#[derive(Default)]
pub struct Shared {
    marks: Marks,
    flush: Arc<DelayedFlush>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.flush.stop();
    }
}

/// Per-connection memcached counters, added to the server's once per batch so no shared line is
/// written per request.
#[derive(Debug, Default)]
pub struct Counts(Option<Box<[u64; MC_COUNTERS]>>);

impl Counts {
    #[inline]
    fn add(&mut self, c: Mc, n: u64) {
        self.0.get_or_insert_with(|| Box::new([0; MC_COUNTERS]))[c as usize] += n;
    }

    /// Adds the counts to the server's counters and starts again from zero.
    pub fn flush(&mut self, stats: &crate::stats::Stats) {
        if let Some(counts) = self.0.as_deref_mut() {
            for (i, n) in counts.iter_mut().enumerate() {
                if *n != 0 {
                    stats.memcache[i].add(std::mem::take(n));
                }
            }
        }
    }
}

/// Stale and token-sent marks of items (see the module docs).
#[derive(Default)]
struct Marks {
    len: AtomicUsize,
    map: Mutex<HashMap<Vec<u8>, Mark>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    /// The CAS unique of the item the mark belongs to.
    cas: u64,
    /// `md I` marked the item stale (`X`).
    stale: bool,
    /// A recache token (`W`) was handed out for it (later readers see `Z`).
    token_sent: bool,
}

impl Marks {
    /// The marks of `key` if they belong to the item with CAS `cas` (outdated ones are dropped).
    fn get(&self, key: &[u8], cas: u64) -> Mark {
        if self.len.load(Relaxed) == 0 {
            return Mark::default();
        }
        let mut map = self.map.lock();
        match map.get(key) {
            Some(m) if m.cas == cas && cas != 0 => *m,
            Some(_) => {
                map.remove(key);
                self.len.store(map.len(), Relaxed);
                Mark::default()
            }
            None => Mark::default(),
        }
    }

    /// Marks the item with CAS `cas` stale (meta `I`, invalidate), no token handed out yet.
    fn set_stale(&self, key: &[u8], cas: u64) {
        self.set(
            key,
            Mark {
                cas,
                stale: true,
                token_sent: false,
            },
        );
    }

    fn set(&self, key: &[u8], mark: Mark) {
        let mut map = self.map.lock();
        if map.len() >= MARKS_MAX
            && !map.contains_key(key)
            && let Some(k) = map.keys().next().cloned()
        {
            map.remove(&k);
        }
        map.insert(key.to_vec(), mark);
        self.len.store(map.len(), Relaxed);
    }
}

/// `flush_all <delay>`: one background thread, started on first use, that flushes the store
/// when the latest requested deadline comes; a later flush_all replaces the deadline (an
/// immediate one cancels it), as memcached keeps a single flush time.
#[derive(Default)]
struct DelayedFlush {
    state: Mutex<FlushState>,
    wake: Condvar,
}

#[derive(Default)]
struct FlushState {
    deadline: Option<u64>,
    stop: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DelayedFlush {
    fn schedule(self: &Arc<Self>, store: &Arc<Store>, at: Option<u64>) {
        let mut st = self.state.lock();
        st.deadline = at;
        if at.is_some() && st.thread.is_none() {
            let me = Arc::clone(self);
            let store = Arc::clone(store);
            st.thread = std::thread::Builder::new()
                .name("kvcache-mc-flush".into())
                .spawn(move || me.run(&store))
                .ok();
        }
        self.wake.notify_all();
    }

    fn run(&self, store: &Arc<Store>) {
        let mut st = self.state.lock();
        loop {
            if st.stop {
                return;
            }
            match st.deadline {
                None => self.wake.wait(&mut st),
                Some(at) => {
                    let now = store.now_ms();
                    if now >= at {
                        st.deadline = None;
                        drop(st);
                        store.flush(true);
                        st = self.state.lock();
                    } else {
                        let wait = Duration::from_millis((at - now).min(1000));
                        self.wake.wait_for(&mut st, wait);
                    }
                }
            }
        }
    }

    fn stop(&self) {
        let thread = {
            let mut st = self.state.lock();
            st.stop = true;
            st.thread.take()
        };
        self.wake.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// A memcached expiration time as a deadline in unix ms: `None` never expires, a past deadline
/// (negative exptime, or an absolute time already gone) expires at once.
fn deadline(store: &Store, exptime: impl Into<i64>) -> Option<u64> {
    let exptime: i64 = exptime.into();
    match exptime {
        0 => None,
        e if e < 0 => Some(0),
        e if e > REALTIME_MAXDELTA => Some(e as u64 * 1000),
        e => Some(store.now_ms() + e as u64 * 1000),
    }
}

fn ttl(at: Option<u64>) -> Ttl {
    at.map_or(Ttl::Persist, Ttl::At)
}

/// Remaining TTL in whole seconds (rounded up), -1 for none: the meta `t` flag.
fn remaining(at: Option<u64>, now: u64) -> i64 {
    at.map_or(-1, |at| (at.saturating_sub(now).div_ceil(1000)) as i64)
}

fn store_error(out: &mut Vec<u8>, e: StoreError) {
    mc::line(
        out,
        match e {
            StoreError::TooLarge => b"SERVER_ERROR object too large for cache",
            StoreError::KeyTooLong => b"CLIENT_ERROR bad command line format",
            StoreError::Full => b"SERVER_ERROR out of memory storing object",
        },
    );
}

/// Runs one memcached request, appending its reply to `out`.
pub(super) fn execute(
    ctx: &Context,
    s: &mut Session,
    req: McRequest<'_>,
    out: &mut Vec<u8>,
) -> Flow {
    if !s.authenticated {
        return unauthenticated(ctx, s, req, out);
    }
    match req {
        McRequest::Get {
            kind,
            exptime,
            keys,
        } => get(ctx, s, kind, exptime, keys, out),
        McRequest::Store {
            cmd,
            key,
            flags,
            exptime,
            value,
            cas,
            noreply,
        } => {
            let mark = out.len();
            store(ctx, s, cmd, key, flags, exptime.into(), value, cas, out);
            if noreply {
                out.truncate(mark);
            }
        }
        McRequest::Delete { key, noreply } => {
            let found = ctx
                .store
                .update(key, Access::Peek, |e| (Write::Delete, e.is_some()))
                .unwrap_or(false);
            s.mc.add(
                if found {
                    Mc::DeleteHits
                } else {
                    Mc::DeleteMisses
                },
                1,
            );
            if !noreply {
                mc::line(out, if found { b"DELETED" } else { b"NOT_FOUND" });
            }
        }
        McRequest::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            let mark = out.len();
            match arith(ctx, s, key, incr, delta, None, None, None) {
                Ok(Arith::Done(n, _)) => {
                    mc::number(out, n);
                    out.extend_from_slice(b"\r\n");
                }
                Ok(Arith::Missing) => mc::line(out, b"NOT_FOUND"),
                Ok(Arith::NonNumeric) => mc::line(
                    out,
                    b"CLIENT_ERROR cannot increment or decrement non-numeric value",
                ),
                Ok(Arith::CasMismatch) => mc::line(out, b"EXISTS"),
                Err(e) => store_error(out, e),
            }
            if noreply {
                out.truncate(mark);
            }
        }
        McRequest::Touch {
            key,
            exptime,
            noreply,
        } => {
            s.mc.add(Mc::CmdTouch, 1);
            let at = deadline(&ctx.store, exptime);
            let found = ctx
                .store
                .update(key, Access::Write, |e| match e {
                    Some(_) => (Write::Expire(at), true),
                    None => (Write::Keep, false),
                })
                .unwrap_or(false);
            s.mc.add(
                if found {
                    Mc::TouchHits
                } else {
                    Mc::TouchMisses
                },
                1,
            );
            if !noreply {
                mc::line(out, if found { b"TOUCHED" } else { b"NOT_FOUND" });
            }
        }
        McRequest::FlushAll { delay, noreply } => {
            s.mc.add(Mc::CmdFlush, 1);
            let at = if delay > 0 {
                deadline(&ctx.store, delay)
            } else {
                None
            };
            match at {
                Some(at) if at > ctx.store.now_ms() => {
                    ctx.memcache.flush.schedule(&ctx.store, Some(at))
                }
                _ => {
                    ctx.memcache.flush.schedule(&ctx.store, None);
                    ctx.store.flush(true);
                }
            }
            if !noreply {
                mc::line(out, b"OK");
            }
        }
        McRequest::Verbosity { noreply } => {
            if !noreply {
                mc::line(out, b"OK");
            }
        }
        McRequest::Version => {
            out.extend_from_slice(b"VERSION ");
            out.extend_from_slice(MEMCACHED_COMPAT_VERSION.as_bytes());
            out.extend_from_slice(b"-kvcache-");
            mc::line(out, env!("CARGO_PKG_VERSION").as_bytes());
        }
        McRequest::Stats(group) => stats(ctx, s, group, out),
        McRequest::Quit => return Flow::Close,
        McRequest::Meta {
            cmd,
            key: wire_key,
            flags,
            value,
        } => {
            // The decoder checked that a base64 key decodes.
            let Some(key) = mc::meta_key(wire_key, flags.base64()) else {
                mc::line(out, b"CLIENT_ERROR error decoding key");
                return Flow::Continue;
            };
            match cmd {
                MetaCmd::Get => meta_get(ctx, s, &key, wire_key, &flags, out),
                MetaCmd::Set => meta_set(ctx, s, &key, wire_key, &flags, value, out),
                MetaCmd::Delete => meta_delete(ctx, s, &key, wire_key, &flags, out),
                MetaCmd::Arith => meta_arith(ctx, s, &key, wire_key, &flags, out),
            }
        }
        McRequest::Noop => mc::line(out, b"MN"),
        McRequest::TooLarge {
            key,
            base64,
            set,
            noreply,
        } => {
            if set && let Some(key) = mc::meta_key(key, base64) {
                ctx.store.delete(&key);
            }
            if !noreply {
                mc::line(out, b"SERVER_ERROR object too large for cache");
            }
        }
        McRequest::BadChunk { noreply } => {
            ctx.stats.protocol_errors.incr();
            if !noreply {
                mc::line(out, b"CLIENT_ERROR bad data chunk");
            }
        }
    }
    Flow::Continue
}

/// With `--password` set, a connection must first authenticate as memcached's `-Y` option
/// expects: a `set` (any key, flags and exptime) whose data is `<user> <password>`, where the
/// user is `default` (kvcache's only user, as over RESP). Everything else but `quit` is refused.
fn unauthenticated(ctx: &Context, s: &mut Session, req: McRequest<'_>, out: &mut Vec<u8>) -> Flow {
    match req {
        McRequest::Quit => return Flow::Close,
        McRequest::Store {
            cmd: StoreCmd::Set,
            value,
            noreply,
            ..
        } => {
            s.mc.add(Mc::AuthCmds, 1);
            let mark = out.len();
            let (user, pass) = match value.iter().position(|&b| b == b' ') {
                Some(i) => (&value[..i], &value[i + 1..]),
                None => (&value[..0], value),
            };
            let expected = ctx.config.password.as_deref().unwrap_or_default();
            let ok = user == b"default"
                && super::connection::constant_time_eq(pass, expected.as_bytes());
            if ok {
                s.authenticated = true;
                mc::line(out, b"STORED");
            } else {
                s.mc.add(Mc::AuthErrors, 1);
                ctx.stats.auth_failures.incr();
                mc::line(out, b"CLIENT_ERROR authentication failure");
            }
            if noreply {
                out.truncate(mark);
            }
        }
        McRequest::TooLarge { .. } => mc::line(out, b"SERVER_ERROR object too large for cache"),
        McRequest::BadChunk { .. } => mc::line(out, b"CLIENT_ERROR bad data chunk"),
        _ => mc::line(out, b"CLIENT_ERROR unauthenticated"),
    }
    Flow::Continue
}

fn get(
    ctx: &Context,
    s: &mut Session,
    kind: GetKind,
    exptime: i64,
    keys: Keys<'_>,
    out: &mut Vec<u8>,
) {
    let touch = matches!(kind, GetKind::Gat | GetKind::Gats).then(|| deadline(&ctx.store, exptime));
    let want_cas = kind.with_cas();
    let (mut hits, mut misses, mut n) = (0, 0, 0);
    for key in keys.iter() {
        n += 1;
        // A CAS unique is assigned under the lock when the item has none; the value is then
        // copied out and the line written once the CAS is known.
        let mut pending: Option<(u32, Vec<u8>)> = None;
        let mut found = false;
        let result = ctx.store.update_cas(key, Access::Read, |e| {
            let Some(e) = e else {
                return (Write::Keep, ());
            };
            found = true;
            let assign = want_cas && e.cas == 0;
            if assign {
                pending = Some((e.flags, e.value.to_vec()));
            } else {
                mc::value(out, key, e.flags, e.value, want_cas.then_some(e.cas));
            }
            let write = match (touch, assign) {
                (None, false) => Write::Keep,
                (None, true) => Write::AssignCas,
                (Some(at), false) => Write::Expire(at),
                (Some(at), true) => Write::PutMc(Cow::Owned(e.value.to_vec()), ttl(at), e.flags),
            };
            (write, ())
        });
        match (result, pending) {
            (Ok(((), cas)), Some((flags, value))) if cas != 0 => {
                mc::value(out, key, flags, &value, Some(cas));
            }
            (_, Some(_)) => found = false, // expired by the touch, or the store refused
            _ => {}
        }
        if found {
            hits += 1;
        } else {
            misses += 1;
        }
    }
    mc::end(out);
    s.mc.add(Mc::CmdGet, n);
    s.mc.add(Mc::GetHits, hits);
    s.mc.add(Mc::GetMisses, misses);
    if touch.is_some() {
        s.mc.add(Mc::CmdTouch, n);
        s.mc.add(Mc::TouchHits, hits);
        s.mc.add(Mc::TouchMisses, misses);
    }
}

/// What a storage command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    TooBig,
}

/// The data of an append / prepend, or `None` when the result would exceed the value limit.
fn concat(ctx: &Context, old: &[u8], new: &[u8], append: bool) -> Option<Vec<u8>> {
    if old.len() + new.len() > ctx.config.max_value_size {
        return None;
    }
    let mut v = Vec::with_capacity(old.len() + new.len());
    if append {
        v.extend_from_slice(old);
        v.extend_from_slice(new);
    } else {
        v.extend_from_slice(new);
        v.extend_from_slice(old);
    }
    Some(v)
}

#[allow(clippy::too_many_arguments)]
fn store(
    ctx: &Context,
    s: &mut Session,
    cmd: StoreCmd,
    key: &[u8],
    flags: u32,
    exptime: i64,
    value: &[u8],
    cas: u64,
    out: &mut Vec<u8>,
) {
    s.mc.add(Mc::CmdSet, 1);
    let at = deadline(&ctx.store, exptime);
    let put = || Write::PutMc(Cow::Borrowed(value), ttl(at), flags);
    let result = ctx.store.update(key, Access::Write, |e| match (cmd, e) {
        (StoreCmd::Set, _) => (put(), StoreOutcome::Stored),
        (StoreCmd::Add, Some(_)) => (Write::Keep, StoreOutcome::NotStored),
        (StoreCmd::Add, None) => (put(), StoreOutcome::Stored),
        (StoreCmd::Replace, None) => (Write::Keep, StoreOutcome::NotStored),
        (StoreCmd::Replace, Some(_)) => (put(), StoreOutcome::Stored),
        (StoreCmd::Append | StoreCmd::Prepend, None) => (Write::Keep, StoreOutcome::NotStored),
        (StoreCmd::Append | StoreCmd::Prepend, Some(e)) => {
            match concat(ctx, e.value, value, cmd == StoreCmd::Append) {
                Some(v) => (
                    Write::PutMc(Cow::Owned(v), Ttl::Keep, e.flags),
                    StoreOutcome::Stored,
                ),
                None => (Write::Keep, StoreOutcome::TooBig),
            }
        }
        (StoreCmd::Cas, None) => (Write::Keep, StoreOutcome::NotFound),
        // An item without a CAS unique was never read with one: no client can hold it.
        (StoreCmd::Cas, Some(e)) if e.cas == 0 || e.cas != cas => {
            (Write::Keep, StoreOutcome::Exists)
        }
        (StoreCmd::Cas, Some(_)) => (put(), StoreOutcome::Stored),
    });
    match result {
        Ok(r) => {
            if cmd == StoreCmd::Cas {
                s.mc.add(
                    match r {
                        StoreOutcome::Stored => Mc::CasHits,
                        StoreOutcome::NotFound => Mc::CasMisses,
                        _ => Mc::CasBadval,
                    },
                    1,
                );
            }
            if r == StoreOutcome::Stored {
                s.mc.add(Mc::TotalItems, 1);
            }
            mc::line(
                out,
                match r {
                    StoreOutcome::Stored => b"STORED",
                    StoreOutcome::NotStored => b"NOT_STORED",
                    StoreOutcome::Exists => b"EXISTS",
                    StoreOutcome::NotFound => b"NOT_FOUND",
                    StoreOutcome::TooBig => b"SERVER_ERROR out of memory storing object",
                },
            );
        }
        Err(e) => store_error(out, e),
    }
}

/// A stored counter as memcached reads one (`strtoull`): leading whitespace, digits, then the
/// end or whitespace; no sign, no overflow.
fn parse_counter(v: &[u8]) -> Option<u64> {
    let start = v.iter().position(|b| !b.is_ascii_whitespace())?;
    let v = &v[start..];
    let v = v.strip_prefix(b"+").unwrap_or(v);
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || v.get(digits).is_some_and(|b| !b.is_ascii_whitespace()) {
        return None;
    }
    mc::uint64(&v[..digits])
}

/// What an increment or decrement did.
enum Arith {
    /// The new value and the deadline it has.
    Done(u64, Option<u64>),
    Missing,
    NonNumeric,
    CasMismatch,
}

/// incr / decr / ma: increments wrap at 2^64, decrements stop at 0 (memcached's rules). `create`
/// (ma `N`/`J`) stores the initial value on a miss with that deadline; `new_ttl` (ma `T`)
/// changes the deadline on success; `cas` (ma `C`) must match.
#[allow(clippy::too_many_arguments)]
fn arith(
    ctx: &Context,
    s: &mut Session,
    key: &[u8],
    incr: bool,
    delta: u64,
    create: Option<(u64, Option<u64>)>,
    new_ttl: Option<Option<u64>>,
    cas: Option<u64>,
) -> Result<Arith, StoreError> {
    let (r, _) = arith_cas(ctx, key, incr, delta, create, new_ttl, cas)?;
    let c = match (&r, incr) {
        (Arith::Done(..), true) => Mc::IncrHits,
        (Arith::Done(..), false) => Mc::DecrHits,
        (_, true) => Mc::IncrMisses,
        (_, false) => Mc::DecrMisses,
    };
    s.mc.add(c, 1);
    Ok(r)
}

fn arith_cas(
    ctx: &Context,
    key: &[u8],
    incr: bool,
    delta: u64,
    create: Option<(u64, Option<u64>)>,
    new_ttl: Option<Option<u64>>,
    cas: Option<u64>,
) -> Result<(Arith, u64), StoreError> {
    let mut buf = itoa::Buffer::new();
    ctx.store.update_cas(key, Access::Write, |e| {
        let Some(e) = e else {
            return match create {
                Some((initial, at)) => {
                    let v = buf.format(initial).as_bytes().to_vec();
                    (
                        Write::PutMc(Cow::Owned(v), ttl(at), 0),
                        Arith::Done(initial, at),
                    )
                }
                None => (Write::Keep, Arith::Missing),
            };
        };
        if cas.is_some_and(|c| c != e.cas || e.cas == 0) {
            return (Write::Keep, Arith::CasMismatch);
        }
        let Some(old) = parse_counter(e.value) else {
            return (Write::Keep, Arith::NonNumeric);
        };
        let new = if incr {
            old.wrapping_add(delta)
        } else {
            old.saturating_sub(delta)
        };
        let v = buf.format(new).as_bytes().to_vec();
        let (t, at) = match new_ttl {
            Some(at) => (ttl(at), at),
            None => (Ttl::Keep, e.expires_at),
        };
        (
            Write::PutMc(Cow::Owned(v), t, e.flags),
            Arith::Done(new, at),
        )
    })
}

fn stats(ctx: &Context, s: &mut Session, group: Option<&[u8]>, out: &mut Vec<u8>) {
    use std::fmt::Write as _;
    // This connection's counts so far are part of what it sees.
    s.mc.flush(&ctx.stats);
    let mut text = String::with_capacity(2048);
    let mut stat = |name: &str, value: &dyn std::fmt::Display| {
        let _ = write!(text, "STAT {name} {value}\r\n");
    };
    match group {
        None => {
            let st = ctx.store.stats();
            let now = ctx.store.now_ms();
            let (user, system) = rusage();
            stat("pid", &std::process::id());
            stat("uptime", &ctx.stats.uptime_secs());
            stat("time", &(now / 1000));
            stat(
                "version",
                &format_args!(
                    "{MEMCACHED_COMPAT_VERSION}-kvcache-{}",
                    env!("CARGO_PKG_VERSION")
                ),
            );
            stat("pointer_size", &(usize::BITS));
            stat("rusage_user", &user);
            stat("rusage_system", &system);
            stat("max_connections", &ctx.config.max_connections);
            stat("curr_connections", &ctx.stats.connections.get());
            stat("total_connections", &ctx.stats.connections_total.get());
            stat(
                "rejected_connections",
                &ctx.stats.connections_rejected.get(),
            );
            for (c, (name, _)) in ctx.stats.memcache.iter().zip(MC_NAMES) {
                stat(name, &c.get());
            }
            stat("threads", &threads(ctx));
            stat("curr_items", &st.keys);
            stat("bytes", &st.memory);
            stat("evictions", &st.evictions);
            stat("reclaimed", &st.expired);
            stat("limit_maxbytes", &ctx.config.max_memory);
            stat("accepting_conns", &1);
        }
        Some(b"settings") => {
            stat("maxbytes", &ctx.config.max_memory);
            stat("maxconns", &ctx.config.max_connections);
            stat("tcpport", &ctx.config.memcache_port);
            stat("evictions", &"on");
            stat("cas_enabled", &"yes");
            stat("item_size_max", &ctx.config.max_value_size);
            stat("num_threads", &threads(ctx));
            stat(
                "auth_enabled_ascii",
                &if ctx.config.password.is_some() {
                    "yes"
                } else {
                    "no"
                },
            );
        }
        // Slab and item-class statistics describe memcached's allocator; kvcache has none.
        Some(b"items" | b"slabs" | b"sizes") => {}
        Some(_) => {
            mc::line(out, b"ERROR");
            return;
        }
    }
    out.extend_from_slice(text.as_bytes());
    mc::end(out);
}

fn threads(ctx: &Context) -> usize {
    if ctx.config.threads != 0 {
        ctx.config.threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// User and system CPU time of the process as memcached prints them (`seconds.micros`).
fn rusage() -> (String, String) {
    // SAFETY: getrusage writes one rusage struct through the pointer, which points at a
    // zero-initialised struct on our stack.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let f = |t: libc::timeval| format!("{}.{:06}", t.tv_sec, t.tv_usec);
    (f(r.ru_utime), f(r.ru_stime))
}

// ---- Meta commands --------------------------------------------------------------------------

/// The item a meta reply describes.
struct Item<'v> {
    value: &'v [u8],
    flags: u32,
    cas: u64,
    expires_at: Option<u64>,
}

impl<'v> Item<'v> {
    fn of(e: &Entry<'v>) -> Item<'v> {
        Item {
            value: e.value,
            flags: e.flags,
            cas: e.cas,
            expires_at: e.expires_at,
        }
    }
}

/// Appends the flags every meta reply can echo: `O` and `k` in request order, and `b` after a
/// base64 key.
fn echo_flags(out: &mut Vec<u8>, f: &MetaFlags<'_>, wire_key: &[u8]) {
    for c in f.order() {
        match c {
            b'O' => mc::meta_token(out, b'O', f.opaque().unwrap_or_default()),
            b'k' => mc::meta_token(out, b'k', wire_key),
            _ => {}
        }
    }
    if f.key() && f.base64() {
        out.extend_from_slice(b" b");
    }
}

/// Writes an `mg` hit: `VA <len> <flags>` (with `v`) or `HD <flags>`, flags in request order,
/// then `Z`, `X`, `W`; returns whether a recache token (`W`) was handed out. `t` reports the
/// TTL at its place in the request, so after a `T` that precedes it (as memcached does).
#[allow(clippy::too_many_arguments)]
fn render_get(
    out: &mut Vec<u8>,
    f: &MetaFlags<'_>,
    wire_key: &[u8],
    item: &Item<'_>,
    new_ttl: Option<Option<u64>>,
    now: u64,
    mark: Mark,
    vivified: bool,
) -> bool {
    let mut win = vivified;
    let mut exp = item.expires_at;
    if f.value() {
        out.extend_from_slice(b"VA ");
        mc::number(out, item.value.len());
    } else {
        out.extend_from_slice(b"HD");
    }
    for c in f.order() {
        match c {
            b's' => mc::meta_num(out, b's', item.value.len()),
            b't' => mc::meta_num(out, b't', remaining(exp, now)),
            b'c' => mc::meta_num(out, b'c', item.cas),
            b'f' => mc::meta_num(out, b'f', item.flags),
            b'O' => mc::meta_token(out, b'O', f.opaque().unwrap_or_default()),
            b'k' => mc::meta_token(out, b'k', wire_key),
            b'T' => exp = new_ttl.flatten(),
            b'R' => {
                let below = f
                    .recache()
                    .is_some_and(|r| exp.is_some() && remaining(exp, now) < r);
                if !mark.token_sent && !vivified && below {
                    win = true;
                }
            }
            _ => {}
        }
    }
    if f.key() && f.base64() {
        out.extend_from_slice(b" b");
    }
    if mark.token_sent {
        out.extend_from_slice(b" Z");
    }
    if mark.stale {
        out.extend_from_slice(b" X");
        win |= !mark.token_sent;
    }
    let win = win && !mark.token_sent;
    if win {
        out.extend_from_slice(b" W");
    }
    out.extend_from_slice(b"\r\n");
    if f.value() {
        out.extend_from_slice(item.value);
        out.extend_from_slice(b"\r\n");
    }
    win
}

fn meta_get(
    ctx: &Context,
    s: &mut Session,
    key: &[u8],
    wire_key: &[u8],
    f: &MetaFlags<'_>,
    out: &mut Vec<u8>,
) {
    s.mc.add(Mc::CmdGet, 1);
    let store = &ctx.store;
    let marks = &ctx.memcache.marks;
    let access = if f.no_bump() {
        Access::Peek
    } else {
        Access::Read
    };
    let needs_clock = f.ttl().is_some() || f.vivify().is_some() || f.recache().is_some();
    let now = if needs_clock || f.order().any(|c| c == b't') {
        store.now_ms()
    } else {
        0
    };
    let new_ttl = f.ttl().map(|t| deadline(store, t));
    let wants_cas = f.order().any(|c| c == b'c') || f.recache().is_some();
    enum Outcome {
        Miss,
        /// Written under the lock.
        Hit,
        /// Needs the CAS assigned by this write: the item copied out, rendered afterwards.
        Later(u32, Vec<u8>, Option<u64>, Mark),
        Vivified(Option<u64>),
    }
    let result = store.update_cas(key, access, |e| {
        let Some(e) = e else {
            return match f.vivify() {
                Some(t) => {
                    let at = deadline(store, t);
                    let w = Write::PutMc(Cow::Borrowed(&[][..]), ttl(at), 0);
                    (w, Outcome::Vivified(at))
                }
                None => (Write::Keep, Outcome::Miss),
            };
        };
        let mark = marks.get(key, e.cas);
        if e.cas == 0 && wants_cas {
            let at = new_ttl.unwrap_or(e.expires_at);
            let w = Write::PutMc(Cow::Owned(e.value.to_vec()), ttl(at), e.flags);
            return (
                w,
                Outcome::Later(e.flags, e.value.to_vec(), e.expires_at, mark),
            );
        }
        let win = render_get(out, f, wire_key, &Item::of(&e), new_ttl, now, mark, false);
        if win {
            marks.set(
                key,
                Mark {
                    cas: e.cas,
                    token_sent: true,
                    ..mark
                },
            );
        }
        let w = match new_ttl {
            Some(at) => Write::Expire(at),
            None => Write::Keep,
        };
        (w, Outcome::Hit)
    });
    let (outcome, cas) = match result {
        Ok(r) => r,
        Err(e) => return store_error(out, e),
    };
    match outcome {
        Outcome::Hit => s.mc.add(Mc::GetHits, 1),
        Outcome::Miss => {
            s.mc.add(Mc::GetMisses, 1);
            if !f.quiet() {
                out.extend_from_slice(b"EN");
                echo_flags(out, f, wire_key);
                out.extend_from_slice(b"\r\n");
            }
        }
        Outcome::Later(flags, value, expires_at, mark) => {
            s.mc.add(Mc::GetHits, 1);
            let item = Item {
                value: &value,
                flags,
                cas,
                expires_at,
            };
            if render_get(out, f, wire_key, &item, new_ttl, now, mark, false) {
                marks.set(
                    key,
                    Mark {
                        cas,
                        token_sent: true,
                        ..mark
                    },
                );
            }
        }
        Outcome::Vivified(at) => {
            s.mc.add(Mc::GetMisses, 1);
            let item = Item {
                value: &[],
                flags: 0,
                cas,
                expires_at: at,
            };
            render_get(out, f, wire_key, &item, None, now, Mark::default(), true);
            if cas != 0 {
                marks.set(
                    key,
                    Mark {
                        cas,
                        token_sent: true,
                        stale: false,
                    },
                );
            }
        }
    }
}

fn meta_set(
    ctx: &Context,
    s: &mut Session,
    key: &[u8],
    wire_key: &[u8],
    f: &MetaFlags<'_>,
    value: &[u8],
    out: &mut Vec<u8>,
) {
    let cmd = match f.mode().unwrap_or(b'S') {
        b'S' | b's' => StoreCmd::Set,
        b'E' | b'e' => StoreCmd::Add,
        b'R' | b'r' => StoreCmd::Replace,
        b'A' | b'a' => StoreCmd::Append,
        b'P' | b'p' => StoreCmd::Prepend,
        _ => return mc::line(out, b"CLIENT_ERROR invalid mode for ms M token"),
    };
    s.mc.add(Mc::CmdSet, 1);
    let at = f.ttl().and_then(|t| deadline(&ctx.store, t));
    let flags = f.client_flags().unwrap_or(0);
    let put = || Write::PutMc(Cow::Borrowed(value), ttl(at), flags);
    let mut stale = false;
    let result = ctx.store.update_cas(key, Access::Write, |e| {
        if let Some(c) = f.compare_cas() {
            match &e {
                None => return (Write::Keep, StoreOutcome::NotFound),
                Some(e) if e.cas != c || e.cas == 0 => {
                    // I: a CAS older than the item's is accepted, the item stored as stale.
                    if f.invalidate() && e.cas != 0 && c < e.cas {
                        stale = true;
                    } else {
                        return (Write::Keep, StoreOutcome::Exists);
                    }
                }
                Some(_) => {}
            }
        }
        match (cmd, e) {
            (StoreCmd::Add, Some(_)) | (StoreCmd::Replace, None) => {
                (Write::Keep, StoreOutcome::NotStored)
            }
            (StoreCmd::Append | StoreCmd::Prepend, None) => match f.vivify() {
                Some(t) => {
                    let at = deadline(&ctx.store, t);
                    let w = Write::PutMc(Cow::Borrowed(value), ttl(at), flags);
                    (w, StoreOutcome::Stored)
                }
                None => (Write::Keep, StoreOutcome::NotStored),
            },
            (StoreCmd::Append | StoreCmd::Prepend, Some(e)) => {
                match concat(ctx, e.value, value, cmd == StoreCmd::Append) {
                    Some(v) => (
                        Write::PutMc(Cow::Owned(v), Ttl::Keep, e.flags),
                        StoreOutcome::Stored,
                    ),
                    None => (Write::Keep, StoreOutcome::TooBig),
                }
            }
            _ => (put(), StoreOutcome::Stored),
        }
    });
    let (r, cas) = match result {
        Ok(r) => r,
        Err(e) => return store_error(out, e),
    };
    if r == StoreOutcome::Stored {
        s.mc.add(Mc::TotalItems, 1);
        if stale && cas != 0 {
            ctx.memcache.marks.set_stale(key, cas);
        }
    }
    let code: &[u8] = match r {
        StoreOutcome::Stored if f.quiet() => return,
        StoreOutcome::Stored => b"HD",
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::TooBig => return mc::line(out, b"SERVER_ERROR out of memory storing object"),
    };
    out.extend_from_slice(code);
    for c in f.order() {
        match c {
            b'O' => mc::meta_token(out, b'O', f.opaque().unwrap_or_default()),
            b'k' => mc::meta_token(out, b'k', wire_key),
            b'c' => mc::meta_num(out, b'c', if r == StoreOutcome::Stored { cas } else { 0 }),
            _ => {}
        }
    }
    if f.key() && f.base64() {
        out.extend_from_slice(b" b");
    }
    out.extend_from_slice(b"\r\n");
}

fn meta_delete(
    ctx: &Context,
    s: &mut Session,
    key: &[u8],
    wire_key: &[u8],
    f: &MetaFlags<'_>,
    out: &mut Vec<u8>,
) {
    let new_ttl = f.ttl().map(|t| deadline(&ctx.store, t));
    let result = ctx.store.update_cas(key, Access::Write, |e| {
        let Some(e) = e else {
            return (Write::Keep, StoreOutcome::NotFound);
        };
        if f.compare_cas().is_some_and(|c| c != e.cas || e.cas == 0) {
            return (Write::Keep, StoreOutcome::Exists);
        }
        if f.invalidate() {
            // Stale, with a new CAS unique (and the TTL of T, if given).
            let t = new_ttl.map_or(Ttl::Keep, ttl);
            let w = Write::PutMc(Cow::Owned(e.value.to_vec()), t, e.flags);
            return (w, StoreOutcome::Stored);
        }
        (Write::Delete, StoreOutcome::Stored)
    });
    let (r, cas) = match result {
        Ok(r) => r,
        Err(e) => return store_error(out, e),
    };
    s.mc.add(
        if r == StoreOutcome::Stored {
            Mc::DeleteHits
        } else {
            Mc::DeleteMisses
        },
        1,
    );
    if r == StoreOutcome::Stored && f.invalidate() && cas != 0 {
        ctx.memcache.marks.set_stale(key, cas);
    }
    let code: &[u8] = match r {
        StoreOutcome::Stored if f.quiet() => return,
        StoreOutcome::Stored => b"HD",
        StoreOutcome::NotFound => b"NF",
        _ => b"EX",
    };
    out.extend_from_slice(code);
    echo_flags(out, f, wire_key);
    out.extend_from_slice(b"\r\n");
}

fn meta_arith(
    ctx: &Context,
    s: &mut Session,
    key: &[u8],
    wire_key: &[u8],
    f: &MetaFlags<'_>,
    out: &mut Vec<u8>,
) {
    let incr = match f.mode().unwrap_or(b'I') {
        b'I' | b'i' | b'+' => true,
        b'D' | b'd' | b'-' => false,
        _ => return mc::line(out, b"CLIENT_ERROR invalid mode for ma M token"),
    };
    let store = &ctx.store;
    let create = f
        .vivify()
        .map(|t| (f.initial().unwrap_or(0), deadline(store, t)));
    let new_ttl = f.ttl().map(|t| deadline(store, t));
    let delta = f.delta().unwrap_or(1);
    let result = arith_cas(ctx, key, incr, delta, create, new_ttl, f.compare_cas());
    let (r, cas) = match result {
        Ok(r) => r,
        Err(e) => return store_error(out, e),
    };
    let c = match (&r, incr) {
        (Arith::Done(..), true) => Mc::IncrHits,
        (Arith::Done(..), false) => Mc::DecrHits,
        (_, true) => Mc::IncrMisses,
        (_, false) => Mc::DecrMisses,
    };
    s.mc.add(c, 1);
    let (n, at) = match r {
        Arith::Done(n, at) => (n, at),
        Arith::NonNumeric => {
            return mc::line(
                out,
                b"CLIENT_ERROR cannot increment or decrement non-numeric value",
            );
        }
        Arith::Missing | Arith::CasMismatch => {
            out.extend_from_slice(if matches!(r, Arith::Missing) {
                b"NF"
            } else {
                b"EX"
            });
            echo_flags(out, f, wire_key);
            out.extend_from_slice(b"\r\n");
            return;
        }
    };
    if f.quiet() && !f.value() {
        return;
    }
    let mut num = itoa::Buffer::new();
    let digits = num.format(n).as_bytes();
    if f.value() {
        out.extend_from_slice(b"VA ");
        mc::number(out, digits.len());
    } else {
        out.extend_from_slice(b"HD");
    }
    let now = if f.order().any(|c| c == b't') {
        store.now_ms()
    } else {
        0
    };
    for c in f.order() {
        match c {
            b't' => mc::meta_num(out, b't', remaining(at, now)),
            b'c' => mc::meta_num(out, b'c', cas),
            b'O' => mc::meta_token(out, b'O', f.opaque().unwrap_or_default()),
            b'k' => mc::meta_token(out, b'k', wire_key),
            _ => {}
        }
    }
    if f.key() && f.base64() {
        out.extend_from_slice(b" b");
    }
    out.extend_from_slice(b"\r\n");
    if f.value() {
        out.extend_from_slice(digits);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_parse_as_memcached_reads_them() {
        assert_eq!(parse_counter(b"12"), Some(12));
        assert_eq!(parse_counter(b" 12"), Some(12));
        assert_eq!(parse_counter(b"1   "), Some(1));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"12a",
            b"-1",
            b"x",
            b"118446744073709551615",
            b"  ",
        ] {
            assert_eq!(
                parse_counter(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn remaining_rounds_up() {
        assert_eq!(remaining(None, 5), -1);
        assert_eq!(remaining(Some(30_000), 1), 30);
        assert_eq!(remaining(Some(1000), 1000), 0);
    }
}
