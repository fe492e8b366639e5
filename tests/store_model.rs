//! The store against a reference model: a map of key -> (value, deadline), an explicit recency
//! list (oldest first) and the four counters, driven by random operation sequences over a small
//! key space with small limits, so eviction, expiry and reclaim paths are hit constantly.
//!
//! Every reply is checked, and after every operation the whole observable state: key count,
//! live key set (by a side-effect-free scan), each live value and deadline (by a peek), the
//! hit/miss/eviction/expiry counters and the TTL count. Eviction order is checked by the key
//! count plus the live set: the store must drop exactly the model's least recently used keys.
//!
//! Rules the model encodes (read from `src/store`):
//! - a record is expired when `deadline <= now`; it stays stored (and counted by `len`) until an
//!   access finds it (get, contains, delete, update), the sweep reaches it, or it is evicted;
//!   each of those counts it as `expired`, never as an eviction or a miss-only;
//! - recency is refreshed by a successful put, a get hit, an update of a live key with
//!   `Access::Read`/`Access::Write`, and by any `Write::Put` or `Write::Expire` that keeps the key
//!   (whatever the access); `contains`, `delete` and `Access::Peek` with `Write::Keep` do not;
//! - a put or expire whose deadline is already past removes the key without counting anything;
//! - `Ttl::Keep` keeps the deadline of a live key, and means "no deadline" for an absent one;
//! - limits are enforced after every successful `update` (so after set and delete too), by
//!   evicting the globally least recently used record, expired or not.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kvcache::store::{
    Access, MAX_DEADLINE_MS, ManualClock, Store, StoreError, StoreStats, Ttl, Write, item_size,
};
use proptest::prelude::*;

const START_MS: u64 = 1_000_000;
const KEYS: u8 = 12;

/// Key `i`; key 0 is the empty key, which takes the record's long form.
fn key(i: u8) -> Vec<u8> {
    if i == 0 {
        Vec::new()
    } else {
        format!("k{i}").into_bytes()
    }
}

/// A value of `len` bytes; lengths around 255 cross the record's short/long form boundary and
/// different lengths land in different slab classes, so replaces move records.
fn value(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// A deadline relative to the clock when the operation runs.
#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// `now + ms`; zero or negative is already past.
    In(i64),
    /// Far beyond what the record's 48-bit field holds (clamped to `MAX_DEADLINE_MS`).
    Never,
}

impl Deadline {
    fn at(self, now: u64) -> u64 {
        match self {
            Deadline::In(ms) => now.saturating_add_signed(ms),
            Deadline::Never => u64::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum TtlSpec {
    Persist,
    Keep,
    At(Deadline),
}

#[derive(Debug, Clone)]
enum WriteSpec {
    Keep,
    Delete,
    Put(Vec<u8>, TtlSpec),
    /// `Some` sets a deadline, `None` removes it (PERSIST).
    Expire(Option<Deadline>),
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, Vec<u8>, TtlSpec),
    Get(u8),
    Contains(u8),
    Delete(u8),
    Update(u8, Access, WriteSpec),
    Advance(u64),
    Sweep,
    /// Move every record elsewhere in memory, as the cleaner does to some: nothing observable
    /// may change.
    Relocate,
}

fn deadline() -> impl Strategy<Value = Deadline> {
    prop_oneof![
        10 => (-5i64..60).prop_map(Deadline::In),
        1 => Just(Deadline::Never),
    ]
}

fn ttl() -> impl Strategy<Value = TtlSpec> {
    prop_oneof![
        3 => Just(TtlSpec::Persist),
        2 => Just(TtlSpec::Keep),
        4 => deadline().prop_map(TtlSpec::At),
    ]
}

fn val() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        8 => 0usize..24,
        1 => 250usize..262,
        1 => Just(300usize),
    ];
    (len, any::<u8>()).prop_map(|(len, fill)| value(len, fill))
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Peek)]
}

