//! The cache engine: a sharded map with exact LRU eviction, TTLs and memory accounting.
//!
//! Synchronous and protocol-free: no tokio, no I/O, no knowledge of commands. Each shard is a
//! mutex around a hash index ([`index`]), a log of fixed-size segments holding the records
//! ([`log`], memory from [`mem`]) and an LRU list threaded through the records ([`shard`]).
//! The design goals, and how each is met:
//!
//! - **Bounded work per request.** The index grows and shrinks incrementally (a group of 8
//!   entries per insert); garbage in segments is cleaned a few kilobytes at a time; expiry,
//!   stamp upkeep and the rest of resizes run in the background sweeper with bounded lock
//!   holds; a flush hands its memory to another thread.
//! - **Memory that leaves.** Records live in 256 KiB segments from one shared pool; a segment
//!   holds records of any size, so memory moves between value sizes, and free segments beyond a
//!   small reserve go back to the kernel. Garbage (dead records) is capped per shard at one
//!   segment plus 1/16 of the live bytes, so RSS tracks the accounted bytes.
//! - **Exact LRU without shared writes.** Stamps come from a monotonic clock (`stamp.rs`), each
//!   shard publishes its tail's stamp on its own cache line, and eviction takes the tail of the
//!   shard whose tail is oldest.
//! - **Atomic multi-key commands.** [`Store::multi`] locks the shards of all its keys in
//!   ascending shard order; nothing ever waits for a lock while holding a higher one.
//!
//! ```
//! use kvcache::store::{Store, Ttl};
//! let store = Store::builder().max_keys(2).build();
//! store.set(b"a", b"1", Ttl::Persist).unwrap();
//! store.set(b"b", b"2", Ttl::Persist).unwrap();
//! assert_eq!(store.get(b"a", |v| v.to_vec()), Some(b"1".to_vec())); // a is now newest
//! store.set(b"c", b"3", Ttl::Persist).unwrap();                      // evicts b
//! assert!(!store.contains(b"b"));
//! assert!(store.contains(b"a") && store.contains(b"c"));
//! ```

mod clock;
mod index;
mod log;
mod mem;
mod record;
mod shard;
mod stamp;

use std::borrow::Cow;
use std::cell::Cell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use hashbrown::DefaultHashBuilder;
use parking_lot::{Mutex, MutexGuard};

pub use clock::{Clock, ManualClock, SystemClock};
use mem::Pool;
pub use mem::PoolStats;
use record::Extras;
pub use record::{MAX_DEADLINE_MS, MAX_KEY_LEN, max_record_size};
use shard::{Hit, Shard};
pub use shard::{ImageRecord, ShardImage};
use stamp::Ticker;

/// Largest value the record format can hold.
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;

/// Why the store refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The key exceeds what a record can hold.
    #[error("key too long (max {MAX_KEY_LEN} bytes)")]
    KeyTooLong,
    /// The item alone would not fit under the memory limit.
    #[error("item too large for max-memory")]
    TooLarge,
    /// The shard's record address space is exhausted and nothing is left to evict there.
    #[error("store is full")]
    Full,
}

/// The deadline a write gives its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No deadline (clears any earlier one).
    Persist,
    /// Keep whatever deadline the key had (Redis `KEEPTTL`).
    Keep,
    /// Expire at this unix time in milliseconds.
    At(u64),
}

/// How an access affects recency and hit statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A value read: refreshes recency and counts a hit or a miss.
    Read,
    /// A write or metadata change: refreshes recency, counts nothing.
    Write,
    /// A look that changes nothing (EXISTS, TTL, TYPE).
    Peek,
}

/// A live entry as [`Store::update`] shows it.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The value bytes.
    pub value: &'a [u8],
    /// The deadline in unix milliseconds, if any.
    pub expires_at: Option<u64>,
    /// memcached client flags (0 unless set through the memcached protocol).
    pub flags: u32,
    /// memcached CAS unique, or 0 if none was assigned since the last modification (see
    /// [`Write::AssignCas`]).
    pub cas: u64,
}

/// What [`Store::update`] does with the key once the closure has looked at it.
#[derive(Debug)]
pub enum Write<'v> {
    /// Leave the key as it is (recency is still refreshed unless the access is a peek).
    Keep,
    /// Remove the key.
    Delete,
    /// Store this value with this deadline.
    Put(Cow<'v, [u8]>, Ttl),
    /// Change only the deadline (`None` removes it); flags and CAS stay.
    Expire(Option<u64>),
    /// Store this value with this deadline and memcached flags, with a fresh CAS unique (a
    /// memcached storage command).
    PutMc(Cow<'v, [u8]>, Ttl, u32),
    /// Leave the entry as it is, but give it a CAS unique if it has none (a memcached `gets`
    /// of a value written through another protocol). Any later modification drops or replaces
    /// it, so a CAS always identifies one version of the value.
    AssignCas,
}

/// Counters summed over all shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys stored, including expired ones not yet reclaimed.
    pub keys: usize,
    /// Keys that carry a TTL.
    pub keys_with_ttl: usize,
    /// Accounted bytes: live records, huge mappings, indexes and bookkeeping.
    pub memory: usize,
    /// Bytes the records really hold: segments (live, garbage and unused head space) plus huge
    /// mappings.
    pub held_bytes: usize,
    /// Value reads that found a live key.
    pub hits: u64,
    /// Value reads that found nothing.
    pub misses: u64,
    /// Keys removed to respect `max_keys` or `max_memory`.
    pub evictions: u64,
    /// Keys removed because their deadline passed.
    pub expired: u64,
}

