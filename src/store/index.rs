//! A shard's hash index: key hash -> record id, with growth and shrinking done a few entries at
//! a time, so no request ever waits for a whole-table rehash.
//!
//! Layout: open addressing in groups of 8 slots. Each slot has a control byte (EMPTY, DELETED,
//! or a 7-bit tag from the top of the hash) and a 4-byte record id, stored in two arrays, so one
//! 8-byte load matches a whole group's tags (SWAR, no `unsafe`) and a key is read only when its
//! tag matches. Control bytes are stored inverted, so that EMPTY is a zero byte: a new table is a
//! fresh zeroed mapping that needs no initialising pass (which would be work proportional to
//! the table on the insert that starts a resize), and its pages are faulted in by the inserts
//! that first touch them. A key's home group is `fastrange(hash as u32, groups)`, so any group count
//! works, not only powers of two; collisions probe the following groups linearly. 5 bytes a
//! slot; load stays between 7/12 and 7/8, i.e. 5.7 to 8.6 bytes per key.
//!
//! Growth (Redis's incremental rehash, with a 1.5x step instead of 2x to keep the load high):
//! when the table reaches 7/8 full (tombstones included) a new table is allocated and the old
//! one is drained into it, one group per insert plus bounded batches from the sweeper. Until it
//! is empty, lookups probe both; inserts always go to the new one. Old groups below `cursor`
//! are already empty, and a probe in the old table starts at `max(home, cursor)`: every group it
//! skips was drained, and linear probing never lets a chain jump over a group that was full
//! when the entry was placed, so each key is found exactly once. The same machinery shrinks a
//! table left mostly empty by a flush or a wave of expiries, and rebuilds one clogged by
//! tombstones. Moving an entry needs its full hash: the caller reads the key back (prefetched a
//! group at a time); a migration step is bounded (at most 8 entries per insert, a few dozen
//! groups per sweeper lock hold). While inserts keep arriving they drive the migration; the
//! sweeper only makes up the difference to a per-tick pace (see `take_insert_drained`), so a
//! filling store does not pay for the same work twice. A drained old table is not unmapped by the
//! insert that finishes it but handed to the sweeper (`take_retired`), which frees it outside
//! the shard lock.

use super::mem::MapArray;

const GROUP: usize = 8;
const EMPTY: u8 = 0xFF;
const DELETED: u8 = 0x80;
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
/// Fewest groups a non-empty table has.
const MIN_GROUPS: usize = 1;
/// Arrays of this many bytes or more get their own mapping, so freeing them returns memory.
const MAP_THRESHOLD: usize = 64 * 1024;

/// Where a found entry is: which table and which slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    old: bool,
    slot: usize,
}

/// Storage for a table array: the heap while small, its own mapping when large.
enum Arr<T: Copy> {
    Heap(Box<[T]>),
    Map(MapArray<T>),
}

impl<T: Copy> Arr<T> {
    /// An all-zero array: a fresh mapping (no pass over it) when large.
    fn zeroed(len: usize, zero: T) -> Arr<T> {
        if len * std::mem::size_of::<T>() >= MAP_THRESHOLD {
            Arr::Map(MapArray::zeroed(len))
        } else {
            Arr::Heap(vec![zero; len].into_boxed_slice())
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Arr::Heap(b) => std::mem::size_of_val(&**b),
            Arr::Map(m) => m.mapped(),
        }
    }
}

impl<T: Copy> std::ops::Deref for Arr<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            Arr::Heap(b) => b,
            Arr::Map(m) => m,
        }
    }
}

impl<T: Copy> std::ops::DerefMut for Arr<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Arr::Heap(b) => b,
            Arr::Map(m) => m,
        }
    }
}

#[inline]
fn tag(hash: u64) -> u8 {
    (hash >> 57) as u8
}

