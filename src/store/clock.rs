//! Where the store gets the time: the system clock in production, a hand-driven one in tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// A source of wall-clock time in unix milliseconds. Deadlines are absolute, as in Redis, so
/// `EXPIREAT`/`PXAT` and relative TTLs share one representation.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the unix epoch.
    fn now_ms(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        // `SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()` is the same read plus a
        // u128 division; this is on the path of every access to a key with a TTL.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one `timespec` through the pointer, which points at a
        // local; CLOCK_REALTIME always exists.
        unsafe {
            libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts);
        }
        (ts.tv_sec.max(0) as u64) * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
}

/// A clock that only moves when told to, so TTL tests are exact and instant.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock stopped at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock(AtomicU64::new(start_ms))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