/// What one call of [`Store::sweep`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SweepReport {
    /// Records examined.
    pub scanned: usize,
    /// Expired records removed.
    pub removed: usize,
}

/// Memory internals for INFO and the tests of the memory bound.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryReport {
    /// Dead bytes awaiting the cleaner.
    pub garbage: usize,
    /// Records moved by the cleaner since start.
    pub moved: u64,
    /// Free segments in the pool.
    pub pool: PoolStats,
    /// Index slots (both tables during a resize).
    pub index_slots: usize,
    /// Shards with an index resize in progress.
    pub resizing: usize,
}

/// Builds a [`Store`]; every setting has a default suited to a server.
pub struct StoreBuilder {
    shards: usize,
    max_keys: usize,
    max_memory: usize,
    clock: Arc<dyn Clock>,
    step_recency: bool,
}

impl StoreBuilder {
    /// Number of shards, rounded up to a power of two (default: 4 per CPU, at least 16).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.clamp(1, 1 << 16).next_power_of_two();
        self
    }

    /// Maximum number of keys; 0 means no limit.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Maximum accounted bytes; 0 means no limit.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// The clock deadlines are checked against.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Recency from a counter that advances on every access instead of the monotonic clock:
    /// every access is strictly ordered, so single-threaded tests can check exact LRU order
    /// however fast the machine runs. Costs a shared atomic per access: tests only.
    pub fn exact_recency_for_tests(mut self) -> Self {
        self.step_recency = true;
        self
    }

    /// Creates the store.
    pub fn build(self) -> Store {
        let hasher = DefaultHashBuilder::default();
        // CAS uniques start from the wall clock, so values issued before a restart are not
        // issued again after it.
        let cas_seed = self.clock.now_ms() << 4;
        let shards: Box<[ShardSlot]> = (0..self.shards)
            .map(|i| ShardSlot {
                shard: Mutex::new(Shard::new(hasher.clone(), i as u16, cas_seed)),
                tail: AtomicU64::new(0),
                len: AtomicUsize::new(0),
                mem: AtomicUsize::new(0),
            })
            .collect();
        let n = shards.len();
        // With limits this small, approximate totals would be too coarse: always exact.
        let exact = (self.max_keys > 0 && self.max_keys < 8 * n * LEN_SLACK)
            || (self.max_memory > 0 && self.max_memory < 8 * n * MEM_SLACK);
        Store {
            shard_bits: n.trailing_zeros(),
            shards,
            hasher,
            clock: self.clock,
            ticker: if self.step_recency {
                Ticker::Step(AtomicU64::new(0))
            } else {
                Ticker::monotonic()
            },
            pool: Pool::new(POOL_RESERVE),
            totals: Totals {
                len: Padded(AtomicI64::new(0)),
                mem: Padded(AtomicI64::new(0)),
                exact: AtomicBool::new(exact),
                always_exact: exact,
            },
            external: Padded(AtomicI64::new(0)),
            max_keys: self.max_keys,
            max_memory: self.max_memory,
        }
    }
}

/// Default shard count: several per core so threads rarely meet on one lock.
pub fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cpus * 4).next_power_of_two().max(16)
}

/// The largest size a record of this key and value can take: what `TooLarge` is decided on.
pub fn item_size(key_len: usize, value_len: usize, has_ttl: bool) -> usize {
    max_record_size(key_len, value_len, has_ttl)
}

/// Free segments the pool keeps resident for reuse (1 MiB).
const POOL_RESERVE: usize = 4;
/// A shard publishes its key count to the store's totals when it moved by this much...
const LEN_SLACK: usize = 64;
/// ... or its memory by this many bytes, so inserts far from the limits write no shared line.
const MEM_SLACK: usize = 64 * 1024;
/// Old index groups the sweeper migrates per shard per tick (less what inserts migrated)...
const DRAIN_PER_TICK: usize = 1024;
/// ... in lock holds of at most this many groups (each up to 8 key reads).
const DRAIN_PER_HOLD: usize = 32;
/// Bytes of live records the write path may move when garbage is over its bound.
const CLEAN_BUDGET: usize = 8 * 1024;

#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Takes a shard lock for a multi-key command, spinning a little longer than `lock()` does
/// before it parks. A multi-key command holds several shards at once, so two workers running
/// them back to back collide on nearly every call (10 random keys touch ~7 of 16 shards), and
/// each collision that parks costs a futex sleep and wake-up, several microseconds, for a hold
/// of about one. Measured with `redis-benchmark -P 16` MGET of 10 keys on 2 cores: 2 workers
/// did 106k requests/s (1 worker: 233-252k) with `lock()`, 170k spinning 256 times, 275k
/// spinning 4,096 times. The spin is bounded (a few hundred microseconds at worst, if the
/// holder was preempted) and then parks as `lock()` would.
fn lock_spinning(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    for _ in 0..4096 {
        if let Some(g) = m.try_lock() {
            return g;
        }
        std::hint::spin_loop();
    }
    m.lock()
}

