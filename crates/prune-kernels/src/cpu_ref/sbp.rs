//! Structured Bayesian Pruning noise (Neklyudov et al. 2017): the reparameterized sampler,
//! its noise streams and the layer-level forward / backward, in double precision.
//!
//! This module and [`super::sbp_closed`] are the one SBP math of the workspace: training
//! (through prune-core), the compiler's folding, and the CPU reference of the CUDA kernels
//! in `kernels/sbp_math.cuh` and `kernels/sbp_noise.cu` all call it.
//!
//! # The sampler
//! `log θ ~ N(μ, σ²)` truncated to `[a, b] = [-20, 0]`; μ and log σ are first clamped to
//! `[-20, 5]` (a clamped parameter gets derivative zero). With `α = (a-μ)/σ`,
//! `β = (b-μ)/σ` and `ε ~ U(0, 1)`:
//!
//! ```text
//! w = (1-ε)·Φ(α) + ε·Φ(β),           t = Φ⁻¹(clip(w, 1e-5, 1-1e-5))       (α + β ≤ 0)
//! w = (1-ε)·Φ(-α) + ε·Φ(-β),         t = -Φ⁻¹(clip(w, 1e-5, 1-1e-5))      (α + β > 0)
//! θ = exp(clip(μ + σ·t, a, b))
//! ```
//! Both forms are sums of positive terms; the second (the mirrored upper-tail branch) is
//! used when the interval lies mostly above the mode, where `Φ(·)` would be close to 1 and
//! the quantile would lose the digits of `1 - w`. Both give the same `t` in exact
//! arithmetic, and the same derivatives
//!
//! ```text
//! ∂t/∂μ     = -[(1-ε)·φ(α) + ε·φ(β)] / (σ·φ(t))
//! ∂t/∂log σ = -[(1-ε)·α·φ(α) + ε·β·φ(β)] / φ(t)
//! ∂θ/∂μ = θ·(1 + σ·∂t/∂μ),  ∂θ/∂log σ = θ·σ·(t + ∂t/∂log σ).
//! ```
//! An active clip contributes derivative zero: on `w` it zeroes the `∂t` terms (the direct
//! dependence of `μ + σt` on μ and σ remains), on `log θ` it zeroes both, on a parameter
//! that parameter's.
//!
//! # Noise streams
//! `ε` of channel `c` (and example `n` in per-example mode) is the first word of
//! Philox4x32-10 with key `(seed_lo, seed_hi)` and counter
//! `(c, n, step, 2·layer + mode)` (`n = 0` in per-channel mode; mode 0 per channel,
//! 1 per example), mapped to `(⌊bits/2⁹⌋ + ½)·2⁻²³` in (0, 1). Distinct layers and distinct steps read
//! disjoint counters, so no two gates share noise and no step replays another's.

use super::philox::{philox4x32_10, uniform_open};
pub use super::sbp_closed::*;
use super::special::{norm_cdf, norm_pdf, norm_ppf};
use crate::error::KernelError;
use crate::shapes::{NoiseMode, SbpShape};

/// Lower truncation bound `a` of log θ.
pub const A: f64 = LOG_THETA_MIN;
/// Upper truncation bound `b` of log θ.
pub const B: f64 = LOG_THETA_MAX;
/// Clip of `w` before the normal quantile.
pub const U_CLIP: f64 = 1e-5;

/// Where the noise of one gate at one training step comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoiseStream {
    /// The run's seed (the Philox key).
    pub seed: u64,
    /// Which gate (below 2³¹).
    pub layer: u32,
    /// Which optimizer step.
    pub step: u32,
}

impl NoiseStream {
    /// The stream of gate `layer` at step `step` of a run seeded with `seed`.
    pub fn new(seed: u64, layer: u32, step: u32) -> NoiseStream {
        NoiseStream { seed, layer, step }
    }

    /// The 4th counter word: `2·layer + mode`.
    pub fn layer_mode_word(&self, mode: NoiseMode) -> u32 {
        (self.layer << 1) | mode.counter_tag()
    }
}

impl From<u64> for NoiseStream {
    /// Layer 0 at step 0 of `seed`.
    fn from(seed: u64) -> NoiseStream {
        NoiseStream::new(seed, 0, 0)
    }
}

/// `ε` of `channel` (and `example` in per-example mode) in `stream`; see the module
/// documentation.
pub fn noise_eps(
    channel: u32,
    example: u32,
    mode: NoiseMode,
    stream: impl Into<NoiseStream>,
) -> f64 {
    let s = stream.into();
    let example = match mode {
        NoiseMode::PerChannel => 0,
        NoiseMode::PerExample => example,
    };
    let r = philox4x32_10(
        [channel, example, s.step, s.layer_mode_word(mode)],
        [s.seed as u32, (s.seed >> 32) as u32],
    );
    uniform_open(r[0])
}

/// A noise sample and its pathwise derivatives at fixed `ε`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// θ ∈ [e^a, e^b].
    pub theta: f64,
    /// ∂θ/∂μ.
    pub dtheta_dmu: f64,
    /// ∂θ/∂log σ.
    pub dtheta_dlog_sigma: f64,
}

