//! The byte layout of one record inside its slab chunk.
//!
//! ```text
//! [0..3) next id   [3..6) prev id   [6..10) LRU stamp   [10] meta
//! short form (key 1..=127 bytes, value <= 255 bytes): meta = has_expire<<7 | key_len, [11] value_len
//! long form:  meta = has_expire<<7, [11..13) key_len u16, [13..17) value_len u32
//! then, if has_expire, 6 bytes of deadline (unix milliseconds), then key bytes, then value bytes
//! ```
//!
//! A 16-byte key with a 64-byte value and a TTL takes 98 bytes, 18 of them overhead. All fields
//! are little-endian and read through byte slices, so there is no `unsafe` and no alignment rule.

use std::ops::Range;

const NEXT: usize = 0;
const PREV: usize = 3;
const STAMP: usize = 6;
const META: usize = 10;
const HAS_EXPIRE: u8 = 0x80;
const SHORT_HEADER: usize = 12;
const LONG_HEADER: usize = 17;
const EXPIRE_LEN: usize = 6;

/// Largest key the record format can hold.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;
/// Largest value the record format can hold.
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;
/// Latest deadline the 48-bit field can hold (about year 10889); later ones are clamped to it.
pub const MAX_DEADLINE_MS: u64 = (1 << 48) - 1;

fn is_short(key_len: usize, value_len: usize) -> bool {
    (1..=127).contains(&key_len) && value_len <= 255
}

/// Bytes a record needs for this key, value and TTL presence.
pub(crate) fn record_len(key_len: usize, value_len: usize, has_expire: bool) -> usize {
    let header = if is_short(key_len, value_len) {
        SHORT_HEADER
    } else {
        LONG_HEADER
    };
    header + if has_expire { EXPIRE_LEN } else { 0 } + key_len + value_len
}

/// Where the parts of a record sit inside its chunk.
pub(crate) struct Layout {
    pub(crate) expire: Option<usize>,
    pub(crate) key: Range<usize>,
    pub(crate) value: Range<usize>,
}

#[inline]
pub(crate) fn layout(c: &[u8]) -> Layout {
    let meta = c[META];
    let (key_len, value_len, mut off) = if meta & 0x7F != 0 {
        ((meta & 0x7F) as usize, c[META + 1] as usize, SHORT_HEADER)
    } else {
        let k = u16::from_le_bytes([c[11], c[12]]) as usize;
        let v = u32::from_le_bytes([c[13], c[14], c[15], c[16]]) as usize;
        (k, v, LONG_HEADER)
    };
    let expire = if meta & HAS_EXPIRE != 0 {
        off += EXPIRE_LEN;
        Some(off - EXPIRE_LEN)
    } else {
        None
    };
    Layout {
        expire,
        key: off..off + key_len,
        value: off + key_len..off + key_len + value_len,
    }
}

#[inline]
pub(crate) fn key(c: &[u8]) -> &[u8] {
    let l = layout(c);
    &c[l.key]
}

#[inline]
pub(crate) fn value(c: &[u8]) -> &[u8] {
    let l = layout(c);
    &c[l.value]
}

/// The record's deadline in unix milliseconds, if it has one.
#[inline]
pub(crate) fn expire(c: &[u8]) -> Option<u64> {
    layout(c).expire.map(|o| read_u48(&c[o..]))
}

/// Overwrites the deadline of a record that already has one.
pub(crate) fn set_expire_in_place(c: &mut [u8], at: u64) {
    let o = layout(c).expire.expect("record has a deadline field");
    write_u48(&mut c[o..], at.min(MAX_DEADLINE_MS));
}

