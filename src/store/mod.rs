//! The cache engine: a sharded map with exact LRU eviction, TTLs and memory accounting.
//!
//! Synchronous and protocol-free: no tokio, no I/O, no knowledge of commands. Each shard is a
//! mutex around a hash index, a slab of compact records and an LRU list ([`shard`]). Recency is a
//! global access stamp taken under the shard lock, so every shard's list is ordered by it; each
//! shard publishes its tail's stamp, and eviction takes the tail of the shard whose tail is
//! oldest. A single client therefore sees exact LRU whatever the shard count, with no global lock.
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
mod item;
mod shard;
mod slab;

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use hashbrown::DefaultHashBuilder;
use parking_lot::{Mutex, MutexGuard};

pub use clock::{Clock, ManualClock, SystemClock};
pub use item::{MAX_DEADLINE_MS, MAX_KEY_LEN, MAX_VALUE_LEN};
use shard::Shard;

/// Why the store refused a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The key exceeds what a record can hold.
    #[error("key too long (max {MAX_KEY_LEN} bytes)")]
    KeyTooLong,
    /// The item alone would not fit under the memory limit.
    #[error("item too large for max-memory")]
    TooLarge,
    /// The shard's record ids are exhausted and nothing is left to evict there.
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
    /// Change only the deadline (`None` removes it).
    Expire(Option<u64>),
}

/// Counters summed over all shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys stored, including expired ones not yet reclaimed.
    pub keys: usize,
    /// Keys that carry a TTL.
    pub keys_with_ttl: usize,
    /// Accounted bytes: record chunks, hash tables and page tables.
    pub memory: usize,
    /// Page memory actually held by the slabs.
    pub page_bytes: usize,
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

/// Builds a [`Store`]; every setting has a default suited to a server.
pub struct StoreBuilder {
    shards: usize,
    max_keys: usize,
    max_memory: usize,
    clock: Arc<dyn Clock>,
}

impl StoreBuilder {
    /// Number of shards, rounded up to a power of two (default: 4 per CPU, at least 16).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.max(1).next_power_of_two();
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

