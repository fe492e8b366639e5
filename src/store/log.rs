//! A shard's record memory: a log of segments from the shared [`Pool`], plus exact-size
//! mappings for huge records.
//!
//! New records are appended to the shard's *head* segment; a record rewritten with the same
//! padded size is overwritten in place. A record that dies (deleted, evicted, expired, or
//! replaced by one of another size) is marked dead where it lies, and its bytes become the
//! segment's garbage. A segment whose last live record dies goes straight back to the pool. The
//! cleaner (driven by the shard, which fixes the index and LRU links) moves the live records of
//! the segment with the most garbage to the head and frees it, so garbage stays a bounded share
//! of memory whatever the mix of sizes: memory moves between value sizes freely, because a
//! segment holds records of any size.
//!
//! A record id is 32 bits: `segment << 17 | offset / 2` for segment records (16,384 segments of
//! 256 KiB: 4 GiB per shard), `HUGE | n` for the n-th huge record.

use super::mem::{HugeAlloc, Pool, SEG_SIZE, Segment, copy_between};
use super::record;

/// The "no record" id (end of an LRU list).
pub(crate) const NIL: u32 = u32::MAX;
const OFF_BITS: u32 = 17;
const OFF_MASK: u32 = (1 << OFF_BITS) - 1;
const HUGE: u32 = 1 << 31;
/// Segments a shard can address.
const MAX_SEGS: usize = 1 << (31 - OFF_BITS);
/// Huge records a shard can address (ids `NIL` and `record::DEAD` are reserved).
const MAX_HUGE: usize = (HUGE - 2) as usize;
/// Records larger than this get their own mapping instead of a place in a segment, so a
/// segment never wastes more than this at its end.
pub(crate) const MAX_INLINE: usize = 16 * 1024;
const NO_SEG: u32 = u32::MAX;
/// Garbage levels for choosing the cleaner's victim: level = garbage * 16 / SEG_SIZE, so
/// level 1 is at least a sixteenth of the segment.
const LEVELS: usize = 17;

/// The shard's segments and huge records are all taken.
#[derive(Debug)]
pub(crate) struct Full;

struct SegSlot {
    mem: Option<Segment>,
    /// Bytes of records appended; records run back to back from offset 0 to here.
    used: u32,
    /// Closed to appends (no longer the head): its unused end counts as garbage.
    closed: bool,
    /// Bumped whenever the slot gets a new segment, so a cursor into a segment that has since
    /// been released and reused knows it (and starts that slot over).
    generation: u32,
    /// Bytes of live records.
    live: u32,
    /// Unix ms that relative deadlines in this segment count from.
    base_ms: u64,
    /// Garbage level list this closed segment is on (`u8::MAX` when on none).
    level: u8,
    next: u32,
    prev: u32,
}

/// Where a cursor walking every record stands: a segment slot, the generation of the segment
/// it saw there, and an offset (or, past the segments, a huge-record index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cursor {
    slot: u32,
    generation: u32,
    off: u32,
}

/// Byte totals for accounting.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LogBytes {
    /// Live record bytes in segments.
    pub(crate) live: usize,
    /// Dead bytes in segments (including unused ends of closed segments).
    pub(crate) garbage: usize,
    /// Segments held, in bytes.
    pub(crate) segments: usize,
    /// Bytes mapped for huge records.
    pub(crate) huge: usize,
    /// Bookkeeping (descriptor tables).
    pub(crate) overhead: usize,
}

pub(crate) struct Log {
    segs: Vec<SegSlot>,
    free_slots: Vec<u32>,
    head: u32,
    huge: Vec<Option<HugeAlloc>>,
    free_huge: Vec<u32>,
    bytes: LogBytes,
    levels: [u32; LEVELS],
    /// The segment being cleaned and the offset reached.
    cleaning: Option<(u32, u32)>,
}

/// A live record found by a walk.
pub(crate) struct Found {
    pub(crate) id: u32,
    pub(crate) size: usize,
}