fn write_spec() -> impl Strategy<Value = WriteSpec> {
    prop_oneof![
        2 => Just(WriteSpec::Keep),
        1 => Just(WriteSpec::Delete),
        2 => (val(), ttl()).prop_map(|(v, t)| WriteSpec::Put(v, t)),
        3 => proptest::option::weighted(0.8, deadline()).prop_map(WriteSpec::Expire),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    op_over(KEYS)
}

/// Operations over keys `0..keys`.
fn op_over(keys: u8) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    prop_oneof![
        6 => (k.clone(), val(), ttl()).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        5 => k.clone().prop_map(Op::Get),
        2 => k.clone().prop_map(Op::Contains),
        2 => k.clone().prop_map(Op::Delete),
        4 => (k, access(), write_spec()).prop_map(|(k, a, w)| Op::Update(k, a, w)),
        3 => (0u64..40).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => Just(Op::Relocate),
    ]
}

/// What a [`Store::update`] closure was shown.
type Seen = Option<(Vec<u8>, Option<u64>)>;

/// The reference: plain collections, no cleverness.
#[derive(Debug, Default)]
struct Model {
    entries: HashMap<Vec<u8>, (Vec<u8>, Option<u64>)>,
    /// Every stored key, expired or not, least recently used first.
    recency: Vec<Vec<u8>>,
    now: u64,
    max_keys: usize,
    max_memory: usize,
    hits: u64,
    misses: u64,
    evictions: u64,
    expired: u64,
}

impl Model {
    fn is_expired(&self, deadline: Option<u64>) -> bool {
        deadline.is_some_and(|at| at <= self.now)
    }

    fn remove(&mut self, key: &[u8]) {
        self.entries.remove(key).expect("removing a stored key");
        let pos = self.recency.iter().position(|k| k == key).unwrap();
        self.recency.remove(pos);
    }

    fn touch(&mut self, key: &[u8]) {
        let pos = self.recency.iter().position(|k| k == key).unwrap();
        let k = self.recency.remove(pos);
        self.recency.push(k);
    }

    /// The live entry, reclaiming (and counting) an expired one as the store's lookup does.
    fn lookup(&mut self, key: &[u8]) -> Seen {
        let (v, d) = self.entries.get(key)?.clone();
        if self.is_expired(d) {
            self.remove(key);
            self.expired += 1;
            return None;
        }
        Some((v, d))
    }

    /// Removes the least recently used record, counted as expired if its deadline has passed.
    fn evict_oldest(&mut self) {
        let k = self.recency[0].clone();
        let expired = self.is_expired(self.entries[&k].1);
        self.remove(&k);
        if expired {
            self.expired += 1;
        } else {
            self.evictions += 1;
        }
    }

    fn enforce_max_keys(&mut self) {
        while self.max_keys > 0 && self.entries.len() > self.max_keys {
            self.evict_oldest();
        }
    }

    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self.lookup(key) {
            Some((v, _)) => {
                self.hits += 1;
                self.touch(key);
                Some(v)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// `Store::update`: returns what the closure saw and the result.
    fn update(
        &mut self,
        key: &[u8],
        access: Access,
        write: &WriteSpec,
    ) -> (Seen, Result<(), StoreError>) {
        let seen = self.lookup(key);
        if access == Access::Read {
            if seen.is_some() {
                self.hits += 1;
            } else {
                self.misses += 1;
            }
        }
        let found = seen.is_some();
        match write {
            WriteSpec::Keep => {
                if found && access != Access::Peek {
                    self.touch(key);
                }
            }
            WriteSpec::Delete => {
                if found {
                    self.remove(key);
                }
            }
            WriteSpec::Put(v, ttl) => {
                let deadline = match ttl {
                    TtlSpec::Persist => None,
                    TtlSpec::Keep => seen.as_ref().and_then(|s| s.1),
                    TtlSpec::At(d) => Some(d.at(self.now).min(MAX_DEADLINE_MS)),
                };
                if self.is_expired(deadline) {
                    if found {
                        self.remove(key);
                    }
                } else if self.max_memory > 0
                    && item_size(key.len(), v.len(), deadline.is_some()) > self.max_memory
                {
                    return (seen, Err(StoreError::TooLarge));
                } else {
                    if !found {
                        self.recency.push(key.to_vec());
                    }
                    self.entries.insert(key.to_vec(), (v.clone(), deadline));
                    self.touch(key);
                }
            }
            WriteSpec::Expire(d) => {
                if found {
                    let at = d.map(|d| d.at(self.now));
                    if self.is_expired(at) {
                        self.remove(key);
                    } else {
                        self.entries.get_mut(key).unwrap().1 = at.map(|a| a.min(MAX_DEADLINE_MS));
                        self.touch(key);
                    }
                }
            }
        }
        self.enforce_max_keys();
        (seen, Ok(()))
    }

    fn sweep(&mut self) -> usize {
        let dead: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, (_, d))| self.is_expired(*d))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &dead {
            self.remove(k);
        }
        self.expired += dead.len() as u64;
        dead.len()
    }

