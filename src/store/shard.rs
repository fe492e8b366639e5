//! One shard: the hash index, the segment log holding the records, and the shard's LRU list
//! threaded through the records. Always used under the store's per-shard mutex, and every
//! method does bounded work: growth, cleaning, expiry and stamp upkeep all proceed in steps.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use super::Now;
use super::index::{Index, Pos};
use super::log::{Cursor, Full, Log, MAX_INLINE, NIL};
use super::mem::{HugeAlloc, Pool, SEG_SIZE, Segment};
use super::record::{self, Extras, Layout, Shape};
use super::stamp;

/// Counters kept under the shard lock, so the hot path pays no atomic for them.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ShardStats {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
    pub(crate) expired: u64,
    /// Records moved by the cleaner.
    pub(crate) moved: u64,
}

/// A copy of one shard's records taken under its lock: consistent as of that moment, read
/// after the lock is released.
pub struct ShardImage {
    log: super::log::LogImage,
    tail: u32,
    len: usize,
    last_tick: u64,
}

/// One record of a [`ShardImage`].
#[derive(Debug)]
pub struct ImageRecord<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Deadline in unix ms.
    pub expires_at: Option<u64>,
    /// memcached flags.
    pub flags: u32,
    /// memcached CAS unique (0 = none).
    pub cas: u64,
    /// When it was last used, in the store's recency ticks (~1.024 us each).
    pub last_used: u64,
}

impl ShardImage {
    /// Records in the image.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the image holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the copy holds.
    pub fn bytes(&self) -> usize {
        self.log.bytes()
    }

    /// Calls `f` with every record, least recently used first.
    pub fn for_each_oldest_first(&self, mut f: impl FnMut(ImageRecord<'_>)) {
        let mut id = self.tail;
        while id != NIL {
            let (c, base) = self.log.view(id);
            let l = record::layout(c);
            let x = record::extras(c, &l, base);
            f(ImageRecord {
                key: &c[l.key()],
                value: &c[l.value()],
                expires_at: x.expire,
                flags: x.flags,
                cas: x.cas,
                last_used: stamp::decode(record::stamp(c), self.last_tick),
            });
            id = record::prev(c);
        }
    }
}

/// What a flushed shard held; dropping it frees the index and huge records, and the
/// segments go back through [`Garbage::release`].
pub(crate) struct Garbage {
    _index: Index,
    segments: Vec<Segment>,
    _huge: Vec<HugeAlloc>,
}

impl Garbage {
    /// Returns the segments to the pool (and with them, beyond its reserve, to the kernel).
    pub(crate) fn release(self, pool: &Pool) {
        for s in self.segments {
            pool.give(s);
        }
    }
}

/// Where a shard's expiry sweep got to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SweepStep {
    pub(crate) scanned: usize,
    pub(crate) removed: usize,
    pub(crate) wrapped: bool,
}

/// A live record found by key: its index position and id, and its parsed header (so one
/// operation parses a record once).
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) pos: Pos,
    pub(crate) id: u32,
    pub(crate) layout: Layout,
    /// Base time of the record's segment (for its relative deadline).
    pub(crate) base: u64,
}

impl Hit {
    /// The record's deadline.
    pub(crate) fn expire(&self, c: &[u8]) -> Option<u64> {
        record::expire_of(c, &self.layout, self.base)
    }
}

/// What changed in a shard since its last publication (see `Store::commit`).
pub(crate) const DIRTY_TAIL: u8 = 1;
pub(crate) const DIRTY_SIZE: u8 = 2;

pub(crate) struct Shard {
    index: Index,
    log: Log,
    hasher: DefaultHashBuilder,
    /// Most recently used record; `next` links run from here toward `tail`.
    head: u32,
    /// Least recently used record: the next eviction candidate.
    tail: u32,
    /// The newest record whose stamp is coarse (every record from here to the tail is), or
    /// NIL: where the sweeper's stamp conversion resumes.
    frontier: u32,
    /// Latest recency time stamped in this shard (stamps never go backwards within a shard).
    last_tick: u64,
    /// Records that carry a deadline (INFO's `expires=`).
    pub(crate) with_ttl: usize,
    pub(crate) stats: ShardStats,
    sweep_cursor: Cursor,
    /// Length and memory last published for the store's totals.
    pub(crate) published_len: usize,
    pub(crate) published_mem: usize,
    /// `DIRTY_*` bits: what the next commit must publish.
    pub(crate) dirty: u8,
    /// This shard's position, the low 16 bits of every CAS unique it issues.
    shard_index: u16,
    /// The next CAS counter value (see [`Shard::new_cas`]).
    next_cas: u64,
}

