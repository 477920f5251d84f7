//! Elementwise passes over large tensors, split across threads: ReLU and
//! its backward, same-shape addition, and in-place accumulation (the
//! residual add of a ResNet block and the gradient sums of the tape).
//!
//! A pass over fewer than [`MIN_PARALLEL`] values runs on the calling
//! thread; larger ones are cut into chunks of [`CHUNK`] values, one rayon
//! task each. Every output value depends only on the inputs at the same
//! index, so the split does not change any result. Outputs are written
//! once into uninitialised memory (no zero-fill pass before the real one).

use super::dispatch::dispatch;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Values per task (128 KiB of `f32`, a few per L2).
const CHUNK: usize = 1 << 15;
/// Below this many values one thread does the whole pass.
const MIN_PARALLEL: usize = 1 << 16;

/// A vector of `len` values, chunk `[start, start + dst.len())` written by
/// `f(start, dst)`, which must write every element of `dst`.
fn build(len: usize, f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    if len < MIN_PARALLEL {
        let mut out = Vec::<f32>::with_capacity(len);
        f(0, &mut out.spare_capacity_mut()[..len]);
        // SAFETY: `f` wrote all `len` elements.
        unsafe { out.set_len(len) };
        return out;
    }
    build_chunks(len, CHUNK, |i, d| f(i * CHUNK, d))
}

/// A vector of `len` values written in parallel, chunk `i` (of `chunk`
/// values; the last may be shorter) by `f(i, dst)`, which must write every
/// element of `dst`. Each page is first touched by the thread that fills it.
pub(crate) fn build_chunks(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, d)| f(i, d));
    // SAFETY: the chunks cover the first `len` elements and `f` wrote every
    // element of its chunk (each caller zips its chunk with input slices at
    // least as long, or fills it).
    unsafe { out.set_len(len) };
    out
}

/// `len` zeros, written in parallel (a large output buffer is zeroed by
/// both cores instead of one, and its pages first touched where they are
/// then written).
pub fn zeros(len: usize) -> Vec<f32> {
    build(len, |_, d| d.fill(MaybeUninit::new(0.0)))
}

/// `max(x, 0)` elementwise.
pub fn relu(x: &[f32]) -> Vec<f32> {
    build(x.len(), |s, d| {
        let xs = &x[s..s + d.len()];
        for (o, &v) in d.iter_mut().zip(xs) {
            o.write(v.max(0.0));
        }
    })
}

/// The ReLU backward `g · [x > 0]` elementwise (`x` and `g` of equal length).
pub fn relu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.len(), "relu_backward: operand lengths");
    build(x.len(), |s, d| {
        let (xs, gs) = (&x[s..s + d.len()], &g[s..s + d.len()]);
        for ((o, &a), &gg) in d.iter_mut().zip(xs).zip(gs) {
            o.write(if a > 0.0 { gg } else { 0.0 });
        }
    })
}

dispatch!(
    /// `y = max(y, 0)` in place, on one thread (the pass after a
    /// convolution's output, while it is in cache).
    relu_in_place,
    (y: &mut [f32]) -> (),
    y.iter_mut().for_each(|v| *v = v.max(0.0))
);

dispatch!(
    /// `y = max(y + r, 0)` in place over the first `y.len()` values of `r`,
    /// on one thread (a residual block's add and ReLU after its second
    /// convolution).
    add_relu_in_place,
    (y: &mut [f32], r: &[f32]) -> (),
    for (v, &q) in y.iter_mut().zip(r) {
        *v = (*v + q).max(0.0);
    }
);

/// `a + b` elementwise (equal lengths).
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "add: operand lengths");
    build(a.len(), |s, d| {
        let (xa, xb) = (&a[s..s + d.len()], &b[s..s + d.len()]);
        for ((o, &u), &v) in d.iter_mut().zip(xa).zip(xb) {
            o.write(u + v);
        }
    })
}

/// `acc += x` elementwise (equal lengths).
pub fn add_assign(acc: &mut [f32], x: &[f32]) {
    assert_eq!(acc.len(), x.len(), "add_assign: operand lengths");
    let run = |(a, b): (&mut [f32], &[f32])| {
        for (u, &v) in a.iter_mut().zip(b) {
            *u += v;
        }
    };
    if acc.len() < MIN_PARALLEL {
        run((acc, x));
    } else {
        acc.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{rand_vec, rng};

    #[test]
    fn match_serial_loops_on_both_sides_of_the_split() {
        for len in [0, 1, 17, MIN_PARALLEL - 1, MIN_PARALLEL, 3 * CHUNK + 5] {
            let mut r = rng(len as u64);
            let (a, b) = (rand_vec(len, &mut r), rand_vec(len, &mut r));
            let want: Vec<f32> = a.iter().map(|v| v.max(0.0)).collect();
            assert_eq!(relu(&a), want, "relu {len}");
            let want: Vec<f32> = a
                .iter()
                .zip(&b)
                .map(|(&x, &g)| if x > 0.0 { g } else { 0.0 })
                .collect();
            assert_eq!(relu_backward(&a, &b), want, "relu_backward {len}");
            let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            assert_eq!(add(&a, &b), want, "add {len}");
            let mut acc = a.clone();
            add_assign(&mut acc, &b);
            assert_eq!(acc, want, "add_assign {len}");
            assert_eq!(zeros(len), vec![0.0; len], "zeros {len}");
        }
    }

    #[test]
    fn relu_gradient_is_zero_at_and_below_zero() {
        let x = [-1.0, 0.0, 2.0, -0.0];
        assert_eq!(relu(&x), vec![0.0, 0.0, 2.0, 0.0]);
        assert_eq!(relu_backward(&x, &[5.0; 4]), vec![0.0, 0.0, 5.0, 0.0]);
    }
}