    /// Creates the store.
    pub fn build(self) -> Store {
        let hasher = DefaultHashBuilder::default();
        let shards = (0..self.shards)
            .map(|_| ShardSlot {
                shard: Mutex::new(Shard::new(hasher.clone())),
                tail: AtomicU64::new(0),
            })
            .collect();
        Store {
            shards,
            mask: self.shards - 1,
            hasher,
            clock: self.clock,
            stamp: Padded(AtomicU64::new(0)),
            len: Padded(AtomicUsize::new(0)),
            used: Padded(AtomicUsize::new(0)),
            external: AtomicUsize::new(0),
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

#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A shard and the published stamp of its LRU tail, on their own cache lines.
#[repr(align(128))]
struct ShardSlot {
    shard: Mutex<Shard>,
    tail: AtomicU64,
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
    mask: usize,
    hasher: DefaultHashBuilder,
    clock: Arc<dyn Clock>,
    stamp: Padded<AtomicU64>,
    len: Padded<AtomicUsize>,
    used: Padded<AtomicUsize>,
    external: AtomicUsize,
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

    /// Keys stored (expired ones count until reclaimed, as in Redis `DBSIZE`).
    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accounted bytes of the store itself.
    pub fn memory_used(&self) -> usize {
        self.used.load(Relaxed)
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
    /// connection buffers, so the memory limit caps the process and not only the data.
    pub fn adjust_external(&self, delta: isize) {
        if delta >= 0 {
            self.external.fetch_add(delta as usize, Relaxed);
        } else {
            self.external.fetch_sub(delta.unsigned_abs(), Relaxed);
        }
    }

    /// Bytes registered through [`Store::adjust_external`].
    pub fn external_bytes(&self) -> usize {
        self.external.load(Relaxed)
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn slot(&self, hash: u64) -> &ShardSlot {
        // The table uses the low bits and the top 7; shard by bits in between.
        &self.shards[(hash >> 32) as usize & self.mask]
    }

    #[inline]
    fn next_stamp(&self) -> u32 {
        self.stamp.fetch_add(1, Relaxed) as u32
    }

    fn now(&self) -> Now<'_> {
        Now {
            clock: &*self.clock,
            ms: None,
        }
    }

    /// Publishes a shard's length, memory and tail after a change; call with its lock held.
    fn commit(&self, slot: &ShardSlot, sh: &mut Shard) {
        let (len, memory) = (sh.len(), sh.memory());
        publish(&self.len, &mut sh.reported_len, len);
        publish(&self.used, &mut sh.reported_memory, memory);
        let mark = sh.tail_mark();
        if slot.tail.load(Relaxed) != mark {
            slot.tail.store(mark, Relaxed);
        }
    }

    fn over_limit(&self) -> bool {
        (self.max_keys > 0 && self.len() > self.max_keys)
            || (self.max_memory > 0 && self.memory_used() + self.external_bytes() > self.max_memory)
    }

    /// Evicts globally least recently used keys until both limits hold.
    fn enforce_limits(&self) {
        while self.over_limit() {
            let Some(index) = self.oldest_shard() else {
                return;
            };
            let slot = &self.shards[index];
            let mut sh = slot.shard.lock();
            let now = self.clock.now_ms();
            sh.evict_tail(now);
            self.commit(slot, &mut sh);
        }
    }

    /// The shard whose LRU tail carries the oldest stamp, from the published tail marks.
    fn oldest_shard(&self) -> Option<usize> {
        let now = self.stamp.load(Relaxed) as u32;
        let mut best: Option<(usize, u32)> = None;
        for (i, slot) in self.shards.iter().enumerate() {
            let mark = slot.tail.load(Relaxed);
            if mark == 0 {
                continue;
            }
            let age = now.wrapping_sub(mark as u32);
            if best.is_none_or(|(_, a)| age > a) {
                best = Some((i, age));
            }
        }
        best.map(|(i, _)| i)
    }

    fn check_size(&self, key: &[u8], value_len: usize, has_expire: bool) -> Result<(), StoreError> {
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::KeyTooLong);
        }
        if self.max_memory > 0
            && slab::chunk_size_for(item::record_len(key.len(), value_len, has_expire))
                > self.max_memory
        {
            return Err(StoreError::TooLarge);
        }
        Ok(())
    }

    /// Reads a live value, refreshing its recency; `f` runs under the shard lock, so keep it short
    /// (copy the bytes out).
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let hash = self.hash(key);
        let slot = self.slot(hash);
        let mut sh = slot.shard.lock();
        let mut now = self.now();
        let found = sh.lookup(hash, key, &mut now);
        let Some(id) = found else {
            sh.stats.misses += 1;
            self.commit(slot, &mut sh);
            return None;
        };
        sh.stats.hits += 1;
        let stamp = self.next_stamp();
        sh.touch(id, stamp);
        let r = f(item::value(sh.chunk(id)));
        self.commit(slot, &mut sh);
        Some(r)
    }

    /// Whether a live key exists, without touching its recency.
    pub fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let slot = self.slot(hash);
        let mut sh = slot.shard.lock();
        let mut now = self.now();
        let found = sh.lookup(hash, key, &mut now).is_some();
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
        let hash = self.hash(key);
        let slot = self.slot(hash);
        let mut sh = slot.shard.lock();
        let mut now = self.now();
        let found = sh.lookup(hash, key, &mut now);
        match access {
            Access::Read if found.is_some() => sh.stats.hits += 1,
            Access::Read => sh.stats.misses += 1,
            _ => {}
        }
        let (old_expire, (write, r)) = match found {
            Some(id) => {
                let c = sh.chunk(id);
                let layout = item::layout(c);
                let expires_at = item::expire(c);
                (
                    expires_at,
                    f(Some(Entry {
                        value: &c[layout.value],
                        expires_at,
                    })),
                )
            }
            None => (None, f(None)),
        };
        let result = self.apply(
            slot, &mut sh, hash, key, found, old_expire, write, access, &mut now,
        );
        self.commit(slot, &mut sh);
        drop(sh);
        result?;
        self.enforce_limits();
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        _slot: &ShardSlot,
        sh: &mut MutexGuard<'_, Shard>,
        hash: u64,
        key: &[u8],
        found: Option<slab::Id>,
        old_expire: Option<u64>,
        write: Write<'_>,
        access: Access,
        now: &mut Now<'_>,
    ) -> Result<(), StoreError> {
        match write {
            Write::Keep => {
                if let Some(id) = found
                    && access != Access::Peek
                {
                    let stamp = self.next_stamp();
                    sh.touch(id, stamp);
                }
            }
            Write::Delete => {
                if let Some(id) = found {
                    sh.remove(id, hash);
                }
            }
            Write::Put(value, ttl) => {
                let expire = match ttl {
                    Ttl::Persist => None,
                    Ttl::Keep => old_expire,
                    Ttl::At(at) => Some(at.min(MAX_DEADLINE_MS)),
                };
                if expire.is_some_and(|at| at <= now.get()) {
                    // A deadline already past deletes the key, as Redis does.
                    if let Some(id) = found {
                        sh.remove(id, hash);
                    }
                    return Ok(());
                }
                self.check_size(key, value.len(), expire.is_some())?;
                let stamp = self.next_stamp();
                let parts = [&value[..]];
                match found {
                    Some(id) => sh.replace(id, hash, key, &parts, expire, stamp),
                    None => sh.insert(hash, key, &parts, expire, stamp),
                }
                .map_err(|_| StoreError::Full)?;
            }
            Write::Expire(expire) => {
                let Some(id) = found else { return Ok(()) };
                if expire.is_some_and(|at| at <= now.get()) {
                    sh.remove(id, hash);
                    return Ok(());
                }
                let stamp = self.next_stamp();
                sh.set_expire(id, hash, expire, stamp)
                    .map_err(|_| StoreError::Full)?;
            }
        }
        Ok(())
    }