/// A shard and what it publishes for lock-free readers, on its own cache lines: the mutex's
/// line is written on every access anyway, so these stores cost nothing shared.
#[repr(align(128))]
struct ShardSlot {
    shard: Mutex<Shard>,
    /// The tail's recency time + 1, or 0 when empty.
    tail: AtomicU64,
    len: AtomicUsize,
    mem: AtomicUsize,
}

/// Store-wide totals for the limits. Far from a limit, shards publish only every
/// [`LEN_SLACK`] keys / [`MEM_SLACK`] bytes of change, so the totals are approximate and written
/// rarely; near a limit (`exact`) every change is published, so the limits hold exactly.
struct Totals {
    len: Padded<AtomicI64>,
    mem: Padded<AtomicI64>,
    exact: AtomicBool,
    always_exact: bool,
}

/// The time, read from the clock at most once per operation and only if a deadline needs it.
pub(crate) struct Now<'a> {
    clock: &'a dyn Clock,
    ms: Option<u64>,
}

impl Now<'_> {
    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        *self.ms.get_or_insert_with(|| self.clock.now_ms())
    }
}

/// The sharded cache. Share it behind an `Arc`; every method takes `&self`.
pub struct Store {
    shards: Box<[ShardSlot]>,
    shard_bits: u32,
    hasher: DefaultHashBuilder,
    clock: Arc<dyn Clock>,
    ticker: Ticker,
    pool: Pool,
    totals: Totals,
    external: Padded<AtomicI64>,
    max_keys: usize,
    max_memory: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store::builder().build()
    }
}

impl Store {
    /// A builder with defaults: [`default_shards`], no key limit, no memory limit, system clock.
    pub fn builder() -> StoreBuilder {
        StoreBuilder {
            shards: default_shards(),
            max_keys: 0,
            max_memory: 0,
            clock: Arc::new(SystemClock),
            step_recency: false,
        }
    }

    /// Current time by the store's clock, in unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Keys stored (expired ones count until reclaimed, as in Redis `DBSIZE`). Sums the
    /// shards' published counts: O(shards), no locks.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len.load(Relaxed)).sum()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accounted bytes of the store itself (O(shards), no locks).
    pub fn memory_used(&self) -> usize {
        self.shards.iter().map(|s| s.mem.load(Relaxed)).sum()
    }

    /// The key limit (0 = none).
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The memory limit (0 = none).
    pub fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// Adds (or with a negative delta, removes) bytes the owner holds outside the store, such as
    /// connection buffers, so the memory limit caps the process and not only the data. Callers
    /// batch their changes (it is one shared line).
    pub fn adjust_external(&self, delta: isize) {
        self.external.fetch_add(delta as i64, Relaxed);
        if delta > 0 {
            self.enforce_limits();
        }
    }

    /// Bytes registered through [`Store::adjust_external`]. Owners report changes in batches
    /// from several threads, so the running sum can dip below zero for a moment; it reads as 0.
    pub fn external_bytes(&self) -> usize {
        self.external.load(Relaxed).max(0) as usize
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        // The index uses the low 32 bits (home group) and the top 7 (tag); shard by bits in
        // between.
        if self.shard_bits == 0 {
            0
        } else {
            ((hash >> 32) as usize) & (self.shards.len() - 1)
        }
    }