/// Writes a whole record (links included) into `c`, which must be at least `record_len` long.
pub(crate) fn write(
    c: &mut [u8],
    links: (u32, u32, u32),
    key: &[u8],
    value: &[&[u8]],
    expire: Option<u64>,
) {
    let value_len: usize = value.iter().map(|p| p.len()).sum();
    set_next(c, links.0);
    set_prev(c, links.1);
    set_stamp(c, links.2);
    let flag = if expire.is_some() { HAS_EXPIRE } else { 0 };
    let mut off = if is_short(key.len(), value_len) {
        c[META] = flag | key.len() as u8;
        c[META + 1] = value_len as u8;
        SHORT_HEADER
    } else {
        c[META] = flag;
        c[11..13].copy_from_slice(&(key.len() as u16).to_le_bytes());
        c[13..17].copy_from_slice(&(value_len as u32).to_le_bytes());
        LONG_HEADER
    };
    if let Some(at) = expire {
        write_u48(&mut c[off..], at.min(MAX_DEADLINE_MS));
        off += EXPIRE_LEN;
    }
    c[off..off + key.len()].copy_from_slice(key);
    off += key.len();
    for part in value {
        c[off..off + part.len()].copy_from_slice(part);
        off += part.len();
    }
}

#[inline]
fn read_u24(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], 0])
}

#[inline]
fn write_u24(c: &mut [u8], v: u32) {
    c[..3].copy_from_slice(&v.to_le_bytes()[..3]);
}

fn read_u48(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&c[..6]);
    u64::from_le_bytes(b)
}

fn write_u48(c: &mut [u8], v: u64) {
    c[..6].copy_from_slice(&v.to_le_bytes()[..6]);
}

#[inline]
pub(crate) fn next(c: &[u8]) -> u32 {
    read_u24(&c[NEXT..])
}
#[inline]
pub(crate) fn prev(c: &[u8]) -> u32 {
    read_u24(&c[PREV..])
}
#[inline]
pub(crate) fn stamp(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[STAMP], c[STAMP + 1], c[STAMP + 2], c[STAMP + 3]])
}
#[inline]
pub(crate) fn set_next(c: &mut [u8], v: u32) {
    write_u24(&mut c[NEXT..], v)
}
#[inline]
pub(crate) fn set_prev(c: &mut [u8], v: u32) {
    write_u24(&mut c[PREV..], v)
}
#[inline]
pub(crate) fn set_stamp(c: &mut [u8], v: u32) {
    c[STAMP..STAMP + 4].copy_from_slice(&v.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(key: &[u8], value: &[u8], expire: Option<u64>) {
        let len = record_len(key.len(), value.len(), expire.is_some());
        let mut c = vec![0xAAu8; len + 5];
        write(
            &mut c,
            (1, 2, 3),
            key,
            &[&value[..value.len() / 2], &value[value.len() / 2..]],
            expire,
        );
        assert_eq!(next(&c), 1);
        assert_eq!(prev(&c), 2);
        assert_eq!(stamp(&c), 3);
        assert_eq!(self::key(&c), key);
        assert_eq!(self::value(&c), value);
        assert_eq!(self::expire(&c), expire);
        assert_eq!(layout(&c).value.end, len);
    }

    #[test]
    fn short_and_long_forms_roundtrip() {
        roundtrip(b"k", b"", None);
        roundtrip(&[b'k'; 16], &[b'v'; 64], Some(1_700_000_000_000));
        roundtrip(&[b'k'; 127], &[b'v'; 255], None);
        roundtrip(&[b'k'; 128], b"v", Some(5));
        roundtrip(b"", b"value", None);
        roundtrip(b"k", &[7u8; 70_000], Some(MAX_DEADLINE_MS));
        roundtrip(&[1u8; MAX_KEY_LEN], b"x", None);
    }

    #[test]
    fn record_overhead_for_the_reference_item() {
        // 16-byte key, 64-byte value, TTL: the item the memory target is stated for.
        assert_eq!(record_len(16, 64, true), 98);
        assert_eq!(record_len(16, 64, false), 92);
    }

    #[test]
    fn deadlines_clamp_and_update_in_place() {
        let mut c = vec![0u8; record_len(3, 3, true)];
        write(&mut c, (0, 0, 0), b"key", &[b"val"], Some(u64::MAX));
        assert_eq!(expire(&c), Some(MAX_DEADLINE_MS));
        set_expire_in_place(&mut c, 42);
        assert_eq!(expire(&c), Some(42));
        assert_eq!(value(&c), b"val");
    }
}
