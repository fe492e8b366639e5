//! One shard: a hash index of 3-byte ids, the slab holding the records, and the shard's LRU
//! list threaded through the records. Always used under the store's per-shard mutex.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::item;
use super::slab::{self, Id, NIL, Slab};

/// A hash-table bucket: a slab id in 3 bytes (with hashbrown's control byte, 4 bytes a bucket).
pub(crate) type Slot = [u8; 3];

#[inline]
fn to_slot(id: Id) -> Slot {
    let b = id.to_le_bytes();
    [b[0], b[1], b[2]]
}

#[inline]
fn from_slot(s: &Slot) -> Id {
    u32::from_le_bytes([s[0], s[1], s[2], 0])
}

fn record_len(key: &[u8], value: &[&[u8]], expire: Option<u64>) -> usize {
    let value_len = value.iter().map(|p| p.len()).sum();
    item::record_len(key.len(), value_len, expire.is_some())
}

/// Counters kept under the shard lock, so the hot path pays no atomic for them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ShardStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
    pub(crate) expired: u64,
}

/// The slab ran out of ids; the caller evicts or reports the store full.
#[derive(Debug)]
pub(crate) struct Full;

/// Where a shard's expiry sweep got to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SweepStep {
    pub(crate) scanned: usize,
    pub(crate) removed: usize,
    pub(crate) wrapped: bool,
}

pub(crate) struct Shard {
    table: HashTable<Slot>,
    slab: Slab,
    hasher: DefaultHashBuilder,
    /// Most recently used record; `next` links run from here toward `tail`.
    head: Id,
    /// Least recently used record: the next eviction candidate.
    tail: Id,
    /// Sum of the chunk sizes of live records.
    item_bytes: usize,
    /// Records that carry a deadline (INFO's `expires=`).
    pub(crate) with_ttl: usize,
    pub(crate) stats: ShardStats,
    sweep_cursor: u32,
    /// Memory and length last reported to the store's global counters.
    pub(crate) reported_memory: usize,
    pub(crate) reported_len: usize,
}

impl Shard {
    pub(crate) fn new(hasher: DefaultHashBuilder) -> Self {
        Shard {
            table: HashTable::new(),
            slab: Slab::new(),
            hasher,
            head: NIL,
            tail: NIL,
            item_bytes: 0,
            with_ttl: 0,
            stats: ShardStats::default(),
            sweep_cursor: 0,
            reported_memory: 0,
            reported_len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Accounted bytes: record chunks, the hash table's allocation and the page table.
    pub(crate) fn memory(&self) -> usize {
        self.item_bytes + self.table.allocation_size() + self.slab.overhead_bytes()
    }

    /// Page memory actually held (accounted records plus free chunks awaiting reuse).
    pub(crate) fn page_bytes(&self) -> usize {
        self.slab.page_bytes()
    }

    #[inline]
    pub(crate) fn chunk(&self, id: Id) -> &[u8] {
        self.slab.chunk(id)
    }

    /// `(1 << 32) | stamp` of the LRU tail, or 0 when empty: what the store publishes so that
    /// eviction can pick the shard holding the globally oldest record without locking them all.
    pub(crate) fn tail_mark(&self) -> u64 {
        if self.tail == NIL {
            0
        } else {
            1 << 32 | item::stamp(self.slab.chunk(self.tail)) as u64
        }
    }

    /// Finds a record by key, expired or not.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<Id> {
        let slab = &self.slab;
        self.table
            .find(hash, |s| item::key(slab.chunk(from_slot(s))) == key)
            .map(from_slot)
    }

    /// Finds a live record; an expired one is removed (and counted) on the spot.
    #[inline]
    pub(crate) fn lookup(&mut self, hash: u64, key: &[u8], now: &mut super::Now<'_>) -> Option<Id> {
        let id = self.find(hash, key)?;
        if let Some(at) = item::expire(self.slab.chunk(id))
            && at <= now.get()
        {
            self.remove(id, hash);
            self.stats.expired += 1;
            return None;
        }
        Some(id)
    }

    /// Marks a record most recently used.
    #[inline]
    pub(crate) fn touch(&mut self, id: Id, stamp: u32) {
        item::set_stamp(self.slab.chunk_mut(id), stamp);
        if self.head != id {
            self.unlink(id);
            self.push_front(id);
        }
    }

    fn unlink(&mut self, id: Id) {
        let c = self.slab.chunk(id);
        let (next, prev) = (item::next(c), item::prev(c));
        if prev == NIL {
            self.head = next;
        } else {
            item::set_next(self.slab.chunk_mut(prev), next);
        }
        if next == NIL {
            self.tail = prev;
        } else {
            item::set_prev(self.slab.chunk_mut(next), prev);
        }
    }

    fn push_front(&mut self, id: Id) {
        let old = self.head;
        let c = self.slab.chunk_mut(id);
        item::set_next(c, old);
        item::set_prev(c, NIL);
        if old == NIL {
            self.tail = id;
        } else {
            item::set_prev(self.slab.chunk_mut(old), id);
        }
        self.head = id;
    }

    /// Allocates a chunk, evicting this shard's LRU records if the slab's id space is full.
    fn alloc(&mut self, len: usize, protect: Id) -> Result<Id, Full> {
        loop {
            if let Some(id) = self.slab.alloc(len) {
                return Ok(id);
            }
            let tail = self.tail;
            if tail == NIL || tail == protect {
                return Err(Full);
            }
            let hash = self.hash_of(tail);
            self.remove(tail, hash);
            self.stats.evictions += 1;
        }
    }

    fn hash_of(&self, id: Id) -> u64 {
        self.hasher.hash_one(item::key(self.slab.chunk(id)))
    }

    /// Allocates a chunk and writes a fresh, unlinked record into it; returns its id and length.
    fn write_new(
        &mut self,
        key: &[u8],
        value: &[&[u8]],
        expire: Option<u64>,
        stamp: u32,
        protect: Id,
    ) -> Result<(Id, usize), Full> {
        let len = record_len(key, value, expire);
        let id = self.alloc(len, protect)?;
        item::write(
            self.slab.chunk_mut(id),
            (NIL, NIL, stamp),
            key,
            value,
            expire,
        );
        Ok((id, len))
    }

    /// Inserts a key known to be absent, as the most recently used record.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[&[u8]],
        expire: Option<u64>,
        stamp: u32,
    ) -> Result<Id, Full> {
        let (id, len) = self.write_new(key, value, expire, stamp, NIL)?;
        self.push_front(id);
        let Shard {
            table,
            slab,
            hasher,
            ..
        } = self;
        table.insert_unique(hash, to_slot(id), |s| {
            hasher.hash_one(item::key(slab.chunk(from_slot(s))))
        });
        self.item_bytes += slab::chunk_size_for(len);
        self.with_ttl += expire.is_some() as usize;
        Ok(id)
    }

