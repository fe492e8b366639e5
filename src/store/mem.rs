//! Memory the store gets straight from the kernel, so that what it frees really leaves the
//! process: fixed-size segments carved from large `mmap` reservations and handed out by one
//! [`Pool`] shared by all shards, and exact-size mappings for records too big for a segment.
//!
//! The general-purpose allocator cannot promise this: glibc keeps freed heap pages, and after a
//! workload shifts from small to large values the old pages stay resident (RSS nearly doubled
//! in our shift test). Here a free segment beyond a small resident reserve is given back with
//! `madvise(MADV_DONTNEED)`: its address range stays reserved, its pages leave RSS at once, and
//! reusing it later costs only page faults. Segments are untyped (any record size fits), so
//! memory moves between value sizes without the starvation of per-size-class pages.
//!
//! This is the only file in the store with `unsafe`: raw mappings and the slices over them.

use std::ptr::NonNull;

use parking_lot::Mutex;

/// Bytes in one segment. Small enough that one partly filled head segment per shard and the
/// cleaner's garbage allowance stay a small fraction of a modest memory cap; large enough that
/// segment bookkeeping is negligible (one descriptor per ~2,600 typical records).
pub(crate) const SEG_SIZE: usize = 256 * 1024;
/// Segments reserved per `mmap` call (64 MiB of address space, no memory until touched), so the
/// process keeps few mappings however large the store grows.
const SEGS_PER_REGION: usize = 256;
/// The kernel's page size as far as rounding and `madvise` are concerned.
pub(crate) const PAGE: usize = 4096;

/// One segment's memory, owned by exactly one shard (or the pool) at a time.
pub(crate) struct Segment(NonNull<u8>);

// SAFETY: a `Segment` is a unique handle to a private anonymous mapping; whoever owns the
// handle is the only one that reads or writes the memory, so moving it to another thread is no
// different from moving a `Box<[u8]>`.
unsafe impl Send for Segment {}

impl Segment {
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the pointer addresses SEG_SIZE bytes of a live mapping (regions are never
        // unmapped while a segment of theirs exists: the pool owns them for the life of the
        // process), and `&self` rules out a concurrent `&mut`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), SEG_SIZE) }
    }

    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_ptr(), SEG_SIZE) }
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.0.as_ptr()
    }
}

/// Copies `len` bytes between two different segments (the cleaner moving a record), without
/// needing a shared and a unique borrow of the shard's segment table at once.
pub(crate) fn copy_between(
    from: &Segment,
    from_off: usize,
    to: &mut Segment,
    to_off: usize,
    len: usize,
) {
    assert!(from_off + len <= SEG_SIZE && to_off + len <= SEG_SIZE);
    assert!(
        from.0 != to.0,
        "a record is never moved within its own segment"
    );
    // SAFETY: both ranges lie inside their segments (checked above), the segments are distinct
    // mappings (so the ranges cannot overlap), and we hold `&` to one and `&mut` to the other.
    unsafe {
        std::ptr::copy_nonoverlapping(
            from.0.as_ptr().add(from_off),
            to.0.as_ptr().add(to_off),
            len,
        );
    }
}

/// An exact-size private mapping for one record larger than a segment can usefully hold.
pub(crate) struct HugeAlloc {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a unique handle to its own mapping, like `Segment`.
unsafe impl Send for HugeAlloc {}

impl HugeAlloc {
    /// Maps at least `len` bytes (rounded up to whole pages); `None` if the kernel refuses.
    pub(crate) fn new(len: usize) -> Option<HugeAlloc> {
        let len = len.div_ceil(PAGE) * PAGE;
        let ptr = map(len)?;
        Some(HugeAlloc { ptr, len })
    }

