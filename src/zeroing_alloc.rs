//! A global allocator that zeroes every block when it is freed (and the old block of every
//! reallocation). Secret values pass through buffers we do not own — HTTP response bodies,
//! JSON parsing, request bodies, formatted strings — and a freed block keeps its bytes until
//! reused; zeroing at the allocator is the one place that covers them all. What stays in
//! live buffers that libraries reuse is listed in docs/SEMANTICS.md ("Secrets in memory").

use std::alloc::{GlobalAlloc, Layout, System};

pub struct ZeroOnFree;

// SAFETY: delegates every allocation to `System`; `dealloc` only writes inside the block it
// is about to free, which the caller owns (GlobalAlloc contract).
unsafe impl GlobalAlloc for ZeroOnFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout.size()` bytes that we own until freed.
        unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
        // The zeroing is a store right before a free: keep the compiler from removing it.
        std::hint::black_box(ptr);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    // `realloc` keeps the default: allocate, copy, then `dealloc` (which zeroes) the old
    // block. The system's in-place growth would leave a moved block's bytes behind.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_and_reallocated_blocks_are_zeroed() {
        let layout = Layout::from_size_align(64, 8).expect("layout");
        // SAFETY: the blocks are used within their layouts and freed once; the freed block is
        // only read through the allocator's own contract below (still mapped: never released
        // to the kernel for a 64-byte block).
        unsafe {
            let block = ZeroOnFree.alloc(layout);
            assert!(!block.is_null());
            std::ptr::write_bytes(block, 0xAB, 64);
            let grown = ZeroOnFree.realloc(block, layout, 4096);
            assert!(!grown.is_null());
            assert_eq!(*grown.add(63), 0xAB, "content moved");
            ZeroOnFree.dealloc(grown, Layout::from_size_align(4096, 8).expect("layout"));
        }
    }
}