    /// Rewrites record `id` (same key) with a new value and deadline, in place when the chunk
    /// size is unchanged, and makes it the most recently used.
    pub(crate) fn replace(
        &mut self,
        id: Id,
        hash: u64,
        key: &[u8],
        value: &[&[u8]],
        expire: Option<u64>,
        stamp: u32,
    ) -> Result<Id, Full> {
        let len = record_len(key, value, expire);
        let old_chunk = self.slab.chunk(id).len();
        let new_chunk = slab::chunk_size_for(len);
        let had_ttl = item::expire(self.slab.chunk(id)).is_some() as usize;
        self.with_ttl = self.with_ttl + expire.is_some() as usize - had_ttl;
        if new_chunk == old_chunk {
            let c = self.slab.chunk_mut(id);
            let links = (item::next(c), item::prev(c), stamp);
            item::write(c, links, key, value, expire);
            self.touch(id, stamp);
            return Ok(id);
        }
        let (new, _) = self.write_new(key, value, expire, stamp, id)?;
        self.unlink(id);
        self.push_front(new);
        let slot = self
            .table
            .find_mut(hash, |s| from_slot(s) == id)
            .expect("a live record is in the table");
        *slot = to_slot(new);
        self.item_bytes = self.item_bytes + new_chunk - old_chunk;
        self.slab.free(id);
        Ok(new)
    }

    /// Changes only the deadline of record `id`, keeping its value; returns its (maybe new) id.
    pub(crate) fn set_expire(
        &mut self,
        id: Id,
        hash: u64,
        expire: Option<u64>,
        stamp: u32,
    ) -> Result<Id, Full> {
        let c = self.slab.chunk(id);
        match (item::expire(c), expire) {
            (Some(_), Some(at)) => {
                item::set_expire_in_place(self.slab.chunk_mut(id), at);
                self.touch(id, stamp);
                Ok(id)
            }
            (None, None) => {
                self.touch(id, stamp);
                Ok(id)
            }
            _ => {
                let l = item::layout(c);
                let key = c[l.key].to_vec();
                let value = c[l.value].to_vec();
                self.replace(id, hash, &key, &[&value], expire, stamp)
            }
        }
    }