/// Whether [`sample`] takes the mirrored upper-tail branch for these parameters.
pub fn mirrored(mu: f64, log_sigma: f64) -> bool {
    let s = standardize(mu, log_sigma);
    s.alpha + s.beta > 0.0
}

/// θ from the truncated log-normal given the uniform variate `eps`, with derivatives.
pub fn sample(mu: f64, log_sigma: f64, eps: f64) -> Sample {
    let s = standardize(mu, log_sigma);
    let (alpha, beta, sigma) = (s.alpha, s.beta, s.sigma);
    let mirror = alpha + beta > 0.0;
    let w = if mirror {
        (1.0 - eps) * norm_cdf(-alpha) + eps * norm_cdf(-beta)
    } else {
        (1.0 - eps) * norm_cdf(alpha) + eps * norm_cdf(beta)
    };
    let w_passes = (U_CLIP..=1.0 - U_CLIP).contains(&w);
    let wc = w.clamp(U_CLIP, 1.0 - U_CLIP);
    let t = if mirror { -norm_ppf(wc) } else { norm_ppf(wc) };
    let x = s.mu.value + sigma * t;
    if !(A..=B).contains(&x) {
        return Sample {
            theta: x.clamp(A, B).exp(),
            dtheta_dmu: 0.0,
            dtheta_dlog_sigma: 0.0,
        };
    }
    let theta = x.exp();
    let (dt_dmu, dt_dls) = if w_passes {
        let (phi_a, phi_b, phi_t) = (norm_pdf(alpha), norm_pdf(beta), norm_pdf(t));
        let a_term = if phi_a == 0.0 { 0.0 } else { alpha * phi_a };
        let b_term = if phi_b == 0.0 { 0.0 } else { beta * phi_b };
        (
            -((1.0 - eps) * phi_a + eps * phi_b) / (sigma * phi_t),
            -((1.0 - eps) * a_term + eps * b_term) / phi_t,
        )
    } else {
        (0.0, 0.0)
    };
    Sample {
        theta,
        dtheta_dmu: if s.mu.passes_grad {
            theta * (1.0 + sigma * dt_dmu)
        } else {
            0.0
        },
        dtheta_dlog_sigma: if s.log_sigma.passes_grad {
            theta * sigma * (t + dt_dls)
        } else {
            0.0
        },
    }
}

fn check_len(op: &'static str, what: &str, expected: usize, got: usize) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::shape(
            op,
            format!("{what} has {got} entries, expected {expected}"),
        ))
    }
}

/// Samples of one layer in `f32`, like the tensors they feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerSample {
    /// θ per entry.
    pub theta: Vec<f32>,
    /// ∂θ/∂μ per entry.
    pub dtheta_dmu: Vec<f32>,
    /// ∂θ/∂log σ per entry.
    pub dtheta_dlog_sigma: Vec<f32>,
}

/// [`sample`] per unit from per-unit `mu`, `log_sigma` and `eps`.
pub fn sample_layer(
    mu: &[f32],
    log_sigma: &[f32],
    eps: &[f64],
) -> Result<LayerSample, KernelError> {
    check_len("sbp sample", "log_sigma", mu.len(), log_sigma.len())?;
    check_len("sbp sample", "eps", mu.len(), eps.len())?;
    let mut out = LayerSample::default();
    for ((&m, &ls), &e) in mu.iter().zip(log_sigma).zip(eps) {
        let s = sample(f64::from(m), f64::from(ls), e);
        out.theta.push(s.theta as f32);
        out.dtheta_dmu.push(s.dtheta_dmu as f32);
        out.dtheta_dlog_sigma.push(s.dtheta_dlog_sigma as f32);
    }
    Ok(out)
}

/// Sum of KL over a layer's units and its gradient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerKl {
    /// Σᵢ KL(μᵢ, log σᵢ), accumulated in f64.
    pub sum: f64,
    /// ∂sum/∂μᵢ.
    pub d_mu: Vec<f32>,
    /// ∂sum/∂log σᵢ.
    pub d_log_sigma: Vec<f32>,
}

/// KL summed over a layer, with its gradient.
pub fn kl_layer_sum_and_grad(mu: &[f32], log_sigma: &[f32]) -> Result<LayerKl, KernelError> {
    check_len("sbp kl", "log_sigma", mu.len(), log_sigma.len())?;
    let mut out = LayerKl::default();
    for (&m, &ls) in mu.iter().zip(log_sigma) {
        let (v, (dm, dls)) = kl_value_and_grad(f64::from(m), f64::from(ls));
        out.sum += v;
        out.d_mu.push(dm as f32);
        out.d_log_sigma.push(dls as f32);
    }
    Ok(out)
}

/// Per-unit test-time statistics of a layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerStats {
    /// E\[θ\] per unit.
    pub expected_theta: Vec<f32>,
    /// SNR per unit (at most [`SNR_MAX`]).
    pub snr: Vec<f32>,
    /// SNR > 1 per unit.
    pub keep: Vec<bool>,
    /// E\[θ\]·1\[SNR > 1\] per unit: the multiplier used at test time.
    pub scale: Vec<f32>,
}

