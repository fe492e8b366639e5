//! The byte layout of one record in its segment (or huge mapping).
//!
//! ```text
//! [0..4)   next id     toward the LRU tail (older)
//! [4..8)   prev id     toward the LRU head (newer); DEAD once the record is garbage
//! [8..12)  stamp       recency (see `stamp.rs`)
//! [12]     meta        short form: has_expire << 7 | key_len (1..=127); long form: 0 or 0x80
//! short form (key 1..=127 bytes, value <= 255, deadline within 2^32 ms of the segment's base):
//!   [13] value_len; then a 4-byte deadline relative to the segment base (if has_expire)
//! long form:
//!   [13] ext: EXT_EXPIRE | EXT_WIDE | EXT_FLAGS | EXT_CAS;  [14..16) key_len;  [16..20) value_len
//!   then the deadline (4 bytes relative, or 6 bytes absolute with EXT_WIDE), memcached flags
//!   (4 bytes, EXT_FLAGS), CAS (8 bytes, EXT_CAS)
//! then key bytes, then value bytes; the whole record is padded to an even length
//! ```
//!
//! A 16-byte key with a 64-byte value and a TTL takes 98 bytes, 18 of them overhead: the links
//! are 4 bytes because ids address bytes in a segment, and the relative deadline pays for it.
//! The length of a record is readable from its header alone, so the cleaner can walk a segment
//! record by record, and a dead record keeps its header. Fields are little-endian and read
//! through byte slices: no `unsafe`, no alignment rule.

use std::ops::Range;

const NEXT: usize = 0;
const PREV: usize = 4;
const STAMP: usize = 8;
const META: usize = 12;
const HAS_EXPIRE: u8 = 0x80;
const SHORT_HEADER: usize = 14;
const LONG_HEADER: usize = 20;

const EXT_EXPIRE: u8 = 1;
const EXT_WIDE: u8 = 2;
const EXT_FLAGS: u8 = 4;
const EXT_CAS: u8 = 8;

/// Marks a record as garbage (in its `prev` field): no live id has this value.
pub(crate) const DEAD: u32 = 0xFFFF_FFFE;

/// Largest key the record format can hold.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;
/// Latest deadline the 48-bit field can hold (about year 10889); later ones are clamped to it.
pub const MAX_DEADLINE_MS: u64 = (1 << 48) - 1;

/// What a record carries besides key and value; the layout follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Extras {
    /// Absolute deadline in unix ms.
    pub(crate) expire: Option<u64>,
    /// memcached client flags (0 = none stored).
    pub(crate) flags: u32,
    /// memcached CAS unique (0 = none assigned).
    pub(crate) cas: u64,
}

/// The encoding a record uses, chosen from its sizes and where its deadline falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    long: bool,
    ext: u8,
}

impl Shape {
    /// The shape for this key and value length and these extras, for a record whose segment
    /// base time is `base_ms`.
    pub(crate) fn of(key_len: usize, value_len: usize, x: &Extras, base_ms: u64) -> Shape {
        let mut ext = 0;
        if let Some(at) = x.expire {
            ext |= EXT_EXPIRE;
            if at < base_ms || at - base_ms > u32::MAX as u64 {
                ext |= EXT_WIDE;
            }
        }
        if x.flags != 0 {
            ext |= EXT_FLAGS;
        }
        if x.cas != 0 {
            ext |= EXT_CAS;
        }
        let short = (1..=127).contains(&key_len)
            && value_len <= 255
            && ext & (EXT_WIDE | EXT_FLAGS | EXT_CAS) == 0;
        Shape { long: !short, ext }
    }

    /// Bytes the record occupies (padded to an even length).
    pub(crate) fn size(self, key_len: usize, value_len: usize) -> usize {
        let mut n = if self.long { LONG_HEADER } else { SHORT_HEADER };
        if self.ext & EXT_EXPIRE != 0 {
            n += if self.ext & EXT_WIDE != 0 { 6 } else { 4 };
        }
        if self.ext & EXT_FLAGS != 0 {
            n += 4;
        }
        if self.ext & EXT_CAS != 0 {
            n += 8;
        }
        (n + key_len + value_len).next_multiple_of(2)
    }
}