impl Log {
    pub(crate) fn new() -> Log {
        Log {
            segs: Vec::new(),
            free_slots: Vec::new(),
            head: NO_SEG,
            huge: Vec::new(),
            free_huge: Vec::new(),
            bytes: LogBytes::default(),
            levels: [NO_SEG; LEVELS],
            cleaning: None,
        }
    }

    /// Whether garbage exceeds `floor` plus a sixteenth of the live bytes.
    #[inline]
    /// Whether garbage, not counting segment `spare`'s, is over `floor` plus 1/16 of the live
    /// bytes.
    pub(crate) fn over_garbage(&self, floor: usize, spare: Option<u32>) -> bool {
        let spared = spare.map_or(0, |s| {
            let seg = &self.segs[s as usize];
            if seg.mem.is_some() {
                Self::span(seg) - seg.live as usize
            } else {
                0
            }
        });
        self.bytes.garbage.saturating_sub(spared) > floor + self.bytes.live / 16
    }

    /// The segment that holds record `id` (`None` for a huge record or none).
    pub(crate) fn segment_of(id: u32) -> Option<u32> {
        (id & HUGE == 0).then_some(id >> OFF_BITS)
    }

    pub(crate) fn bytes(&self) -> LogBytes {
        let mut b = self.bytes;
        b.overhead = self.segs.capacity() * std::mem::size_of::<SegSlot>()
            + self.huge.capacity() * std::mem::size_of::<Option<HugeAlloc>>()
            + (self.free_slots.capacity() + self.free_huge.capacity()) * 4;
        b
    }

    #[inline]
    fn split(id: u32) -> (usize, usize) {
        ((id >> OFF_BITS) as usize, ((id & OFF_MASK) as usize) * 2)
    }

    /// The record's bytes: from its first byte to the end of its segment (or huge mapping).
    /// The header says where the record ends; nothing reads past that.
    #[inline]
    pub(crate) fn at(&self, id: u32) -> &[u8] {
        if id & HUGE == 0
            && let Some(m) = &self.segs[(id >> OFF_BITS) as usize].mem
        {
            return &m.bytes()[((id & OFF_MASK) as usize) * 2..];
        }
        self.huge_at(id)
    }

    #[cold]
    fn huge_at(&self, id: u32) -> &[u8] {
        assert!(id & HUGE != 0, "record {id:#x} is in a released segment");
        self.huge[(id & !HUGE) as usize]
            .as_ref()
            .expect("live huge record")
            .bytes()
    }

    #[inline]
    pub(crate) fn at_mut(&mut self, id: u32) -> &mut [u8] {
        if id & HUGE == 0 {
            let m = self.segs[(id >> OFF_BITS) as usize]
                .mem
                .as_mut()
                .expect("record in a released segment");
            return &mut m.bytes_mut()[((id & OFF_MASK) as usize) * 2..];
        }
        self.huge[(id & !HUGE) as usize]
            .as_mut()
            .expect("live huge record")
            .bytes_mut()
    }

    /// A record's link-and-stamp header (its first 12 bytes) as an array: one bounds check for
    /// all the LRU updates of a touch.
    #[inline]
    pub(crate) fn links_mut(&mut self, id: u32) -> &mut [u8; 12] {
        (&mut self.at_mut(id)[..12])
            .try_into()
            .expect("a record is longer than its header")
    }

    /// The record's bytes and its segment's base time in one lookup.
    #[inline]
    pub(crate) fn view(&self, id: u32) -> (&[u8], u64) {
        if id & HUGE == 0 {
            let seg = &self.segs[(id >> OFF_BITS) as usize];
            if let Some(m) = &seg.mem {
                return (&m.bytes()[((id & OFF_MASK) as usize) * 2..], seg.base_ms);
            }
        }
        (self.huge_at(id), 0)
    }

    /// Where the record's key starts in memory, for prefetching.
    #[inline]
    pub(crate) fn addr(&self, id: u32) -> *const u8 {
        if id & HUGE != 0 {
            return self.at(id).as_ptr();
        }
        let (s, off) = Self::split(id);
        match &self.segs[s].mem {
            Some(m) => m.as_ptr().wrapping_add(off),
            None => std::ptr::null(),
        }
    }