impl Shard {
    pub(crate) fn new(hasher: DefaultHashBuilder, index: u16, cas_seed: u64) -> Self {
        Shard {
            shard_index: index,
            next_cas: cas_seed,
            index: Index::new(),
            log: Log::new(),
            hasher,
            head: NIL,
            tail: NIL,
            frontier: NIL,
            last_tick: 0,
            with_ttl: 0,
            stats: ShardStats::default(),
            sweep_cursor: Cursor::default(),
            published_len: 0,
            published_mem: 0,
            dirty: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Accounted bytes: live records, huge mappings, the index and the bookkeeping tables.
    pub(crate) fn memory(&self) -> usize {
        let b = self.log.bytes();
        b.live + b.huge + b.overhead + self.index.bytes()
    }

    /// Segment bytes held (live + garbage + the head's unused end) plus huge mappings: what
    /// the shard's records cost the process.
    pub(crate) fn held(&self) -> usize {
        let b = self.log.bytes();
        b.segments + b.huge
    }

    pub(crate) fn garbage(&self) -> usize {
        self.log.bytes().garbage
    }

    pub(crate) fn index_stats(&self) -> super::index::IndexStats {
        self.index.stats()
    }

    #[inline]
    pub(crate) fn record(&self, id: u32) -> &[u8] {
        self.log.at(id)
    }

    fn hash_of(&self, id: u32) -> u64 {
        self.hasher.hash_one(record::key(self.log.at(id)))
    }

    /// A CAS unique no other modification of any key has had: this shard's counter above its
    /// index, so shards need no shared counter.
    pub(crate) fn new_cas(&mut self) -> u64 {
        self.next_cas += 1;
        (self.next_cas << 16) | self.shard_index as u64
    }

    /// Makes sure CAS uniques issued from now on are above `cas` (restored from a snapshot).
    pub(crate) fn cas_floor(&mut self, cas: u64) {
        self.next_cas = self.next_cas.max(cas >> 16);
    }

    /// The published form of the tail's stamp: its recency time + 1, or 0 when empty.
    pub(crate) fn tail_mark(&self) -> u64 {
        if self.tail == NIL {
            0
        } else {
            stamp::decode(record::stamp(self.log.at(self.tail)), self.last_tick) + 1
        }
    }

    /// The stamp for an access now (`ticks` from the store's recency clock).
    #[inline]
    fn stamp_for(&mut self, ticks: u64) -> u32 {
        self.last_tick = self.last_tick.max(ticks);
        stamp::fine(self.last_tick)
    }

    /// Finds a record by key, expired or not.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<Hit> {
        let log = &self.log;
        // The layout parsed to compare the key is kept: one parse per operation.
        let mut found = None;
        let pos = self.index.find(hash, |id| {
            let (c, base) = log.view(id);
            let l = record::layout(c);
            let hit = &c[l.key()] == key;
            if hit {
                found = Some((id, l, base));
            }
            hit
        })?;
        let (id, layout, base) = found.expect("matched");
        Some(Hit {
            pos,
            id,
            layout,
            base,
        })
    }

    /// Finds a live record; an expired one is removed (and counted) on the spot.
    #[inline]
    pub(crate) fn lookup(
        &mut self,
        hash: u64,
        key: &[u8],
        now: &mut Now<'_>,
        pool: &Pool,
    ) -> Option<Hit> {
        let hit = self.find(hash, key)?;
        if let Some(at) = hit.expire(self.log.at(hit.id))
            && at <= now.get()
        {
            self.remove(hit, pool);
            self.stats.expired += 1;
            return None;
        }
        Some(hit)
    }

    /// Marks a record most recently used.
    #[inline]
    pub(crate) fn touch(&mut self, id: u32, ticks: u64) {
        let s = self.stamp_for(ticks);
        if id == self.tail {
            self.dirty |= DIRTY_TAIL;
        }
        let old_head = self.head;
        // One pass over the record itself: read its links, write its new ones and the stamp.
        let h = self.log.links_mut(id);
        let (next, prev) = (record::h_next(h), record::h_prev(h));
        record::h_set_stamp(h, s);
        if old_head == id {
            if self.frontier == id {
                // The head was the newest coarse record: now fine, its older neighbour takes
                // over.
                self.frontier = next;
            }
            return;
        }
        record::h_set_next(h, old_head);
        record::h_set_prev(h, NIL);
        // Then its old neighbours and the old head (`prev` is not NIL: `id` was not the head).
        if self.frontier == id {
            self.frontier = next;
        }
        record::h_set_next(self.log.links_mut(prev), next);
        if next == NIL {
            self.tail = prev;
            self.dirty |= DIRTY_TAIL;
        } else {
            record::h_set_prev(self.log.links_mut(next), prev);
        }
        record::h_set_prev(self.log.links_mut(old_head), id);
        self.head = id;
    }

    fn unlink(&mut self, id: u32) {
        let c = self.log.at(id);
        let (next, prev) = (record::next(c), record::prev(c));
        if self.frontier == id {
            self.frontier = next;
        }
        if prev == NIL {
            self.head = next;
        } else {
            record::set_next(self.log.at_mut(prev), next);
        }
        if next == NIL {
            self.tail = prev;
            self.dirty |= DIRTY_TAIL;
        } else {
            record::set_prev(self.log.at_mut(next), prev);
        }
    }

    fn push_front(&mut self, id: u32) {
        let old = self.head;
        let c = self.log.at_mut(id);
        record::set_next(c, old);
        record::set_prev(c, NIL);
        if old == NIL {
            self.tail = id;
            self.dirty |= DIRTY_TAIL;
        } else {
            record::set_prev(self.log.at_mut(old), id);
        }
        self.head = id;
    }

    /// Chooses the encoding and the segment base for a new record, so a relative deadline is
    /// written against the base of the segment it lands in.
    fn place(
        &self,
        key_len: usize,
        value_len: usize,
        x: &Extras,
        now: &mut Now<'_>,
    ) -> (Shape, usize, u64) {
        let mut clock = || now.get();
        let guess = self.log.next_base(0, &mut clock);
        let shape = Shape::of(key_len, value_len, x, guess);
        let size = shape.size(key_len, value_len);
        let base = self.log.next_base(size, &mut clock);
        if base == guess {
            return (shape, size, base);
        }
        let shape = Shape::of(key_len, value_len, x, base);
        let size2 = shape.size(key_len, value_len);
        if (size2 > MAX_INLINE) != (size > MAX_INLINE) {
            // Crossed into the huge range: huge records count from base 0.
            let shape = Shape::of(key_len, value_len, x, 0);
            return (shape, shape.size(key_len, value_len), 0);
        }
        (shape, size2, base)
    }

    /// Writes a fresh, unlinked record; returns its id and size.
    #[allow(clippy::too_many_arguments)]
    fn write_new(
        &mut self,
        key: &[u8],
        value: &[&[u8]],
        x: &Extras,
        stamp: u32,
        protect: u32,
        now: &mut Now<'_>,
        pool: &Pool,
    ) -> Result<(u32, usize), Full> {
        let value_len = value.iter().map(|p| p.len()).sum();
        let (shape, size, base) = self.place(key.len(), value_len, x, now);
        let id = self.alloc(size, base, protect, pool)?;
        let base = self.log.base(id);
        record::write(
            self.log.at_mut(id),
            shape,
            (NIL, NIL, stamp),
            key,
            value,
            x,
            base,
        );
        Ok((id, size))
    }

    /// Allocates space, evicting this shard's LRU records (never `protect`) if its address
    /// space is full.
    fn alloc(&mut self, size: usize, base: u64, protect: u32, pool: &Pool) -> Result<u32, Full> {
        loop {
            match self.log.alloc(size, base, pool) {
                Ok(id) => return Ok(id),
                Err(Full) if self.tail != NIL && self.tail != protect => {
                    let tail = self.tail;
                    let hash = self.hash_of(tail);
                    let pos = self
                        .index
                        .find(hash, |id| id == tail)
                        .expect("tail indexed");
                    let hit = self.hit_at(pos, tail);
                    self.remove(hit, pool);
                    self.stats.evictions += 1;
                }
                Err(Full) => return Err(Full),
            }
        }
    }

    /// Inserts a key known to be absent, as the most recently used record.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[&[u8]],
        x: &Extras,
        ticks: u64,
        now: &mut Now<'_>,
        pool: &Pool,
    ) -> Result<u32, Full> {
        let stamp = self.stamp_for(ticks);
        let (id, _) = self.write_new(key, value, x, stamp, NIL, now, pool)?;
        self.push_front(id);
        let Shard {
            index, log, hasher, ..
        } = self;
        index.insert(hash, id, &mut |ids, out| rehash(log, hasher, ids, out));
        self.with_ttl += x.expire.is_some() as usize;
        self.dirty |= DIRTY_SIZE;
        Ok(id)
    }