    fn live_keys(&self) -> HashSet<Vec<u8>> {
        self.entries
            .iter()
            .filter(|(_, (_, d))| !self.is_expired(*d))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

struct Harness {
    store: Store,
    clock: Arc<ManualClock>,
    model: Model,
}

impl Harness {
    fn new(shards: usize, max_keys: usize, max_memory: usize) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let store = Store::builder()
            .shards(shards)
            .max_keys(max_keys)
            .max_memory(max_memory)
            .clock(clock.clone())
            .exact_recency_for_tests()
            .build();
        let model = Model {
            now: START_MS,
            max_keys,
            max_memory,
            ..Model::default()
        };
        Harness {
            store,
            clock,
            model,
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let (store, model) = (&self.store, &mut self.model);
        match op {
            Op::Set(k, v, t) => {
                let k = key(*k);
                let ttl = match *t {
                    TtlSpec::Persist => Ttl::Persist,
                    TtlSpec::Keep => Ttl::Keep,
                    TtlSpec::At(d) => Ttl::At(d.at(model.now)),
                };
                let got = store.set(&k, v, ttl);
                let (_, want) = model.update(&k, Access::Write, &WriteSpec::Put(v.clone(), *t));
                prop_assert_eq!(got, want, "set {:?}", op);
            }
            Op::Get(k) => {
                let k = key(*k);
                let got = store.get(&k, |v| v.to_vec());
                prop_assert_eq!(got, model.get(&k), "get {:?}", op);
            }
            Op::Contains(k) => {
                let k = key(*k);
                let got = store.contains(&k);
                prop_assert_eq!(got, model.lookup(&k).is_some(), "contains {:?}", op);
            }
            Op::Delete(k) => {
                let k = key(*k);
                let got = store.delete(&k);
                let (seen, _) = model.update(&k, Access::Peek, &WriteSpec::Delete);
                prop_assert_eq!(got, seen.is_some(), "delete {:?}", op);
            }
            Op::Update(k, access, spec) => {
                let k = key(*k);
                let now = model.now;
                let got = store.update(&k, *access, |e| {
                    let seen: Seen = e.map(|e| (e.value.to_vec(), e.expires_at));
                    let write = match spec {
                        WriteSpec::Keep => Write::Keep,
                        WriteSpec::Delete => Write::Delete,
                        WriteSpec::Put(v, t) => Write::Put(
                            v.as_slice().into(),
                            match *t {
                                TtlSpec::Persist => Ttl::Persist,
                                TtlSpec::Keep => Ttl::Keep,
                                TtlSpec::At(d) => Ttl::At(d.at(now)),
                            },
                        ),
                        WriteSpec::Expire(d) => Write::Expire(d.map(|d| d.at(now))),
                    };
                    (write, seen)
                });
                let (seen, want) = model.update(&k, *access, spec);
                match got {
                    Ok(got_seen) => {
                        prop_assert!(want.is_ok(), "{:?}: store Ok, model {:?}", op, want);
                        prop_assert_eq!(got_seen, seen, "entry shown by {:?}", op);
                    }
                    Err(e) => prop_assert_eq!(Err(e), want, "{:?}", op),
                }
            }
            Op::Advance(ms) => {
                self.clock.advance(*ms);
                model.now += ms;
            }
            Op::Sweep => {
                let report = store.sweep();
                prop_assert_eq!(report.removed, model.sweep(), "sweep removed");
            }
            Op::Relocate => {
                // Expired records met on the way are reclaimed as the sweep would.
                let before = store.stats().expired;
                store.relocate_all_for_tests();
                let reclaimed = store.stats().expired - before;
                let expired = model.sweep() as u64;
                prop_assert_eq!(
                    reclaimed,
                    expired,
                    "relocation reclaims exactly the expired"
                );
            }
        }
        Ok(())
    }

    /// Accounts for memory-limit evictions, which the model cannot predict byte for byte: the
    /// store may only have dropped the model's least recently used records, so it must hold
    /// exactly the model's most recent `store.len()` records.
    fn follow_memory_evictions(&mut self) -> Result<(), TestCaseError> {
        let len = self.store.len();
        prop_assert!(
            len <= self.model.entries.len(),
            "store holds {} keys, model {}",
            len,
            self.model.entries.len()
        );
        while self.model.entries.len() > len {
            self.model.evict_oldest();
        }
        Ok(())
    }

    /// Compares every observable part of the store with the model, without side effects.
    fn check(&self, op: &Op) -> Result<(), TestCaseError> {
        let (store, model) = (&self.store, &self.model);
        let st = store.stats();
        let want = StoreStats {
            keys: model.entries.len(),
            keys_with_ttl: model.entries.values().filter(|(_, d)| d.is_some()).count(),
            memory: st.memory,
            held_bytes: st.held_bytes,
            hits: model.hits,
            misses: model.misses,
            evictions: model.evictions,
            expired: model.expired,
        };
        prop_assert_eq!(st, want, "counters after {:?}", op);
        prop_assert_eq!(store.len(), model.entries.len());

        // The scan shows each live key once, and only live keys.
        let mut scanned = Vec::new();
        let mut cursor = 0;
        loop {
            cursor = store.scan(cursor, 3, |k| scanned.push(k.to_vec()));
            if cursor == 0 {
                break;
            }
        }
        let live = model.live_keys();
        let unique: HashSet<Vec<u8>> = scanned.iter().cloned().collect();
        prop_assert_eq!(unique.len(), scanned.len(), "scan repeated a key");
        prop_assert_eq!(&unique, &live, "live keys after {:?}", op);

        // A peek at a live key changes nothing, so every value and deadline can be compared.
        for k in &live {
            let got = store.update(k, Access::Peek, |e| {
                (Write::Keep, e.map(|e| (e.value.to_vec(), e.expires_at)))
            });
            prop_assert_eq!(got, Ok(model.entries.get(k).cloned()), "entry {:?}", k);
        }
        let after = store.stats();
        prop_assert_eq!(
            (after.hits, after.misses, after.expired),
            (st.hits, st.misses, st.expired),
            "peeks counted something"
        );
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(384)
}

proptest! {
    // 384 cases each by default (about a second); PROPTEST_CASES=20000 for a deeper local run.
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Exact model under a key limit (0 = none): every eviction is predicted.
    #[test]
    fn store_matches_model_under_max_keys(
        shards in prop_oneof![Just(1usize), Just(2), Just(4), Just(16)],
        max_keys in 0usize..9,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut h = Harness::new(shards, max_keys, 0);
        for op in &ops {
            h.run(op)?;
            h.check(op)?;
        }
    }

    /// Under a memory limit the model follows the store's eviction count, and checks that the
    /// victims were the least recently used, that the bound holds after every write, and that
    /// writes larger than the whole limit are refused without side effects.
    #[test]
    fn store_matches_model_under_max_memory(
        shards in prop_oneof![Just(1usize), Just(2), Just(4), Just(16)],
        max_memory in 200usize..4000,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut h = Harness::new(shards, 0, max_memory);
        for op in &ops {
            h.run(op)?;
            h.follow_memory_evictions()?;
            h.check(op)?;
            let used = h.store.memory_used();
            prop_assert!(
                used <= max_memory || h.store.is_empty(),
                "memory {} over the limit {} with {} keys after {:?}",
                used, max_memory, h.store.len(), op
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent multi-key operations, checked for linearizability against a sequential model.
//
// A few threads run short operation lists at the same time, each operation stamped with a
// global sequence number when it is invoked and when it returns. The history is linearizable
// if some order of the operations (1) respects real time: one that returned before another was
// invoked comes first, and (2) replayed on a plain map gives every result that was observed.
// Histories are small, so a depth-first search over the candidate orders settles it.

/// An operation on the three keys `c0`..`c2`.
#[derive(Debug, Clone)]
enum COp {
    MSet(Vec<(u8, u8)>),
    MSetNx(Vec<(u8, u8)>),
    MGet(Vec<u8>),
    DelMany(Vec<u8>),
    Set(u8, u8),
    Get(u8),
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CRet {
    Unit,
    Bool(bool),
    Count(usize),
    Values(Vec<Option<u8>>),
}

#[derive(Debug, Clone)]
struct Event {
    op: COp,
    ret: CRet,
    start: u64,
    end: u64,
}

fn ckey(k: u8) -> Vec<u8> {
    format!("c{k}").into_bytes()
}

fn cop() -> impl Strategy<Value = COp> {
    let key = 0u8..3;
    let val = 0u8..4;
    let pairs = proptest::collection::vec((key.clone(), val.clone()), 1..4);
    let keys = proptest::collection::vec(key.clone(), 1..4);
    prop_oneof![
        3 => pairs.clone().prop_map(COp::MSet),
        2 => pairs.prop_map(COp::MSetNx),
        3 => keys.clone().prop_map(COp::MGet),
        1 => keys.prop_map(COp::DelMany),
        1 => (key.clone(), val).prop_map(|(k, v)| COp::Set(k, v)),
        1 => key.prop_map(COp::Get),
    ]
}

/// Runs one operation on the store through the multi-key API, as the commands do.
fn run_on_store(store: &Store, op: &COp) -> CRet {
    match op {
        COp::MSet(pairs) | COp::MSetNx(pairs) => {
            let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| ckey(*k)).collect();
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let nx = matches!(op, COp::MSetNx(_));
            store.multi(&refs, |t| {
                if nx && (0..refs.len()).any(|i| t.contains(i)) {
                    return CRet::Bool(false);
                }
                for (i, (_, v)) in pairs.iter().enumerate() {
                    t.set(i, &[*v], Ttl::Persist).unwrap();
                }
                if nx { CRet::Bool(true) } else { CRet::Unit }
            })
        }
        COp::MGet(ks) | COp::DelMany(ks) => {
            let keys: Vec<Vec<u8>> = ks.iter().map(|k| ckey(*k)).collect();
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let del = matches!(op, COp::DelMany(_));
            store.multi(&refs, |t| {
                if del {
                    CRet::Count((0..refs.len()).filter(|&i| t.delete(i)).count())
                } else {
                    CRet::Values((0..refs.len()).map(|i| t.get(i, |v| v[0])).collect())
                }
            })
        }
        COp::Set(k, v) => {
            store.set(&ckey(*k), &[*v], Ttl::Persist).unwrap();
            CRet::Unit
        }
        COp::Get(k) => CRet::Values(vec![store.get(&ckey(*k), |v| v[0])]),
    }
}

/// The same operation on the sequential model.
fn run_on_model(m: &mut [Option<u8>; 3], op: &COp) -> CRet {
    match op {
        COp::MSet(pairs) => {
            for (k, v) in pairs {
                m[*k as usize] = Some(*v);
            }
            CRet::Unit
        }
        COp::MSetNx(pairs) => {
            if pairs.iter().any(|(k, _)| m[*k as usize].is_some()) {
                return CRet::Bool(false);
            }
            for (k, v) in pairs {
                m[*k as usize] = Some(*v);
            }
            CRet::Bool(true)
        }
        COp::MGet(ks) => CRet::Values(ks.iter().map(|k| m[*k as usize]).collect()),
        COp::DelMany(ks) => CRet::Count(
            ks.iter()
                .filter(|k| m[**k as usize].take().is_some())
                .count(),
        ),
        COp::Set(k, v) => {
            m[*k as usize] = Some(*v);
            CRet::Unit
        }
        COp::Get(k) => CRet::Values(vec![m[*k as usize]]),
    }
}

/// Depth-first search for a linearization of per-thread histories.
fn linearizable(threads: &[Vec<Event>], next: &mut Vec<usize>, model: [Option<u8>; 3]) -> bool {
    if next.iter().zip(threads).all(|(&i, t)| i == t.len()) {
        return true;
    }
    // An operation may come next only if no other pending one returned before it started.
    let earliest_end = next
        .iter()
        .zip(threads)
        .filter_map(|(&i, t)| t.get(i).map(|e| e.end))
        .min()
        .unwrap();
    for th in 0..threads.len() {
        let Some(e) = threads[th].get(next[th]) else {
            continue;
        };
        if e.start > earliest_end {
            continue;
        }
        let mut m = model;
        if run_on_model(&mut m, &e.op) != e.ret {
            continue;
        }
        next[th] += 1;
        if linearizable(threads, next, m) {
            return true;
        }
        next[th] -= 1;
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, ..ProptestConfig::default() })]

    /// Three threads of multi-key operations over three keys on separate shards: every history
    /// must be explainable by some sequential order that respects real time.
    #[test]
    fn concurrent_multi_key_histories_are_linearizable(
        ops in proptest::collection::vec(proptest::collection::vec(cop(), 1..6), 3),
        rounds in 1usize..4,
    ) {
        for _ in 0..rounds {
            let store = Arc::new(Store::builder().shards(16).build());
            let clock = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let barrier = Arc::new(std::sync::Barrier::new(ops.len()));
            let handles: Vec<_> = ops
                .iter()
                .cloned()
                .map(|list| {
                    let (store, clock, barrier) = (store.clone(), clock.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        list.into_iter()
                            .map(|op| {
                                let start = clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                let ret = run_on_store(&store, &op);
                                let end = clock.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                Event { op, ret, start, end }
                            })
                            .collect::<Vec<Event>>()
                    })
                })
                .collect();
            let history: Vec<Vec<Event>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let mut next = vec![0; history.len()];
            prop_assert!(
                linearizable(&history, &mut next, [None; 3]),
                "not linearizable: {:#?}",
                history
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 8, ..ProptestConfig::default() })]

    /// Two hundred keys on one or two shards (a quarter of the cases: each is long): the index
    /// grows and shrinks through several resizes, each drained one group per insert, so lookups, deletes and expiries keep
    /// landing while a resize is half done. Checked like the others after every operation.
    #[test]
    fn store_matches_model_with_resizes_in_flight(
        shards in prop_oneof![Just(1usize), Just(2)],
        max_keys in prop_oneof![Just(0usize), Just(150)],
        ops in proptest::collection::vec(op_over(200), 200..500),
    ) {
        let mut h = Harness::new(shards, max_keys, 0);
        let (mut resizing_seen, mut most) = (false, 0);
        for op in &ops {
            h.run(op)?;
            h.check(op)?;
            resizing_seen |= h.store.memory_report().resizing > 0;
            most = most.max(h.model.entries.len());
        }
        // From 8 slots to 40 keys takes several resizes, each spanning at least two inserts.
        prop_assert!(resizing_seen || most < 40, "no operation ran mid-resize ({most} keys)");
    }
}
