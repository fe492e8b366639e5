//! The keyspace and TTLs: DELETE/DEL, EXISTS, TYPE, the EXPIRE family, TTL/PTTL,
//! EXPIRETIME/PEXPIRETIME, PERSIST, RENAME/RENAMENX, COPY, OBJECT, SCAN, KEYS, RANDOMKEY, DBSIZE
//! and FLUSHALL/FLUSHDB, plus the glob matcher SCAN and KEYS share.

use super::{Context, Reply, store_error};
use crate::protocol::{Args, ExpireCond, ExpireSpec, ObjectCmd, Response};
use crate::store::{Access, Ttl, Write};

/// Turns a requested expiry into an absolute deadline in unix ms. `Err` when it overflows;
/// a result at or before `now` means "already expired".
pub(super) fn deadline(spec: ExpireSpec, now: u64, cmd: &str) -> Result<u64, String> {
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

pub(super) fn delete(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    w.send(if ctx.store.delete(key) {
        Response::Deleted
    } else {
        Response::Nil
    })
}

pub(super) fn exists(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    w.send(Response::Int(ctx.store.contains(key) as i64))
}

/// EXISTS with several keys (duplicates count each time, as in Redis), atomically.
pub(super) fn exists_many(ctx: &Context, w: &mut Reply<'_>, keys: Args<'_>) {
    let keys: Vec<&[u8]> = keys.iter().collect();
    let n = ctx.store.multi(&keys, |t| {
        (0..keys.len()).filter(|&i| t.contains(i)).count()
    });
    w.send(Response::Int(n as i64));
}

/// TOUCH: refreshes recency (a read access, as Redis counts it) of every existing key.
pub(super) fn touch(ctx: &Context, w: &mut Reply<'_>, keys: Args<'_>) {
    let keys: Vec<&[u8]> = keys.iter().collect();
    let n = ctx.store.multi(&keys, |t| {
        (0..keys.len())
            .filter(|&i| t.get(i, |_| ()).is_some())
            .count()
    });
    w.send(Response::Int(n as i64));
}

/// DEL / UNLINK: all keys removed in one atomic step.
pub(super) fn del(ctx: &Context, w: &mut Reply<'_>, keys: Args<'_>) {
    if keys.len() == 1 {
        return w.send(Response::Int(ctx.store.delete(keys.get(0)) as i64));
    }
    let keys: Vec<&[u8]> = keys.iter().collect();
    let n = ctx
        .store
        .multi(&keys, |t| (0..keys.len()).filter(|&i| t.delete(i)).count());
    w.send(Response::Int(n as i64));
}

pub(super) fn type_of(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    w.send(Response::Simple(if ctx.store.contains(key) {
        "string"
    } else {
        "none"
    }))
}

pub(super) fn expire(
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

pub(super) fn ttl(ctx: &Context, w: &mut Reply<'_>, key: &[u8], millis: bool) {
    let store = &*ctx.store;
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

pub(super) fn expiretime(ctx: &Context, w: &mut Reply<'_>, key: &[u8], millis: bool) {
    let at = ctx
        .store
        .update(key, Access::Peek, |e| {
            let t = match e {
                None => -2,
                Some(e) => e.expires_at.map_or(-1, |at| at as i64),
            };
            (Write::Keep, t)
        })
        .unwrap_or(-2);
    // Redis rounds the seconds form to the nearest second.
    let at = if at < 0 || millis {
        at
    } else {
        (at + 500) / 1000
    };
    w.send(Response::Int(at));
}

/// RENAME / RENAMENX: the value and its TTL move to `to` (replacing it, or not at all with NX
/// when it exists), and `from` goes away.
pub(super) fn rename(ctx: &Context, w: &mut Reply<'_>, from: &[u8], to: &[u8], nx: bool) {
    let store = &*ctx.store;
    if from == to {
        return match (store.contains(from), nx) {
            (false, _) => w.error("ERR no such key"),
            (true, true) => w.send(Response::Int(0)),
            (true, false) => w.send(Response::Ok),
        };
    }
    let r = store.multi(&[from, to], |t| {
        let Some(moved) = t
            .update(0, Access::Write, |e| {
                (Write::Keep, e.map(|e| (e.value.to_vec(), e.expires_at)))
            })
            .ok()
            .flatten()
        else {
            return Ok(None);
        };
        if nx && t.contains(1) {
            return Ok(Some(false));
        }
        let ttl = moved.1.map_or(Ttl::Persist, Ttl::At);
        t.set(1, &moved.0, ttl)?;
        t.delete(0);
        Ok(Some(true))
    });
    match r {
        Ok(None) => return w.error("ERR no such key"),
        Ok(Some(false)) => return w.send(Response::Int(0)),
        Ok(Some(true)) => {}
        Err(e) => return w.error(store_error(e)),
    }
    ctx.encodings.carry(from, to, false);
    w.send(if nx { Response::Int(1) } else { Response::Ok });
}

/// COPY: the value and its TTL are duplicated under `to`, unless it exists and REPLACE is not
/// given. (Only database 0 exists; the decoder refused any other.)
pub(super) fn copy(ctx: &Context, w: &mut Reply<'_>, from: &[u8], to: &[u8], replace: bool) {
    let r = ctx.store.multi(&[from, to], |t| {
        let Some((value, at)) = t
            .update(0, Access::Read, |e| {
                (Write::Keep, e.map(|e| (e.value.to_vec(), e.expires_at)))
            })
            .ok()
            .flatten()
        else {
            return Ok(false);
        };
        if !replace && t.contains(1) {
            return Ok(false);
        }
        t.set(1, &value, at.map_or(Ttl::Persist, Ttl::At))?;
        Ok(true)
    });
    match r {
        Ok(done) => {
            if done {
                ctx.encodings.carry(from, to, true);
            }
            w.send(Response::Int(done as i64));
        }
        Err(e) => w.error(store_error(e)),
    }
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// OBJECT: ENCODING as Redis would report it, REFCOUNT (always 1: no value is shared, as in
/// Redis under an LRU policy), FREQ (Redis's answer under an LRU policy) and IDLETIME (not
/// tracked: the store orders keys by recency but keeps no access times).
pub(super) fn object(ctx: &Context, w: &mut Reply<'_>, cmd: ObjectCmd<'_>) {
    let key = match cmd {
        ObjectCmd::Help => {
            w.send(Response::Array(OBJECT_HELP.len()));
            for line in OBJECT_HELP {
                w.send(Response::Simple(line));
            }
            return;
        }
        ObjectCmd::Encoding(k)
        | ObjectCmd::RefCount(k)
        | ObjectCmd::IdleTime(k)
        | ObjectCmd::Freq(k) => k,
    };
    let encoding = ctx
        .store
        .update(key, Access::Peek, |e| {
            let enc = e.map(|e| ctx.encodings.encoding(key, e.value));
            (Write::Keep, enc)
        })
        .ok()
        .flatten();
    let Some(encoding) = encoding else {
        return w.send(Response::Nil);
    };
    match cmd {
        ObjectCmd::Encoding(_) => w.bulk_str(encoding.name()),
        ObjectCmd::RefCount(_) => w.send(Response::Int(1)),
        ObjectCmd::Freq(_) => w.error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
        _ => w.error(
            "ERR OBJECT IDLETIME is not supported by kvcache: the store keeps keys in recency order but records no access times",
        ),
    }
}

pub(super) fn persist(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    let r = ctx.store.update(key, Access::Write, |e| match e {
        Some(e) if e.expires_at.is_some() => (Write::Expire(None), 1),
        _ => (Write::Keep, 0),
    });
    match r {
        Ok(n) => w.send(Response::Int(n)),
        Err(e) => w.error(store_error(e)),
    }
}

pub(super) fn scan(
    ctx: &Context,
    w: &mut Reply<'_>,
    cursor: u64,
    pattern: Option<&[u8]>,
    count: usize,
    kind: Option<&[u8]>,
) {
    let strings_only = kind.is_none_or(|k| k.eq_ignore_ascii_case(b"string"));
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let next = ctx.store.scan(cursor, count, |k| {
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

pub(super) fn keys(ctx: &Context, w: &mut Reply<'_>, pattern: &[u8]) {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = 0;
    loop {
        cursor = ctx.store.scan(cursor, 4096, |k| {
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

pub(super) fn random_key(ctx: &Context, w: &mut Reply<'_>) {
    match ctx.store.random_key() {
        Some(k) => w.send(Response::Bulk(&k)),
        None => w.send(Response::Nil),
    }
}

pub(super) fn dbsize(ctx: &Context, w: &mut Reply<'_>) {
    w.send(Response::Int(ctx.store.len() as i64))
}

/// FLUSHALL / FLUSHDB: the keys are gone when the reply is sent; their memory is always
/// handed back on another thread (what Redis does only with ASYNC), so flushing a large store
/// never stalls this connection or the others on its thread. SYNC and ASYNC are both accepted.
pub(super) fn flush(ctx: &Context, w: &mut Reply<'_>, _async: bool) {
    ctx.store.flush(true);
    w.send(Response::Ok);
}

/// Redis-style glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), used by SCAN, KEYS and
/// CONFIG GET. Iterative with one backtrack point, so no pattern is exponential. Like Redis
/// (its fix for CVE-2022-36021), a pattern with more than 1000 `*` groups before its end
/// matches nothing.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    if inner_star_groups(pattern) > MAX_STAR_GROUPS {
        return false;
    }
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

/// Redis's matcher recurses once per `*` group and gives up past this depth.
const MAX_STAR_GROUPS: usize = 1000;

/// `*` groups (runs of stars) that something follows, outside classes and escapes: Redis's
/// recursion depth for a full match.
fn inner_star_groups(pattern: &[u8]) -> usize {
    let (mut groups, mut i) = (0, 0);
    while i < pattern.len() {
        match pattern[i] {
            b'*' => {
                while i < pattern.len() && pattern[i] == b'*' {
                    i += 1;
                }
                if i < pattern.len() {
                    groups += 1;
                }
                continue;
            }
            b'\\' => i += 1,
            b'[' => {
                i += 1;
                while i < pattern.len() && pattern[i] != b']' {
                    i += 1 + (pattern[i] == b'\\') as usize;
                }
            }
            _ => {}
        }
        i += 1;
    }
    groups
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
        // Redis gives up on patterns with more than 1000 inner `*` groups.
        let a = "a".repeat(50_000);
        assert!(!m(&"*?".repeat(50_000), &a));
        assert!(m(&format!("{}*", "?*".repeat(1000)), &a));
        assert!(!m(&format!("{}?", "*?".repeat(1001)), &a));
        assert!(m(&"[*]".repeat(2000), &"*".repeat(2000)));
        assert!(m(&"\\*a".repeat(2000), &"*a".repeat(2000)));
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
}