    /// Counters summed over the shards (locks each briefly).
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            keys: self.len(),
            memory: self.memory_used(),
            ..StoreStats::default()
        };
        for slot in self.shards.iter() {
            let sh = slot.shard.lock();
            s.page_bytes += sh.page_bytes();
            s.keys_with_ttl += sh.with_ttl;
            s.hits += sh.stats.hits;
            s.misses += sh.stats.misses;
            s.evictions += sh.stats.evictions;
            s.expired += sh.stats.expired;
        }
        s
    }

    /// Removes every key. With `background`, the memory is freed on a separate thread so a big
    /// flush does not stall the caller (Redis `FLUSHALL ASYNC`).
    pub fn flush(&self, background: bool) {
        let mut garbage = Vec::with_capacity(self.shards.len());
        for slot in self.shards.iter() {
            let mut sh = slot.shard.lock();
            garbage.push(sh.take());
            self.commit(slot, &mut sh);
        }
        if background {
            std::thread::spawn(move || drop(garbage));
        }
    }

    /// One step of background expiry: scans a bounded slice of every shard, removing expired
    /// records, and keeps LRU stamps comparable. Locks are held for at most 1024 records at a time.
    pub fn sweep(&self) -> SweepReport {
        const CHUNK: usize = 1024;
        let mut report = SweepReport::default();
        let now32 = self.stamp.load(Relaxed) as u32;
        for slot in self.shards.iter() {
            // A pass over a shard takes at most ~16 calls, so expired memory is reclaimed within
            // seconds at a 100 ms tick, whatever the size.
            let budget = (slot.shard.lock().len() / 16).max(CHUNK);
            let mut left = budget;
            while left > 0 {
                let mut sh = slot.shard.lock();
                let now = self.clock.now_ms();
                let step = sh.sweep(now, left.min(CHUNK));
                sh.clamp_stamps(now32, CHUNK);
                self.commit(slot, &mut sh);
                drop(sh);
                report.scanned += step.scanned;
                report.removed += step.removed;
                left = left.saturating_sub(step.scanned.max(1));
                if step.wrapped {
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

    /// Visits live keys from `cursor` (0 to start) until about `count` slots were examined;
    /// returns the cursor to continue from, 0 when the iteration is complete. Keys present for
    /// the whole iteration are returned at least once.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        let mut shard = (cursor >> 24) as usize;
        let mut pos = (cursor & 0xFF_FFFF) as u32;
        let mut left = count.max(1);
        let now = self.clock.now_ms();
        while shard < self.shards.len() {
            let sh = self.shards[shard].shard.lock();
            let (next, visited) = sh.scan(pos, left, now, &mut f);
            if let Some(next) = next {
                return ((shard as u64) << 24) | next as u64;
            }
            left = left.saturating_sub(visited);
            shard += 1;
            pos = 0;
            if left == 0 {
                break;
            }
        }
        if shard >= self.shards.len() {
            0
        } else {
            (shard as u64) << 24
        }
    }

    /// A random live key, or `None` when the store is empty.
    pub fn random_key(&self) -> Option<Vec<u8>> {
        let n = self.shards.len();
        let seed = self
            .hasher
            .hash_one(self.stamp.fetch_add(1, Relaxed) ^ self.clock.now_ms());
        let now = self.clock.now_ms();
        (0..n).find_map(|i| {
            let slot = &self.shards[(seed as usize).wrapping_add(i) & self.mask];
            slot.shard.lock().random_key(seed >> 16, now)
        })
    }

    #[cfg(test)]
    fn lru_of_shard(&self, shard: usize) -> Vec<Vec<u8>> {
        self.shards[shard].shard.lock().lru_keys()
    }
}

/// Moves a global total by the change in one shard's figure since it was last reported.
#[inline]
fn publish(total: &AtomicUsize, reported: &mut usize, now: usize) {
    if now > *reported {
        total.fetch_add(now - *reported, Relaxed);
    } else if now < *reported {
        total.fetch_sub(*reported - now, Relaxed);
    }
    *reported = now;
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
