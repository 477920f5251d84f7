//! Shared helpers for the criterion benchmarks.

use mimalloc as _;
use std::os::raw::{c_int, c_long};

extern "C" {
    // From the mimalloc library the benchmarks link as their global
    // allocator (`mimalloc.h`: `void mi_option_set(mi_option_t, long)`).
    fn mi_option_set(option: c_int, value: c_long);
}

/// Keeps memory freed by one iteration in the process for the next one, as
/// the `prune-nn` binary does (see `prune-cli/src/alloc.rs`): mimalloc's
/// default returns it to the kernel after 10 ms, and every step then pays
/// for page faults and zeroing. Call only from a benchmark whose global
/// allocator is mimalloc.
pub fn keep_freed_pages() {
    /// `mi_option_purge_delay` in `mimalloc.h`.
    const MI_OPTION_PURGE_DELAY: c_int = 15;
    // SAFETY: setting an option is valid at any time; -1 means never purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
