//! Batch normalisation over `[N, C]` (1-d) and `[N, C, H, W]` (2-d) inputs,
//! with per-channel statistics over the `M = N·H·W` values of a channel.
//!
//! Training (batch statistics):
//!
//! ```text
//! μ = (1/M) Σ x            σ² = (1/M) Σ (x − μ)²        s = 1/√(σ² + ε)
//! x̂ = (x − μ)·s            y = γ·x̂ + β
//! ```
//!
//! and the unbiased variance `σ²·M/(M−1)` is returned for running
//! statistics. Its gradient, with `dy = ∂L/∂y`:
//!
//! ```text
//! ∂L/∂β = Σ dy             ∂L/∂γ = Σ dy·x̂
//! ∂L/∂x = γ·s · (dy − (1/M)·∂L/∂β − x̂·(1/M)·∂L/∂γ)
//! ```
//!
//! Evaluation uses fixed running statistics, so the map is affine in `x`:
//! `y = γ·(x − μ_run)/√(σ²_run + ε) + β`, `∂L/∂x = dy·γ/√(σ²_run + ε)`,
//! `∂L/∂γ = Σ dy·(x − μ_run)/√(σ²_run + ε)`, `∂L/∂β = Σ dy`.
//!
//! Per-channel sums are accumulated in f64, one channel per rayon task, and
//! the elementwise passes run one image per task; results do not depend on
//! the thread count.

use super::reduce;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// What the training backward pass needs from the forward pass.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BnSaved {
    /// Batch mean per channel.
    pub mean: Vec<f32>,
    /// `1/√(σ² + ε)` per channel (biased batch variance).
    pub inv_std: Vec<f32>,
}

/// Gradients of batch normalisation.
#[derive(Clone, Debug, PartialEq)]
pub struct BnGrads {
    /// `∂L/∂x`, shaped like `x`.
    pub x: Tensor,
    /// `∂L/∂γ`, `[C]`.
    pub gamma: Tensor,
    /// `∂L/∂β`, `[C]`.
    pub beta: Tensor,
}

/// Layout of the input: `n` images of `c` channels of `hw` values each.
#[derive(Clone, Copy, Debug)]
struct Layout {
    n: usize,
    c: usize,
    hw: usize,
}

impl Layout {
    /// Values per channel.
    fn m(&self) -> usize {
        self.n * self.hw
    }

    /// The values of channel `ch` in image `i`.
    fn plane<'a>(&self, data: &'a [f32], i: usize, ch: usize) -> &'a [f32] {
        let start = (i * self.c + ch) * self.hw;
        &data[start..start + self.hw]
    }

    /// `f(Σ over channel ch of g(a, b))` in f64 for two tensors of this layout.
    fn channel_sum(&self, a: &[f32], b: &[f32], ch: usize, g: impl Fn(f32, f32) -> f64) -> f64 {
        (0..self.n)
            .map(|i| reduce::sum_map2(self.plane(a, i, ch), self.plane(b, i, ch), &g))
            .sum()
    }

    /// Applies `f(channel, x, extra) -> y` elementwise, one image per task.
    fn map(&self, x: &[f32], extra: &[f32], f: impl Fn(usize, f32, f32) -> f32 + Sync) -> Vec<f32> {
        let mut y = vec![0.0f32; x.len()];
        let img = self.c * self.hw;
        if img == 0 {
            return y;
        }
        y.par_chunks_mut(img)
            .zip(x.par_chunks(img))
            .zip(extra.par_chunks(img))
            .for_each(|((yi, xi), ei)| {
                for ch in 0..self.c {
                    let r = ch * self.hw..(ch + 1) * self.hw;
                    for ((o, &v), &e) in yi[r.clone()].iter_mut().zip(&xi[r.clone()]).zip(&ei[r]) {
                        *o = f(ch, v, e);
                    }
                }
            });
        y
    }
}

/// Checks `x` (`[N, C]` or `[N, C, H, W]`) against `[C]` parameter tensors.
fn layout(op: &'static str, x: &Tensor, params: &[&Tensor]) -> Result<Layout> {
    let s = x.shape();
    let l = match s.len() {
        2 => Layout {
            n: s[0],
            c: s[1],
            hw: 1,
        },
        4 => Layout {
            n: s[0],
            c: s[1],
            hw: s[2] * s[3],
        },
        _ => {
            return Err(CoreError::BadShape {
                op,
                shape: s.to_vec(),
                reason: "expected [N, C] or [N, C, H, W]".into(),
            })
        }
    };
    for p in params {
        if p.shape() != [l.c] {
            return Err(CoreError::ShapeMismatch {
                op,
                lhs: s.to_vec(),
                rhs: p.shape().to_vec(),
            });
        }
    }
    Ok(l)
}

/// Checks a per-channel statistics slice against the channel count.
fn check_stats(op: &'static str, x: &Tensor, l: &Layout, stats: &[&[f32]]) -> Result<()> {
    for s in stats {
        if s.len() != l.c {
            return Err(CoreError::ShapeMismatch {
                op,
                lhs: x.shape().to_vec(),
                rhs: vec![s.len()],
            });
        }
    }
    Ok(())
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!("eps must be finite and non-negative, got {eps}"),
        });
    }
    Ok(())
}