/// The largest size a record of this key and value can take, whatever its deadline (memcached
/// flags and CAS come on top): what the memory limit is checked against before a write.
pub fn max_record_size(key_len: usize, value_len: usize, has_expire: bool) -> usize {
    let x = Extras {
        expire: has_expire.then_some(u64::MAX),
        flags: 0,
        cas: 0,
    };
    let shape = Shape::of(key_len, value_len, &x, 0);
    let long = Shape {
        long: true,
        ..shape
    };
    long.size(key_len, value_len)
}

/// Where the parts of a record sit: 16 bytes, so operations pass it around cheaply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Where the key starts (the value follows it).
    start: u32,
    key_len: u32,
    value_len: u32,
    /// Offsets of the optional fields (0 = absent; no field sits at offset 0).
    expire: u8,
    wide: bool,
    flags: u8,
    cas: u8,
}

impl Layout {
    /// Total bytes, padding included.
    #[inline]
    pub(crate) fn size(&self) -> usize {
        (self.start as usize + self.key_len as usize + self.value_len as usize).next_multiple_of(2)
    }

    /// The key's bytes within the record.
    #[inline]
    pub(crate) fn key(&self) -> Range<usize> {
        self.start as usize..self.start as usize + self.key_len as usize
    }

    /// The value's bytes within the record.
    #[inline]
    pub(crate) fn value(&self) -> Range<usize> {
        let v = self.start as usize + self.key_len as usize;
        v..v + self.value_len as usize
    }
}

#[inline]
pub(crate) fn layout(c: &[u8]) -> Layout {
    let meta = c[META];
    if meta & 0x7F != 0 {
        let has_expire = meta & HAS_EXPIRE != 0;
        return Layout {
            start: (SHORT_HEADER + if has_expire { 4 } else { 0 }) as u32,
            key_len: (meta & 0x7F) as u32,
            value_len: c[META + 1] as u32,
            expire: if has_expire { SHORT_HEADER as u8 } else { 0 },
            wide: false,
            flags: 0,
            cas: 0,
        };
    }
    let ext = c[META + 1];
    let key_len = u16::from_le_bytes([c[14], c[15]]) as u32;
    let value_len = u32::from_le_bytes([c[16], c[17], c[18], c[19]]);
    let mut off = LONG_HEADER;
    let (mut expire, mut wide, mut flags, mut cas) = (0, false, 0, 0);
    if ext & EXT_EXPIRE != 0 {
        wide = ext & EXT_WIDE != 0;
        expire = off as u8;
        off += if wide { 6 } else { 4 };
    }
    if ext & EXT_FLAGS != 0 {
        flags = off as u8;
        off += 4;
    }
    if ext & EXT_CAS != 0 {
        cas = off as u8;
        off += 8;
    }
    Layout {
        start: off as u32,
        key_len,
        value_len,
        expire,
        wide,
        flags,
        cas,
    }
}

/// Total bytes of the record starting at `c[0]`.
#[inline]
pub(crate) fn size(c: &[u8]) -> usize {
    layout(c).size()
}

#[inline]
pub(crate) fn key(c: &[u8]) -> &[u8] {
    &c[layout(c).key()]
}

/// The deadline in unix ms, given the base time of the record's segment.
#[inline]
pub(crate) fn expire_of(c: &[u8], l: &Layout, base_ms: u64) -> Option<u64> {
    if l.expire == 0 {
        return None;
    }
    let (off, wide) = (l.expire as usize, l.wide);
    Some(if wide {
        read_u48(&c[off..])
    } else {
        base_ms + u32::from_le_bytes([c[off], c[off + 1], c[off + 2], c[off + 3]]) as u64
    })
}

#[inline]
pub(crate) fn expire(c: &[u8], base_ms: u64) -> Option<u64> {
    expire_of(c, &layout(c), base_ms)
}

