//! Strings as bit arrays: GETBIT, SETBIT, BITCOUNT and BITPOS. Bit 0 is the most significant
//! bit of the first byte, and a missing key reads as an endless run of zero bits, as in Redis.

use std::borrow::Cow;

use super::encoding::Encoding;
use super::{Context, Reply, store_error};
use crate::protocol::{BitRange, Response};
use crate::store::{Access, Ttl, Write};

pub(super) fn getbit(ctx: &Context, w: &mut Reply<'_>, key: &[u8], offset: u64) {
    let bit = ctx.store.get(key, |v| bit_at(v, offset)).unwrap_or(false);
    w.send(Response::Int(bit as i64));
}

fn bit_at(v: &[u8], offset: u64) -> bool {
    let byte = (offset >> 3) as usize;
    v.get(byte).is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

/// The offset was checked against the value limit by the decoder, so the grown string fits.
pub(super) fn setbit(ctx: &Context, w: &mut Reply<'_>, key: &[u8], offset: u64, on: bool) {
    let byte = (offset >> 3) as usize;
    let mask = 0x80u8 >> (offset & 7);
    let mut written: Option<Vec<u8>> = None;
    let r = ctx.store.update(key, Access::Write, |e| {
        let (old, ttl) = match &e {
            Some(e) => (e.value, Ttl::Keep),
            None => (&[][..], Ttl::Persist),
        };
        let was = bit_at(old, offset);
        if e.is_some() && byte < old.len() && was == on {
            return (Write::Keep, was); // nothing changes
        }
        let mut v = Vec::with_capacity(old.len().max(byte + 1));
        v.extend_from_slice(old);
        if v.len() <= byte {
            v.resize(byte + 1, 0);
        }
        if on {
            v[byte] |= mask;
        } else {
            v[byte] &= !mask;
        }
        written = Some(v.clone());
        (Write::Put(Cow::Owned(v), ttl), was)
    });
    match r {
        Ok(was) => {
            if let Some(v) = written {
                ctx.encodings.written(key, &v, Encoding::Raw);
            }
            w.send(Response::Int(was as i64));
        }
        Err(e) => w.error(store_error(e)),
    }
}

/// Turns a BITCOUNT/BITPOS range into inclusive byte bounds plus masks of the bits to ignore in
/// the first and last byte (Redis's `first_byte_neg_mask` / `last_byte_neg_mask`). `None` when
/// the range is empty.
struct Span {
    start: usize,
    end: usize,
    first_mask: u8,
    last_mask: u8,
}

fn span(len: usize, start: i64, end: i64, bits: bool) -> Option<Span> {
    let total = if bits { (len as i64) << 3 } else { len as i64 };
    let mut start = if start < 0 { total + start } else { start };
    let mut end = if end < 0 { total + end } else { end };
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return None;
    }
    let (mut first_mask, mut last_mask) = (0u8, 0u8);
    if bits {
        first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    Some(Span {
        start: start as usize,
        end: end as usize,
        first_mask,
        last_mask,
    })
}

pub(super) fn bitcount(ctx: &Context, w: &mut Reply<'_>, key: &[u8], range: BitRange) {
    let r = ctx.store.get(key, |v| -> Result<i64, &'static str> {
        let s = match range {
            BitRange::Whole if v.is_empty() => return Ok(0),
            BitRange::Whole => Span {
                start: 0,
                end: v.len() - 1,
                first_mask: 0,
                last_mask: 0,
            },
            BitRange::Invalid(e) => return Err(e),
            BitRange::Span { start, end, bits } => {
                let end = end.unwrap_or(-1);
                if start < 0 && end < 0 && start > end {
                    return Ok(0);
                }
                match span(v.len(), start, end, bits) {
                    Some(s) => s,
                    None => return Ok(0),
                }
            }
        };
        let bytes = &v[s.start..=s.end];
        let mut count: i64 = bytes.iter().map(|b| b.count_ones() as i64).sum();
        count -= (bytes[0] & s.first_mask).count_ones() as i64;
        count -= (bytes[bytes.len() - 1] & s.last_mask).count_ones() as i64;
        Ok(count)
    });
    match r {
        None => w.send(Response::Int(0)),
        Some(Ok(n)) => w.send(Response::Int(n)),
        Some(Err(e)) => w.error(e),
    }
}

