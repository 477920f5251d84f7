//! Per-shape choice between im2col + GEMM and the direct kernel of
//! `conv_flat.rs`, measured once per process.
//!
//! Which algorithm is faster depends on the channel counts, the image size,
//! the batch and the cache sizes, so a stride-1, single-group layer is run
//! both ways the first time its shape is seen (each three times, alternating, the
//! faster run of each counting) and the winner is recorded in a
//! process-wide table keyed by the pass, the batch size and the geometry.
//! Every later call with that shape uses the recorded algorithm, whatever
//! the thread pool it runs in, so results stay the same across calls and
//! thread counts within a process.
//!
//! Separate processes may measure differently and so pick different
//! algorithms, whose results differ in rounding. `PRUNE_CONV_ALGO=gemm` or
//! `=direct` skips the measurement and forces an algorithm wherever the
//! direct kernel applies (for comparisons, and for runs in separate
//! processes that must agree bit for bit).

use super::conv_flat::FlatGeom;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// A convolution algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algo {
    /// im2col + GEMM (`conv.rs`, `conv_backward.rs`).
    Gemm,
    /// Direct correlation over flattened padded planes (`conv_flat.rs`).
    Direct,
}

/// Which computation a choice is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pass {
    /// The output of the layer.
    Forward,
    /// The weight and bias gradients, and the input gradient when asked
    /// for. One choice covers both cases (measured on the first call), so
    /// the weight gradient does not depend on whether the input gradient
    /// is computed.
    Backward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    pass: Pass,
    n: usize,
    geom: FlatGeom,
}

fn table() -> &'static Mutex<HashMap<Key, Algo>> {
    static TABLE: OnceLock<Mutex<HashMap<Key, Algo>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The algorithm forced by `PRUNE_CONV_ALGO`, if any.
fn forced() -> Option<Algo> {
    static FORCED: OnceLock<Option<Algo>> = OnceLock::new();
    *FORCED.get_or_init(|| match std::env::var("PRUNE_CONV_ALGO").ok().as_deref() {
        Some("gemm") => Some(Algo::Gemm),
        Some("direct") => Some(Algo::Direct),
        _ => None,
    })
}

/// The algorithm for `pass` on a batch of `n` with geometry `geom`:
/// recorded, forced, or measured now by calling `trial` with each
/// algorithm (its results are discarded by the caller).
pub(crate) fn choose(pass: Pass, n: usize, geom: FlatGeom, mut trial: impl FnMut(Algo)) -> Algo {
    if let Some(a) = forced() {
        return a;
    }
    let key = Key { pass, n, geom };
    let lock = || table().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&a) = lock().get(&key) {
        return a;
    }
    let mut best = [f64::INFINITY; 2];
    for _ in 0..3 {
        for (i, a) in [Algo::Gemm, Algo::Direct].into_iter().enumerate() {
            let t = Instant::now();
            trial(a);
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    let pick = if best[1] < best[0] {
        Algo::Direct
    } else {
        Algo::Gemm
    };
    // A concurrent call may have recorded its own measurement first; the
    // first record wins so every call agrees.
    *lock().entry(key).or_insert(pick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A geometry no other test uses, so the table entry is this test's.
    fn geom(cin: usize) -> FlatGeom {
        FlatGeom {
            cin,
            cout: 3,
            h: 5,
            w: 5,
            kh: 3,
            kw: 3,
            ph: 1,
            pw: 1,
        }
    }

    #[test]
    fn measures_once_per_shape_and_pass_then_reuses_the_record() {
        if forced().is_some() {
            eprintln!("skipped: PRUNE_CONV_ALGO forces the algorithm");
            return;
        }
        let slow = Duration::from_millis(50);
        let mut calls = 0;
        let a = choose(Pass::Forward, 3, geom(1001), |a| {
            calls += 1;
            if a == Algo::Gemm {
                std::thread::sleep(slow);
            }
        });
        assert_eq!((a, calls), (Algo::Direct, 6));
        let again = choose(Pass::Forward, 3, geom(1001), |_| panic!("measured twice"));
        assert_eq!(again, Algo::Direct);
        // Another pass, batch size or shape is measured on its own.
        let b = choose(Pass::Backward, 3, geom(1001), |a| {
            if a == Algo::Direct {
                std::thread::sleep(slow);
            }
        });
        assert_eq!(b, Algo::Gemm);
        let mut other = 0;
        choose(Pass::Forward, 4, geom(1001), |_| other += 1);
        choose(Pass::Forward, 3, geom(1002), |_| other += 1);
        assert_eq!(other, 12);
    }
}
