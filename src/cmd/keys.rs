//! The keyspace and TTLs: DELETE/DEL, EXISTS, TYPE, the EXPIRE family, TTL/PTTL, PERSIST, SCAN,
//! KEYS, RANDOMKEY, DBSIZE and FLUSHALL/FLUSHDB, plus the glob matcher SCAN and KEYS share.

use super::{Context, Reply, store_error};
use crate::protocol::{Args, ExpireCond, ExpireSpec, Response};
use crate::store::{Access, Write};

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

pub(super) fn flush(ctx: &Context, w: &mut Reply<'_>, background: bool) {
    ctx.store.flush(background);
    w.send(Response::Ok);
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
}