    /// The time relative deadlines of this record count from (huge records always store
    /// absolute deadlines, so theirs is 0).
    #[inline]
    pub(crate) fn base(&self, id: u32) -> u64 {
        if id & HUGE != 0 {
            0
        } else {
            self.segs[(id >> OFF_BITS) as usize].base_ms
        }
    }

    /// The base a new record of `size` bytes would get, so the caller can choose its shape
    /// before allocating (0 for huge records: they take absolute deadlines).
    pub(crate) fn next_base(&self, size: usize, now_ms: &mut dyn FnMut() -> u64) -> u64 {
        if size > MAX_INLINE {
            return 0;
        }
        match self.segs.get(self.head as usize) {
            Some(h) if h.used as usize + size <= SEG_SIZE => h.base_ms,
            _ => now_ms(),
        }
    }

    /// Reserves `size` bytes (even) for a new record; the caller writes it at once. `base_ms`
    /// must be what [`Log::next_base`] returned for this size.
    pub(crate) fn alloc(&mut self, size: usize, base_ms: u64, pool: &Pool) -> Result<u32, Full> {
        debug_assert!(size.is_multiple_of(2) && size > 0);
        if size > MAX_INLINE {
            let mem = HugeAlloc::new(size).ok_or(Full)?;
            self.bytes.huge += mem.mapped();
            let n = match self.free_huge.pop() {
                Some(n) => {
                    self.huge[n as usize] = Some(mem);
                    n
                }
                None if self.huge.len() < MAX_HUGE => {
                    self.huge.push(Some(mem));
                    self.huge.len() as u32 - 1
                }
                None => {
                    self.bytes.huge -= mem.mapped();
                    return Err(Full);
                }
            };
            return Ok(HUGE | n);
        }
        let fits = self
            .segs
            .get(self.head as usize)
            .is_some_and(|h| h.used as usize + size <= SEG_SIZE);
        if !fits {
            self.open_head(base_ms, pool)?;
        }
        let h = self.head;
        let seg = &mut self.segs[h as usize];
        debug_assert_eq!(seg.base_ms, base_ms);
        let off = seg.used;
        seg.used += size as u32;
        seg.live += size as u32;
        self.bytes.live += size;
        Ok((h << OFF_BITS) | (off / 2))
    }

    fn open_head(&mut self, base_ms: u64, pool: &Pool) -> Result<(), Full> {
        let slot = match self.free_slots.last() {
            Some(&s) => s,
            None if self.segs.len() < MAX_SEGS => {
                self.segs.push(SegSlot {
                    mem: None,
                    used: 0,
                    closed: false,
                    generation: 0,
                    live: 0,
                    base_ms: 0,
                    level: u8::MAX,
                    next: NO_SEG,
                    prev: NO_SEG,
                });
                self.free_slots.push(self.segs.len() as u32 - 1);
                self.segs.len() as u32 - 1
            }
            None => return Err(Full),
        };
        let mem = pool.take().ok_or(Full)?;
        self.free_slots.pop();
        if self.head != NO_SEG {
            self.close_head(pool);
        }
        let seg = &mut self.segs[slot as usize];
        seg.mem = Some(mem);
        seg.used = 0;
        seg.closed = false;
        seg.live = 0;
        seg.generation = seg.generation.wrapping_add(1);
        seg.base_ms = base_ms;
        self.bytes.segments += SEG_SIZE;
        self.head = slot;
        Ok(())
    }

    /// The head is full: its unused end becomes garbage and it joins the cleaner's levels.
    fn close_head(&mut self, pool: &Pool) {
        let h = self.head;
        self.head = NO_SEG;
        let seg = &mut self.segs[h as usize];
        seg.closed = true;
        self.bytes.garbage += SEG_SIZE - seg.used as usize;
        if seg.live == 0 {
            self.release_to(h, pool);
        } else {
            self.relevel(h);
        }
    }

