//! A convolution whose output `z` feeds a training-mode batch norm (then,
//! optionally, the residual add and ReLU of [`super::batchnorm_relu`]),
//! with the batch statistics taken from `z` while it is being written.
//!
//! Batch norm needs, per channel, `Σ z` and `Σ (z − μ)²` over the whole
//! batch before it can normalise any value, so on its own it reads `z` once
//! for the statistics and once more for the map. Its statistics are built
//! from the moments of each image plane (`Layout::plane_moments`: the
//! plane's sum and centred sum of squares, combined over the batch by
//! Chan's formula), and a plane's moments need only that plane. The
//! convolution hands each finished block of output to a pass (`post`)
//! while it is in cache; that pass forms the moments of every whole plane
//! in the block by the same function, so the statistics are the same to
//! the bit as the batch norm's own, and the pass over `z` that formed them
//! is gone. A block holding only part of a plane (a band of rows of one
//! plane, when a kernel splits planes across tasks) leaves that plane's
//! slot empty; those planes are read once more after the convolution.
//!
//! The slots are written from the convolution's threads, each plane's by
//! the one task that finishes it, and read after the convolution returns,
//! so the order of every sum is fixed by the shapes alone and the result
//! does not depend on the thread count.

use super::batchnorm::{train_coef, BnSaved};
use super::batchnorm_relu::{check_residual, relu_map};
use super::conv::{forward_with, Conv2dParams, PostFn};
use super::reduce;
use crate::error::Result;
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// The outputs of [`conv2d_batch_norm_train`].
#[derive(Clone, Debug)]
pub struct ConvBnOutput {
    /// The convolution's output `z` (the batch norm's input, which its
    /// backward pass reads).
    pub z: Tensor,
    /// The batch norm's output (after the residual add and ReLU when
    /// asked).
    pub y: Tensor,
    /// What the batch norm's backward pass needs.
    pub saved: BnSaved,
    /// The unbiased batch variance of `z` per channel.
    pub var: Vec<f32>,
}

/// Per-plane moments filled in by the convolution's output pass: `(Σ, M2)`
/// of plane `i` as the bits of two f64 values, NaN until written.
struct Slots {
    hw: usize,
    bits: Vec<[AtomicU64; 2]>,
}

impl Slots {
    fn new(planes: usize, hw: usize) -> Self {
        let nan = f64::NAN.to_bits();
        Self {
            hw,
            bits: (0..planes)
                .map(|_| [AtomicU64::new(nan), AtomicU64::new(nan)])
                .collect(),
        }
    }

    /// The moments of every whole plane inside `vals`, the output values
    /// from offset `at` on.
    fn record(&self, at: usize, vals: &[f32]) {
        let hw = self.hw;
        for p in at.div_ceil(hw)..(at + vals.len()) / hw {
            let (s, q) = reduce::plane_moments(&vals[p * hw - at..(p + 1) * hw - at]);
            let [a, b] = &self.bits[p];
            a.store(s.to_bits(), Ordering::Relaxed);
            b.store(q.to_bits(), Ordering::Relaxed);
        }
    }

    /// Every plane's moments, those left empty formed now from `z`.
    fn finish(self, z: &[f32]) -> Vec<(f64, f64)> {
        let hw = self.hw;
        let mut out: Vec<(f64, f64)> = self
            .bits
            .into_iter()
            .map(|[a, b]| {
                (
                    f64::from_bits(a.into_inner()),
                    f64::from_bits(b.into_inner()),
                )
            })
            .collect();
        out.par_iter_mut()
            .zip(z.par_chunks(hw))
            .filter(|(m, _)| m.0.is_nan())
            .for_each(|(m, plane)| *m = reduce::plane_moments(plane));
        out
    }
}

/// `bn(conv2d(x, w, bias))` with batch statistics, then
/// `relu(· + residual)` when `relu` is `Some(residual)`: the same values as
/// [`super::conv2d_forward`] followed by [`super::batch_norm_train`] or
/// [`super::batch_norm_relu_train`], bit for bit, with the statistics
/// formed while the convolution writes its output.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_batch_norm_train(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    gamma: &Tensor,
    beta: &Tensor,
    relu: Option<Option<&Tensor>>,
    eps: f32,
) -> Result<ConvBnOutput> {
    let op = "conv2d_batch_norm_train";
    let [n, cout, oh, ow] = super::conv2d_out_shape(x.shape(), w.shape(), p)?;
    let slots = Slots::new(n * cout, (oh * ow).max(1));
    let post: &PostFn = &|at, vals| slots.record(at, vals);
    let z = forward_with(x, w, bias, p, post, None)?;
    // `[N, C]`-shaped statistics (a 1×1 output) are formed by batch norm.
    let planes = (oh * ow > 1).then(|| slots.finish(z.data()));
    let (l, coef, saved, var) = train_coef(op, &z, gamma, beta, eps, planes.as_deref())?;
    let zd = z.data();
    let y = match relu {
        Some(residual) => {
            check_residual(op, &z, residual)?;
            relu_map(&l, zd, residual, &coef)
        }
        None => l.channel_map(zd, zd, zd, &coef.rows(), |v, _, _, [ka, _, kc]| v * ka + kc),
    };
    let y = Tensor::from_vec(z.shape().to_vec(), y)?;
    Ok(ConvBnOutput { z, y, saved, var })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Planes recorded whole keep the moments formed then; planes seen only
    /// in parts are formed from the output afterwards; either way each is
    /// `plane_moments` of the plane.
    #[test]
    fn slots_take_whole_planes_and_form_the_rest_after() {
        let hw = 10;
        let z: Vec<f32> = (0..6 * hw).map(|i| (i as f32 * 0.7).sin() + 0.1).collect();
        let slots = Slots::new(6, hw);
        slots.record(0, &z[..2 * hw]); // planes 0 and 1
        slots.record(2 * hw + 3, &z[2 * hw + 3..4 * hw + 5]); // plane 3 whole
        slots.record(5 * hw, &z[5 * hw..5 * hw + 4]); // part of plane 5
        let recorded: Vec<bool> = slots
            .bits
            .iter()
            .map(|[a, _]| !f64::from_bits(a.load(Ordering::Relaxed)).is_nan())
            .collect();
        assert_eq!(recorded, [true, true, false, true, false, false]);
        let got = slots.finish(&z);
        for (p, m) in got.iter().enumerate() {
            let want = reduce::plane_moments(&z[p * hw..(p + 1) * hw]);
            assert_eq!(
                (m.0.to_bits(), m.1.to_bits()),
                (want.0.to_bits(), want.1.to_bits()),
                "{p}"
            );
        }
    }
}
