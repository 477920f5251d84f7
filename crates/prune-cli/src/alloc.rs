//! Allocator settings of the binary.
//!
//! A training step frees its activations (megabytes each) and allocates
//! them again in the next step. With mimalloc's default purge delay of
//! 10 ms the freed pages go back to the kernel between steps and are
//! faulted in and zeroed again on the next one (`clear_page_erms` was 40 %
//! of a ResNet-20 training profile, `sys` a third of the CPU time). Never
//! purging keeps them in the process for reuse; the resident size stays at
//! its peak, which a training run reaches in its first step anyway.

use std::os::raw::{c_int, c_long};

extern "C" {
    // From the mimalloc library linked in by the `mimalloc` crate
    // (`mimalloc.h`: `void mi_option_set(mi_option_t option, long value)`).
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in `mimalloc.h` (v2 and v3).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Keeps freed memory in the process instead of returning it to the kernel.
pub fn keep_freed_pages() {
    // SAFETY: setting an option is thread-safe and valid at any time; -1
    // is the documented "never purge" value of this option.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
