//! The polarization regularizer (Zhuang et al. 2020) over batch-norm scales.
//!
//! `R(γ) = Σᵢ (t·|γᵢ| - |γᵢ - γ̄|)` over the scale factors of all regularized
//! layers, `γ̄` one mean over all of them. Its subgradient, with the mean
//! differentiated too (sign(0) = 0):
//!
//! `∂R/∂γⱼ = t·sign(γⱼ) - sign(γⱼ - γ̄) + (1/n)·Σᵢ sign(γᵢ - γ̄)`.
//!
//! Training adds `λ·R(γ)` as a tape expression evaluated where the γ live
//! ([`crate::method::gamma_penalty`]); [`Polarization::value_and_grad`] is the same
//! value and subgradient in f64 on the host, the reference it is tested against.
//! After every optimizer step γ is clamped to
//! `[0, a]` ([`clamp_gammas`]), with γ initialized to [`GAMMA_INIT`].
//!
//! With `k` of `n` scales at `a` and the rest at 0, `R = a·k·(t - 2 + 2k/n)`,
//! minimized at `k/n = ½ - t/4` for `t ∈ (0, 2)`: the paper's polarized split.
//! Note that every split with `0 < k/n < 1 - t/2` is a stationary point of
//! the projected problem (units at `a` have subgradient `t - 2 + 2k/n < 0`,
//! units at 0 have `t + 2k/n > 0`), so plain projected descent polarizes but
//! need not stop at the minimizing split.

use crate::error::{RegError, Result};

/// Initial value of every scale factor.
pub const GAMMA_INIT: f32 = 0.5;
/// Upper clamp `a` of the scale factors.
pub const GAMMA_UPPER: f32 = 1.0;

/// `λ·R(γ)` with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Polarization {
    /// Regularization strength λ ≥ 0.
    pub lambda: f64,
    /// The polarization parameter t > 0.
    pub t: f64,
}

/// Value of `λ·R` and its subgradient per scale factor, shaped like the input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolarizationEval {
    /// `λ·R(γ)`.
    pub value: f64,
    /// `λ·∂R/∂γ`, one vector per layer.
    pub grad: Vec<Vec<f32>>,
    /// The global mean γ̄.
    pub mean: f64,
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn check_finite(groups: &[&[f32]]) -> Result<usize> {
    let mut n = 0;
    for (g, layer) in groups.iter().enumerate() {
        if let Some(i) = layer.iter().position(|v| !v.is_finite()) {
            return Err(RegError::NonFinite {
                what: format!("gammas of layer {g}"),
                index: i,
                value: f64::from(layer[i]),
            });
        }
        n += layer.len();
    }
    if n == 0 {
        return Err(RegError::Empty {
            what: "polarization input (no scale factors)".to_string(),
        });
    }
    Ok(n)
}

impl Polarization {
    /// Checks `λ ≥ 0` and `t > 0`.
    pub fn new(lambda: f64, t: f64) -> Result<Self> {
        if !(lambda.is_finite() && lambda >= 0.0) {
            return Err(RegError::InvalidParameter {
                name: "lambda",
                value: lambda,
                reason: "must be finite and >= 0",
            });
        }
        if !(t.is_finite() && t > 0.0) {
            return Err(RegError::InvalidParameter {
                name: "t",
                value: t,
                reason: "must be finite and > 0",
            });
        }
        Ok(Polarization { lambda, t })
    }

    /// `λ·R(γ)` over all layers.
    pub fn value(&self, groups: &[&[f32]]) -> Result<f64> {
        let n = check_finite(groups)?;
        let mean = global_mean(groups, n);
        let mut r = 0.0;
        for layer in groups {
            for &g in layer.iter() {
                let g = f64::from(g);
                r += self.t * g.abs() - (g - mean).abs();
            }
        }
        Ok(self.lambda * r)
    }

    /// `λ·R(γ)` and its subgradient, in f64 on the host (the reference of the tape
    /// form in [`crate::method::gamma_penalty`]).
    pub fn value_and_grad(&self, groups: &[&[f32]]) -> Result<PolarizationEval> {
        let n = check_finite(groups)?;
        let mean = global_mean(groups, n);
        let mut r = 0.0;
        let mut sign_sum = 0.0;
        for layer in groups {
            for &g in layer.iter() {
                let g = f64::from(g);
                r += self.t * g.abs() - (g - mean).abs();
                sign_sum += sign(g - mean);
            }
        }
        let shared = sign_sum / n as f64;
        let grad = groups
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|&g| {
                        let g = f64::from(g);
                        (self.lambda * (self.t * sign(g) - sign(g - mean) + shared)) as f32
                    })
                    .collect()
            })
            .collect();
        Ok(PolarizationEval {
            value: self.lambda * r,
            grad,
            mean,
        })
    }
}

fn global_mean(groups: &[&[f32]], n: usize) -> f64 {
    let s: f64 = groups
        .iter()
        .flat_map(|l| l.iter())
        .map(|&g| f64::from(g))
        .sum();
    s / n as f64
}

/// Clamps scale factors to `[0, upper]` in place (applied after each optimizer
/// step). NaN entries are left for the caller's finiteness checks to report.
pub fn clamp_gammas(gammas: &mut [f32], upper: f32) -> Result<()> {
    if !(upper.is_finite() && upper > 0.0) {
        return Err(RegError::InvalidParameter {
            name: "upper",
            value: f64::from(upper),
            reason: "must be finite and > 0",
        });
    }
    for g in gammas.iter_mut() {
        *g = g.clamp(0.0, upper);
    }
    Ok(())
}

/// `n` scale factors at [`GAMMA_INIT`].
pub fn init_gammas(n: usize) -> Vec<f32> {
    vec![GAMMA_INIT; n]
}
