//! Allocator tuning for the programs that train and run models (the `dnalm` binary, the benches,
//! the Python extension); like [`float_mode`](crate::float_mode), theirs to call, never a
//! library's.

/// mimalloc's `mi_option_purge_delay` (v2 and v3 headers: option 15), in milliseconds; -1 =
/// never purge.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table; it is safe to
    // call at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, ms)
    };
}

/// Tells mimalloc (the global allocator of `dnalm` and of the benches) to keep freed memory for
/// reuse instead of returning it to the kernel. A training step allocates and frees the same
/// large activation buffers every step; returned pages come back zeroed by the kernel on the next
/// touch, which a profile of the training bench put at 8% of a step (`clear_page_erms`). The
/// cost is that the process keeps its peak footprint until it exits, and more: kept memory
/// that a later buffer of another size cannot reuse stays resident beside it.
///
/// Call it first thing in `main` (or a cdylib's initialiser); it does nothing unless mimalloc is
/// the global allocator of the calling binary or library.
pub fn retain_freed_memory() {
    set_purge_delay(-1);
}

/// Undoes [`retain_freed_memory`]: freed memory goes back to the kernel once it has been unused
/// for `after` (mimalloc's own default is 10 ms). For runs where memory, not speed, is the limit:
/// training with activation checkpointing, whose recomputed buffers come in many sizes that
/// retained memory cannot all serve. Safe to call at any time; it does nothing unless mimalloc is
/// the global allocator.
pub fn return_freed_memory(after: std::time::Duration) {
    set_purge_delay(std::ffi::c_long::try_from(after.as_millis()).unwrap_or(std::ffi::c_long::MAX));
}