    /// Rewrites a record (same key) with a new value and extras, in place when the padded size
    /// is unchanged, and makes it the most recently used. Returns the (maybe new) id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replace(
        &mut self,
        hit: Hit,
        key: &[u8],
        value: &[&[u8]],
        x: &Extras,
        ticks: u64,
        now: &mut Now<'_>,
        pool: &Pool,
    ) -> Result<u32, Full> {
        let id = hit.id;
        let value_len = value.iter().map(|p| p.len()).sum();
        let old_size = hit.layout.size();
        let base = hit.base;
        let had_ttl = hit.expire(self.log.at(id)).is_some();
        let shape = Shape::of(key.len(), value_len, x, base);
        let size = shape.size(key.len(), value_len);
        self.with_ttl = self.with_ttl + x.expire.is_some() as usize - had_ttl as usize;
        if size == old_size && (size > MAX_INLINE) == (old_size > MAX_INLINE) {
            let c = self.log.at_mut(id);
            let links = (record::next(c), record::prev(c), record::stamp(c));
            record::write(c, shape, links, key, value, x, base);
            self.touch(id, ticks);
            return Ok(id);
        }
        self.dirty |= DIRTY_SIZE;
        let stamp = self.stamp_for(ticks);
        let new = match self.write_new(key, value, x, stamp, id, now, pool) {
            Ok((new, _)) => new,
            Err(Full) => {
                self.with_ttl = self.with_ttl + had_ttl as usize - x.expire.is_some() as usize;
                return Err(Full);
            }
        };
        // `id` itself was protected from eviction; other removals never move index entries.
        let pos = self
            .find_id(&hit, key)
            .expect("the replaced record is indexed");
        self.unlink(id);
        self.index.set_id(pos, new);
        self.log.kill(id, old_size, pool);
        self.push_front(new);
        Ok(new)
    }

    /// Where `hit.id` is indexed: still at `hit.pos` unless a resize step moved it since.
    fn find_id(&self, hit: &Hit, key: &[u8]) -> Option<Pos> {
        if self.index.holds(hit.pos, hit.id) {
            return Some(hit.pos);
        }
        let hash = self.hasher.hash_one(key);
        self.index.find(hash, |x| x == hit.id)
    }

    /// Changes only the deadline of a record, keeping its value; returns its (maybe new) id.
    pub(crate) fn set_expire(
        &mut self,
        hit: Hit,
        expire: Option<u64>,
        ticks: u64,
        now: &mut Now<'_>,
        pool: &Pool,
    ) -> Result<u32, Full> {
        let id = hit.id;
        let base = hit.base;
        let mut x = record::extras(self.log.at(id), &hit.layout, base);
        if let (Some(_), Some(at)) = (x.expire, expire)
            && record::set_expire_in_place(self.log.at_mut(id), at, base)
        {
            self.touch(id, ticks);
            return Ok(id);
        }
        if x.expire.is_none() && expire.is_none() {
            self.touch(id, ticks);
            return Ok(id);
        }
        let c = self.log.at(id);
        let key = c[hit.layout.key()].to_vec();
        let value = c[hit.layout.value()].to_vec();
        x.expire = expire;
        self.replace(hit, &key, &[&value], &x, ticks, now, pool)
    }

    /// Removes a record found by key (`hit` must be fresh: no insert since the lookup).
    pub(crate) fn remove(&mut self, hit: Hit, pool: &Pool) {
        let id = hit.id;
        debug_assert!(self.index.holds(hit.pos, id), "stale index position");
        self.with_ttl -= hit.expire(self.log.at(id)).is_some() as usize;
        let size = hit.layout.size();
        self.unlink(id);
        self.index.remove(hit.pos);
        self.log.kill(id, size, pool);
        self.dirty |= DIRTY_SIZE;
    }

    /// Removes a record known only by id (eviction, sweeps).
    fn remove_id(&mut self, id: u32, pool: &Pool) {
        let hash = self.hash_of(id);
        let pos = self
            .index
            .find(hash, |x| x == id)
            .expect("every live record is indexed");
        let hit = self.hit_at(pos, id);
        self.remove(hit, pool);
    }

    fn hit_at(&self, pos: Pos, id: u32) -> Hit {
        let (c, base) = self.log.view(id);
        Hit {
            pos,
            id,
            layout: record::layout(c),
            base,
        }
    }

    /// Removes the least recently used record; an expired one counts as expired, not evicted.
    pub(crate) fn evict_tail(&mut self, now_ms: u64, pool: &Pool) -> bool {
        let id = self.tail;
        if id == NIL {
            return false;
        }
        let expired =
            record::expire(self.log.at(id), self.log.base(id)).is_some_and(|at| at <= now_ms);
        self.remove_id(id, pool);
        if expired {
            self.stats.expired += 1;
        } else {
            self.stats.evictions += 1;
        }
        true
    }

    /// Scans up to `budget` records from the sweep cursor and removes the expired ones.
    pub(crate) fn sweep(&mut self, now_ms: u64, budget: usize, pool: &Pool) -> SweepStep {
        let mut step = SweepStep::default();
        while step.scanned < budget {
            let Some((found, next)) = self.log.walk(self.sweep_cursor) else {
                self.sweep_cursor = Cursor::default();
                step.wrapped = true;
                break;
            };
            step.scanned += 1;
            self.sweep_cursor = next;
            let id = found.id;
            if record::expire(self.log.at(id), self.log.base(id)).is_some_and(|at| at <= now_ms) {
                self.remove_id(id, pool);
                self.stats.expired += 1;
                step.removed += 1;
            }
        }
        step
    }

    /// Converts stamps older than the fine range can hold to coarse ones, oldest first, at most
    /// `budget` of them; see `stamp.rs`.
    pub(crate) fn coarsen(&mut self, now_ticks: u64, budget: usize) -> usize {
        let reference = self.last_tick.max(now_ticks);
        let mut id = if self.frontier == NIL {
            self.tail
        } else {
            record::prev(self.log.at(self.frontier))
        };
        let mut done = 0;
        while id != NIL && done < budget {
            let s = record::stamp(self.log.at(id));
            let t = stamp::decode(s, reference);
            if stamp::is_fine(s) {
                if reference - t < stamp::COARSEN_AFTER {
                    break;
                }
                record::set_stamp(self.log.at_mut(id), stamp::coarse(t));
            }
            self.frontier = id;
            id = record::prev(self.log.at(id));
            done += 1;
        }
        if done > 0 {
            self.dirty |= DIRTY_TAIL;
        }
        done
    }

    /// Hands back the head segment if the shard holds nothing live in it.
    pub(crate) fn trim(&mut self, pool: &Pool) {
        self.log.trim_idle_head(pool);
        self.dirty |= DIRTY_SIZE;
    }

    /// Presizes an empty shard's index for `items` keys (snapshot loads).
    pub(crate) fn reserve_index(&mut self, items: usize) {
        let before = self.index.bytes();
        self.index.reserve(items);
        if self.index.bytes() != before {
            self.dirty |= DIRTY_SIZE;
        }
    }

    /// Ends [`Shard::reserve_index`]: the index may shrink again if the load left it sparse.
    pub(crate) fn end_reserve(&mut self) {
        self.index.end_reserve();
    }

    /// Old index groups that inserts migrated since the last call.
    pub(crate) fn take_insert_drained(&mut self) -> usize {
        self.index.take_insert_drained()
    }

    /// A drained old index table for the caller to drop once the lock is released.
    pub(crate) fn take_retired(&mut self) -> Option<impl Sized + use<>> {
        let t = self.index.take_retired();
        if t.is_some() {
            self.dirty |= DIRTY_SIZE;
        }
        t
    }

    /// Background index upkeep (finishing or starting resizes), at most `groups` groups.
    pub(crate) fn maintain_index(&mut self, groups: usize) -> usize {
        let Shard {
            index, log, hasher, ..
        } = self;
        let before = index.bytes();
        let n = index.maintain(groups, &mut |ids, out| rehash(log, hasher, ids, out));
        if index.bytes() != before {
            self.dirty |= DIRTY_SIZE;
        }
        n
    }

    /// Whether garbage is past what a write must clean before returning: half a segment plus
    /// a sixteenth of the live bytes. With the head segment's unused end this bounds what the
    /// records cost the process to about `live * 17/16 + 1.5 segments` per shard.
    ///
    /// `spare` is the segment eviction is emptying (see [`Shard::eviction_front`]): its
    /// garbage is not counted, and [`Shard::clean`] does not move its records.
    #[inline]
    pub(crate) fn over_garbage(&self, spare: Option<u32>) -> bool {
        self.log.over_garbage(SEG_SIZE / 2, spare)
    }

    /// The segment holding this shard's least recently used record. While the store evicts,
    /// that segment is being emptied by eviction, record by record, and moving its live
    /// records would only move the next victims (measured: 58% more instructions per evicting
    /// write, most of it relocation); callers near a limit pass it as `spare`.
    #[inline]
    pub(crate) fn eviction_front(&self) -> Option<u32> {
        if self.tail == NIL {
            None
        } else {
            Log::segment_of(self.tail)
        }
    }

    /// Moves live records out of the segment with the most garbage (at least `min_level`
    /// sixteenths of it) until `budget` bytes were moved or no victim is left; each freed segment
    /// goes back to the pool. Returns the bytes moved.
    pub(crate) fn clean(
        &mut self,
        budget: usize,
        min_level: usize,
        spare: Option<u32>,
        now: &mut Now<'_>,
        pool: &Pool,
    ) -> usize {
        let mut moved = 0;
        while moved < budget {
            let Some(found) = self.log.clean_next(min_level, spare) else {
                break;
            };
            moved += found.size;
            self.relocate(found.id, found.size, now, pool);
        }
        moved
    }

    /// Moves every live segment record to fresh segments (relocating all of them): lets tests
    /// check that relocation keeps every key, value, deadline and the LRU order.
    pub(crate) fn relocate_all(&mut self, now: &mut Now<'_>, pool: &Pool) -> usize {
        self.log.seal_head(pool);
        let mut moved = 0;
        // Finish a victim already in progress (no new one is chosen at this level).
        while let Some(found) = self.log.clean_next(usize::MAX, None) {
            moved += 1;
            self.relocate(found.id, found.size, now, pool);
        }
        for s in self.log.closed_segments() {
            while let Some(found) = self.log.clean_segment(s) {
                moved += 1;
                self.relocate(found.id, found.size, now, pool);
            }
        }
        moved
    }

    /// Moves one live record to the head segment, fixing its index entry and LRU neighbours.
    fn relocate(&mut self, id: u32, size: usize, now: &mut Now<'_>, pool: &Pool) {
        let c = self.log.at(id);
        let old_base = self.log.base(id);
        if record::expire(c, old_base).is_some_and(|at| at <= now.get()) {
            self.remove_id(id, pool);
            self.stats.expired += 1;
            return;
        }
        let hash = self.hash_of(id);
        let pos = self
            .index
            .find(hash, |x| x == id)
            .expect("live record indexed");
        let mut clock = || now.get();
        let base = self.log.next_base(size, &mut clock);
        let Ok(new) = self.log.alloc(size, base, pool) else {
            return; // address space full: leave it where it is
        };
        self.log.copy(id, new, size);
        let new_base = self.log.base(new);
        if !record::rebase_expire(self.log.at_mut(new), old_base, new_base) {
            // Its deadline passed between the check and now (a clock step): drop it.
            self.log.kill(new, size, pool);
            let hit = self.hit_at(pos, id);
            self.remove(hit, pool);
            self.stats.expired += 1;
            return;
        }
        let c = self.log.at(new);
        let (next, prev) = (record::next(c), record::prev(c));
        if prev == NIL {
            self.head = new;
        } else {
            record::set_next(self.log.at_mut(prev), new);
        }
        if next == NIL {
            self.tail = new;
        } else {
            record::set_prev(self.log.at_mut(next), new);
        }
        if self.frontier == id {
            self.frontier = new;
        }
        self.index.set_id(pos, new);
        self.log.kill(id, size, pool);
        self.stats.moved += 1;
        self.dirty |= DIRTY_SIZE | DIRTY_TAIL;
    }

    /// Calls `f` with each live key whose 32-bit hash lies in `[lo, hi)`.
    pub(crate) fn scan_range(&self, lo: u64, hi: u64, now_ms: u64, f: &mut dyn FnMut(&[u8])) {
        let log = &self.log;
        let hasher = &self.hasher;
        self.index.for_range(
            lo,
            hi,
            &mut |id| hasher.hash_one(record::key(log.at(id))),
            &mut |id| {
                let c = log.at(id);
                if record::expire(c, log.base(id)).is_none_or(|at| at > now_ms) {
                    f(record::key(c));
                }
            },
        );
    }

    /// A uniformly chosen live key, trying random index slots; `None` if `tries` picks found
    /// nothing live.
    pub(crate) fn random_key(&self, rng: &mut u64, now_ms: u64, tries: usize) -> Option<Vec<u8>> {
        for _ in 0..tries {
            *rng = splitmix(*rng);
            if let Some(id) = self.index.slot_pick(*rng) {
                let c = self.log.at(id);
                if record::expire(c, self.log.base(id)).is_none_or(|at| at > now_ms) {
                    return Some(record::key(c).to_vec());
                }
            }
        }
        None
    }

    /// Empties the shard, returning what it held so the caller chooses the thread that frees it
    /// (a flush of many gigabytes must not stall a request).
    pub(crate) fn clear(&mut self) -> Garbage {
        let index = self.index.take();
        let (segments, huge) = self.log.take();
        self.head = NIL;
        self.tail = NIL;
        self.frontier = NIL;
        self.with_ttl = 0;
        self.sweep_cursor = Cursor::default();
        self.dirty |= DIRTY_SIZE | DIRTY_TAIL;
        Garbage {
            _index: index,
            segments,
            _huge: huge,
        }
    }

    /// A point-in-time copy of this shard's records in LRU order (see `Store::shard_image`).
    pub(crate) fn image(&self) -> ShardImage {
        ShardImage {
            log: self.log.image(),
            tail: self.tail,
            len: self.len(),
            last_tick: self.last_tick,
        }
    }

    #[cfg(test)]
    pub(crate) fn log_bytes(&self) -> super::log::LogBytes {
        self.log.bytes()
    }

    #[cfg(test)]
    pub(crate) fn index_bytes(&self) -> usize {
        self.index.bytes()
    }

    /// Records whose stamp is coarse (tests of the stamp upkeep).
    #[cfg(test)]
    pub(crate) fn coarse_count(&self) -> usize {
        let mut n = 0;
        let mut id = self.head;
        while id != NIL {
            let c = self.log.at(id);
            n += !stamp::is_fine(record::stamp(c)) as usize;
            id = record::next(c);
        }
        n
    }

    /// Walks the LRU list from most to least recent; for tests and debugging.
    #[cfg(test)]
    pub(crate) fn lru_keys(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut id = self.head;
        let mut prev = NIL;
        while id != NIL {
            let c = self.log.at(id);
            assert_eq!(record::prev(c), prev, "broken back link");
            out.push(record::key(c).to_vec());
            prev = id;
            id = record::next(c);
        }
        assert_eq!(prev, self.tail);
        assert_eq!(out.len(), self.len());
        out
    }
}

/// Hashes the keys of records `ids` (for index resizes), prefetching them all first so the
/// cache misses overlap instead of queueing.
fn rehash(log: &Log, hasher: &DefaultHashBuilder, ids: &[u32], out: &mut [u64]) {
    for &id in ids {
        prefetch(log.addr(id));
    }
    for (i, &id) in ids.iter().enumerate() {
        out[i] = hasher.hash_one(record::key(log.at(id)));
    }
}

#[inline]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing architecturally, even for
    // an invalid or null address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast(), std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// splitmix64: the random source for RANDOMKEY slot picks.
#[inline]
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
