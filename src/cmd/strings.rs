//! String values: GET, SET and its variants, GETDEL, GETEX, MGET, MSET, MSETNX, APPEND, STRLEN
//! and the INCR family.

use std::borrow::Cow;

use super::{Context, NOT_INT, Reply, store_error};
use crate::protocol::{self, Args, ExpireSpec, GetExMode, Response, SetCond, SetKind};
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
            (Write::Put(Cow::Owned(v), Ttl::Keep), Ok(n))
        }
        None => (
            Write::Put(Cow::Borrowed(tail), Ttl::Persist),
            Ok(tail.len()),
        ),
    });
    match r {
        Ok(Ok(n)) => w.send(Response::Int(n as i64)),
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
