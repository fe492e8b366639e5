//! Slab memory for item records: size-classed pages addressed by 24-bit ids.
//!
//! Every record lives in one chunk of one page. Small records share pages of up to 64 chunks of a
//! size class (2-byte steps up to 256 bytes, 8-byte steps to 1 KiB, ~6% steps to 8 KiB), so a
//! record wastes at most a few bytes to rounding and pays no allocator header. Larger records get
//! a page of their own, sized exactly. A page whose last chunk is freed goes back to the allocator
//! at once, so memory follows the working set instead of calcifying in one class.
//!
//! An id is `page << 6 | slot`: 24 bits, so the hash table stores 3 bytes per bucket and the LRU
//! links cost 3 bytes each. That caps a shard at 2^18 pages, i.e. 16M small items or 256K large
//! ones; [`Slab::alloc`] returns `None` past that and the shard evicts instead.

/// A 24-bit record address inside one shard's slab.
pub(crate) type Id = u32;

/// The "no record" id, used as the end of the LRU list.
pub(crate) const NIL: Id = 0x00FF_FFFF;

const SLOT_BITS: u32 = 6;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;
const SLOTS_PER_PAGE: usize = 1 << SLOT_BITS;
/// Page-table entries a shard can address (the 18 high bits of an id; the top id is [`NIL`]).
const MAX_PAGES: usize = 1 << (24 - SLOT_BITS);
/// Bytes a small-class page aims for; pages never exceed 64 chunks.
const PAGE_TARGET: usize = 16 * 1024;
/// Records above this size get a dedicated, exactly sized page.
pub(crate) const MAX_CHUNK: usize = 8 * 1024;
const HUGE: u16 = u16::MAX;
const FREE: u16 = u16::MAX - 1;

/// Chunk sizes of the slab classes, and a direct lookup for sizes up to 1 KiB.
struct SizeClasses {
    sizes: Vec<u32>,
    small: Vec<u16>,
}

impl SizeClasses {
    fn new() -> Self {
        let mut sizes = Vec::new();
        let mut s = 12u32;
        while s <= 256 {
            sizes.push(s);
            s += 2;
        }
        let mut s = 264u32;
        while s <= 1024 {
            sizes.push(s);
            s += 8;
        }
        let mut s = 1024f64;
        loop {
            s *= 1.0625;
            let size = ((s as u32) + 7) & !7;
            let size = size.min(MAX_CHUNK as u32);
            sizes.push(size);
            if size as usize >= MAX_CHUNK {
                break;
            }
        }
        let mut small = vec![0u16; 1025];
        let mut class = 0usize;
        for (size, slot) in small.iter_mut().enumerate() {
            while (sizes[class] as usize) < size {
                class += 1;
            }
            *slot = class as u16;
        }
        SizeClasses { sizes, small }
    }

    fn class_of(&self, size: usize) -> u16 {
        if size <= 1024 {
            self.small[size]
        } else if size > MAX_CHUNK {
            HUGE
        } else {
            self.sizes.partition_point(|&s| (s as usize) < size) as u16
        }
    }
}

fn classes() -> &'static SizeClasses {
    static CLASSES: std::sync::OnceLock<SizeClasses> = std::sync::OnceLock::new();
    CLASSES.get_or_init(SizeClasses::new)
}

/// The chunk size a record of `size` bytes occupies (what the store accounts for it).
pub(crate) fn chunk_size_for(size: usize) -> usize {
    let c = classes();
    match c.class_of(size) {
        HUGE => size,
        class => c.sizes[class as usize] as usize,
    }
}

fn slots_for(chunk: usize) -> usize {
    (PAGE_TARGET / chunk).clamp(1, SLOTS_PER_PAGE)
}

/// One page-table entry: a block of same-sized chunks and which of them hold records.
struct Page {
    data: Box<[u8]>,
    used: u64,
    class: u16,
    /// Links in the class's list of pages with a free chunk.
    next: u32,
    prev: u32,
}

const NO_PAGE: u32 = u32::MAX;

/// Bytes of bookkeeping per page (a page holds up to 64 small records).
#[cfg(test)]
pub(crate) const PAGE_DESCRIPTOR_SIZE: usize = std::mem::size_of::<Page>();

/// A shard's record memory.
pub(crate) struct Slab {
    pages: Vec<Page>,
    free_pages: Vec<u32>,
    /// Per class: first page with a free chunk, or `NO_PAGE`.
    partial: Vec<u32>,
    /// Bytes of page memory currently allocated (records plus free chunks in partial pages).
    page_bytes: usize,
}