/// Training-mode forward: normalises with batch statistics. Returns the
/// output, what backward needs, and the unbiased batch variance per channel
/// (for running statistics). Errors when a channel has fewer than 2 values.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<(Tensor, BnSaved, Vec<f32>)> {
    let op = "batch_norm_train";
    let l = layout(op, x, &[gamma, beta])?;
    check_eps(op, eps)?;
    let m = l.m();
    if m < 2 {
        return Err(CoreError::BadShape {
            op,
            shape: x.shape().to_vec(),
            reason: "training needs more than one value per channel".into(),
        });
    }
    let xd = x.data();
    // Two passes per channel: the mean, then the centred sum of squares.
    let stats: Vec<(f64, f64)> = (0..l.c)
        .into_par_iter()
        .map(|ch| {
            let mean = l.channel_sum(xd, xd, ch, |v, _| v as f64) / m as f64;
            let ss = l.channel_sum(xd, xd, ch, |v, _| (v as f64 - mean).powi(2));
            (mean, ss / m as f64)
        })
        .collect();
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let inv_std: Vec<f32> = stats
        .iter()
        .map(|s| (1.0 / (s.1 + eps as f64).sqrt()) as f32)
        .collect();
    let unbiased: Vec<f32> = stats
        .iter()
        .map(|s| (s.1 * m as f64 / (m - 1) as f64) as f32)
        .collect();
    let (g, b) = (gamma.data(), beta.data());
    let y = l.map(xd, xd, |ch, v, _| {
        g[ch] * ((v - mean[ch]) * inv_std[ch]) + b[ch]
    });
    Ok((
        Tensor::from_vec(x.shape().to_vec(), y)?,
        BnSaved { mean, inv_std },
        unbiased,
    ))
}

/// Evaluation-mode forward with running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Result<Tensor> {
    let op = "batch_norm_eval";
    let l = layout(op, x, &[gamma, beta])?;
    check_stats(op, x, &l, &[running_mean, running_var])?;
    check_eps(op, eps)?;
    let (g, b) = (gamma.data(), beta.data());
    // Folded into y = scale·x + shift per channel.
    let scale: Vec<f32> = (0..l.c)
        .map(|ch| g[ch] / (running_var[ch] + eps).sqrt())
        .collect();
    let shift: Vec<f32> = (0..l.c)
        .map(|ch| b[ch] - scale[ch] * running_mean[ch])
        .collect();
    let y = l.map(x.data(), x.data(), |ch, v, _| scale[ch] * v + shift[ch]);
    Tensor::from_vec(x.shape().to_vec(), y)
}

/// Gradient of [`batch_norm_train`] from `grad_out` (shaped like `x`).
pub fn batch_norm_train_backward(
    x: &Tensor,
    gamma: &Tensor,
    saved: &BnSaved,
    grad_out: &Tensor,
) -> Result<BnGrads> {
    let op = "batch_norm_train_backward";
    let l = layout(op, x, &[gamma])?;
    x.expect_same_shape(grad_out, op)?;
    check_stats(op, x, &l, &[&saved.mean, &saved.inv_std])?;
    let (xd, dy) = (x.data(), grad_out.data());
    let (mean, inv_std) = (&saved.mean, &saved.inv_std);
    let sums: Vec<(f64, f64)> = (0..l.c)
        .into_par_iter()
        .map(|ch| {
            let (mu, s) = (mean[ch] as f64, inv_std[ch] as f64);
            let sum_dy = l.channel_sum(dy, dy, ch, |d, _| d as f64);
            let sum_dy_xhat = l.channel_sum(dy, xd, ch, |d, v| d as f64 * (v as f64 - mu) * s);
            (sum_dy, sum_dy_xhat)
        })
        .collect();
    let m = l.m() as f32;
    let g = gamma.data();
    let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
    let dx = l.map(dy, xd, |ch, d, v| {
        let xhat = (v - mean[ch]) * inv_std[ch];
        g[ch] * inv_std[ch] * (d - dbeta[ch] / m - xhat * dgamma[ch] / m)
    });
    Ok(BnGrads {
        x: Tensor::from_vec(x.shape().to_vec(), dx)?,
        gamma: Tensor::from_vec([l.c], dgamma)?,
        beta: Tensor::from_vec([l.c], dbeta)?,
    })
}

/// Gradient of [`batch_norm_eval`] from `grad_out` (shaped like `x`).
pub fn batch_norm_eval_backward(
    gamma: &Tensor,
    running_var: &[f32],
    eps: f32,
    x: &Tensor,
    running_mean: &[f32],
    grad_out: &Tensor,
) -> Result<BnGrads> {
    let op = "batch_norm_eval_backward";
    let l = layout(op, x, &[gamma])?;
    x.expect_same_shape(grad_out, op)?;
    check_stats(op, x, &l, &[running_mean, running_var])?;
    check_eps(op, eps)?;
    let (xd, dy) = (x.data(), grad_out.data());
    let inv: Vec<f64> = running_var
        .iter()
        .map(|&v| 1.0 / (v as f64 + eps as f64).sqrt())
        .collect();
    let sums: Vec<(f64, f64)> = (0..l.c)
        .into_par_iter()
        .map(|ch| {
            let mu = running_mean[ch] as f64;
            let sum_dy = l.channel_sum(dy, dy, ch, |d, _| d as f64);
            let sum_dy_xhat =
                l.channel_sum(dy, xd, ch, |d, v| d as f64 * (v as f64 - mu) * inv[ch]);
            (sum_dy, sum_dy_xhat)
        })
        .collect();
    let scale: Vec<f32> = (0..l.c)
        .map(|ch| (gamma.data()[ch] as f64 * inv[ch]) as f32)
        .collect();
    let dx = l.map(dy, dy, |ch, d, _| d * scale[ch]);
    Ok(BnGrads {
        x: Tensor::from_vec(x.shape().to_vec(), dx)?,
        gamma: Tensor::from_vec([l.c], sums.iter().map(|s| s.1 as f32).collect())?,
        beta: Tensor::from_vec([l.c], sums.iter().map(|s| s.0 as f32).collect())?,
    })
}
