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

use super::elementwise::build_chunks;
use super::reduce;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
pub(super) struct Layout {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) hw: usize,
}

impl Layout {
    /// Values per channel.
    pub(super) fn m(&self) -> usize {
        self.n * self.hw
    }

    /// Per-channel sums `Σ g(a, b, k[ch])` over every image, in f64, with
    /// `k` a per-channel constant. The sums of each image are formed in
    /// parallel (one task per image) and then added image by image, in
    /// order.
    fn channel_sums(
        &self,
        a: &[f32],
        b: &[f32],
        k: &[f64],
        g: impl Fn(f32, f32, f64) -> f64 + Sync,
    ) -> Vec<f64> {
        let (c, hw) = (self.c, self.hw);
        let img = c * hw;
        let mut total = vec![0.0f64; c];
        if img == 0 || self.n == 0 {
            return total;
        }
        let mut per_image = vec![0.0f64; self.n * c];
        per_image
            .par_chunks_mut(c)
            .zip(a.par_chunks(img).zip(b.par_chunks(img)))
            .for_each(|(sums, (ai, bi))| {
                if hw == 1 {
                    for (((o, &u), &v), &kc) in sums.iter_mut().zip(ai).zip(bi).zip(k) {
                        *o = g(u, v, kc);
                    }
                } else {
                    for (ch, (o, &kc)) in sums.iter_mut().zip(k).enumerate() {
                        let r = ch * hw..(ch + 1) * hw;
                        let (ai, bi) = (&ai[r.clone()], &bi[r]);
                        *o = reduce::sum_map3_pair(ai, bi, bi, |u, v, _| (g(u, v, kc), 0.0)).0;
                    }
                }
            });
        for sums in per_image.chunks(c) {
            for (t, v) in total.iter_mut().zip(sums) {
                *t += v;
            }
        }
        total
    }

    /// Per-plane `(Σ x, Σ (x − mean)²)` of every image plane (`[n, c]`,
    /// for `hw > 1`), each by [`reduce::plane_moments`] while in cache, in
    /// parallel over images; [`Layout::combine`] gives the channels'.
    pub(super) fn plane_moments(&self, x: &[f32]) -> Vec<(f64, f64)> {
        let (c, hw) = (self.c, self.hw);
        let img = c * hw;
        let mut per_image = vec![(0.0f64, 0.0f64); self.n * c];
        if img == 0 {
            return per_image;
        }
        per_image
            .par_chunks_mut(c)
            .zip(x.par_chunks(img))
            .for_each(|(out, xi)| {
                for (o, plane) in out.iter_mut().zip(xi.chunks(hw)) {
                    *o = reduce::plane_moments(plane);
                }
            });
        per_image
    }

    /// Per-channel `(Σ x, Σ (x − mean)²)` from the moments of every image
    /// plane (`[n, c]`, as [`Layout::plane_moments`] gives them), combined
    /// image by image, in order, with Chan's formula
    /// `M2 = Σ_i q_i + Σ_i hw·(m_i − μ)²` (`m_i` the plane mean, `μ` the
    /// channel mean).
    pub(super) fn combine(&self, per_image: &[(f64, f64)]) -> (Vec<f64>, Vec<f64>) {
        let (c, hw) = (self.c, self.hw);
        let mut sums = vec![0.0f64; c];
        if c == 0 {
            return (sums, Vec::new());
        }
        for img in per_image.chunks(c) {
            for (s, &(p, _)) in sums.iter_mut().zip(img) {
                *s += p;
            }
        }
        let m = self.m() as f64;
        let mut m2 = vec![0.0f64; c];
        for img in per_image.chunks(c) {
            for ((q, &(p, qi)), s) in m2.iter_mut().zip(img).zip(&sums) {
                let d = p / hw as f64 - s / m;
                *q += qi + hw as f64 * d * d;
            }
        }
        (sums, m2)
    }