impl Slab {
    pub(crate) fn new() -> Self {
        Slab {
            pages: Vec::new(),
            free_pages: Vec::new(),
            partial: vec![NO_PAGE; classes().sizes.len()],
            page_bytes: 0,
        }
    }

    /// Bytes of page memory held, including free chunks not yet reused.
    pub(crate) fn page_bytes(&self) -> usize {
        self.page_bytes
    }

    /// Bytes of bookkeeping outside the pages (the page table itself).
    pub(crate) fn overhead_bytes(&self) -> usize {
        self.pages.capacity() * std::mem::size_of::<Page>() + self.free_pages.capacity() * 4
    }

    /// Reserves a chunk for a record of `size` bytes; `None` when the id space is exhausted.
    pub(crate) fn alloc(&mut self, size: usize) -> Option<Id> {
        let c = classes();
        let class = c.class_of(size);
        if class == HUGE {
            let page = self.new_page(vec![0u8; size].into_boxed_slice(), HUGE)?;
            self.pages[page as usize].used = 1;
            return Some(page << SLOT_BITS);
        }
        let chunk = c.sizes[class as usize] as usize;
        let slots = slots_for(chunk);
        let mut page = self.partial[class as usize];
        if page == NO_PAGE {
            page = self.new_page(vec![0u8; chunk * slots].into_boxed_slice(), class)?;
            self.push_partial(class, page);
        }
        let p = &mut self.pages[page as usize];
        let slot = (!p.used).trailing_zeros();
        p.used |= 1 << slot;
        if p.used == full_mask(slots) {
            self.unlink_partial(class, page);
        }
        Some(page << SLOT_BITS | slot)
    }

    /// Returns a record's chunk to its page, and the page to the allocator once it is empty.
    pub(crate) fn free(&mut self, id: Id) {
        let (page, slot) = split(id);
        let p = &mut self.pages[page as usize];
        debug_assert!(p.used & (1 << slot) != 0, "double free of slab id {id:#x}");
        let class = p.class;
        if class == HUGE {
            self.release_page(page);
            return;
        }
        let slots = slots_for(classes().sizes[class as usize] as usize);
        let was_full = p.used == full_mask(slots);
        p.used &= !(1 << slot);
        if p.used == 0 {
            if !was_full {
                self.unlink_partial(class, page);
            }
            self.release_page(page);
        } else if was_full {
            self.push_partial(class, page);
        }
    }

    /// The chunk holding record `id` (may be longer than the record).
    #[inline]
    pub(crate) fn chunk(&self, id: Id) -> &[u8] {
        let (page, slot) = split(id);
        let p = &self.pages[page as usize];
        if p.class == HUGE {
            return &p.data;
        }
        let size = classes().sizes[p.class as usize] as usize;
        let start = slot as usize * size;
        &p.data[start..start + size]
    }

    /// Mutable access to the chunk holding record `id`.
    #[inline]
    pub(crate) fn chunk_mut(&mut self, id: Id) -> &mut [u8] {
        let (page, slot) = split(id);
        let p = &mut self.pages[page as usize];
        if p.class == HUGE {
            return &mut p.data;
        }
        let size = classes().sizes[p.class as usize] as usize;
        let start = slot as usize * size;
        &mut p.data[start..start + size]
    }

    /// Number of page-table entries; ids below `page_count() << 6` cover every record.
    pub(crate) fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The first record id at or after `from`, in address order; for cursors that walk the slab.
    pub(crate) fn next_used(&self, from: u32) -> Option<Id> {
        let (mut page, slot) = split(from);
        let mut mask = !0u64 << slot;
        while (page as usize) < self.pages.len() {
            let used = self.pages[page as usize].used & mask;
            if used != 0 {
                return Some(page << SLOT_BITS | used.trailing_zeros());
            }
            page += 1;
            mask = !0;
        }
        None
    }

    /// Whether `id` currently holds a record (for cursors that may hold stale ids).
    #[cfg(test)]
    pub(crate) fn is_used(&self, id: Id) -> bool {
        let (page, slot) = split(id);
        self.pages
            .get(page as usize)
            .is_some_and(|p| p.used & (1 << slot) != 0)
    }

    fn new_page(&mut self, data: Box<[u8]>, class: u16) -> Option<u32> {
        let page = Page {
            data,
            used: 0,
            class,
            next: NO_PAGE,
            prev: NO_PAGE,
        };
        self.page_bytes += page.data.len();
        if let Some(index) = self.free_pages.pop() {
            self.pages[index as usize] = page;
            return Some(index);
        }
        // The last page index would make ids that collide with NIL.
        if self.pages.len() >= MAX_PAGES - 1 {
            self.page_bytes -= page.data.len();
            return None;
        }
        self.pages.push(page);
        Some(self.pages.len() as u32 - 1)
    }