/// Bit 7 of each byte of the result is set where `group` has byte `b` (rare false positives
/// just after a true match; the caller checks the key anyway).
#[inline]
fn match_byte(group: u64, b: u8) -> u64 {
    let x = group ^ (LO * b as u64);
    x.wrapping_sub(LO) & !x & HI
}

#[inline]
fn match_empty(group: u64) -> u64 {
    group & (group << 1) & HI
}

#[inline]
fn match_full(group: u64) -> u64 {
    !group & HI
}

struct Table {
    ctrl: Arr<u8>,
    ids: Arr<u32>,
    groups: usize,
    items: usize,
    tombstones: usize,
}

impl Table {
    fn new(groups: usize) -> Table {
        Table {
            ctrl: Arr::zeroed(groups * GROUP, 0),
            ids: Arr::zeroed(groups * GROUP, 0),
            groups,
            items: 0,
            tombstones: 0,
        }
    }

    fn empty() -> Table {
        Table {
            ctrl: Arr::Heap(Box::default()),
            ids: Arr::Heap(Box::default()),
            groups: 0,
            items: 0,
            tombstones: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.ctrl.bytes() + self.ids.bytes()
    }

    fn slots(&self) -> usize {
        self.groups * GROUP
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((hash as u32 as u64 * self.groups as u64) >> 32) as usize
    }

    /// The control bytes of group `g`, un-inverted.
    #[inline]
    fn group(&self, g: usize) -> u64 {
        let c = &self.ctrl[g * GROUP..g * GROUP + GROUP];
        !u64::from_le_bytes(c.try_into().expect("group of 8"))
    }

    /// The control byte of `slot` (stored inverted, see the module docs).
    #[inline]
    fn ctrl_at(&self, slot: usize) -> u8 {
        !self.ctrl[slot]
    }

    #[inline]
    fn set_ctrl(&mut self, slot: usize, c: u8) {
        self.ctrl[slot] = !c;
    }

    /// Whether `slot` holds an entry.
    #[inline]
    fn full_at(&self, slot: usize) -> bool {
        self.ctrl_at(slot) & 0x80 == 0
    }

    /// Probes from group `start` for an entry with `hash`'s tag that `eq` accepts; past the
    /// last group the probe continues at `wrap_to` (0, or the drain cursor of an old table,
    /// whose lower groups are emptied by the drain, not by the end of a chain).
    #[inline]
    fn find_from(
        &self,
        start: usize,
        wrap_to: usize,
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<usize> {
        if self.groups == 0 {
            return None;
        }
        let t = tag(hash);
        let mut g = start;
        for _ in 0..self.groups {
            let group = self.group(g);
            let mut m = match_byte(group, t);
            while m != 0 {
                let slot = g * GROUP + (m.trailing_zeros() / 8) as usize;
                if self.ctrl_at(slot) == t && eq(self.ids[slot]) {
                    return Some(slot);
                }
                m &= m - 1;
            }
            if match_empty(group) != 0 {
                return None;
            }
            g += 1;
            if g == self.groups {
                g = wrap_to;
            }
        }
        None
    }

    /// Places an entry known to be absent; the caller guarantees a free slot exists.
    fn insert(&mut self, hash: u64, id: u32) {
        let mut g = self.home(hash);
        loop {
            let free = self.group(g) & HI; // EMPTY or DELETED
            if free != 0 {
                let slot = g * GROUP + (free.trailing_zeros() / 8) as usize;
                if self.ctrl_at(slot) == DELETED {
                    self.tombstones -= 1;
                }
                self.set_ctrl(slot, tag(hash));
                self.ids[slot] = id;
                self.items += 1;
                return;
            }
            g += 1;
            if g == self.groups {
                g = 0;
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        // A slot may become EMPTY only if its group already has an EMPTY slot: then no probe
        // ever continued past this group, so no chain depends on it.
        let g = slot / GROUP;
        if match_empty(self.group(g)) != 0 {
            self.set_ctrl(slot, EMPTY);
        } else {
            self.set_ctrl(slot, DELETED);
            self.tombstones += 1;
        }
        self.items -= 1;
    }
}

/// The index of one shard.
pub(crate) struct Index {
    cur: Table,
    /// The table being drained into `cur`, if a resize is in progress.
    old: Option<Table>,
    /// Groups of `old` below this are empty.
    cursor: usize,
    /// Old groups drained by inserts since the sweeper last asked.
    insert_drained: usize,
    /// A drained old table waiting for the sweeper to free it outside the lock.
    retired: Option<Table>,
    /// Presized for a load (`reserve`): not shrunk for being sparse until the load ends.
    reserved: bool,
}

/// Counts for tests and INFO.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IndexStats {
    pub(crate) slots: usize,
    pub(crate) old_slots: usize,
    #[cfg(test)]
    pub(crate) tombstones: usize,
}

impl Index {
    pub(crate) fn new() -> Index {
        Index {
            cur: Table::empty(),
            old: None,
            cursor: 0,
            insert_drained: 0,
            retired: None,
            reserved: false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.cur.items + self.old.as_ref().map_or(0, |t| t.items)
    }

    /// Bytes allocated for the tables, including one waiting to be freed.
    pub(crate) fn bytes(&self) -> usize {
        self.cur.bytes()
            + self.old.as_ref().map_or(0, Table::bytes)
            + self.retired.as_ref().map_or(0, Table::bytes)
    }

    /// Old groups that inserts drained since the last call: the sweeper drains only what is
    /// left of its per-tick pace, so a growing shard is not migrated twice over.
    pub(crate) fn take_insert_drained(&mut self) -> usize {
        std::mem::take(&mut self.insert_drained)
    }

    /// A fully drained old table, for the caller to drop after releasing the shard lock
    /// (unmapping a large table is work proportional to its size, if only the kernel's).
    pub(crate) fn take_retired(&mut self) -> Option<impl Sized + use<>> {
        self.retired.take()
    }

    pub(crate) fn stats(&self) -> IndexStats {
        IndexStats {
            slots: self.cur.slots(),
            old_slots: self.old.as_ref().map_or(0, Table::slots),
            #[cfg(test)]
            tombstones: self.cur.tombstones,
        }
    }

    #[cfg(test)]
    pub(crate) fn migrating(&self) -> bool {
        self.old.is_some()
    }

    /// The entry whose id `eq` accepts among those with `hash`'s tag.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<Pos> {
        if let Some(slot) = self.cur.find_from(self.cur.home(hash), 0, hash, &mut eq) {
            return Some(Pos { old: false, slot });
        }
        let old = self.old.as_ref()?;
        // Drained groups are skipped, at the start and after wrapping around.
        let start = old.home(hash).max(self.cursor);
        old.find_from(start, self.cursor, hash, eq)
            .map(|slot| Pos { old: true, slot })
    }

    /// Whether position `p` still holds entry `id` (no resize step has moved it).
    pub(crate) fn holds(&self, p: Pos, id: u32) -> bool {
        if p.old {
            match &self.old {
                Some(t) => {
                    p.slot / GROUP >= self.cursor && t.full_at(p.slot) && t.ids[p.slot] == id
                }
                None => false,
            }
        } else {
            p.slot < self.cur.slots() && self.cur.full_at(p.slot) && self.cur.ids[p.slot] == id
        }
    }

    /// Points an entry at a record's new address (the record moved; its key did not change).
    pub(crate) fn set_id(&mut self, p: Pos, id: u32) {
        let t = if p.old {
            self.old.as_mut().expect("old table")
        } else {
            &mut self.cur
        };
        t.ids[p.slot] = id;
    }

    pub(crate) fn remove(&mut self, p: Pos) {
        if p.old {
            let old = self.old.as_mut().expect("old table");
            old.remove(p.slot);
        } else {
            self.cur.remove(p.slot);
        }
    }

    /// Adds an entry for a key known to be absent. Starts a resize first if the table is full,
    /// and drains one old group (at most 8 entries) if a resize is under way; `rehash` gives
    /// the hash of the records whose ids it is passed (the caller reads their keys).
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        id: u32,
        rehash: &mut dyn FnMut(&[u32], &mut [u64]),
    ) {
        if self.old.is_some() {
            self.insert_drained += self.drain(1, rehash);
        }
        if (self.cur.items + self.cur.tombstones + 1) * 8 > self.cur.slots() * 7 {
            if self.old.is_some() {
                // Cannot happen by the sizing rule in `start_resize`; finishing the drain keeps
                // the invariant (one resize at a time) if it ever does.
                while self.old.is_some() {
                    self.drain(usize::MAX, rehash);
                }
            }
            self.start_resize(self.cur.items + 1);
        }
        self.cur.insert(hash, id);
    }

    /// Starts moving everything into a table sized for `items` keys at 7/12 load, plus room for
    /// the inserts that can arrive while the old table drains (one group per insert).
    fn start_resize(&mut self, items: usize) {
        debug_assert!(self.old.is_none());
        let pending = self.cur.groups;
        let want = (items * 12 / 7).max((items + pending) * 8 / 7 + 1);
        let groups = want.div_ceil(GROUP).max(MIN_GROUPS);
        let new = Table::new(groups);
        let old = std::mem::replace(&mut self.cur, new);
        if old.items > 0 {
            self.old = Some(old);
            self.cursor = 0;
        }
    }

    /// Sizes an empty index for `items` entries at once (a snapshot load knows its count), so
    /// loading pays for no incremental growth. Does nothing unless the index is empty.
    pub(crate) fn reserve(&mut self, items: usize) {
        if self.len() > 0 || self.old.is_some() || self.retired.is_some() || items == 0 {
            return;
        }
        // 3/4 load once full: inside the 7/12..7/8 band the resize rules keep.
        let groups = (items * 4 / 3 + 1).div_ceil(GROUP).max(MIN_GROUPS);
        if groups > self.cur.groups {
            self.cur = Table::new(groups);
            self.reserved = true;
        }
    }

    /// Ends a [`Index::reserve`]: a table the load left sparse may shrink again.
    pub(crate) fn end_reserve(&mut self) {
        self.reserved = false;
    }

    /// Whether the table is worth shrinking or rebuilding (mostly empty, or clogged with
    /// tombstones); the sweeper checks this and calls [`Index::maintain`].
    fn wants_resize(&self) -> bool {
        let t = &self.cur;
        if self.old.is_some() || t.groups == 0 {
            return false;
        }
        if t.items == 0 {
            return true; // release the arrays entirely
        }
        let sparse = !self.reserved && t.groups > MIN_GROUPS && t.items * 5 < t.slots();
        let clogged = t.tombstones * 4 > t.slots();
        sparse || clogged
    }

    /// Background upkeep: finishes resizes and starts shrinks, moving at most `groups` old
    /// groups. Returns the number of groups drained.
    pub(crate) fn maintain(
        &mut self,
        groups: usize,
        rehash: &mut dyn FnMut(&[u32], &mut [u64]),
    ) -> usize {
        if self.wants_resize() {
            if self.cur.items == 0 {
                self.cur = Table::empty();
                return 0;
            }
            self.start_resize(self.cur.items);
        }
        self.drain(groups, rehash)
    }

    /// Moves up to `limit` old groups into the current table.
    fn drain(&mut self, limit: usize, rehash: &mut dyn FnMut(&[u32], &mut [u64])) -> usize {
        let Some(old) = self.old.as_mut() else {
            return 0;
        };
        let mut done = 0;
        let mut ids = [0u32; GROUP];
        let mut hashes = [0u64; GROUP];
        while done < limit && self.cursor < old.groups {
            let g = self.cursor;
            let full = match_full(old.group(g));
            let mut n = 0;
            let mut m = full;
            while m != 0 {
                let slot = g * GROUP + (m.trailing_zeros() / 8) as usize;
                ids[n] = old.ids[slot];
                n += 1;
                m &= m - 1;
            }
            if n > 0 {
                rehash(&ids[..n], &mut hashes[..n]);
                for i in 0..n {
                    self.cur.insert(hashes[i], ids[i]);
                }
                old.items -= n;
            }
            old.ctrl[g * GROUP..g * GROUP + GROUP].fill(!EMPTY);
            self.cursor += 1;
            done += 1;
        }
        if self.cursor >= old.groups || old.items == 0 {
            debug_assert_eq!(old.items, 0);
            // A small table is freed at once; a mapped one waits for the sweeper.
            let old = self.old.take().expect("old table");
            if matches!(old.ctrl, Arr::Map(_)) {
                self.retired = Some(old);
            }
            self.cursor = 0;
        }
        done
    }

    /// Visits entries whose 32-bit hash is in `[lo, hi)` (`hi` = 2^32 for the end), each once:
    /// `hash_of` gives an entry's hash, `f` gets the ids in range.
    pub(crate) fn for_range(
        &self,
        lo: u64,
        hi: u64,
        hash_of: &mut dyn FnMut(u32) -> u64,
        f: &mut dyn FnMut(u32),
    ) {
        let visit = |t: &Table,
                     first: usize,
                     hash_of: &mut dyn FnMut(u32) -> u64,
                     f: &mut dyn FnMut(u32)| {
            if t.groups == 0 || first >= t.groups {
                return;
            }
            // Entries with a home in the range live from the range's first home group up to
            // the first group with an EMPTY slot at or after its last home group, possibly
            // wrapping around (to `first`: groups below it were drained).
            let start = ((lo * t.groups as u64) >> 32) as usize;
            let last_home = if hi >= 1 << 32 {
                t.groups - 1
            } else {
                (((hi.max(1) - 1) * t.groups as u64) >> 32) as usize
            };
            let begin = start.max(first);
            let mut g = begin;
            let mut wrapped = false;
            for _ in 0..t.groups {
                let group = t.group(g);
                let mut m = match_full(group);
                while m != 0 {
                    let slot = g * GROUP + (m.trailing_zeros() / 8) as usize;
                    let id = t.ids[slot];
                    let h = hash_of(id) as u32 as u64;
                    if h >= lo && h < hi {
                        f(id);
                    }
                    m &= m - 1;
                }
                if (wrapped || g >= last_home) && match_empty(group) != 0 {
                    break;
                }
                g += 1;
                if g == t.groups {
                    g = first;
                    wrapped = true;
                }
                if wrapped && g >= begin {
                    break;
                }
            }
        };
        visit(&self.cur, 0, hash_of, f);
        if let Some(old) = &self.old {
            visit(old, self.cursor, hash_of, f);
        }
    }

    /// The id at a uniformly chosen slot of either table, if that slot holds an entry; callers
    /// retry on `None`, which makes the pick uniform over entries (rejection sampling).
    pub(crate) fn slot_pick(&self, r: u64) -> Option<u32> {
        let cur = self.cur.slots();
        let total = cur + self.old.as_ref().map_or(0, Table::slots);
        if total == 0 {
            return None;
        }
        let i = ((r as u32 as u64 * total as u64) >> 32) as usize;
        let (t, slot) = if i < cur {
            (&self.cur, i)
        } else {
            (self.old.as_ref().expect("old table"), i - cur)
        };
        t.full_at(slot).then(|| t.ids[slot])
    }

    /// Empties the index, returning the old tables so the caller chooses where they are freed.
    pub(crate) fn take(&mut self) -> Index {
        std::mem::replace(self, Index::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A toy "store": ids are indices into `keys`, hashes come from a real hasher.
    struct Fixture {
        keys: Vec<u64>,
        index: Index,
    }

    fn mix(k: u64) -> u64 {
        // splitmix64: a good enough hash for the table's tests.
        let mut z = k.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn rehash(keys: &[u64], ids: &[u32], out: &mut [u64]) {
        for (i, id) in ids.iter().enumerate() {
            out[i] = mix(keys[*id as usize]);
        }
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                keys: Vec::new(),
                index: Index::new(),
            }
        }

        fn find(&self, k: u64) -> Option<Pos> {
            let keys = &self.keys;
            self.index.find(mix(k), |id| keys[id as usize] == k)
        }

        /// Inserts and returns how many entries that one insert moved.
        fn insert(&mut self, k: u64) -> usize {
            let id = self.keys.len() as u32;
            self.keys.push(k);
            let mut moved = 0;
            let keys = &self.keys;
            self.index.insert(mix(k), id, &mut |ids, out| {
                rehash(keys, ids, out);
                moved += ids.len();
            });
            moved
        }
    }

    #[test]
    fn grows_by_bounded_steps_and_finds_every_key_throughout() {
        let mut f = Fixture::new();
        let mut max_moved = 0;
        let mut resizes = 0;
        let mut was = false;
        for k in 0..200_000u64 {
            max_moved = max_moved.max(f.insert(k * 7919));
            if f.index.migrating() && !was {
                resizes += 1;
            }
            was = f.index.migrating();
            if k % 997 == 0 {
                // Spot-check while resizes are in progress.
                for probe in [0, k / 2, k] {
                    assert!(f.find(probe * 7919).is_some(), "key {probe} lost at {k}");
                }
                assert!(f.find(k * 7919 + 1).is_none());
            }
        }
        assert!(max_moved <= GROUP, "one insert moved {max_moved} entries");
        assert!(resizes > 10, "only {resizes} resizes");
        for k in 0..200_000u64 {
            assert!(f.find(k * 7919).is_some(), "key {k} lost");
        }
        assert_eq!(f.index.len(), 200_000);
        let keys = f.keys.clone();
        while f.index.migrating() {
            f.index
                .maintain(64, &mut |ids, out| rehash(&keys, ids, out));
        }
        let s = f.index.stats();
        let load = f.index.len() as f64 / (s.slots + s.old_slots) as f64;
        assert!(load > 0.5, "load {load}");
    }

    #[test]
    fn removals_and_shrinks_keep_every_survivor_findable() {
        let mut f = Fixture::new();
        for k in 0..50_000u64 {
            f.insert(k);
        }
        // Remove 95%, then let maintenance shrink while we keep checking.
        for k in 0..50_000u64 {
            if k % 20 != 0 {
                let p = f.find(k).unwrap();
                f.index.remove(p);
            }
        }
        let before = f.index.bytes();
        let keys = f.keys.clone();
        let mut rh = |ids: &[u32], out: &mut [u64]| rehash(&keys, ids, out);
        let mut rounds = 0;
        loop {
            let drained = f.index.maintain(64, &mut rh);
            rounds += 1;
            for k in (0..50_000u64).step_by(20) {
                let keys = &f.keys;
                assert!(f.index.find(mix(k), |id| keys[id as usize] == k).is_some());
            }
            if drained == 0 && !f.index.migrating() && !f.index.wants_resize() {
                break;
            }
            assert!(rounds < 10_000);
        }
        assert!(
            f.index.bytes() * 4 < before,
            "{} -> {}",
            before,
            f.index.bytes()
        );
        assert_eq!(f.index.len(), 2_500);
        // Emptied completely: the arrays go.
        for k in (0..50_000u64).step_by(20) {
            let p = f.find(k).unwrap();
            f.index.remove(p);
        }
        while f.index.maintain(1 << 20, &mut rh) > 0 || f.index.migrating() {}
        f.index.maintain(1, &mut rh);
        assert_eq!(f.index.bytes(), 0);
    }

    #[test]
    fn range_visits_see_each_entry_once_even_mid_resize() {
        let mut f = Fixture::new();
        for k in 0..30_000u64 {
            f.insert(k);
            if k % 5000 == 4999 || (f.index.migrating() && k % 3 == 0) {
                let mut seen: HashMap<u64, usize> = HashMap::new();
                let keys = f.keys.clone();
                let step = (1u64 << 32) / 7;
                let mut lo = 0u64;
                while lo < 1 << 32 {
                    let hi = (lo + step).min(1 << 32);
                    f.index
                        .for_range(lo, hi, &mut |id| mix(keys[id as usize]), &mut |id| {
                            *seen.entry(keys[id as usize]).or_default() += 1
                        });
                    lo = hi;
                }
                assert_eq!(seen.len(), k as usize + 1, "at {k}");
                assert!(seen.values().all(|&n| n == 1), "duplicate at {k}");
            }
        }
    }

    #[test]
    fn a_reserved_index_takes_its_load_without_resizing_and_may_shrink_after() {
        let mut f = Fixture::new();
        f.index.reserve(10_000);
        let slots = f.index.stats().slots;
        assert!(slots >= 10_000 * 8 / 7, "room for the load: {slots}");
        // Sparse while the load is under way, yet the sweeper's upkeep must not shrink it.
        f.insert(1);
        assert_eq!(f.index.maintain(usize::MAX, &mut |_, _| unreachable!()), 0);
        assert_eq!(f.index.stats().slots, slots);
        for k in 2..=10_000u64 {
            assert_eq!(f.insert(k), 0, "no migration during a reserved load");
        }
        assert!(!f.index.migrating());
        assert_eq!(f.index.stats().slots, slots);
        for k in 1..=10_000u64 {
            assert!(f.find(k).is_some(), "key {k}");
        }
        // A load that left it mostly empty (expired keys) shrinks once it has ended.
        let mut g = Fixture::new();
        g.index.reserve(10_000);
        for k in 1..=100u64 {
            g.insert(k);
        }
        g.index.end_reserve();
        let keys = g.keys.clone();
        g.index
            .maintain(usize::MAX, &mut |ids, out| rehash(&keys, ids, out));
        assert!(
            g.index.stats().slots < slots / 4,
            "shrunk: {}",
            g.index.stats().slots
        );
        for k in 1..=100u64 {
            assert!(g.find(k).is_some(), "key {k} after the shrink");
        }
    }

    #[test]
    fn tombstones_trigger_a_rebuild_not_unbounded_probing() {
        let mut f = Fixture::new();
        for k in 0..1000u64 {
            f.insert(k);
        }
        let keys_before = f.index.stats().slots;
        // Churn: delete and insert different keys, many times over.
        let mut next = 1000u64;
        for round in 0..50 {
            for k in (round * 1000)..(round * 1000 + 1000) {
                if let Some(p) = f.find(k) {
                    f.index.remove(p);
                }
                f.insert(next);
                next += 1;
            }
        }
        let s = f.index.stats();
        assert!(s.tombstones * 4 <= s.slots.max(1) * 2, "{s:?}");
        assert!(s.slots <= keys_before * 4, "{s:?} from {keys_before}");
        assert_eq!(f.index.len(), 1000);
    }

    #[test]
    fn uniform_slot_picks_reach_every_entry() {
        let mut f = Fixture::new();
        for k in 0..10u64 {
            f.insert(k);
        }
        let mut hits = [0usize; 10];
        let mut r = 1u64;
        for _ in 0..100_000 {
            r = mix(r);
            if let Some(id) = f.index.slot_pick(r) {
                hits[id as usize] += 1;
            }
        }
        let total: usize = hits.iter().sum();
        for h in hits {
            let share = h as f64 / total as f64;
            assert!((0.08..0.12).contains(&share), "{hits:?}");
        }
    }
}