pub(super) fn bitpos(ctx: &Context, w: &mut Reply<'_>, key: &[u8], bit: bool, range: BitRange) {
    let r = ctx.store.get(key, |v| -> Result<i64, &'static str> {
        let (s, end_given) = match range {
            BitRange::Invalid(e) => return Err(e),
            BitRange::Whole => (span(v.len(), 0, -1, false), false),
            BitRange::Span { start, end, bits } => {
                let end_given = end.is_some();
                // Without an end, the range runs to the last byte (or bit).
                let end = end.unwrap_or(if bits {
                    ((v.len() as i64) << 3) + 7
                } else {
                    v.len() as i64 - 1
                });
                (span(v.len(), start, end, bits), end_given)
            }
        };
        let Some(s) = s else { return Ok(-1) };
        Ok(first_bit(v, &s, bit, end_given))
    });
    match r {
        // A missing key is all zero bits: the first 0 is at 0, and there is no 1.
        None => w.send(Response::Int(if bit { -1 } else { 0 })),
        Some(Ok(n)) => w.send(Response::Int(n)),
        Some(Err(e)) => w.error(e),
    }
}

/// The first bit equal to `bit` inside the span. Not found: -1 when looking for a 1 or when the
/// caller gave an explicit end; otherwise (looking for a 0) the first bit after the string,
/// which reads as zero padding.
fn first_bit(v: &[u8], s: &Span, bit: bool, end_given: bool) -> i64 {
    for (i, &byte) in v.iter().enumerate().take(s.end + 1).skip(s.start) {
        let mut b = byte;
        // Bits outside the range must not match: force them to the opposite value.
        let mut outside = 0u8;
        if i == s.start {
            outside |= s.first_mask;
        }
        if i == s.end {
            outside |= s.last_mask;
        }
        if bit {
            b &= !outside;
        } else {
            b |= outside;
        }
        let candidate = if bit { b } else { !b };
        if candidate != 0 {
            return ((i as i64) << 3) + candidate.leading_zeros() as i64;
        }
    }
    if bit || end_given {
        -1
    } else {
        ((s.end as i64) + 1) << 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(v: &[u8], bit: bool, start: i64, end: Option<i64>, bits: bool) -> i64 {
        let e = end.unwrap_or(if bits {
            ((v.len() as i64) << 3) + 7
        } else {
            v.len() as i64 - 1
        });
        match span(v.len(), start, e, bits) {
            Some(s) => first_bit(v, &s, bit, end.is_some()),
            None => -1,
        }
    }

    #[test]
    fn bitpos_matches_redis_examples() {
        // From the Redis documentation and its bitops tests.
        assert_eq!(pos(b"\xff\xf0\x00", false, 0, None, false), 12);
        assert_eq!(pos(b"\x00\xff\xf0", true, 2, None, false), 16);
        assert_eq!(pos(b"\x00\xff\xf0", true, 2, Some(-1), false), 16);
        assert_eq!(pos(b"\x00\xff\xf0", true, 7, Some(15), true), 8);
        assert_eq!(pos(b"\x00\xff\xf0", true, 7, Some(-3), true), 8);
        assert_eq!(pos(b"\xff\xff\xff", false, 0, None, false), 24);
        assert_eq!(pos(b"\xff\xff\xff", false, 0, Some(-1), false), -1);
        assert_eq!(pos(b"\x00\x00\x00", true, 0, None, false), -1);
        assert_eq!(pos(b"\xff", false, 3, Some(5), true), -1);
        assert_eq!(pos(b"\xfb", false, 3, Some(5), true), 5);
    }

    #[test]
    fn spans_clamp_like_redis() {
        assert!(span(3, 5, 10, false).is_none());
        let s = span(3, -100, 100, false).unwrap();
        assert_eq!((s.start, s.end), (0, 2));
        let s = span(2, 3, 12, true).unwrap();
        assert_eq!(
            (s.start, s.end, s.first_mask, s.last_mask),
            (0, 1, 0xe0, 0x07)
        );
    }
}