/// Everything but key and value.
pub(crate) fn extras(c: &[u8], l: &Layout, base_ms: u64) -> Extras {
    Extras {
        expire: expire_of(c, l, base_ms),
        flags: match l.flags as usize {
            0 => 0,
            o => u32::from_le_bytes([c[o], c[o + 1], c[o + 2], c[o + 3]]),
        },
        cas: match l.cas as usize {
            0 => 0,
            o => u64::from_le_bytes(c[o..o + 8].try_into().expect("8 bytes")),
        },
    }
}

/// Overwrites the deadline of a record if its current field can hold the new one (same
/// presence, and within range for a relative field); returns whether it did.
pub(crate) fn set_expire_in_place(c: &mut [u8], at: u64, base_ms: u64) -> bool {
    let l = layout(c);
    if l.expire == 0 {
        return false;
    }
    let off = l.expire as usize;
    if l.wide {
        write_u48(&mut c[off..], at.min(MAX_DEADLINE_MS));
        true
    } else if at >= base_ms && at - base_ms <= u32::MAX as u64 {
        c[off..off + 4].copy_from_slice(&((at - base_ms) as u32).to_le_bytes());
        true
    } else {
        false
    }
}

/// Writes a whole record into `c` (at least `shape.size(..)` bytes long).
pub(crate) fn write(
    c: &mut [u8],
    shape: Shape,
    links: (u32, u32, u32),
    key: &[u8],
    value: &[&[u8]],
    x: &Extras,
    base_ms: u64,
) {
    let value_len: usize = value.iter().map(|p| p.len()).sum();
    set_next(c, links.0);
    set_prev(c, links.1);
    set_stamp(c, links.2);
    let mut off;
    if !shape.long {
        c[META] = if x.expire.is_some() { HAS_EXPIRE } else { 0 } | key.len() as u8;
        c[META + 1] = value_len as u8;
        off = SHORT_HEADER;
    } else {
        c[META] = 0;
        c[META + 1] = shape.ext;
        c[14..16].copy_from_slice(&(key.len() as u16).to_le_bytes());
        c[16..20].copy_from_slice(&(value_len as u32).to_le_bytes());
        off = LONG_HEADER;
    }
    if let Some(at) = x.expire {
        if shape.ext & EXT_WIDE != 0 {
            write_u48(&mut c[off..], at.min(MAX_DEADLINE_MS));
            off += 6;
        } else {
            c[off..off + 4].copy_from_slice(&((at - base_ms) as u32).to_le_bytes());
            off += 4;
        }
    }
    if shape.ext & EXT_FLAGS != 0 {
        c[off..off + 4].copy_from_slice(&x.flags.to_le_bytes());
        off += 4;
    }
    if shape.ext & EXT_CAS != 0 {
        c[off..off + 8].copy_from_slice(&x.cas.to_le_bytes());
        off += 8;
    }
    c[off..off + key.len()].copy_from_slice(key);
    off += key.len();
    for part in value {
        c[off..off + part.len()].copy_from_slice(part);
        off += part.len();
    }
}

/// Re-encodes the relative deadline of a record being copied from a segment based at
/// `old_base` to one based at `new_base` (later); returns false if it no longer fits.
pub(crate) fn rebase_expire(c: &mut [u8], old_base: u64, new_base: u64) -> bool {
    let l = layout(c);
    if l.expire == 0 || l.wide {
        return true;
    }
    let off = l.expire as usize;
    let at = old_base + u32::from_le_bytes([c[off], c[off + 1], c[off + 2], c[off + 3]]) as u64;
    if at < new_base {
        return false;
    }
    c[off..off + 4].copy_from_slice(&((at - new_base) as u32).to_le_bytes());
    true
}