    /// Gives back the head segment if nothing live is in it (the sweeper calls this, so a
    /// shard that emptied holds no memory, without a set/delete loop paying a pool trip).
    pub(crate) fn trim_idle_head(&mut self, pool: &Pool) {
        if self.head != NO_SEG && self.segs[self.head as usize].live == 0 {
            let h = self.head;
            self.head = NO_SEG;
            let seg = &mut self.segs[h as usize];
            seg.closed = true;
            self.bytes.garbage += SEG_SIZE - seg.used as usize;
            self.release_to(h, pool);
        }
    }

    /// Closes the head segment so the cleaner may take it (tests use this to move every
    /// record).
    pub(crate) fn seal_head(&mut self, pool: &Pool) {
        if self.head != NO_SEG {
            self.close_head(pool);
        }
    }

    /// Marks a record of `size` bytes dead; its segment goes back to the pool if nothing live
    /// is left in it.
    pub(crate) fn kill(&mut self, id: u32, size: usize, pool: &Pool) {
        if id & HUGE != 0 {
            let n = id & !HUGE;
            let mem = self.huge[n as usize].take().expect("live huge record");
            self.bytes.huge -= mem.mapped();
            drop(mem);
            self.free_huge.push(n);
            if n as usize == self.huge.len() - 1 {
                // Keep the table short when the last ones go (cursors stop early).
                while self.huge.last().is_some_and(Option::is_none) {
                    let last = self.huge.len() as u32 - 1;
                    self.huge.pop();
                    if let Some(i) = self.free_huge.iter().rposition(|&x| x == last) {
                        self.free_huge.swap_remove(i);
                    }
                }
            }
            return;
        }
        record::set_prev(self.at_mut(id), record::DEAD);
        let s = (id >> OFF_BITS) as usize;
        let seg = &mut self.segs[s];
        seg.live -= size as u32;
        self.bytes.live -= size;
        self.bytes.garbage += size;
        if s as u32 == self.head {
            return;
        }
        let victim = self.cleaning.is_some_and(|(c, _)| c as usize == s);
        if self.segs[s].live == 0 {
            self.unlevel(s as u32);
            self.release_to(s as u32, pool);
        } else if !victim {
            self.relevel(s as u32);
        }
    }

    fn release_to(&mut self, s: u32, pool: &Pool) {
        let seg = &mut self.segs[s as usize];
        let mem = seg.mem.take().expect("segment memory");
        self.bytes.garbage -= Self::span(seg) - seg.live as usize;
        self.bytes.segments -= SEG_SIZE;
        seg.used = 0;
        seg.closed = false;
        seg.live = 0;
        self.free_slots.push(s);
        if self.cleaning.is_some_and(|(c, _)| c == s) {
            self.cleaning = None;
        }
        pool.give(mem);
    }

    /// Bytes of the segment that are records or garbage (all of it once closed).
    fn span(seg: &SegSlot) -> usize {
        if seg.closed {
            SEG_SIZE
        } else {
            seg.used as usize
        }
    }

    fn level_of(seg: &SegSlot) -> u8 {
        let garbage = Self::span(seg) - seg.live as usize;
        (garbage * (LEVELS - 1) / SEG_SIZE) as u8
    }

    fn relevel(&mut self, s: u32) {
        let want = Self::level_of(&self.segs[s as usize]);
        if self.segs[s as usize].level == want {
            return;
        }
        self.unlevel(s);
        let head = self.levels[want as usize];
        {
            let seg = &mut self.segs[s as usize];
            seg.level = want;
            seg.next = head;
            seg.prev = NO_SEG;
        }
        if head != NO_SEG {
            self.segs[head as usize].prev = s;
        }
        self.levels[want as usize] = s;
    }

