//! Reparameterized sampling of θ and its derivatives.
//!
//! `θ = exp(clip(μ + σ·Φ⁻¹(clip(Φ(α) + ε·Z, 1e-5, 1-1e-5)), a, b))`, ε ~ U(0, 1).
//! With `p = Φ(α) + ε·Z = (1-ε)·Φ(α) + ε·Φ(β)` and `t = Φ⁻¹(p)`:
//!
//! * `∂p/∂μ = -[(1-ε)·φ(α) + ε·φ(β)]/σ`, `∂p/∂log σ = -[(1-ε)·α·φ(α) + ε·β·φ(β)]`;
//! * `∂t/∂p = 1/φ(t)`;
//! * `x = μ + σt`: `∂x/∂μ = 1 - [(1-ε)φ(α) + εφ(β)]/φ(t)`,
//!   `∂x/∂log σ = σ·(t - [(1-ε)αφ(α) + εβφ(β)]/φ(t))`;
//! * `∂θ = θ·∂x`.
//!
//! An active clip contributes derivative zero: on `p` it zeroes the `∂p` terms
//! (the direct dependence of `x` on μ and σ remains), on `x` it zeroes all,
//! and on a parameter it zeroes that parameter's derivative.

use super::math::{standardize, LOG_THETA_MAX, LOG_THETA_MIN};
use super::special::{norm_cdf, norm_pdf, norm_ppf};
use super::truncated::log_mass;
use crate::error::{RegError, Result};
use rand::Rng;

/// Lower clip of the uniform-to-quantile argument `p`.
pub const P_CLIP_LO: f64 = 1e-5;
/// Upper clip of the uniform-to-quantile argument `p`.
pub const P_CLIP_HI: f64 = 1.0 - 1e-5;

/// One reparameterized sample and its derivatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// θ ∈ [e^a, e^b].
    pub theta: f64,
    /// ∂θ/∂μ.
    pub dtheta_dmu: f64,
    /// ∂θ/∂log σ.
    pub dtheta_dlog_sigma: f64,
}

/// Draws θ from the truncated log-normal given the uniform noise `eps`.
pub fn sample(mu: f64, log_sigma: f64, eps: f64) -> Sample {
    let s = standardize(mu, log_sigma);
    let (alpha, beta, sigma) = (s.alpha, s.beta, s.sigma);
    let z = log_mass(alpha, beta).log_z().exp();
    let p = norm_cdf(alpha) + eps * z;
    let p_passes = (P_CLIP_LO..=P_CLIP_HI).contains(&p);
    let pc = p.clamp(P_CLIP_LO, P_CLIP_HI);
    let t = norm_ppf(pc);
    let x = s.mu.value + sigma * t;
    let x_passes = (LOG_THETA_MIN..=LOG_THETA_MAX).contains(&x);
    let theta = x.clamp(LOG_THETA_MIN, LOG_THETA_MAX).exp();
    if !x_passes {
        return Sample {
            theta,
            dtheta_dmu: 0.0,
            dtheta_dlog_sigma: 0.0,
        };
    }
    let (dx_dmu, dx_dls) = if p_passes {
        let phi_a = norm_pdf(alpha);
        let phi_b = norm_pdf(beta);
        let phi_t = norm_pdf(t);
        let w = (1.0 - eps) * phi_a + eps * phi_b;
        let a_term = if phi_a == 0.0 { 0.0 } else { alpha * phi_a };
        let b_term = if phi_b == 0.0 { 0.0 } else { beta * phi_b };
        let wa = (1.0 - eps) * a_term + eps * b_term;
        (1.0 - w / phi_t, sigma * (t - wa / phi_t))
    } else {
        (1.0, sigma * t)
    };
    Sample {
        theta,
        dtheta_dmu: if s.mu.passes_grad {
            theta * dx_dmu
        } else {
            0.0
        },
        dtheta_dlog_sigma: if s.log_sigma.passes_grad {
            theta * dx_dls
        } else {
            0.0
        },
    }
}

/// Samples of one layer, in `f32` like the tensors they feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerSample {
    /// θ per unit.
    pub theta: Vec<f32>,
    /// ∂θ/∂μ per unit.
    pub dtheta_dmu: Vec<f32>,
    /// ∂θ/∂log σ per unit.
    pub dtheta_dlog_sigma: Vec<f32>,
}

pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(RegError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

/// Vectorized [`sample`]: one θ per unit from per-unit `mu`, `log_sigma`, `eps`.
pub fn sample_layer(mu: &[f32], log_sigma: &[f32], eps: &[f32]) -> Result<LayerSample> {
    check_len("log_sigma (vs mu)", mu.len(), log_sigma.len())?;
    check_len("eps (vs mu)", mu.len(), eps.len())?;
    let mut out = LayerSample {
        theta: Vec::with_capacity(mu.len()),
        dtheta_dmu: Vec::with_capacity(mu.len()),
        dtheta_dlog_sigma: Vec::with_capacity(mu.len()),
    };
    for ((&m, &ls), &e) in mu.iter().zip(log_sigma).zip(eps) {
        let s = sample(f64::from(m), f64::from(ls), f64::from(e));
        out.theta.push(s.theta as f32);
        out.dtheta_dmu.push(s.dtheta_dmu as f32);
        out.dtheta_dlog_sigma.push(s.dtheta_dlog_sigma as f32);
    }
    Ok(out)
}

/// Draws `n` uniform noises in `[0, 1)` for [`sample_layer`].
pub fn draw_eps<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>()).collect()
}

/// [`draw_eps`] followed by [`sample_layer`].
pub fn sample_layer_with_rng<R: Rng + ?Sized>(
    rng: &mut R,
    mu: &[f32],
    log_sigma: &[f32],
) -> Result<LayerSample> {
    let eps = draw_eps(rng, mu.len());
    sample_layer(mu, log_sigma, &eps)
}
