//! Batch norm fused with the ReLU after it, optionally with the residual
//! add of a ResNet block in between, in one pass over memory:
//!
//! ```text
//! y = max(γ·x̂ + β + r, 0)      x̂ = (x − μ)·s, batch or running statistics of x alone
//! ```
//!
//! With `d = g·[y > 0]` (the ReLU's derivative read from the output: `y > 0`
//! exactly where its input was positive), the residual's gradient is `d` and
//! the gradients of `x`, `γ` and `β` are batch norm's for the output
//! gradient `d` (formulas in [`super::batchnorm`]).
//!
//! Every value is computed by the same operations in the same order as the
//! unfused chain `batch_norm → add → relu` and its backward, so the results
//! are bit-identical to it (tested). What changes is the memory traffic:
//!
//! * forward: one output written instead of three (the batch-norm output
//!   and the sum are never materialised, nor kept on the tape);
//! * backward without a residual: `d` is never written, nor `y` read: the
//!   ReLU's mask is recomputed from `x` as the forward formed `y`
//!   (`x·a + c > 0`, exactly where `y > 0`), so the per-channel sums
//!   ([`super::reduce::masked_grad_sums`]) and the `dx` pass each read `g`
//!   and `x` only;
//! * backward with a residual: `d` is the residual's gradient, so it is
//!   written once and the batch-norm backward reads it (the add node's two
//!   gradient copies are gone).

use super::batchnorm::{
    batch_norm_eval_backward, batch_norm_train_backward, check_stats, eval_coef, layout,
    train_backward_from, train_coef, train_grad_coef, train_map, Affine, BnGrads, BnSaved, Layout,
};
use super::conv::assume_written;
use super::dispatch::dispatch;
use super::elementwise::relu_backward;
use super::reduce;
use crate::backend::Residual;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Checks that the residual, when present, has `x`'s shape.
pub(super) fn check_residual(
    op: &'static str,
    x: &Tensor,
    residual: Option<&Tensor>,
) -> Result<()> {
    match residual {
        Some(r) if r.shape() != x.shape() => Err(CoreError::ShapeMismatch {
            op,
            lhs: x.shape().to_vec(),
            rhs: r.shape().to_vec(),
        }),
        _ => Ok(()),
    }
}

/// `max(x·a + c + r, 0)` per channel (`b` unused), `r` optional.
pub(super) fn relu_map(
    l: &Layout,
    x: &[f32],
    residual: Option<&Tensor>,
    coef: &Affine,
) -> Vec<f32> {
    match residual {
        None => l.channel_map(x, x, x, &coef.rows(), |p, _, _, [ka, _, kc]| {
            (p * ka + kc).max(0.0)
        }),
        Some(r) => l.channel_map(x, r.data(), x, &coef.rows(), |p, q, _, [ka, _, kc]| {
            (p * ka + kc + q).max(0.0)
        }),
    }
}

/// Training-mode `relu(batch_norm(x) + residual)`. Returns the output, what
/// the backward needs, and the unbiased batch variance of `x` per channel
/// (for running statistics), like [`super::batch_norm_train`].
pub fn batch_norm_relu_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    residual: Option<&Tensor>,
    eps: f32,
) -> Result<(Tensor, BnSaved, Vec<f32>)> {
    let op = "batch_norm_relu_train";
    check_residual(op, x, residual)?;
    let (l, coef, saved, unbiased) = train_coef(op, x, gamma, beta, eps, None)?;
    let y = relu_map(&l, x.data(), residual, &coef);
    Ok((Tensor::from_vec(x.shape().to_vec(), y)?, saved, unbiased))
}

/// Evaluation-mode `relu(batch_norm(x) + residual)` with running statistics.
pub fn batch_norm_relu_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    residual: Option<&Tensor>,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Result<Tensor> {
    let op = "batch_norm_relu_eval";
    check_residual(op, x, residual)?;
    let (l, coef) = eval_coef(op, x, gamma, beta, running_mean, running_var, eps)?;
    let y = relu_map(&l, x.data(), residual, &coef);
    Tensor::from_vec(x.shape().to_vec(), y)
}

/// Checks the shapes shared by both backward passes.
fn check_backward(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    y: &Tensor,
    g: &Tensor,
) -> Result<Layout> {
    let l = layout(op, x, &[gamma])?;
    x.expect_same_shape(y, op)?;
    x.expect_same_shape(g, op)?;
    Ok(l)
}

/// The masked gradient `d = g·[y > 0]`, written out.
fn masked(x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(x.shape().to_vec(), relu_backward(y.data(), g.data()))
}

