//! What OBJECT ENCODING reports: the encoding Redis would give the value (`int`, `embstr` or
//! `raw`), which clients and Redis's own tests read.
//!
//! Mostly it follows from the bytes: a canonical integer is `int`, up to 44 bytes `embstr`,
//! longer `raw`. But Redis also remembers how a value was written: SETRANGE, SETBIT and APPEND
//! to an existing key leave a `raw` string even when it is short or numeric, and INCRBYFLOAT
//! leaves `embstr` even for `3`. The store keeps no per-key flags, so those few writes note the
//! encoding here, with a fingerprint of the value they wrote; the note counts only while the key
//! still holds exactly those bytes. The table is bounded (small keys, a fixed number per shard)
//! and only the rare writes whose encoding differs from the derived one touch it.
//
// STORE: a per-entry flag byte in the store redesign would replace this table.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap};
use parking_lot::Mutex;

/// A Redis string encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// An integer that fits a C `long`, in canonical form.
    Int,
    /// A string of at most 44 bytes, allocated with its header.
    Embstr,
    /// Any other string.
    Raw,
}

impl Encoding {
    /// The name OBJECT ENCODING answers.
    pub(super) fn name(self) -> &'static str {
        match self {
            Encoding::Int => "int",
            Encoding::Embstr => "embstr",
            Encoding::Raw => "raw",
        }
    }

    /// What Redis's `tryObjectEncoding` makes of these bytes when a command stores them whole
    /// (SET and friends, INCR, APPEND to a new key).
    pub(super) fn of(value: &[u8]) -> Encoding {
        if value.len() <= 20 && crate::protocol::resp::parse_i64(value).is_some() {
            Encoding::Int
        } else if value.len() <= 44 {
            Encoding::Embstr
        } else {
            Encoding::Raw
        }
    }

    /// What Redis's `createStringObject` makes of them (INCRBYFLOAT's result): no integer form.
    pub(super) fn of_string(value: &[u8]) -> Encoding {
        if value.len() <= 44 {
            Encoding::Embstr
        } else {
            Encoding::Raw
        }
    }
}

const SHARDS: usize = 16;
/// Notes kept per shard; a full shard forgets an arbitrary one.
const PER_SHARD: usize = 256;
/// Longer keys get no note (their encoding is reported from the bytes alone).
const MAX_KEY: usize = 256;

/// One shard of notes, by key.
type Shard = Mutex<HashMap<Box<[u8]>, Note>>;

#[derive(Debug, Clone, Copy)]
struct Note {
    fingerprint: u64,
    encoding: Encoding,
}

/// Encodings of values written by the commands whose result Redis encodes differently from
/// what the bytes alone suggest. Shared by all connections through the command context.
pub struct EncodingNotes {
    shards: Box<[Shard]>,
    hasher: DefaultHashBuilder,
}

impl Default for EncodingNotes {
    fn default() -> Self {
        EncodingNotes {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl std::fmt::Debug for EncodingNotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodingNotes").finish_non_exhaustive()
    }
}

impl EncodingNotes {
    fn shard(&self, key: &[u8]) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    fn fingerprint(&self, value: &[u8]) -> u64 {
        self.hasher.hash_one(value)
    }

    /// Records that `key` now holds `value` with encoding `encoding`.
    pub(super) fn written(&self, key: &[u8], value: &[u8], encoding: Encoding) {
        if key.len() > MAX_KEY {
            return;
        }
        let mut shard = self.shard(key).lock();
        if encoding == Encoding::of(value) {
            // The derived encoding is right: an older note must not linger.
            shard.remove(key);
            return;
        }
        if shard.len() >= PER_SHARD
            && !shard.contains_key(key)
            && let Some(old) = shard.keys().next().cloned()
        {
            shard.remove(&old);
        }
        let note = Note {
            fingerprint: self.fingerprint(value),
            encoding,
        };
        shard.insert(key.into(), note);
    }

    /// The encoding Redis would report for `key` holding `value`.
    pub(super) fn encoding(&self, key: &[u8], value: &[u8]) -> Encoding {
        let noted = self.shard(key).lock().get(key).copied();
        match noted {
            Some(n) if n.fingerprint == self.fingerprint(value) => n.encoding,
            _ => Encoding::of(value),
        }
    }

    /// Carries a note from `from` to `to` (RENAME moves the value, COPY duplicates it with its
    /// encoding); `keep_source` for COPY.
    pub(super) fn carry(&self, from: &[u8], to: &[u8], keep_source: bool) {
        let note = {
            let mut shard = self.shard(from).lock();
            if keep_source {
                shard.get(from).copied()
            } else {
                shard.remove(from)
            }
        };
        if to.len() > MAX_KEY {
            return;
        }
        let mut shard = self.shard(to).lock();
        match note {
            Some(n) => {
                shard.insert(to.into(), n);
            }
            None => {
                shard.remove(to);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_encodings_follow_redis() {
        assert_eq!(Encoding::of(b"1234"), Encoding::Int);
        assert_eq!(Encoding::of(b"-9223372036854775808"), Encoding::Int);
        assert_eq!(Encoding::of(b"007"), Encoding::Embstr);
        assert_eq!(Encoding::of(b"1.5"), Encoding::Embstr);
        assert_eq!(Encoding::of(&[b'a'; 44]), Encoding::Embstr);
        assert_eq!(Encoding::of(&[b'a'; 45]), Encoding::Raw);
        assert_eq!(Encoding::of_string(b"3"), Encoding::Embstr);
    }

    #[test]
    fn notes_hold_only_for_the_bytes_written() {
        let notes = EncodingNotes::default();
        notes.written(b"k", b"2234", Encoding::Raw);
        assert_eq!(notes.encoding(b"k", b"2234"), Encoding::Raw);
        assert_eq!(notes.encoding(b"k", b"2235"), Encoding::Int);
        notes.carry(b"k", b"k2", false);
        assert_eq!(notes.encoding(b"k", b"2234"), Encoding::Int);
        assert_eq!(notes.encoding(b"k2", b"2234"), Encoding::Raw);
        notes.written(b"k2", b"2234", Encoding::Int);
        assert_eq!(notes.encoding(b"k2", b"2234"), Encoding::Int);
    }

    #[test]
    fn notes_are_bounded() {
        let notes = EncodingNotes::default();
        for i in 0..10_000 {
            notes.written(format!("key:{i}").as_bytes(), b"1", Encoding::Raw);
        }
        let total: usize = notes.shards.iter().map(|s| s.lock().len()).sum();
        assert!(total <= SHARDS * PER_SHARD, "{total} notes");
        notes.written(&[b'k'; MAX_KEY + 1], b"1", Encoding::Raw);
        assert_eq!(notes.encoding(&[b'k'; MAX_KEY + 1], b"1"), Encoding::Int);
    }
}
