//! The server's allocator: every heap block is zeroed before it is freed ([`ZeroOnFree`]).
//!
//! A value passes through buffers Coffer does not own: tonic's encode and decode buffers,
//! hyper's connection buffers, HTTP/2 frames, the AWS SDK's request body carrying a data key to
//! wrap. They are freed without being cleared, so freed memory would keep plaintext values and
//! data keys until reused (a core dump, a swap page or a memory read would show them). Zeroing
//! each block as it is freed clears every heap copy once its owner lets go, whoever owns it.
//!
//! Invariants: a block is zeroed over its whole requested size before the inner allocator gets
//! it back; a reallocation never leaves the old block behind uncleared (it copies into a new
//! block and frees the old one through the same path). Stack copies and memory that stays
//! allocated are not covered: types holding secrets still zeroize themselves.

use std::alloc::{GlobalAlloc, Layout};

/// Wraps an allocator so that it zeroes every block before freeing it.
pub struct ZeroOnFree<A>(pub A);

/// Clears `size` bytes at `ptr` so that the stores are not optimized away before the free.
///
/// # Safety
/// `ptr` is valid for `size` bytes of writes.
unsafe fn scrub(ptr: *mut u8, size: usize) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::write_bytes(ptr, 0, size) };
    // The block is about to be freed: tell the compiler it is still read, so the zeroing is
    // not removed as a dead store.
    std::hint::black_box(ptr);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

// SAFETY: allocation is delegated to `A`; the only additions write inside blocks the caller
// still owns (before handing them back) and copy between two live blocks.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ZeroOnFree<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of `layout` (the caller's contract).
        unsafe {
            scrub(ptr, layout.size());
            self.0.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Never the inner realloc: it may move the block and free the old one uncleared.
        // SAFETY: `new_size` with `layout`'s alignment is a valid layout (the caller's
        // contract); both blocks are live while copying.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.0.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An inner allocator that checks, at every free, that the block it gets back is all zero.
    #[derive(Default)]
    struct Checking {
        frees: AtomicUsize,
        dirty: AtomicUsize,
    }

    unsafe impl GlobalAlloc for Checking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            self.frees.fetch_add(1, Ordering::SeqCst);
            if bytes.iter().any(|b| *b != 0) {
                self.dirty.fetch_add(1, Ordering::SeqCst);
            }
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn every_block_is_zero_when_freed_and_reallocation_keeps_the_contents() {
        let a = ZeroOnFree(Checking::default());
        let layout = Layout::from_size_align(4096, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            std::ptr::write_bytes(p, 0xA5, layout.size());
            // Grow and shrink: the contents move along, every old block is freed cleared.
            let grown = a.realloc(p, layout, 10_000);
            assert!(std::slice::from_raw_parts(grown, 4096).iter().all(|b| *b == 0xA5));
            std::ptr::write_bytes(grown.add(4096), 0x5A, 10_000 - 4096);
            let big = Layout::from_size_align(10_000, 8).unwrap();
            let shrunk = a.realloc(grown, big, 100);
            assert!(std::slice::from_raw_parts(shrunk, 100).iter().all(|b| *b == 0xA5));
            a.dealloc(shrunk, Layout::from_size_align(100, 8).unwrap());
        }
        assert_eq!(a.0.frees.load(Ordering::SeqCst), 3);
        assert_eq!(
            a.0.dirty.load(Ordering::SeqCst),
            0,
            "a block was freed with its contents"
        );
        // The check itself sees a block freed dirty.
        unsafe {
            let p = a.0.alloc(layout);
            std::ptr::write_bytes(p, 0xA5, layout.size());
            a.0.dealloc(p, layout);
        }
        assert_eq!(a.0.dirty.load(Ordering::SeqCst), 1);
    }
}