    /// Removes record `id`, whose key hashes to `hash`.
    pub(crate) fn remove(&mut self, id: Id, hash: u64) {
        self.with_ttl -= item::expire(self.slab.chunk(id)).is_some() as usize;
        self.unlink(id);
        match self.table.find_entry(hash, |s| from_slot(s) == id) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => debug_assert!(false, "record {id:#x} missing from the table"),
        }
        self.item_bytes -= self.slab.chunk(id).len();
        self.slab.free(id);
    }

    /// Removes the least recently used record; an expired one counts as expired, not evicted.
    pub(crate) fn evict_tail(&mut self, now: u64) -> bool {
        let id = self.tail;
        if id == NIL {
            return false;
        }
        let expired = item::expire(self.slab.chunk(id)).is_some_and(|at| at <= now);
        let hash = self.hash_of(id);
        self.remove(id, hash);
        if expired {
            self.stats.expired += 1;
        } else {
            self.stats.evictions += 1;
        }
        true
    }

    /// Scans up to `budget` records from the sweep cursor and removes the expired ones.
    pub(crate) fn sweep(&mut self, now: u64, budget: usize) -> SweepStep {
        let mut step = SweepStep::default();
        while step.scanned < budget {
            let Some(id) = self.slab.next_used(self.sweep_cursor) else {
                self.sweep_cursor = 0;
                step.wrapped = true;
                break;
            };
            step.scanned += 1;
            self.sweep_cursor = id + 1;
            if item::expire(self.slab.chunk(id)).is_some_and(|at| at <= now) {
                let hash = self.hash_of(id);
                self.remove(id, hash);
                self.stats.expired += 1;
                step.removed += 1;
            }
        }
        step
    }

    /// Keeps every LRU stamp within 2^31 of `now32` so 32-bit stamps compare correctly after the
    /// global counter wraps: records untouched for ~1.6 billion accesses are re-stamped as
    /// ~1 billion accesses old, from the tail up, at most `budget` of them per call.
    pub(crate) fn clamp_stamps(&mut self, now32: u32, budget: usize) -> usize {
        const CLAMP_AT: u32 = (1 << 31) - (1 << 29);
        const CLAMP_TO: u32 = 1 << 30;
        let mut id = self.tail;
        let mut done = 0;
        while id != NIL && done < budget {
            let c = self.slab.chunk_mut(id);
            if now32.wrapping_sub(item::stamp(c)) < CLAMP_AT {
                break;
            }
            item::set_stamp(c, now32.wrapping_sub(CLAMP_TO));
            id = item::prev(c);
            done += 1;
        }
        done
    }

    /// Calls `f` with live keys from slab position `cursor` on, visiting at most `count` records;
    /// returns the position to resume from (`None` when this shard is done) and how many it visited.
    pub(crate) fn scan(
        &self,
        mut cursor: u32,
        count: usize,
        now: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> (Option<u32>, usize) {
        let mut visited = 0;
        while visited < count {
            let Some(id) = self.slab.next_used(cursor) else {
                return (None, visited);
            };
            cursor = id + 1;
            visited += 1;
            let c = self.slab.chunk(id);
            if item::expire(c).is_none_or(|at| at > now) {
                f(item::key(c));
            }
        }
        match self.slab.next_used(cursor) {
            Some(_) => (Some(cursor), visited),
            None => (None, visited),
        }
    }

    /// A live key near slab position `seed % pages`, for RANDOMKEY.
    pub(crate) fn random_key(&self, seed: u64, now: u64) -> Option<Vec<u8>> {
        let pages = self.slab.page_count() as u64;
        if pages == 0 {
            return None;
        }
        let start = ((seed % pages) << 6) as u32;
        let mut cursor = start;
        let mut wrapped = false;
        for _ in 0..64 {
            let id = match self.slab.next_used(cursor) {
                Some(id) => id,
                None if !wrapped => {
                    wrapped = true;
                    self.slab.next_used(0)?
                }
                None => return None,
            };
            let c = self.slab.chunk(id);
            if item::expire(c).is_none_or(|at| at > now) {
                return Some(item::key(c).to_vec());
            }
            cursor = id + 1;
        }
        None
    }

    /// Empties the shard, returning the old contents so the caller chooses where to free them.
    pub(crate) fn take(&mut self) -> Shard {
        let mut fresh = Shard::new(self.hasher.clone());
        fresh.stats = self.stats;
        fresh.reported_memory = self.reported_memory;
        fresh.reported_len = self.reported_len;
        std::mem::replace(self, fresh)
    }

    /// Walks the LRU list from most to least recent; for tests and debugging.
    #[cfg(test)]
    pub(crate) fn lru_keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut id = self.head;
        let mut prev = NIL;
        while id != NIL {
            let c = self.slab.chunk(id);
            assert_eq!(item::prev(c), prev, "broken back link");
            out.push(item::key(c).to_vec());
            prev = id;
            id = item::next(c);
        }
        assert_eq!(prev, self.tail);
        assert_eq!(out.len(), self.len());
        out
    }
}
