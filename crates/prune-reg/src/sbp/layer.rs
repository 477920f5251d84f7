//! Per-layer (vectorized) SBP helpers over `f32` parameter slices.

use super::math::{kl_value_and_grad, log_moments, relative_variance_of, standardize};
use super::sampler::check_len;
use crate::error::Result;
use crate::masks::LayerMask;

/// Sum of KL over a layer's units and its gradient with respect to each unit's
/// μ and log σ.
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
pub fn kl_layer_sum_and_grad(mu: &[f32], log_sigma: &[f32]) -> Result<LayerKl> {
    check_len("log_sigma (vs mu)", mu.len(), log_sigma.len())?;
    let mut out = LayerKl {
        sum: 0.0,
        d_mu: Vec::with_capacity(mu.len()),
        d_log_sigma: Vec::with_capacity(mu.len()),
    };
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
    /// SNR per unit (at most 1e30).
    pub snr: Vec<f32>,
    /// SNR > 1 per unit.
    pub keep: Vec<bool>,
    /// E\[θ\]·1\[SNR > 1\] per unit: the multiplier used at test time.
    pub scale: Vec<f32>,
}

/// E\[θ\], SNR, the keep decision and the test-time multiplier of every unit.
pub fn layer_stats(mu: &[f32], log_sigma: &[f32]) -> Result<LayerStats> {
    check_len("log_sigma (vs mu)", mu.len(), log_sigma.len())?;
    let n = mu.len();
    let mut out = LayerStats {
        expected_theta: Vec::with_capacity(n),
        snr: Vec::with_capacity(n),
        keep: Vec::with_capacity(n),
        scale: Vec::with_capacity(n),
    };
    for (&m, &ls) in mu.iter().zip(log_sigma) {
        let s = standardize(f64::from(m), f64::from(ls));
        let (lm1, _, excess) = log_moments(&s);
        let e = lm1.exp();
        let v = relative_variance_of(&s, excess);
        let keep = v < 1.0;
        out.expected_theta.push(e as f32);
        out.snr.push((1.0 / v.sqrt()) as f32);
        out.keep.push(keep);
        out.scale.push(if keep { e as f32 } else { 0.0 });
    }
    Ok(out)
}

/// The SBP pruning decision of one layer: keep units with SNR > 1, scored by
/// SNR; a layer whose units would all be removed keeps its best unit and is
/// flagged `forced`.
pub fn sbp_layer_mask(name: &str, mu: &[f32], log_sigma: &[f32]) -> Result<LayerMask> {
    let stats = layer_stats(mu, log_sigma)?;
    LayerMask::from_decision(name, stats.keep, stats.snr)
}
