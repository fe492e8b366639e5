//! String values: GET, SET and its variants, GETDEL, GETEX, MGET, MSET, MSETNX, APPEND, STRLEN,
//! GETRANGE/SUBSTR, SETRANGE, LCS, the INCR family and INCRBYFLOAT.

use std::borrow::Cow;

use super::encoding::Encoding;
use super::longdouble::LongDouble;
use super::{Context, NOT_INT, Reply, store_error};
use crate::protocol::{self, Args, ExpireSpec, GetExMode, LcsMode, Response, SetCond, SetKind};
use crate::store::{Access, Ttl, Write};

pub(super) fn get(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    if ctx.store.get(key, |v| w.send(Response::Bulk(v))).is_none() {
        w.send(Response::Nil);
    }
}

pub(super) fn getdel(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    let found = ctx.store.update(key, Access::Read, |e| match e {
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

pub(super) fn getex(ctx: &Context, w: &mut Reply<'_>, key: &[u8], mode: GetExMode) {
    let store = &*ctx.store;
    let ttl = match mode {
        GetExMode::Keep => None,
        GetExMode::Persist => Some(None),
        GetExMode::Expire(spec) => match super::keys::deadline(spec, store.now_ms(), "getex") {
            Ok(at) => Some(Some(at)),
            Err(e) => return w.error(&e),
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

/// MGET: every key read under its shard's lock at once, so the reply is one point in time.
pub(super) fn mget(ctx: &Context, w: &mut Reply<'_>, keys: Args<'_>) {
    w.send(Response::Array(keys.len()));
    if keys.len() == 1 {
        return get(ctx, w, keys.get(0));
    }
    let keys: Vec<&[u8]> = keys.iter().collect();
    ctx.store.multi(&keys, |t| {
        for i in 0..keys.len() {
            if t.get(i, |v| w.send(Response::Bulk(v))).is_none() {
                w.send(Response::Nil);
            }
        }
    });
}

pub(super) fn mset(ctx: &Context, w: &mut Reply<'_>, pairs: Args<'_>) {
    if let Err(e) = check_values(ctx, pairs) {
        return w.error(&e);
    }
    let keys: Vec<&[u8]> = pairs.iter().step_by(2).collect();
    let r = ctx.store.multi(&keys, |t| {
        for i in 0..keys.len() {
            t.set(i, pairs.get(2 * i + 1), Ttl::Persist)?;
        }
        Ok(())
    });
    match r {
        Ok(()) => w.send(Response::Ok),
        Err(e) => w.error(store_error(e)),
    }
}

/// MSETNX: the absence check and the writes happen under the same locks, so of two
/// overlapping MSETNX calls exactly one wins, whole.
pub(super) fn msetnx(ctx: &Context, w: &mut Reply<'_>, pairs: Args<'_>) {
    if let Err(e) = check_values(ctx, pairs) {
        return w.error(&e);
    }
    let keys: Vec<&[u8]> = pairs.iter().step_by(2).collect();
    let r = ctx.store.multi(&keys, |t| {
        if (0..keys.len()).any(|i| t.contains(i)) {
            return Ok(false);
        }
        for i in 0..keys.len() {
            t.set(i, pairs.get(2 * i + 1), Ttl::Persist)?;
        }
        Ok(true)
    });
    match r {
        Ok(done) => w.send(Response::Int(done as i64)),
        Err(e) => w.error(store_error(e)),
    }
}

pub(super) fn append(ctx: &Context, w: &mut Reply<'_>, key: &[u8], tail: &[u8]) {
    let max = ctx.config.max_value_size;
    let r = ctx.store.update(key, Access::Write, |e| match e {
        Some(e) if e.value.len() + tail.len() > max => (Write::Keep, Err(())),
        Some(e) => {
            let mut v = Vec::with_capacity(e.value.len() + tail.len());
            v.extend_from_slice(e.value);
            v.extend_from_slice(tail);
            let n = v.len();
            // Redis grows the string in place: a raw string, even when short or numeric.
            let short = (n <= 44).then(|| v.clone());
            (Write::Put(Cow::Owned(v), Ttl::Keep), Ok((n, short)))
        }
        None => (
            Write::Put(Cow::Borrowed(tail), Ttl::Persist),
            Ok((tail.len(), None)),
        ),
    });
    match r {
        Ok(Ok((n, short))) => {
            if let Some(v) = short {
                ctx.encodings.written(key, &v, Encoding::Raw);
            }
            w.send(Response::Int(n as i64))
        }
        Ok(Err(())) => w.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)"),
        Err(e) => w.error(store_error(e)),
    }
}

pub(super) fn strlen(ctx: &Context, w: &mut Reply<'_>, key: &[u8]) {
    let n = ctx
        .store
        .update(key, Access::Peek, |e| {
            (Write::Keep, e.map_or(0, |e| e.value.len()))
        })
        .unwrap_or(0);
    w.send(Response::Int(n as i64));
}

pub(super) fn incr_by(ctx: &Context, w: &mut Reply<'_>, key: &[u8], by: i64) {
    let mut digits = itoa::Buffer::new();
    let r = ctx.store.update(key, Access::Write, |e| {
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

/// A plain `SET key value` (no options): what [`set`] does for it, straight to [`crate::store::Store::set`].
#[inline]
pub(super) fn set_plain(ctx: &Context, w: &mut Reply<'_>, key: &[u8], value: &[u8]) {
    if value.len() > ctx.config.max_value_size {
        return value_too_long(ctx, w);
    }
    match ctx.store.set(key, value, Ttl::Persist) {
        Ok(()) => w.send(Response::Stored),
        Err(e) => w.error(store_error(e)),
    }
}

#[cold]
fn value_too_long(ctx: &Context, w: &mut Reply<'_>) {
    w.error(&format!(
        "ERR value too long (max {} bytes)",
        ctx.config.max_value_size
    ));
}

#[allow(clippy::too_many_arguments)]
pub(super) fn set(
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
        return value_too_long(ctx, w);
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
            match super::keys::deadline(spec, store.now_ms(), cmd) {
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

const MAX_SIZE: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

pub(super) fn getrange(ctx: &Context, w: &mut Reply<'_>, key: &[u8], start: i64, end: i64) {
    let found = ctx.store.get(key, |v| {
        w.send(Response::Bulk(substring(v, start, end)));
    });
    if found.is_none() {
        w.send(Response::Bulk(b""));
    }
}

/// GETRANGE's slice: negative indexes count from the end, both ends clamp to the string.
fn substring(v: &[u8], start: i64, end: i64) -> &[u8] {
    let len = v.len() as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return b"";
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.clamp(0, len - 1);
    if start > end {
        b""
    } else {
        &v[start as usize..=end as usize]
    }
}

pub(super) fn setrange(ctx: &Context, w: &mut Reply<'_>, key: &[u8], offset: u64, patch: &[u8]) {
    let max = ctx.config.max_value_size as u64;
    let too_big = offset.saturating_add(patch.len() as u64) > max;
    let mut written: Option<Vec<u8>> = None;
    let r = ctx.store.update(key, Access::Write, |e| {
        let (old, ttl) = match &e {
            // Nothing to write: a missing key stays missing, an existing one unchanged.
            _ if patch.is_empty() => {
                return (Write::Keep, Ok(e.as_ref().map_or(0, |e| e.value.len())));
            }
            _ if too_big => return (Write::Keep, Err(MAX_SIZE)),
            Some(e) => (e.value, Ttl::Keep),
            None => (&[][..], Ttl::Persist),
        };
        let offset = offset as usize;
        let mut v = Vec::with_capacity(old.len().max(offset + patch.len()));
        v.extend_from_slice(old);
        if v.len() < offset + patch.len() {
            v.resize(offset + patch.len(), 0);
        }
        v[offset..offset + patch.len()].copy_from_slice(patch);
        let n = v.len();
        if n <= 44 {
            written = Some(v.clone());
        }
        (Write::Put(Cow::Owned(v), ttl), Ok(n))
    });
    match r {
        Ok(Ok(n)) => {
            if let Some(v) = written {
                ctx.encodings.written(key, &v, Encoding::Raw);
            }
            w.send(Response::Int(n as i64));
        }
        Ok(Err(msg)) => w.error(msg),
        Err(e) => w.error(store_error(e)),
    }
}

pub(super) fn incrbyfloat(ctx: &Context, w: &mut Reply<'_>, key: &[u8], by: &[u8]) {
    const NOT_FLOAT: &str = "ERR value is not a valid float";
    let r = ctx.store.update(key, Access::Write, |e| {
        let current = match &e {
            Some(e) => LongDouble::parse(e.value),
            None => LongDouble::parse(b"0"),
        };
        let (Some(current), Some(by)) = (current, LongDouble::parse(by)) else {
            return (Write::Keep, Err(NOT_FLOAT));
        };
        let sum = current.add(by);
        if !sum.is_finite() {
            return (
                Write::Keep,
                Err("ERR increment would produce NaN or Infinity"),
            );
        }
        let text = sum.to_human().into_bytes();
        (Write::Put(Cow::Owned(text.clone()), Ttl::Keep), Ok(text))
    });
    match r {
        Ok(Ok(text)) => {
            ctx.encodings
                .written(key, &text, Encoding::of_string(&text));
            w.send(Response::Bulk(&text));
        }
        Ok(Err(msg)) => w.error(msg),
        Err(e) => w.error(store_error(e)),
    }
}

/// LCS with Redis's dynamic programme and its reply shapes. The two values are read one after
/// the other (the store has no two-key snapshot); the table is bounded like Redis's, by the
/// value limit.
pub(super) fn lcs(ctx: &Context, w: &mut Reply<'_>, ka: &[u8], kb: &[u8], mode: LcsMode) {
    let a = ctx.store.get(ka, |v| v.to_vec()).unwrap_or_default();
    let b = ctx.store.get(kb, |v| v.to_vec()).unwrap_or_default();
    let (alen, blen) = (a.len(), b.len());
    if alen >= u32::MAX as usize - 1 || blen >= u32::MAX as usize - 1 {
        return w.error("ERR String too long for LCS");
    }
    let cells = (alen + 1) as u64 * (blen + 1) as u64;
    if cells * 4 > ctx.config.max_value_size as u64 {
        return w
            .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let mut table: Vec<u32> = Vec::new();
    if table.try_reserve_exact(cells as usize).is_err() {
        return w.error("ERR Insufficient memory, failed allocating transient memory for LCS");
    }
    table.resize(cells as usize, 0);
    let at = |i: usize, j: usize| j + i * (blen + 1);
    for i in 1..=alen {
        for j in 1..=blen {
            table[at(i, j)] = if a[i - 1] == b[j - 1] {
                table[at(i - 1, j - 1)] + 1
            } else {
                table[at(i - 1, j)].max(table[at(i, j - 1)])
            };
        }
    }
    let total = table[at(alen, blen)];
    let (idx, min_len, with_len) = match mode {
        LcsMode::Len => return w.send(Response::Int(total as i64)),
        LcsMode::String => (false, 0, false),
        LcsMode::Idx { min_len, with_len } => (true, min_len, with_len),
    };
    // Walk back from the end, collecting the common bytes and the matching ranges.
    let mut result = vec![0u8; total as usize];
    let mut ranges: Vec<[u32; 4]> = Vec::new();
    let mut pos = total as usize;
    let (mut i, mut j) = (alen, blen);
    let unset = alen as u32;
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (unset, 0u32, 0u32, 0u32);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            result[pos - 1] = a[i - 1];
            if a_start == unset {
                a_start = (i - 1) as u32;
                a_end = (i - 1) as u32;
                b_start = (j - 1) as u32;
                b_end = (j - 1) as u32;
            } else if a_start == i as u32 && b_start == j as u32 {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            pos -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[at(i - 1, j)] > table[at(i, j - 1)] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != unset {
                emit = true;
            }
        }
        if emit {
            let len = a_end - a_start + 1;
            if min_len == 0 || len as u64 >= min_len {
                ranges.push([a_start, a_end, b_start, b_end]);
            }
            a_start = unset;
        }
    }
    if !idx {
        return w.send(Response::Bulk(&result));
    }
    w.send(Response::Map(2));
    w.bulk_str("matches");
    w.send(Response::Array(ranges.len()));
    for [a0, a1, b0, b1] in ranges {
        w.send(Response::Array(2 + with_len as usize));
        w.send(Response::Array(2));
        w.send(Response::Int(a0 as i64));
        w.send(Response::Int(a1 as i64));
        w.send(Response::Array(2));
        w.send(Response::Int(b0 as i64));
        w.send(Response::Int(b1 as i64));
        if with_len {
            w.send(Response::Int((a1 - a0 + 1) as i64));
        }
    }
    w.bulk_str("len");
    w.send(Response::Int(total as i64));
}

#[cfg(test)]
mod tests {
    use super::substring;

    #[test]
    fn substrings_follow_getrange() {
        let v = b"Hello World";
        assert_eq!(substring(v, 0, 3), b"Hell");
        assert_eq!(substring(v, 0, -1), b"Hello World");
        assert_eq!(substring(v, -4, -1), b"orld");
        assert_eq!(substring(v, 5, 3), b"");
        assert_eq!(substring(v, 5, 5000), b" World");
        assert_eq!(substring(v, -5000, 10000), b"Hello World");
        assert_eq!(substring(v, -1, -5), b"");
        assert_eq!(substring(b"", 0, -1), b"");
        assert_eq!(substring(b"bar", 0, 4294967297), b"bar");
        assert_eq!(substring(v, i64::MIN, i64::MAX), b"Hello World");
    }
}