/// Gradient of [`batch_norm_relu_train`] from its output `y` and the output
/// gradient `grad_out`: batch norm's gradients, and the residual's when
/// `residual` is [`Residual::Grad`].
///
/// Without a residual, `[y > 0]` is recomputed from `x` as the forward
/// formed `y` (`x·a + c > 0` with the coefficients of [`train_map`]), so the
/// two passes over the gradient read `g` and `x` but not `y`.
pub fn batch_norm_relu_train_backward(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    saved: &BnSaved,
    y: &Tensor,
    grad_out: &Tensor,
    residual: Residual,
) -> Result<(BnGrads, Option<Tensor>)> {
    let op = "batch_norm_relu_train_backward";
    let l = check_backward(op, x, gamma, y, grad_out)?;
    check_stats(op, x, &l, &[&saved.mean, &saved.inv_std])?;
    if beta.shape() != [l.c] {
        return Err(CoreError::ShapeMismatch {
            op,
            lhs: x.shape().to_vec(),
            rhs: beta.shape().to_vec(),
        });
    }
    let need_residual = residual == Residual::Grad;
    if l.hw == 1 {
        // `[N, C]`: the unfused backward on the materialised `d`.
        let d = masked(x, y, grad_out)?;
        let grads = batch_norm_train_backward(x, gamma, saved, &d)?;
        return Ok((grads, need_residual.then_some(d)));
    }
    let mu: Vec<f64> = saved.mean.iter().map(|&v| v as f64).collect();
    if residual != Residual::Absent {
        // `d` is wanted as a tensor (the residual's gradient) and `y`
        // depends on the residual: `d` written from `y`, each plane's sums
        // taken while it is in cache.
        let (d, sums) = masked_with_sums(&l, y.data(), grad_out.data(), x.data(), &mu);
        let d = Tensor::from_vec(x.shape().to_vec(), d)?;
        let grads = train_backward_from(&l, x, gamma, saved, d.data(), sums)?;
        return Ok((grads, need_residual.then_some(d)));
    }
    let (xd, gd) = (x.data(), grad_out.data());
    let fwd = train_map(gamma, beta, saved);
    let (sum_d, sum_d_dev) = masked_grad_sums(&l, gd, xd, &mu, &fwd);
    let (coef, dgamma, dbeta) = train_grad_coef(&l, gamma, saved, &sum_d, &sum_d_dev);
    // dx = d·a + x·b + c with d = g·[x·a_fwd + c_fwd > 0]
    let k: Vec<[f32; 5]> = coef
        .rows()
        .iter()
        .zip(fwd.a.iter().zip(&fwd.c))
        .map(|(&[ka, kb, kc], (&fa, &fc))| [ka, kb, kc, fa, fc])
        .collect();
    let dx = l.channel_map(gd, xd, xd, &k, |gg, q, _, [ka, kb, kc, fa, fc]| {
        let d = if q * fa + fc > 0.0 { gg } else { 0.0 };
        d * ka + q * kb + kc
    });
    Ok((
        BnGrads {
            x: Tensor::from_vec(x.shape().to_vec(), dx)?,
            gamma: Tensor::from_vec([l.c], dgamma)?,
            beta: Tensor::from_vec([l.c], dbeta)?,
        },
        None,
    ))
}

/// Gradient of [`batch_norm_relu_eval`] (the affine map of evaluation mode
/// applied to the materialised `d`).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_relu_eval_backward(
    x: &Tensor,
    gamma: &Tensor,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
    y: &Tensor,
    grad_out: &Tensor,
    need_residual: bool,
) -> Result<(BnGrads, Option<Tensor>)> {
    check_backward("batch_norm_relu_eval_backward", x, gamma, y, grad_out)?;
    let d = masked(x, y, grad_out)?;
    let grads = batch_norm_eval_backward(gamma, running_var, eps, x, running_mean, &d)?;
    Ok((grads, need_residual.then_some(d)))
}

/// Per-channel `(Σ d, Σ d·(x − μ))` with `d = g·[x·a + c > 0]` (`a`, `c`
/// the forward's map), for `hw > 1`: the per-image, per-plane sums of
/// `Layout::grad_sums` on the materialised `d`, added image by image in the
/// same order, so the totals are the same.
fn masked_grad_sums(
    l: &Layout,
    g: &[f32],
    x: &[f32],
    mu: &[f64],
    fwd: &Affine,
) -> (Vec<f64>, Vec<f64>) {
    l.pair_sums(g, x, |ch, gi, xi| {
        reduce::masked_grad_sums(gi, xi, mu[ch], fwd.a[ch], fwd.c[ch])
    })
}

dispatch!(
    /// `d = g·[y > 0]` over one plane, written into `out`.
    mask_plane,
    (y: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>]) -> (),
    for ((o, &a), &gg) in out.iter_mut().zip(y).zip(g) {
        o.write(if a > 0.0 { gg } else { 0.0 });
    }
);

/// The masked gradient `d = g·[y > 0]` (as [`relu_backward`] forms it) and
/// the per-channel `(Σ d, Σ d·(x − μ))`, for `hw > 1`: each plane of `d`
/// written and then summed by [`reduce::grad_sums`] while it is in cache,
/// the planes' sums added image by image, in order — the sums
/// `Layout::grad_sums` takes of the written `d`, without reading it again.
fn masked_with_sums(
    l: &Layout,
    y: &[f32],
    g: &[f32],
    x: &[f32],
    mu: &[f64],
) -> (Vec<f32>, (Vec<f64>, Vec<f64>)) {
    let (c, hw) = (l.c, l.hw);
    let (img, len) = (c * hw, y.len());
    let mut d = Vec::<f32>::with_capacity(len);
    let mut per_image = vec![(0.0f64, 0.0f64); l.n * c];
    if img > 0 {
        d.spare_capacity_mut()[..len]
            .par_chunks_mut(img)
            .zip(per_image.par_chunks_mut(c))
            .enumerate()
            .for_each(|(i, (di, out))| {
                let r = i * img..(i + 1) * img;
                let (yi, gi, xi) = (&y[r.clone()], &g[r.clone()], &x[r]);
                for (ch, o) in out.iter_mut().enumerate() {
                    let p = ch * hw..(ch + 1) * hw;
                    let dp = &mut di[p.clone()];
                    mask_plane(&yi[p.clone()], &gi[p.clone()], dp);
                    // SAFETY: `mask_plane` wrote every value of `dp`.
                    let dp = unsafe { assume_written(dp) };
                    *o = reduce::grad_sums(dp, &xi[p], mu[ch]);
                }
            });
    }
    // SAFETY: the planes above wrote all `len = n·img` values (none when
    // `img` is zero).
    unsafe { d.set_len(len) };
    (d, l.add_images(&per_image))
}