#[inline]
fn read_u32(c: &[u8]) -> u32 {
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
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
    read_u32(&c[NEXT..])
}
#[inline]
pub(crate) fn prev(c: &[u8]) -> u32 {
    read_u32(&c[PREV..])
}
#[inline]
pub(crate) fn stamp(c: &[u8]) -> u32 {
    read_u32(&c[STAMP..])
}
#[inline]
pub(crate) fn set_next(c: &mut [u8], v: u32) {
    c[NEXT..NEXT + 4].copy_from_slice(&v.to_le_bytes())
}
#[inline]
pub(crate) fn set_prev(c: &mut [u8], v: u32) {
    c[PREV..PREV + 4].copy_from_slice(&v.to_le_bytes())
}
#[inline]
pub(crate) fn set_stamp(c: &mut [u8], v: u32) {
    c[STAMP..STAMP + 4].copy_from_slice(&v.to_le_bytes())
}
#[inline]
pub(crate) fn is_dead(c: &[u8]) -> bool {
    prev(c) == DEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(key: &[u8], value: &[u8], x: Extras, base: u64) {
        let shape = Shape::of(key.len(), value.len(), &x, base);
        let len = shape.size(key.len(), value.len());
        let mut c = vec![0xAAu8; len + 5];
        let (a, b) = value.split_at(value.len() / 2);
        write(&mut c, shape, (1, 2, 3), key, &[a, b], &x, base);
        assert_eq!((next(&c), prev(&c), stamp(&c)), (1, 2, 3));
        let l = layout(&c);
        assert_eq!(&c[l.key()], key);
        assert_eq!(&c[l.value()], value);
        assert_eq!(l.size(), len);
        let mut want = x;
        want.expire = x.expire.map(|e| e.min(MAX_DEADLINE_MS));
        assert_eq!(extras(&c, &l, base), want);
        let mc = if x.flags != 0 { 4 } else { 0 } + if x.cas != 0 { 8 } else { 0 };
        assert!(len <= max_record_size(key.len(), value.len(), x.expire.is_some()) + mc);
    }

    #[test]
    fn every_form_roundtrips() {
        let none = Extras::default();
        let ttl = |at| Extras {
            expire: Some(at),
            ..Extras::default()
        };
        roundtrip(b"k", b"", none, 0);
        roundtrip(
            &[b'k'; 16],
            &[b'v'; 64],
            ttl(1_700_000_060_000),
            1_700_000_000_000,
        );
        roundtrip(&[b'k'; 127], &[b'v'; 255], none, 0);
        roundtrip(&[b'k'; 128], b"v", ttl(5), 0);
        roundtrip(b"", b"value", none, 0);
        roundtrip(b"k", &[7u8; 70_000], ttl(MAX_DEADLINE_MS), 10);
        roundtrip(b"k", b"v", ttl(u64::MAX), 10);
        roundtrip(b"key", b"far", ttl(10 + (1 << 33)), 10);
        roundtrip(&[1u8; MAX_KEY_LEN], b"x", none, 0);
        let mc = Extras {
            expire: Some(99),
            flags: 0xDEAD_BEEF,
            cas: 1 << 40,
        };
        roundtrip(b"mc", b"v", mc, 50);
    }

    #[test]
    fn reference_item_is_98_bytes() {
        // 16-byte key, 64-byte value, TTL: the item the memory target is stated for.
        let x = Extras {
            expire: Some(1_000_000 + 3_600_000),
            ..Extras::default()
        };
        assert_eq!(Shape::of(16, 64, &x, 1_000_000).size(16, 64), 98);
        assert_eq!(Shape::of(16, 64, &Extras::default(), 0).size(16, 64), 94);
    }

    #[test]
    fn deadlines_update_in_place_and_rebase() {
        let x = Extras {
            expire: Some(1000),
            ..Extras::default()
        };
        let shape = Shape::of(3, 3, &x, 500);
        let mut c = vec![0u8; shape.size(3, 3)];
        write(&mut c, shape, (0, 0, 0), b"key", &[b"val"], &x, 500);
        assert!(set_expire_in_place(&mut c, 2000, 500));
        assert_eq!(expire(&c, 500), Some(2000));
        assert!(
            !set_expire_in_place(&mut c, 100, 500),
            "before the base: needs a new record"
        );
        assert!(rebase_expire(&mut c, 500, 1500));
        assert_eq!(expire(&c, 1500), Some(2000));
        assert!(
            !rebase_expire(&mut c, 1500, 2500),
            "already past at the new base"
        );
        assert_eq!(&c[layout(&c).value()], b"val");
    }
}