    fn now(&self) -> Now<'_> {
        Now {
            clock: &*self.clock,
            ms: None,
        }
    }

    /// Publishes what changed in a shard (its tail mark, length and memory) on the shard's own
    /// cache lines and, far from the limits only every so often, in the store's totals; call
    /// with its lock held. Returns whether the shard grew (only then can a limit be exceeded).
    #[inline]
    fn commit(&self, slot: &ShardSlot, sh: &mut Shard) -> bool {
        let dirty = std::mem::take(&mut sh.dirty);
        if dirty == 0 {
            return false;
        }
        if dirty & shard::DIRTY_TAIL != 0 {
            slot.tail.store(sh.tail_mark(), Relaxed);
        }
        if dirty & shard::DIRTY_SIZE == 0 {
            return false;
        }
        let (len, mem) = (sh.len(), sh.memory());
        let grew = len > slot.len.load(Relaxed) || mem > slot.mem.load(Relaxed);
        slot.len.store(len, Relaxed);
        slot.mem.store(mem, Relaxed);
        if self.max_keys == 0 && self.max_memory == 0 {
            return grew;
        }
        let dl = len as i64 - sh.published_len as i64;
        let dm = mem as i64 - sh.published_mem as i64;
        if self.totals.exact.load(Relaxed)
            || dl.unsigned_abs() as usize >= LEN_SLACK
            || dm.unsigned_abs() as usize >= MEM_SLACK
        {
            self.publish(sh, dl, dm);
        }
        grew
    }

    fn publish(&self, sh: &mut Shard, dl: i64, dm: i64) {
        if dl != 0 {
            self.totals.len.fetch_add(dl, Relaxed);
        }
        if dm != 0 {
            self.totals.mem.fetch_add(dm, Relaxed);
        }
        sh.published_len = (sh.published_len as i64 + dl) as usize;
        sh.published_mem = (sh.published_mem as i64 + dm) as usize;
    }

    /// Whether a limit is exceeded. Far from the limits this reads two counters; near them it
    /// switches every shard to exact publishing first, so the answer is exact.
    fn over_limit(&self) -> bool {
        if self.max_keys == 0 && self.max_memory == 0 {
            return false;
        }
        let n = self.shards.len() as i64;
        let len = self.totals.len.load(Relaxed);
        let mem = self.totals.mem.load(Relaxed) + self.external_bytes() as i64;
        if !self.totals.exact.load(Relaxed) {
            let near = (self.max_keys > 0 && len + n * LEN_SLACK as i64 > self.max_keys as i64)
                || (self.max_memory > 0 && mem + n * MEM_SLACK as i64 > self.max_memory as i64);
            if !near {
                return false;
            }
            self.go_exact();
            return self.over_limit();
        }
        let over = (self.max_keys > 0 && len > self.max_keys as i64)
            || (self.max_memory > 0 && mem > self.max_memory as i64);
        if !over && !self.totals.always_exact {
            // Well clear of both limits again: back to cheap publishing.
            let far = (self.max_keys == 0
                || len + 4 * n * (LEN_SLACK as i64) < self.max_keys as i64)
                && (self.max_memory == 0
                    || mem + 4 * n * (MEM_SLACK as i64) < self.max_memory as i64);
            if far {
                self.totals.exact.store(false, Relaxed);
            }
        }
        over
    }

    /// Turns on exact publishing and flushes every shard's unpublished change. A shard that
    /// commits after its flush here sees the flag (the mutex orders it), so none is missed.
    fn go_exact(&self) {
        self.totals.exact.store(true, Relaxed);
        for slot in self.shards.iter() {
            let mut sh = slot.shard.lock();
            let dl = sh.len() as i64 - sh.published_len as i64;
            let dm = sh.memory() as i64 - sh.published_mem as i64;
            self.publish(&mut sh, dl, dm);
        }
    }

    /// Whether the store is near a limit, where writes evict: the totals are then exact.
    #[inline]
    fn evicting(&self) -> bool {
        self.totals.exact.load(Relaxed)
    }

    /// Evicts globally least recently used keys until both limits hold.
    fn enforce_limits(&self) {
        while self.over_limit() {
            let Some(index) = self.oldest_shard() else {
                return;
            };
            let slot = &self.shards[index];
            let mut sh = slot.shard.lock();
            let mut now = self.now();
            let now_ms = now.get();
            sh.evict_tail(now_ms, &self.pool);
            let spare = sh.eviction_front();
            if sh.over_garbage(spare) {
                sh.clean(CLEAN_BUDGET, 1, spare, &mut now, &self.pool);
            }
            self.commit(slot, &mut sh);
        }
    }

    /// The shard whose LRU tail is oldest, from the published tail marks (ties: lowest index).
    fn oldest_shard(&self) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, slot) in self.shards.iter().enumerate() {
            let mark = slot.tail.load(Relaxed);
            if mark != 0 && best.is_none_or(|(_, b)| mark < b) {
                best = Some((i, mark));
            }
        }
        best.map(|(i, _)| i)
    }

    fn check_size(&self, key: &[u8], value_len: usize, has_expire: bool) -> Result<(), StoreError> {
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::KeyTooLong);
        }
        if self.max_memory > 0 && item_size(key.len(), value_len, has_expire) > self.max_memory {
            return Err(StoreError::TooLarge);
        }
        Ok(())
    }

    /// Reads a live value, refreshing its recency; `f` runs under the shard lock, so keep it short
    /// (copy the bytes out).
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let hash = self.hash(key);
        let slot = &self.shards[self.shard_of(hash)];
        let mut sh = slot.shard.lock();
        let mut now = self.now();
        let Some(hit) = sh.lookup(hash, key, &mut now, &self.pool) else {
            sh.stats.misses += 1;
            self.commit(slot, &mut sh);
            return None;
        };
        sh.stats.hits += 1;
        sh.touch(hit.id, self.ticker.now());
        let r = f(&sh.record(hit.id)[hit.layout.value()]);
        self.commit(slot, &mut sh);
        Some(r)
    }

    /// Whether a live key exists, without touching its recency.
    pub fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let slot = &self.shards[self.shard_of(hash)];
        let mut sh = slot.shard.lock();
        let mut now = self.now();
        let found = sh.lookup(hash, key, &mut now, &self.pool).is_some();
        self.commit(slot, &mut sh);
        found
    }

    /// Stores a value, replacing any earlier one and its deadline (unless `ttl` is [`Ttl::Keep`]).
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Ttl) -> Result<(), StoreError> {
        self.update(key, Access::Write, |_| {
            (Write::Put(Cow::Borrowed(value), ttl), ())
        })
    }

    /// Removes a key; returns whether a live one was there.
    pub fn delete(&self, key: &[u8]) -> bool {
        self.update(key, Access::Peek, |e| (Write::Delete, e.is_some()))
            .unwrap_or(false)
    }

    /// The general read-modify-write: `f` sees the live entry (or `None`) under the shard lock
    /// and decides what to write. Every command that is more than a plain get or set goes
    /// through here, so expiry, recency, accounting and eviction are handled in one place.
    pub fn update<'v, R>(
        &self,
        key: &[u8],
        access: Access,
        f: impl FnOnce(Option<Entry<'_>>) -> (Write<'v>, R),
    ) -> Result<R, StoreError> {
        self.update_cas(key, access, f).map(|(r, _)| r)
    }

    /// [`Store::update`], also returning the CAS unique the key has afterwards (0 if it is gone
    /// or has none): what memcached's meta commands report.
    pub fn update_cas<'v, R>(
        &self,
        key: &[u8],
        access: Access,
        f: impl FnOnce(Option<Entry<'_>>) -> (Write<'v>, R),
    ) -> Result<(R, u64), StoreError> {
        let hash = self.hash(key);
        let slot = &self.shards[self.shard_of(hash)];
        let mut sh = slot.shard.lock();
        let result = self.op(&mut sh, hash, key, access, f);
        let grew = self.commit(slot, &mut sh);
        drop(sh);
        let r = result?;
        if grew {
            self.enforce_limits();
        }
        Ok(r)
    }

    /// One read-modify-write on a locked shard: the body of [`Store::update`], shared with
    /// multi-key transactions.
    fn op<'v, R>(
        &self,
        sh: &mut Shard,
        hash: u64,
        key: &[u8],
        access: Access,
        f: impl FnOnce(Option<Entry<'_>>) -> (Write<'v>, R),
    ) -> Result<(R, u64), StoreError> {
        let mut now = self.now();
        let found = sh.lookup(hash, key, &mut now, &self.pool);
        match access {
            Access::Read if found.is_some() => sh.stats.hits += 1,
            Access::Read => sh.stats.misses += 1,
            _ => {}
        }
        let (old, (write, r)) = match &found {
            Some(hit) => {
                let c = sh.record(hit.id);
                let x = record::extras(c, &hit.layout, hit.base);
                let out = f(Some(Entry {
                    value: &c[hit.layout.value()],
                    expires_at: x.expire,
                    flags: x.flags,
                    cas: x.cas,
                }));
                (x, out)
            }
            None => (Extras::default(), f(None)),
        };
        let cas = self.apply(sh, hash, key, found, old, write, access, &mut now)?;
        let spare = self.evicting().then(|| sh.eviction_front()).flatten();
        if sh.over_garbage(spare) {
            sh.clean(CLEAN_BUDGET, 1, spare, &mut now, &self.pool);
        }
        Ok((r, cas))
    }

    /// Carries out a [`Write`]; returns the key's CAS unique afterwards (0 if none).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        sh: &mut Shard,
        hash: u64,
        key: &[u8],
        found: Option<Hit>,
        old: Extras,
        write: Write<'_>,
        access: Access,
        now: &mut Now<'_>,
    ) -> Result<u64, StoreError> {
        let (value, ttl, flags, fresh_cas) = match write {
            Write::Keep => {
                if let Some(hit) = found
                    && access != Access::Peek
                {
                    sh.touch(hit.id, self.ticker.now());
                }
                return Ok(old.cas);
            }
            Write::Delete => {
                if let Some(hit) = found {
                    sh.remove(hit, &self.pool);
                }
                return Ok(0);
            }
            Write::Expire(expire) => {
                let Some(hit) = found else { return Ok(0) };
                if expire.is_some_and(|at| at <= now.get()) {
                    sh.remove(hit, &self.pool);
                    return Ok(0);
                }
                sh.set_expire(
                    hit,
                    expire.map(|e| e.min(MAX_DEADLINE_MS)),
                    self.ticker.now(),
                    now,
                    &self.pool,
                )
                .map_err(|_| StoreError::Full)?;
                return Ok(old.cas);
            }
            Write::AssignCas => {
                let Some(hit) = found else { return Ok(0) };
                if old.cas != 0 {
                    if access != Access::Peek {
                        sh.touch(hit.id, self.ticker.now());
                    }
                    return Ok(old.cas);
                }
                let x = Extras {
                    cas: sh.new_cas(),
                    ..old
                };
                let c = sh.record(hit.id);
                let value = c[hit.layout.value()].to_vec();
                sh.replace(hit, key, &[&value], &x, self.ticker.now(), now, &self.pool)
                    .map_err(|_| StoreError::Full)?;
                return Ok(x.cas);
            }
            Write::Put(value, ttl) => (value, ttl, 0, false),
            Write::PutMc(value, ttl, flags) => (value, ttl, flags, true),
        };
        let expire = match ttl {
            Ttl::Persist => None,
            Ttl::Keep => old.expire,
            Ttl::At(at) => Some(at.min(MAX_DEADLINE_MS)),
        };
        if expire.is_some_and(|at| at <= now.get()) {
            // A deadline already past deletes the key, as Redis and memcached do.
            if let Some(hit) = found {
                sh.remove(hit, &self.pool);
            }
            return Ok(0);
        }
        self.check_size(key, value.len(), expire.is_some())?;
        let x = Extras {
            expire,
            flags,
            cas: if fresh_cas { sh.new_cas() } else { 0 },
        };
        let parts = [&value[..]];
        let ticks = self.ticker.now();
        match found {
            Some(hit) => sh.replace(hit, key, &parts, &x, ticks, now, &self.pool),
            None => sh.insert(hash, key, &parts, &x, ticks, now, &self.pool),
        }
        .map_err(|_| StoreError::Full)?;
        Ok(x.cas)
    }

    /// Runs `f` with every shard holding one of `keys` locked, so what it reads and writes is
    /// one atomic step for every other command (Redis's MSET/MGET/RENAME promise). Shards are
    /// locked in ascending order, each once; limits are enforced after all are released.
    pub fn multi<R>(&self, keys: &[&[u8]], f: impl FnOnce(&mut Txn<'_, '_>) -> R) -> R {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hash(k)).collect();
        let mut order: Vec<usize> = hashes.iter().map(|&h| self.shard_of(h)).collect();
        order.sort_unstable();
        order.dedup();
        let guards = order
            .iter()
            .map(|&i| (i, lock_spinning(&self.shards[i].shard)))
            .collect();
        let mut txn = Txn {
            store: self,
            guards,
            hashes,
            keys,
        };
        let r = f(&mut txn);
        let mut grew = false;
        for (i, sh) in txn.guards.iter_mut() {
            grew |= self.commit(&self.shards[*i], sh);
        }
        drop(txn);
        if grew {
            self.enforce_limits();
        }
        r
    }

    /// Counters summed over the shards (locks each briefly; O(shards), not O(keys)).
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats::default();
        for slot in self.shards.iter() {
            let sh = slot.shard.lock();
            s.keys += sh.len();
            s.memory += sh.memory();
            s.held_bytes += sh.held();
            s.keys_with_ttl += sh.with_ttl;
            s.hits += sh.stats.hits;
            s.misses += sh.stats.misses;
            s.evictions += sh.stats.evictions;
            s.expired += sh.stats.expired;
        }
        s
    }

    /// Garbage, cleaner and pool figures (locks each shard briefly).
    pub fn memory_report(&self) -> MemoryReport {
        let mut r = MemoryReport {
            pool: self.pool.stats(),
            ..MemoryReport::default()
        };
        for slot in self.shards.iter() {
            let sh = slot.shard.lock();
            r.garbage += sh.garbage();
            r.moved += sh.stats.moved;
            let ix = sh.index_stats();
            r.index_slots += ix.slots + ix.old_slots;
            r.resizing += (ix.old_slots > 0) as usize;
        }
        r
    }

    /// Removes every key. With `background`, the memory is freed on a separate thread so a big
    /// flush does not stall the caller (Redis `FLUSHALL ASYNC`); either way each shard is
    /// locked only to swap its contents out.
    pub fn flush(self: &Arc<Self>, background: bool) {
        let mut garbage = Vec::with_capacity(self.shards.len());
        for slot in self.shards.iter() {
            let mut sh = slot.shard.lock();
            garbage.push(sh.clear());
            self.commit(slot, &mut sh);
        }
        if background {
            let store = Arc::clone(self);
            std::thread::spawn(move || {
                for g in garbage {
                    g.release(&store.pool);
                }
            });
        } else {
            for g in garbage {
                g.release(&self.pool);
            }
        }
    }

    /// One step of background upkeep over every shard, each in lock holds of bounded work:
    /// removes expired records (about 1/16 of a shard per call), converts old LRU stamps,
    /// advances index resizes, and cleans segments that are at least a quarter garbage.
    pub fn sweep(&self) -> SweepReport {
        const CHUNK: usize = 1024;
        let mut report = SweepReport::default();
        let ticks = self.ticker.now();
        for slot in self.shards.iter() {
            let budget = (slot.len.load(Relaxed) / 16).max(CHUNK);
            let mut left = if slot.shard.lock().with_ttl == 0 {
                0
            } else {
                budget
            };
            while left > 0 {
                let mut sh = slot.shard.lock();
                let now_ms = self.clock.now_ms();
                let step = sh.sweep(now_ms, left.min(CHUNK), &self.pool);
                self.commit(slot, &mut sh);
                drop(sh);
                report.scanned += step.scanned;
                report.removed += step.removed;
                left = left.saturating_sub(step.scanned.max(1));
                if step.wrapped {
                    break;
                }
            }
            // Stamps, index resizes and cleaning: bounded per hold, a few holds per tick. The
            // index is migrated at a pace of DRAIN_PER_TICK groups less what inserts did since
            // the last tick: a filling shard is migrated by its own inserts, and the sweeper
            // does not compete with them for the lock and the CPU.
            let mut drain_left = {
                let mut sh = slot.shard.lock();
                DRAIN_PER_TICK.saturating_sub(sh.take_insert_drained())
            };
            for _ in 0..64 {
                let mut sh = slot.shard.lock();
                let mut now = self.now();
                let converted = sh.coarsen(ticks, CHUNK);
                let drained = sh.maintain_index(drain_left.min(DRAIN_PER_HOLD));
                drain_left -= drained;
                let spare = self.evicting().then(|| sh.eviction_front()).flatten();
                let cleaned = sh.clean(64 * 1024, 4, spare, &mut now, &self.pool);
                sh.trim(&self.pool);
                let retired = sh.take_retired();
                self.commit(slot, &mut sh);
                // Hand the lock straight to a waiting request rather than racing it for the
                // next hold.
                MutexGuard::unlock_fair(sh);
                drop(retired);
                if converted < CHUNK && drained == 0 && cleaned == 0 {
                    break;
                }
            }
        }
        report
    }

    /// Runs [`Store::sweep`] every `interval` on a thread that stops when the guard is dropped.
    pub fn start_sweeper(self: &Arc<Self>, interval: Duration) -> Sweeper {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let store = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name("kvcache-sweeper".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(interval)
                {
                    store.sweep();
                }
            })
            .expect("spawn sweeper thread");
        Sweeper {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Visits live keys from `cursor` (0 to start) until about `count` keys were seen; returns
    /// the cursor to continue from, 0 when the iteration is complete. The cursor is a position
    /// in hash order (`shard << 32 | hash`), which no resize or record move changes, so every
    /// key present for the whole iteration is returned exactly once.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        let mut shard = (cursor >> 32) as usize;
        let mut lo = cursor & 0xFFFF_FFFF;
        let mut left = count.max(1);
        let now = self.clock.now_ms();
        while shard < self.shards.len() {
            let sh = self.shards[shard].shard.lock();
            let len = sh.len().max(1) as u128;
            let span = ((((left as u128) << 32) / len).min(1 << 32)) as u64 + 1;
            let hi = (lo + span).min(1 << 32);
            let mut seen = 0;
            sh.scan_range(lo, hi, now, &mut |k| {
                seen += 1;
                f(k)
            });
            drop(sh);
            left = left.saturating_sub(seen.max(1));
            if hi < 1 << 32 {
                lo = hi;
                if left == 0 {
                    return (shard as u64) << 32 | lo;
                }
                continue;
            }
            shard += 1;
            lo = 0;
            if left == 0 {
                break;
            }
        }
        if shard >= self.shards.len() {
            0
        } else {
            (shard as u64) << 32
        }
    }

    /// A uniformly random live key, or `None` when the store is empty: a shard chosen with
    /// probability proportional to its size, then a uniform pick inside it.
    pub fn random_key(&self) -> Option<Vec<u8>> {
        thread_local! {
            static RNG: Cell<u64> = const { Cell::new(0) };
        }
        let mut rng = RNG.with(|r| {
            let mut x = r.get();
            if x == 0 {
                x = self.clock.now_ms() ^ (r as *const _ as u64);
            }
            x
        });
        let now = self.clock.now_ms();
        let mut result = None;
        for _ in 0..8 {
            let total = self.len();
            if total == 0 {
                break;
            }
            rng = shard::splitmix(rng);
            let mut pick = ((rng as u32 as u64 * total as u64) >> 32) as usize;
            let mut chosen = self.shards.len() - 1;
            for (i, slot) in self.shards.iter().enumerate() {
                let n = slot.len.load(Relaxed);
                if pick < n {
                    chosen = i;
                    break;
                }
                pick -= n;
            }
            let sh = self.shards[chosen].shard.lock();
            if let Some(k) = sh.random_key(&mut rng, now, 64) {
                result = Some(k);
                break;
            }
        }
        RNG.with(|r| r.set(rng));
        if result.is_none() && !self.is_empty() {
            // Every try landed on expired keys: fall back to the first live key in hash order,
            // looking at a bounded number of keys (a store of nothing but expired keys is the
            // sweeper's job, not this request's).
            let mut cursor = 0;
            for _ in 0..4 {
                cursor = self.scan(cursor, 1024, |k| {
                    if result.is_none() {
                        result = Some(k.to_vec());
                    }
                });
                if result.is_some() || cursor == 0 {
                    break;
                }
            }
        }
        result
    }

    /// A point-in-time copy of shard `i`'s records, for snapshots: the shard is locked only for
    /// the copy (a memcpy of its written segments, a few milliseconds for 25 MB), and the
    /// caller reads the records afterwards at leisure.
    pub fn shard_image(&self, i: usize) -> ShardImage {
        let sh = self.shards[i].shard.lock();
        sh.image()
    }

    /// The store's recency clock now, in the units of [`ImageRecord::last_used`].
    pub fn recency_now(&self) -> u64 {
        self.ticker.now()
    }

    /// Puts back a record from a snapshot, as the most recently used so far but with its own
    /// age: restore records oldest first (`age` = ticks between its last use and the save) and
    /// the LRU order across all shards comes back as it was, so limits applied on load evict
    /// exactly the keys that would have been evicted first. Returns `Ok(false)` for a record
    /// whose deadline has passed (not stored).
    pub fn restore(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: Option<u64>,
        flags: u32,
        cas: u64,
        age: u64,
    ) -> Result<bool, StoreError> {
        let hash = self.hash(key);
        let slot = &self.shards[self.shard_of(hash)];
        let mut sh = slot.shard.lock();
        let mut now = self.now();
        if expires_at.is_some_and(|at| at <= now.get()) {
            return Ok(false);
        }
        let result = (|| {
            self.check_size(key, value.len(), expires_at.is_some())?;
            let x = Extras {
                expire: expires_at.map(|e| e.min(MAX_DEADLINE_MS)),
                flags,
                cas,
            };
            sh.cas_floor(cas);
            let ticks = self.ticker.now().saturating_sub(age).max(1);
            match sh.lookup(hash, key, &mut now, &self.pool) {
                Some(hit) => sh.replace(hit, key, &[value], &x, ticks, &mut now, &self.pool),
                None => sh.insert(hash, key, &[value], &x, ticks, &mut now, &self.pool),
            }
            .map_err(|_| StoreError::Full)?;
            Ok(true)
        })();
        let grew = self.commit(slot, &mut sh);
        drop(sh);
        if grew {
            self.enforce_limits();
        }
        result
    }

    /// Prepares an empty store for a load of about `items` keys: each empty shard's index is
    /// sized for its share at once (capped by `--max-keys`, and by `--max-memory` at one key
    /// per 48 bytes), so the load pays for no incremental growth. Shards that already hold
    /// keys are left alone. Call [`Store::end_reserve`] when the load is over.
    pub fn reserve(&self, items: usize) {
        let mut items = items;
        if self.max_keys > 0 {
            items = items.min(self.max_keys);
        }
        if self.max_memory > 0 {
            items = items.min(self.max_memory / 48);
        }
        // A share a little over the mean: shards differ by a few standard deviations.
        let mean = items / self.shards.len();
        let share = mean + 4 * mean.isqrt() + 8;
        for slot in self.shards.iter() {
            let mut sh = slot.shard.lock();
            sh.reserve_index(share);
            self.commit(slot, &mut sh);
        }
    }

    /// Ends [`Store::reserve`]: indexes the load left mostly empty (expired or refused keys)
    /// may shrink again.
    pub fn end_reserve(&self) {
        for slot in self.shards.iter() {
            slot.shard.lock().end_reserve();
        }
    }

    /// Moves every record to a new place in memory (what the cleaner does to some of them), so
    /// tests can check relocation preserves everything observable. Not for production use: it
    /// does work proportional to the store's size.
    #[doc(hidden)]
    pub fn relocate_all_for_tests(&self) -> usize {
        let mut moved = 0;
        for slot in self.shards.iter() {
            let mut sh = slot.shard.lock();
            let mut now = self.now();
            moved += sh.relocate_all(&mut now, &self.pool);
            self.commit(slot, &mut sh);
        }
        moved
    }

    #[cfg(test)]
    fn lru_of_shard(&self, shard: usize) -> Vec<Vec<u8>> {
        self.shards[shard].shard.lock().lru_keys()
    }
}