    /// Per-channel `(Σ dy, Σ dy·(x − μ))` in one pass over `dy` and `x`.
    pub(super) fn grad_sums(&self, dy: &[f32], x: &[f32], mu: &[f64]) -> (Vec<f64>, Vec<f64>) {
        if self.hw == 1 {
            let a = self.channel_sums(dy, dy, mu, |d, _, _| d as f64);
            let b = self.channel_sums(dy, x, mu, |d, v, mu| d as f64 * (v as f64 - mu));
            return (a, b);
        }
        self.pair_sums(dy, x, |ch, d, v| reduce::grad_sums(d, v, mu[ch]))
    }

    /// `f(ch, a_plane, b_plane)` on every image's plane pair of channel
    /// `ch` (images in parallel), added image by image ([`Layout::add_images`]).
    pub(super) fn pair_sums(
        &self,
        a: &[f32],
        b: &[f32],
        f: impl Fn(usize, &[f32], &[f32]) -> (f64, f64) + Sync,
    ) -> (Vec<f64>, Vec<f64>) {
        let (c, hw) = (self.c, self.hw);
        let img = c * hw;
        let mut per_image = vec![(0.0f64, 0.0f64); self.n * c];
        if img > 0 {
            per_image
                .par_chunks_mut(c)
                .zip(a.par_chunks(img).zip(b.par_chunks(img)))
                .for_each(|(out, (ai, bi))| {
                    for (ch, o) in out.iter_mut().enumerate() {
                        let r = ch * hw..(ch + 1) * hw;
                        *o = f(ch, &ai[r.clone()], &bi[r]);
                    }
                });
        }
        self.add_images(&per_image)
    }

    /// Per-channel totals of per-image, per-channel pairs (`[n, c]`),
    /// added image by image, in order.
    pub(super) fn add_images(&self, per_image: &[(f64, f64)]) -> (Vec<f64>, Vec<f64>) {
        let c = self.c;
        let (mut a, mut b) = (vec![0.0f64; c], vec![0.0f64; c]);
        if c == 0 {
            return (a, b);
        }
        for img in per_image.chunks(c) {
            for ((sa, sb), &(p, q)) in a.iter_mut().zip(b.iter_mut()).zip(img) {
                *sa += p;
                *sb += q;
            }
        }
        (a, b)
    }

    /// `out = u·A[ch] + v·B[ch] + C[ch]` elementwise, one image per task,
    /// written once into a fresh buffer (no zero-fill first).
    fn affine(&self, u: &[f32], v: &[f32], coef: &Affine) -> Vec<f32> {
        self.channel_map(u, v, u, &coef.rows(), |p, q, _, [ka, kb, kc]| {
            p * ka + q * kb + kc
        })
    }

    /// `out = f(u, v, w, K[ch])` elementwise over three inputs of `x`'s
    /// layout (`u`, `v`, `w` of equal length) with per-channel coefficients
    /// `K` (`coef`, one per channel), one image per task, written once into
    /// a fresh buffer (no zero-fill first). `f` is inlined into the loop, so
    /// every caller gets its own vectorised pass.
    pub(super) fn channel_map<K, F>(
        &self,
        u: &[f32],
        v: &[f32],
        w: &[f32],
        coef: &[K],
        f: F,
    ) -> Vec<f32>
    where
        K: Copy + Sync,
        F: Fn(f32, f32, f32, K) -> f32 + Sync,
    {
        let (c, hw) = (self.c, self.hw);
        let img = c * hw;
        if img == 0 {
            return vec![0.0; u.len()];
        }
        build_chunks(u.len(), img, |i, oi| {
            let r = i * img..(i + 1) * img;
            let (u, v, w) = (&u[r.clone()], &v[r.clone()], &w[r]);
            image_map(&ImageIn { hw, u, v, w, coef }, &f, oi);
        })
    }
}

/// One image of [`Layout::channel_map`]: its three inputs, `hw` values
/// per channel, and the per-channel coefficients.
struct ImageIn<'a, K> {
    hw: usize,
    u: &'a [f32],
    v: &'a [f32],
    w: &'a [f32],
    coef: &'a [K],
}

