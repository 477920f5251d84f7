//! Copies of a function compiled for the widest vector unit present.
//!
//! The crate is built for the baseline x86-64 (SSE2), so a loop that the
//! compiler would vectorise runs four lanes wide unless it sits in a
//! function compiled with wider vector instructions enabled. [`dispatch!`]
//! defines such a function three times (AVX-512F, AVX2, baseline) and
//! picks one at run time. The copies perform the same operations in the
//! same order, so results do not depend on the CPU.

/// Runs `$body` (an expression over the arguments) through a copy
/// compiled for AVX-512F or AVX2 when present; the lanes and their order are
/// the same in every copy, so results do not depend on the CPU.
macro_rules! dispatch {
    ($(#[$m:meta])* $name:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $body:expr) => {
        $(#[$m])*
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $body
                }
                #[target_feature(enable = "avx2")]
                unsafe fn mid($($arg: $ty),*) -> $ret {
                    $body
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F was detected.
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 was detected.
                    return unsafe { mid($($arg),*) };
                }
            }
            $body
        }
    };
}

pub(crate) use dispatch;