    /// Bytes mapped (what this record costs the process).
    pub(crate) fn mapped(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of a live mapping owned by `self`; `&self` excludes writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with `&mut self` making this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugeAlloc {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with exactly this address and length and is
        // unmapped once, here; no slice over it can outlive `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A zero-filled array of `T` in its own mapping, for the hash index's large arrays: freeing it
/// returns the pages to the kernel immediately, whatever the allocator's thresholds.
pub(crate) struct MapArray<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    bytes: usize,
}

// SAFETY: unique ownership of the mapping, as for `Segment`; `T: Copy + Send` data only.
unsafe impl<T: Copy + Send> Send for MapArray<T> {}

impl<T: Copy> MapArray<T> {
    /// `len` elements, every byte zero; panics if the kernel refuses the mapping (the same
    /// contract as the global allocator, whose failure aborts).
    pub(crate) fn zeroed(len: usize) -> MapArray<T> {
        let bytes = (len * std::mem::size_of::<T>()).max(1).div_ceil(PAGE) * PAGE;
        let ptr = map(bytes).expect("mmap for the hash index failed: out of memory");
        MapArray {
            ptr: ptr.cast(),
            len,
            bytes,
        }
    }

    /// Bytes mapped.
    pub(crate) fn mapped(&self) -> usize {
        self.bytes
    }
}

impl<T: Copy> std::ops::Deref for MapArray<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements of a live, suitably aligned (page-aligned) mapping; every bit
        // pattern is a valid `T` for the integer types this is used with (u8, u32).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for MapArray<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, with `&mut self` making this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for MapArray<T> {
    fn drop(&mut self) {
        // SAFETY: created by `map` with this address and byte length; unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.bytes);
        }
    }
}

/// `mmap` of `len` bytes of private anonymous read-write memory, reserved lazily by the kernel.
fn map(len: usize) -> Option<NonNull<u8>> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
    // existing memory; the result is checked before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// Where free segments wait: shared by every shard, locked once per segment handed out or back
/// (every ~2,600 typical writes), never per request.
pub(crate) struct Pool {
    inner: Mutex<PoolInner>,
    /// Free segments kept resident for quick reuse; the rest are released to the kernel.
    reserve: usize,
}

struct PoolInner {
    /// Free and still resident (recently used) segments.
    warm: Vec<Segment>,
    /// Free segments whose pages were given back; reusing one faults its pages in again.
    cold: Vec<Segment>,
    /// Address space reserved so far, in segments.
    reserved: usize,
}

/// What the pool holds, for INFO and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Free segments still resident.
    pub warm: usize,
    /// Free segments returned to the kernel.
    pub cold: usize,
    /// Segments of address space reserved in total (in use or free).
    pub reserved: usize,
}

impl Pool {
    /// A pool that keeps at most `reserve` free segments resident.
    pub(crate) fn new(reserve: usize) -> Pool {
        Pool {
            inner: Mutex::new(PoolInner {
                warm: Vec::new(),
                cold: Vec::new(),
                reserved: 0,
            }),
            reserve,
        }
    }

    /// A segment for a shard to fill; `None` only if the kernel refuses more address space.
    /// Its contents are unspecified (a reused segment keeps old bytes): the log writes a record
    /// before anything reads it.
    pub(crate) fn take(&self) -> Option<Segment> {
        let mut p = self.inner.lock();
        if let Some(s) = p.warm.pop().or_else(|| p.cold.pop()) {
            return Some(s);
        }
        let base = map(SEG_SIZE * SEGS_PER_REGION)?;
        p.reserved += SEGS_PER_REGION;
        // Region memory is never unmapped (segments return here), so splitting it into
        // independent segment handles is sound.
        for i in (1..SEGS_PER_REGION).rev() {
            // SAFETY: `i * SEG_SIZE` is inside the region just mapped.
            let ptr = unsafe { NonNull::new_unchecked(base.as_ptr().add(i * SEG_SIZE)) };
            p.cold.push(Segment(ptr));
        }
        Some(Segment(base))
    }

    /// Takes a segment back; beyond the resident reserve its pages go back to the kernel.
    pub(crate) fn give(&self, seg: Segment) {
        let mut p = self.inner.lock();
        if p.warm.len() < self.reserve {
            p.warm.push(seg);
            return;
        }
        drop(p);
        // Outside the lock: the syscall is the slow part and needs no shared state.
        // SAFETY: the range is exactly one segment we own; MADV_DONTNEED on private anonymous
        // memory only zeroes it (it is never read before being rewritten).
        unsafe {
            libc::madvise(seg.0.as_ptr().cast(), SEG_SIZE, libc::MADV_DONTNEED);
        }
        self.inner.lock().cold.push(seg);
    }

    /// Counts for INFO.
    pub(crate) fn stats(&self) -> PoolStats {
        let p = self.inner.lock();
        PoolStats {
            warm: p.warm.len(),
            cold: p.cold.len(),
            reserved: p.reserved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_reused_and_released_beyond_the_reserve() {
        let pool = Pool::new(1);
        let mut a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        a.bytes_mut()[SEG_SIZE - 1] = 7;
        assert_eq!(a.bytes()[SEG_SIZE - 1], 7);
        pool.give(a);
        pool.give(b);
        let s = pool.stats();
        assert_eq!((s.warm, s.reserved), (1, SEGS_PER_REGION));
        assert_eq!(s.cold, SEGS_PER_REGION - 1);
        // The warm one comes back first.
        let again = pool.take().unwrap();
        assert_eq!(pool.stats().warm, 0);
        pool.give(again);
    }

    #[test]
    fn huge_allocations_round_to_pages() {
        let mut h = HugeAlloc::new(PAGE + 1).unwrap();
        assert_eq!(h.mapped(), 2 * PAGE);
        h.bytes_mut()[PAGE] = 1;
        assert_eq!(h.bytes()[PAGE], 1);
    }

    #[test]
    fn map_arrays_start_zeroed() {
        let mut a: MapArray<u32> = MapArray::zeroed(5000);
        assert!(a.iter().all(|&x| x == 0));
        a[4999] = 9;
        assert_eq!(a[4999], 9);
        assert_eq!(a.mapped(), 5 * PAGE);
    }
}