/// [`stats`] of every unit of a layer.
pub fn layer_stats(mu: &[f32], log_sigma: &[f32]) -> Result<LayerStats, KernelError> {
    check_len("sbp stats", "log_sigma", mu.len(), log_sigma.len())?;
    let mut out = LayerStats::default();
    for (&m, &ls) in mu.iter().zip(log_sigma) {
        let st = stats(f64::from(m), f64::from(ls));
        out.expected_theta.push(st.mean as f32);
        out.snr.push(st.snr as f32);
        out.keep.push(st.keep);
        out.scale.push(st.scale() as f32);
    }
    Ok(out)
}

fn check_params(
    op: &'static str,
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
) -> Result<(), KernelError> {
    check_len(op, "mu", shape.channels, mu.len())?;
    check_len(op, "log_sigma", shape.channels, ls.len())?;
    if shape.rows > u32::MAX as usize || shape.channels > u32::MAX as usize {
        return Err(KernelError::invalid(
            op,
            "rows and channels must fit in 32 bits",
        ));
    }
    Ok(())
}

/// The samples of every (example, channel) the forward pass uses: C entries per channel,
/// rows·C entries per example (row-major).
pub fn samples(
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
    stream: impl Into<NoiseStream>,
    mode: NoiseMode,
) -> Result<Vec<Sample>, KernelError> {
    check_params("cpu sbp samples", shape, mu, ls)?;
    let stream = stream.into();
    if stream.layer >= 1 << 31 {
        return Err(KernelError::invalid(
            "cpu sbp samples",
            "layer must be below 2^31",
        ));
    }
    let n = shape.theta_len(mode)?;
    Ok((0..n)
        .map(|k| {
            let c = k % shape.channels;
            let r = k / shape.channels;
            let eps = noise_eps(c as u32, r as u32, mode, stream);
            sample(mu[c] as f64, ls[c] as f64, eps)
        })
        .collect())
}

fn theta_index(mode: NoiseMode, r: usize, c: usize, channels: usize) -> usize {
    match mode {
        NoiseMode::PerChannel => c,
        NoiseMode::PerExample => r * channels + c,
    }
}

/// Forward: (y = x·θ in float, θ as float), like `sbp_forward`.
pub fn forward(
    x: &[f32],
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
    stream: impl Into<NoiseStream>,
    mode: NoiseMode,
) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
    if x.len() != shape.numel()? {
        return Err(KernelError::shape(
            "cpu sbp forward",
            format!(
                "x has {} elements, shape {shape:?} needs {}",
                x.len(),
                shape.numel()?
            ),
        ));
    }
    let theta: Vec<f32> = samples(shape, mu, ls, stream, mode)?
        .iter()
        .map(|s| s.theta as f32)
        .collect();
    let mut y = vec![0.0f32; x.len()];
    for (k, (yv, &xv)) in y.iter_mut().zip(x).enumerate() {
        let rc = k / shape.inner.max(1);
        let (r, c) = (rc / shape.channels, rc % shape.channels);
        *yv = xv * theta[theta_index(mode, r, c, shape.channels)];
    }
    Ok((y, theta))
}

/// Gradients of the SBP layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    /// dy·θ (float, as the kernel computes it)
    pub dx: Vec<f32>,
    /// per channel
    pub dmu: Vec<f64>,
    /// per channel
    pub dlog_sigma: Vec<f64>,
    /// Σ dy·x per θ entry (C or rows·C entries)
    pub dtheta: Vec<f64>,
}

/// Backward of [`forward`] for upstream gradient `dy`.
pub fn backward(
    dy: &[f32],
    x: &[f32],
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
    stream: impl Into<NoiseStream>,
    mode: NoiseMode,
) -> Result<Grads, KernelError> {
    let n = shape.numel()?;
    check_len("cpu sbp backward", "x", n, x.len())?;
    check_len("cpu sbp backward", "dy", n, dy.len())?;
    let s = samples(shape, mu, ls, stream, mode)?;
    let mut dtheta = vec![0.0f64; s.len()];
    let mut dx = vec![0.0f32; n];
    for k in 0..n {
        let rc = k / shape.inner.max(1);
        let (r, c) = (rc / shape.channels, rc % shape.channels);
        let t = theta_index(mode, r, c, shape.channels);
        dx[k] = dy[k] * s[t].theta as f32;
        dtheta[t] += dy[k] as f64 * x[k] as f64;
    }
    let mut dmu = vec![0.0f64; shape.channels];
    let mut dlog_sigma = vec![0.0f64; shape.channels];
    for (t, (g, smp)) in dtheta.iter().zip(&s).enumerate() {
        let c = t % shape.channels;
        dmu[c] += g * smp.dtheta_dmu;
        dlog_sigma[c] += g * smp.dtheta_dlog_sigma;
    }
    Ok(Grads {
        dx,
        dmu,
        dlog_sigma,
        dtheta,
    })
}