/// `out = f(u, v, w, K[ch])` over one image, through a copy compiled for
/// the widest vector unit present (the crate's baseline is SSE2); every
/// copy performs the same operations per value.
fn image_map<K: Copy, F: Fn(f32, f32, f32, K) -> f32>(
    a: &ImageIn<'_, K>,
    f: &F,
    out: &mut [MaybeUninit<f32>],
) {
    #[inline(always)]
    fn body<K: Copy, F: Fn(f32, f32, f32, K) -> f32>(
        a: &ImageIn<'_, K>,
        f: &F,
        out: &mut [MaybeUninit<f32>],
    ) {
        if a.hw == 1 {
            let vals = a.u.iter().zip(a.v).zip(a.w);
            for (o, (((&p, &q), &s), &k)) in out.iter_mut().zip(vals.zip(a.coef)) {
                o.write(f(p, q, s, k));
            }
            return;
        }
        for (ch, &k) in a.coef.iter().enumerate() {
            let r = ch * a.hw..(ch + 1) * a.hw;
            let vals = a.u[r.clone()]
                .iter()
                .zip(&a.v[r.clone()])
                .zip(&a.w[r.clone()]);
            for (o, ((&p, &q), &s)) in out[r].iter_mut().zip(vals) {
                o.write(f(p, q, s, k));
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide<K: Copy, F: Fn(f32, f32, f32, K) -> f32>(
            a: &ImageIn<'_, K>,
            f: &F,
            out: &mut [MaybeUninit<f32>],
        ) {
            body(a, f, out)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected.
            return unsafe { wide(a, f, out) };
        }
    }
    body(a, f, out)
}

/// Per-channel coefficients of an elementwise map `u·a + v·b + c`.
pub(super) struct Affine {
    pub(super) a: Vec<f32>,
    pub(super) b: Vec<f32>,
    pub(super) c: Vec<f32>,
}

impl Affine {
    /// `[a, b, c]` per channel, as [`Layout::channel_map`] takes them.
    pub(super) fn rows(&self) -> Vec<[f32; 3]> {
        self.a
            .iter()
            .zip(&self.b)
            .zip(&self.c)
            .map(|((&a, &b), &c)| [a, b, c])
            .collect()
    }
}

/// Checks `x` (`[N, C]` or `[N, C, H, W]`) against `[C]` parameter tensors.
pub(super) fn layout(op: &'static str, x: &Tensor, params: &[&Tensor]) -> Result<Layout> {
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
pub(super) fn check_stats(
    op: &'static str,
    x: &Tensor,
    l: &Layout,
    stats: &[&[f32]],
) -> Result<()> {
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

pub(super) fn check_eps(op: &'static str, eps: f32) -> Result<()> {
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
    let (l, coef, saved, unbiased) = train_coef("batch_norm_train", x, gamma, beta, eps, None)?;
    let xd = x.data();
    let y = l.channel_map(xd, xd, xd, &coef.rows(), |p, _, _, [ka, _, kc]| p * ka + kc);
    Ok((Tensor::from_vec(x.shape().to_vec(), y)?, saved, unbiased))
}

/// The batch statistics of `x` and the per-channel map they give,
/// `y = x·a + c` (`b` unused): the layout, the coefficients, what the
/// backward needs and the unbiased variance. `planes`, when given, are the
/// moments of every image plane of `x` as [`Layout::plane_moments`] forms
/// them (taken while `x` was written, `conv_bn.rs`), so `x` is not read.
pub(super) fn train_coef(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
    planes: Option<&[(f64, f64)]>,
) -> Result<(Layout, Affine, BnSaved, Vec<f32>)> {
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
    let (means, ss) = if l.hw == 1 {
        // Two passes: the mean, then the centred sum of squares.
        let zeros = vec![0.0f64; l.c];
        let sums = l.channel_sums(xd, xd, &zeros, |v, _, _| v as f64);
        let means: Vec<f64> = sums.iter().map(|s| s / m as f64).collect();
        let ss = l.channel_sums(xd, xd, &means, |v, _, mu| (v as f64 - mu).powi(2));
        (means, ss)
    } else {
        let (sums, ss) = match planes {
            Some(p) if p.len() == l.n * l.c => l.combine(p),
            Some(p) => {
                return Err(CoreError::ShapeMismatch {
                    op,
                    lhs: x.shape().to_vec(),
                    rhs: vec![p.len()],
                })
            }
            None => l.combine(&l.plane_moments(xd)),
        };
        (sums.iter().map(|s| s / m as f64).collect(), ss)
    };
    let var: Vec<f64> = ss.iter().map(|q| q / m as f64).collect();
    let mean: Vec<f32> = means.iter().map(|&mu| mu as f32).collect();
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps as f64).sqrt()).collect();
    let inv_std: Vec<f32> = inv.iter().map(|&s| s as f32).collect();
    let unbiased: Vec<f32> = var
        .iter()
        .map(|v| (v * m as f64 / (m - 1) as f64) as f32)
        .collect();
    let saved = BnSaved { mean, inv_std };
    let coef = train_map(gamma, beta, &saved);
    Ok((l, coef, saved, unbiased))
}

/// The per-channel map of training mode, `y = x·a + c` (`b` unused):
/// `y = γ·(x − μ)·s + β = x·(γ·s) + (β − μ·γ·s)`, from the saved (f32)
/// statistics in f64, each coefficient rounded once. The backward pass
/// recomputes it bit for bit from the same values (`batchnorm_relu.rs`
/// reads `[y > 0]` from `x` that way).
pub(super) fn train_map(gamma: &Tensor, beta: &Tensor, saved: &BnSaved) -> Affine {
    let (g, b) = (gamma.data(), beta.data());
    let scale: Vec<f64> = g
        .iter()
        .zip(&saved.inv_std)
        .map(|(&g, &s)| g as f64 * s as f64)
        .collect();
    Affine {
        a: scale.iter().map(|&s| s as f32).collect(),
        b: vec![0.0; scale.len()],
        c: b.iter()
            .zip(&saved.mean)
            .zip(&scale)
            .map(|((&b, &m), &s)| (b as f64 - m as f64 * s) as f32)
            .collect(),
    }
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
    let (rm, rv) = (running_mean, running_var);
    let (l, coef) = eval_coef("batch_norm_eval", x, gamma, beta, rm, rv, eps)?;
    let xd = x.data();
    let y = l.channel_map(xd, xd, xd, &coef.rows(), |p, _, _, [ka, _, kc]| p * ka + kc);
    Tensor::from_vec(x.shape().to_vec(), y)
}

/// The per-channel map of evaluation mode, `y = x·a + c` (`b` unused),
/// with `a = γ/√(σ²_run + ε)` and `c = β − a·μ_run`.
pub(super) fn eval_coef(
    op: &'static str,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Result<(Layout, Affine)> {
    let l = layout(op, x, &[gamma, beta])?;
    check_stats(op, x, &l, &[running_mean, running_var])?;
    check_eps(op, eps)?;
    let (g, b) = (gamma.data(), beta.data());
    let scale: Vec<f64> = (0..l.c)
        .map(|ch| g[ch] as f64 / (running_var[ch] as f64 + eps as f64).sqrt())
        .collect();
    let coef = Affine {
        a: scale.iter().map(|&s| s as f32).collect(),
        b: vec![0.0; l.c],
        c: (0..l.c)
            .map(|ch| (b[ch] as f64 - scale[ch] * running_mean[ch] as f64) as f32)
            .collect(),
    };
    Ok((l, coef))
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
    let mu: Vec<f64> = saved.mean.iter().map(|&v| v as f64).collect();
    let sums = l.grad_sums(grad_out.data(), x.data(), &mu);
    train_backward_from(&l, x, gamma, saved, grad_out.data(), sums)
}

/// [`batch_norm_train_backward`] given the per-channel sums `Σ dy` and
/// `Σ dy·(x − μ)`.
pub(super) fn train_backward_from(
    l: &Layout,
    x: &Tensor,
    gamma: &Tensor,
    saved: &BnSaved,
    dy: &[f32],
    (sum_dy, sum_dy_dev): (Vec<f64>, Vec<f64>),
) -> Result<BnGrads> {
    let (coef, dgamma, dbeta) = train_grad_coef(l, gamma, saved, &sum_dy, &sum_dy_dev);
    let dx = l.affine(dy, x.data(), &coef);
    Ok(BnGrads {
        x: Tensor::from_vec(x.shape().to_vec(), dx)?,
        gamma: Tensor::from_vec([l.c], dgamma)?,
        beta: Tensor::from_vec([l.c], dbeta)?,
    })
}

/// From the per-channel sums `Σ dy` and `Σ dy·(x − μ)`: the map
/// `dx = dy·a + x·b + c`, `∂L/∂γ` and `∂L/∂β`.
pub(super) fn train_grad_coef(
    l: &Layout,
    gamma: &Tensor,
    saved: &BnSaved,
    sum_dy: &[f64],
    sum_dy_dev: &[f64],
) -> (Affine, Vec<f32>, Vec<f32>) {
    let mu: Vec<f64> = saved.mean.iter().map(|&v| v as f64).collect();
    let inv: Vec<f64> = saved.inv_std.iter().map(|&v| v as f64).collect();
    let m = l.m() as f64;
    let g = gamma.data();
    let dbeta: Vec<f32> = sum_dy.iter().map(|&s| s as f32).collect();
    let dgamma: Vec<f64> = sum_dy_dev.iter().zip(&inv).map(|(s, i)| s * i).collect();
    // dx = γ·s·(dy − Σdy/M − x̂·Σ(dy·x̂)/M) with x̂ = (x − μ)·s
    //    = dy·(γ·s) + x·(−γ·s²·Σ(dy·x̂)/M) + γ·s·(μ·s·Σ(dy·x̂) − Σdy)/M
    let coef = Affine {
        a: (0..l.c).map(|ch| (g[ch] as f64 * inv[ch]) as f32).collect(),
        b: (0..l.c)
            .map(|ch| (-(g[ch] as f64) * inv[ch] * inv[ch] * dgamma[ch] / m) as f32)
            .collect(),
        c: (0..l.c)
            .map(|ch| {
                (g[ch] as f64 * inv[ch] * (mu[ch] * inv[ch] * dgamma[ch] - sum_dy[ch]) / m) as f32
            })
            .collect(),
    };
    let dgamma: Vec<f32> = dgamma.iter().map(|&v| v as f32).collect();
    (coef, dgamma, dbeta)
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
    let mu: Vec<f64> = running_mean.iter().map(|&v| v as f64).collect();
    let (sum_dy, sum_dy_dev) = l.grad_sums(dy, xd, &mu);
    let coef = Affine {
        a: (0..l.c)
            .map(|ch| (gamma.data()[ch] as f64 * inv[ch]) as f32)
            .collect(),
        b: vec![0.0; l.c],
        c: vec![0.0; l.c],
    };
    let dx = l.affine(dy, dy, &coef);
    let sums: Vec<(f64, f64)> = (0..l.c)
        .map(|ch| (sum_dy[ch], sum_dy_dev[ch] * inv[ch]))
        .collect();
    Ok(BnGrads {
        x: Tensor::from_vec(x.shape().to_vec(), dx)?,
        gamma: Tensor::from_vec([l.c], sums.iter().map(|s| s.1 as f32).collect())?,
        beta: Tensor::from_vec([l.c], sums.iter().map(|s| s.0 as f32).collect())?,
    })
}