    fn release_page(&mut self, page: u32) {
        let p = &mut self.pages[page as usize];
        self.page_bytes -= p.data.len();
        p.data = Box::default();
        p.used = 0;
        p.class = FREE;
        if page as usize == self.pages.len() - 1 {
            self.pages.pop();
            // Trailing free entries shrink the table too, so id cursors stop early.
            while self.pages.last().is_some_and(|p| p.class == FREE) {
                let index = self.pages.len() as u32 - 1;
                self.pages.pop();
                if let Some(pos) = self.free_pages.iter().rposition(|&i| i == index) {
                    self.free_pages.swap_remove(pos);
                }
            }
        } else {
            self.free_pages.push(page);
        }
    }

    fn push_partial(&mut self, class: u16, page: u32) {
        let head = self.partial[class as usize];
        {
            let p = &mut self.pages[page as usize];
            p.next = head;
            p.prev = NO_PAGE;
        }
        if head != NO_PAGE {
            self.pages[head as usize].prev = page;
        }
        self.partial[class as usize] = page;
    }

    fn unlink_partial(&mut self, class: u16, page: u32) {
        let (next, prev) = {
            let p = &self.pages[page as usize];
            (p.next, p.prev)
        };
        if prev == NO_PAGE {
            self.partial[class as usize] = next;
        } else {
            self.pages[prev as usize].next = next;
        }
        if next != NO_PAGE {
            self.pages[next as usize].prev = prev;
        }
        let p = &mut self.pages[page as usize];
        p.next = NO_PAGE;
        p.prev = NO_PAGE;
    }
}

#[inline]
fn split(id: Id) -> (u32, u32) {
    (id >> SLOT_BITS, id & SLOT_MASK)
}

fn full_mask(slots: usize) -> u64 {
    if slots == 64 { !0 } else { (1u64 << slots) - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_sorted_and_cover_every_small_size() {
        let c = classes();
        assert!(c.sizes.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*c.sizes.last().unwrap() as usize, MAX_CHUNK);
        for size in 1..=MAX_CHUNK {
            let chunk = chunk_size_for(size);
            assert!(chunk >= size, "size {size} got chunk {chunk}");
            if size <= 256 {
                assert!(chunk - size <= 11, "size {size} wastes {}", chunk - size);
            } else {
                assert!((chunk - size) as f64 <= size as f64 * 0.07 + 8.0);
            }
        }
        assert_eq!(chunk_size_for(MAX_CHUNK + 1), MAX_CHUNK + 1);
        // The record of a 16-byte key and 64-byte value with a TTL is 98 bytes and wastes none.
        assert_eq!(chunk_size_for(98), 98);
    }

    #[test]
    fn alloc_free_reuses_chunks_and_releases_empty_pages() {
        let mut slab = Slab::new();
        let ids: Vec<Id> = (0..200).map(|_| slab.alloc(100).unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids are unique");
        for &id in &ids {
            assert_eq!(slab.chunk(id).len(), 100);
        }
        slab.chunk_mut(ids[5])[0] = 42;
        assert_eq!(slab.chunk(ids[5])[0], 42);
        let bytes = slab.page_bytes();
        assert!((200 * 100..=200 * 100 + 2 * PAGE_TARGET).contains(&bytes));
        for &id in &ids {
            slab.free(id);
        }
        assert_eq!(slab.page_bytes(), 0);
        assert_eq!(slab.page_count(), 0);
        assert_eq!(slab.next_used(0), None);
    }

    #[test]
    fn huge_records_get_exact_pages() {
        let mut slab = Slab::new();
        let small = slab.alloc(50).unwrap();
        let big = slab.alloc(100_000).unwrap();
        assert_eq!(slab.chunk(big).len(), 100_000);
        assert_eq!(slab.next_used(0), Some(small));
        assert_eq!(slab.next_used(small + 1), Some(big));
        slab.free(big);
        assert!(!slab.is_used(big));
        assert!(slab.is_used(small));
        slab.free(small);
        assert_eq!(slab.page_bytes(), 0);
    }

    #[test]
    fn partial_pages_are_refilled_before_new_ones() {
        let mut slab = Slab::new();
        let ids: Vec<Id> = (0..128).map(|_| slab.alloc(200).unwrap()).collect();
        let pages = slab.page_count();
        for id in ids.iter().step_by(2) {
            slab.free(*id);
        }
        for _ in 0..64 {
            slab.alloc(200).unwrap();
        }
        assert_eq!(slab.page_count(), pages);
    }
}
