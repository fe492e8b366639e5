//! Recency without a shared counter: LRU stamps read from a monotonic clock.
//!
//! Each shard keeps its own LRU list in exact access order. To pick the globally least recently
//! used key, shards compare the stamps of their list tails, so stamps must be comparable across
//! shards. A global `fetch_add` would give that, but it is one cache line every core writes on
//! every access. A monotonic clock gives the same order with no write at all: two accesses on
//! different shards that read the same microsecond are concurrent, and either order is a valid
//! LRU order. Inside a shard, stamps never go backwards (`max` with the shard's last stamp), so
//! each list stays sorted by stamp and its tail carries its oldest one.
//!
//! A stamp is 32 bits in the record, in ticks of 1.024 us. Two encodings share them:
//! - *fine*: ticks modulo 2^31 (top bit clear). Decodable while the record is younger than
//!   2^31 ticks (36.6 minutes).
//! - *coarse*: units of 2^20 ticks (~1.07 s) since the clock's start (top bit set), for records
//!   idle longer than [`COARSEN_AFTER`] ticks (9.2 minutes); the sweeper converts them,
//!   oldest first, long before fine stamps could become ambiguous.
//!
//! So the cross-shard order is exact to about a microsecond among keys used in the last nine
//! minutes and to about a second among keys idle longer; within a shard it is always exact.

use std::sync::atomic::{AtomicU64, Ordering};

const COARSE: u32 = 1 << 31;
const FINE_MASK: u64 = (1 << 31) - 1;
/// Coarse units are 2^20 us (1.048576 s).
const COARSE_SHIFT: u32 = 20;
/// Fine stamps older than this (2^29 ticks, ~9 minutes) are converted by the sweeper, leaving a
/// 26-minute margin before they could alias.
pub(crate) const COARSEN_AFTER: u64 = 1 << 29;

/// Where the monotonic ticker starts (2^40 ticks, ~13 days): records restored from a snapshot
/// get stamps in the past (their age at the save), and those need room below the present.
const HEADROOM: u64 = 1 << 40;

/// Where recency time comes from.
pub(crate) enum Ticker {
    /// Ticks of 1.024 us (nanoseconds >> 10: no division) of the monotonic clock since the store
    /// was built (read through the vDSO: no syscall).
    Monotonic(u64),
    /// A counter that advances by one per read: every access is strictly later than the one
    /// before, so single-threaded tests see the exact order whatever the machine's speed.
    Step(AtomicU64),
}

impl Ticker {
    /// Current recency time in microseconds (or steps). Never 0, so 0 can mean "empty".
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self {
            Ticker::Monotonic(start) => monotonic_ns().wrapping_sub(*start) / 1024 + HEADROOM,
            Ticker::Step(n) => n.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// A monotonic ticker starting now.
    pub(crate) fn monotonic() -> Ticker {
        Ticker::Monotonic(monotonic_ns())
    }
}

/// The monotonic clock in nanoseconds. `Instant::now().elapsed().as_micros()` does the same
/// read but then normalises a `Duration` and divides a u128: three times the instructions on
/// a path every access takes.
#[inline]
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one `timespec` through the pointer, which points at a local;
    // CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The stamp written for an access at time `t`.
#[inline]
pub(crate) fn fine(t: u64) -> u32 {
    (t & FINE_MASK) as u32
}

/// The coarse stamp for time `t`.
pub(crate) fn coarse(t: u64) -> u32 {
    COARSE | ((t >> COARSE_SHIFT) & FINE_MASK) as u32
}

/// Whether a stamp is still fine.
#[inline]
pub(crate) fn is_fine(s: u32) -> bool {
    s & COARSE == 0
}

/// The time a stamp stands for, given a reference time `now` no earlier than it (a shard's
/// latest stamp time): exact for fine stamps younger than 2^31 us, the start of the second for
/// coarse ones.
#[inline]
pub(crate) fn decode(s: u32, now: u64) -> u64 {
    if is_fine(s) {
        let age = (now.wrapping_sub(s as u64)) & FINE_MASK;
        now.saturating_sub(age)
    } else {
        ((s & !COARSE) as u64) << COARSE_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_stamps_decode_exactly_across_the_wrap() {
        for now in [5u64, 1 << 31, (1 << 31) + 7, (5 << 31) + 12345] {
            for age in [0u64, 1, 1000, (1 << 31) - 1] {
                if age > now {
                    continue;
                }
                assert_eq!(
                    decode(fine(now - age), now),
                    now - age,
                    "now {now} age {age}"
                );
            }
        }
    }

    #[test]
    fn coarse_stamps_order_before_fine_ones() {
        let now = 40u64 << 30;
        let old = now - COARSEN_AFTER - 5_000_000;
        let recent = now - 1000;
        assert!(decode(coarse(old), now) <= old);
        assert!(old - decode(coarse(old), now) < 1 << COARSE_SHIFT);
        assert!(decode(coarse(old), now) < decode(fine(recent), now));
        assert!(!is_fine(coarse(old)) && is_fine(fine(recent)));
    }

    #[test]
    fn step_ticker_is_strictly_increasing() {
        let t = Ticker::Step(AtomicU64::new(0));
        let a = t.now();
        assert!(t.now() > a && a > 0);
    }
}
