//! Allocator tuning for the programs that train and run models (the `dnalm` binary, the benches,
//! the Python extension); like [`float_mode`](crate::float_mode), theirs to call, never a
//! library's.

/// Tells mimalloc (the global allocator of `dnalm` and of the benches) to keep freed memory for
/// reuse instead of returning it to the kernel. A training step allocates and frees the same
/// large activation buffers every step; returned pages come back zeroed by the kernel on the next
/// touch, which a profile of the training bench put at 8% of a step (`clear_page_erms`). The
/// cost is that the process keeps its peak footprint until it exits.
///
/// Call it first thing in `main` (or a cdylib's initialiser); it does nothing unless mimalloc is
/// the global allocator of the calling binary or library.
pub fn retain_freed_memory() {
    // mimalloc's `mi_option_purge_delay` (v2 and v3 headers: option 15); -1 = never purge.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table; it is safe to
    // call at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1)
    };
}