    fn unlevel(&mut self, s: u32) {
        let (level, next, prev) = {
            let seg = &self.segs[s as usize];
            (seg.level, seg.next, seg.prev)
        };
        if level == u8::MAX {
            return;
        }
        if prev == NO_SEG {
            self.levels[level as usize] = next;
        } else {
            self.segs[prev as usize].next = next;
        }
        if next != NO_SEG {
            self.segs[next as usize].prev = prev;
        }
        let seg = &mut self.segs[s as usize];
        seg.level = u8::MAX;
        seg.next = NO_SEG;
        seg.prev = NO_SEG;
    }

    /// The next live record the cleaner should move, choosing a victim (the closed segment with
    /// the most garbage, at least `min_level` sixteenths of it) when none is in progress. `None`
    /// when there is nothing to clean.
    pub(crate) fn clean_next(&mut self, min_level: usize, spare: Option<u32>) -> Option<Found> {
        loop {
            if let Some((s, _)) = self.cleaning
                && Some(s) == spare
            {
                // Eviction is emptying this victim now: leave the rest of it to eviction.
                self.cleaning = None;
                self.relevel(s);
            }
            if self.cleaning.is_none() {
                let s = self.pick_victim(min_level, spare)?;
                self.start_cleaning(s);
            }
            if let Some(found) = self.victim_next() {
                return Some(found);
            }
        }
    }

    /// The closed segment with the most garbage (at least `min_level`), other than `spare`.
    fn pick_victim(&self, min_level: usize, spare: Option<u32>) -> Option<u32> {
        for level in (min_level.min(LEVELS)..LEVELS).rev() {
            let mut s = self.levels[level];
            while s != NO_SEG {
                if Some(s) != spare {
                    return Some(s);
                }
                s = self.segs[s as usize].next;
            }
        }
        None
    }

    fn start_cleaning(&mut self, s: u32) {
        self.unlevel(s);
        self.cleaning = Some((s, 0));
    }

    /// The next live record in the victim, or `None` once it has none left (it is then back
    /// in the pool: its last live record was killed when moved).
    fn victim_next(&mut self) -> Option<Found> {
        let (s, off) = self.cleaning?;
        let seg = &self.segs[s as usize];
        let mem = seg.mem.as_ref().expect("victim memory").bytes();
        let mut off = off as usize;
        while off < seg.used as usize {
            let c = &mem[off..seg.used as usize];
            let size = record::size(c);
            let id = s << OFF_BITS | (off / 2) as u32;
            off += size;
            if !record::is_dead(c) {
                self.cleaning = Some((s, off as u32));
                return Some(Found { id, size });
            }
        }
        self.cleaning = None;
        if self.segs[s as usize].live != 0 {
            // Unreachable by the accounting; never leak a segment: back on a level.
            self.relevel(s);
        }
        None
    }

    /// The closed segments now holding records (for moving everything, in tests).
    pub(crate) fn closed_segments(&self) -> Vec<u32> {
        (0..self.segs.len() as u32)
            .filter(|&s| {
                let seg = &self.segs[s as usize];
                seg.mem.is_some() && seg.closed && s != self.head
            })
            .collect()
    }

    /// Cleans segment `s` completely, calling `relocate` for each live record.
    pub(crate) fn clean_segment(&mut self, s: u32) -> Option<Found> {
        if self.cleaning.is_none_or(|(c, _)| c != s) {
            if self.segs[s as usize].mem.is_none() || self.cleaning.is_some() {
                return None;
            }
            self.start_cleaning(s);
        }
        self.victim_next()
    }

    /// Copies record `from` (`size` bytes) to the newly allocated `to`.
    pub(crate) fn copy(&mut self, from: u32, to: u32, size: usize) {
        if from & HUGE != 0 || to & HUGE != 0 {
            let bytes = self.at(from)[..size].to_vec();
            self.at_mut(to)[..size].copy_from_slice(&bytes);
            return;
        }
        let (a, a_off) = Self::split(from);
        let (b, b_off) = Self::split(to);
        if a == b {
            self.segs[a]
                .mem
                .as_mut()
                .expect("segment")
                .bytes_mut()
                .copy_within(a_off..a_off + size, b_off);
            return;
        }
        let (src, dst) = if a < b {
            let (x, y) = self.segs.split_at_mut(b);
            (&x[a], &mut y[0])
        } else {
            let (x, y) = self.segs.split_at_mut(a);
            (&y[0], &mut x[b])
        };
        copy_between(
            src.mem.as_ref().expect("segment"),
            a_off,
            dst.mem.as_mut().expect("segment"),
            b_off,
            size,
        );
    }