/// Several keys' shards held at once by [`Store::multi`]; every operation on them is part of
/// one atomic step. Keys are addressed by their position in the slice given to `multi`.
pub struct Txn<'s, 'k> {
    store: &'s Store,
    guards: Vec<(usize, MutexGuard<'s, Shard>)>,
    hashes: Vec<u64>,
    keys: &'k [&'k [u8]],
}

impl Txn<'_, '_> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the transaction has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// [`Store::update`] for key `i`, inside the transaction.
    pub fn update<'v, R>(
        &mut self,
        i: usize,
        access: Access,
        f: impl FnOnce(Option<Entry<'_>>) -> (Write<'v>, R),
    ) -> Result<R, StoreError> {
        let store = self.store;
        let hash = self.hashes[i];
        let key = self.keys[i];
        let want = store.shard_of(hash);
        let pos = self
            .guards
            .binary_search_by_key(&want, |(s, _)| *s)
            .expect("the key's shard is held");
        store
            .op(&mut self.guards[pos].1, hash, key, access, f)
            .map(|(r, _)| r)
    }

    /// [`Store::get`] for key `i`.
    pub fn get<R>(&mut self, i: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.update(i, Access::Read, |e| (Write::Keep, e.map(|e| f(e.value))))
            .ok()
            .flatten()
    }

    /// [`Store::contains`] for key `i`.
    pub fn contains(&mut self, i: usize) -> bool {
        self.update(i, Access::Peek, |e| (Write::Keep, e.is_some()))
            .unwrap_or(false)
    }

    /// [`Store::set`] for key `i`.
    pub fn set(&mut self, i: usize, value: &[u8], ttl: Ttl) -> Result<(), StoreError> {
        self.update(i, Access::Write, |_| {
            (Write::Put(Cow::Borrowed(value), ttl), ())
        })
    }

    /// [`Store::delete`] for key `i`.
    pub fn delete(&mut self, i: usize) -> bool {
        self.update(i, Access::Peek, |e| (Write::Delete, e.is_some()))
            .unwrap_or(false)
    }
}

/// Keeps the background sweeper running; dropping it stops and joins the thread.
pub struct Sweeper {
    stop: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests;
