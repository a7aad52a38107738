//! The binary's global allocator: mimalloc, asked for a plain block whenever the layout needs
//! no more alignment than mimalloc gives every block of that size
//! (docs/performance.md#the-allocator).
//!
//! The `mimalloc` crate's allocator calls `mi_malloc_aligned` for every layout. Its fast path
//! only serves blocks up to 1 KiB whose free block happens to be aligned; everything larger
//! (a request's boxed future, an I/O buffer) takes its generic aligned path, about 165
//! instructions where `mi_malloc` takes a few dozen. A request through the HTTP/1.1 fast path
//! makes 11 allocations, 4 of them above 1 KiB. The standard library's own `System` allocator
//! makes the same choice for `malloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment mimalloc gives every block of at least this size (`MI_MAX_ALIGN_SIZE` on
/// 64-bit targets); a smaller block is aligned to its size's largest power of two.
const PLAIN_ALIGN: usize = 16;

/// mimalloc, through its plain entry points when they give the alignment asked for.
pub struct Allocator;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY (for each method): the calls forward the caller's pointer and layout unchanged to
// mimalloc, whose blocks from either entry point are freed by `mi_free`; a plain block is only
// asked for when mimalloc guarantees the layout's alignment for it (see `PLAIN_ALIGN`).
#[allow(unsafe_code)] // the `GlobalAlloc` interface is unsafe by definition
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = if plain(layout.align(), layout.size()) {
            unsafe { mi::mi_malloc(layout.size()) }
        } else {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) }
        };
        block.cast()
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = if plain(layout.align(), layout.size()) {
            unsafe { mi::mi_zalloc(layout.size()) }
        } else {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) }
        };
        block.cast()
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let block = if plain(layout.align(), new_size) {
            unsafe { mi::mi_realloc(ptr.cast::<c_void>(), new_size) }
        } else {
            unsafe { mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()) }
        };
        block.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout gets a block aligned as asked, through both entry points, and keeps its
    /// bytes across a reallocation (a plain block asked for a 32-byte alignment would fail).
    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_as_their_layouts_ask() {
        let allocator = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=2048).step_by(7).chain([4096, 65_536, 1 << 20]) {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: a non-zero layout; the block is written within its size and freed
                // with the layout it was (re)allocated with.
                unsafe {
                    let block = allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    block.write_bytes(0xa5, size);
                    let grown = allocator.realloc(block, layout, size * 2);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "realloc: size {size}, align {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xa5);
                    allocator.dealloc(grown, Layout::from_size_align_unchecked(size * 2, align));
                    let zeroed = allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert_eq!(*zeroed.add(size - 1), 0);
                    allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