    /// The next live record at or after `c` in address order (segments, then huge records),
    /// and the cursor after it; for the expiry sweep. Wraps to `None` at the end.
    pub(crate) fn walk(&self, c: Cursor) -> Option<(Found, Cursor)> {
        let mut s = c.slot as usize;
        let mut off = c.off as usize;
        if let Some(seg) = self.segs.get(s)
            && seg.generation != c.generation
        {
            off = 0; // released and reused since: its records are new to this walk
        }
        while s < self.segs.len() {
            let seg = &self.segs[s];
            if let Some(mem) = &seg.mem {
                let mem = mem.bytes();
                while off < seg.used as usize {
                    let r = &mem[off..seg.used as usize];
                    let size = record::size(r);
                    let id = ((s as u32) << OFF_BITS) | (off / 2) as u32;
                    off += size;
                    if !record::is_dead(r) {
                        let next = Cursor {
                            slot: s as u32,
                            generation: seg.generation,
                            off: off as u32,
                        };
                        return Some((Found { id, size }, next));
                    }
                }
            }
            s += 1;
            off = 0;
        }
        let mut n = s - self.segs.len() + off;
        while n < self.huge.len() {
            if let Some(h) = &self.huge[n] {
                let size = record::size(h.bytes());
                let next = Cursor {
                    slot: self.segs.len() as u32,
                    generation: 0,
                    off: n as u32 + 1,
                };
                return Some((
                    Found {
                        id: HUGE | n as u32,
                        size,
                    },
                    next,
                ));
            }
            n += 1;
        }
        None
    }

    /// Empties the log, handing its memory to the caller (to give back off the request path).
    pub(crate) fn take(&mut self) -> (Vec<Segment>, Vec<HugeAlloc>) {
        let segs = self.segs.iter_mut().filter_map(|s| s.mem.take()).collect();
        let huge = self.huge.iter_mut().filter_map(Option::take).collect();
        *self = Log::new();
        (segs, huge)
    }
}

/// A copy of a shard's record memory (see [`Log::image`]).
pub(crate) struct LogImage {
    segs: Vec<Option<(Box<[u8]>, u64)>>,
    huge: Vec<Option<Box<[u8]>>>,
}

impl Log {
    /// Copies every segment's written part and every huge record, so the records can be read
    /// after the lock is released, exactly as they were (ids stay valid in the copy).
    pub(crate) fn image(&self) -> LogImage {
        LogImage {
            segs: self
                .segs
                .iter()
                .map(|s| {
                    s.mem
                        .as_ref()
                        .map(|m| (m.bytes()[..s.used as usize].into(), s.base_ms))
                })
                .collect(),
            huge: self
                .huge
                .iter()
                .map(|h| h.as_ref().map(|h| h.bytes().into()))
                .collect(),
        }
    }
}

impl LogImage {
    /// A record's bytes and its base time, as [`Log::view`].
    pub(crate) fn view(&self, id: u32) -> (&[u8], u64) {
        if id & HUGE != 0 {
            return (
                self.huge[(id & !HUGE) as usize]
                    .as_deref()
                    .expect("huge record in image"),
                0,
            );
        }
        let (bytes, base) = self.segs[(id >> OFF_BITS) as usize]
            .as_ref()
            .expect("segment in image");
        (&bytes[((id & OFF_MASK) as usize) * 2..], *base)
    }

    /// Bytes held by the copy.
    pub(crate) fn bytes(&self) -> usize {
        self.segs
            .iter()
            .flatten()
            .map(|(b, _)| b.len())
            .sum::<usize>()
            + self.huge.iter().flatten().map(|b| b.len()).sum::<usize>()
    }
}
