//! Closed forms of Structured Bayesian Pruning (Neklyudov et al. 2017) for one
//! multiplicative noise variable θ: the one implementation that training, the
//! compiler's folding and the CUDA kernels' CPU reference all use.
//!
//! `log θ ~ N(μ, σ²)` truncated to `[a, b] = [-20, 0]`, prior log-uniform on the
//! same interval; `α = (a-μ)/σ`, `β = (b-μ)/σ`, `Z = Φ(β) - Φ(α)`.
//! Both parameters are clipped to `[-20, 5]` before use; derivatives with
//! respect to a clipped parameter are zero (the clip is part of the model, as in
//! the reference implementation). A parameter exactly on the bound is treated
//! as inside.
//!
//! * `KL(q‖p) = log(b-a) - ½·log(2πe) - log σ - log Z - [α·φ(α) - β·φ(β)]/(2Z)`;
//!   the interval-dependent part is evaluated by [`kl_core`].
//! * Moments: `E[θᵏ] = exp(kμ + k²σ²/2)·[Φ(β-kσ) - Φ(α-kσ)]/Z` (tilting the
//!   truncated normal by `e^{kx}` shifts its centre to `μₖ = μ + kσ²`). With
//!   `log Z = -m²/2 + R` ([`log_mass`]) the exponent collapses to
//!   `log E[θᵏ] = kμ + eₖ + Rₖ - R₀`, `eₖ = k(cₖ-μ) - (dₖ² - d₀²)/2`, where
//!   `cₖ = clamp(μₖ, a, b)`, `dₖ = (cₖ-μ)/σ` (`= kσ` when `μₖ` is inside) and
//!   `d₀ = (clamp(μ, a, b) - μ)/σ`. Nothing here grows like `e^{σ²}`, and
//!   `log E[θ²] - 2·log E[θ] = e₂ - 2e₁ + R₂ - 2R₁ + R₀` cancels the `μ` terms
//!   exactly, so `Var/E² = expm1(·)` keeps `σ²`-sized variances.
//! * `SNR = E[θ]/√(E[θ²] - E[θ]²) = 1/√(expm1(log E[θ²] - 2 log E[θ]))`.
//!   When θ is tightly concentrated the log-moment difference is a small
//!   second difference of `O(1)` numbers; below [`DIRECT_VAR_MIN`] it is
//!   instead integrated exactly: with the cumulant function
//!   `K(s) = log E[e^{s·log θ}]`, `K(2) - 2K(1) + K(0) = ∫₀² w(s)·K''(s) ds`,
//!   `w(s) = min(s, 2-s)`, and `K''(s)` is the variance of the tilted law, the
//!   normal `N(μ + sσ², σ²)` truncated to `[a, b]`:
//!   `K''(s) = σ²·V(α - sσ, β - sσ)` ([`truncated_variance`]). The integrand is
//!   positive and smooth on each half, so 12-point Gauss–Legendre on `[0, 1]`
//!   and `[1, 2]` gives it to rounding accuracy.

use super::truncated::{kl_core, log_mass, truncated_variance, GL12};

/// Lower end `a` of the support of `log θ`.
pub const LOG_THETA_MIN: f64 = -20.0;
/// Upper end `b` of the support of `log θ`.
pub const LOG_THETA_MAX: f64 = 0.0;
/// Lower clip of μ and log σ.
pub const PARAM_MIN: f64 = -20.0;
/// Upper clip of μ and log σ.
pub const PARAM_MAX: f64 = 5.0;
/// Initial value of μ.
pub const MU_INIT: f64 = 0.0;
/// Initial value of log σ.
pub const LOG_SIGMA_INIT: f64 = -5.0;
/// Below this `Var[θ]/E[θ]²` the relative variance is computed by the integral
/// form of the module documentation instead of the log-moment difference.
pub const DIRECT_VAR_MIN: f64 = 1e-3;
/// Smallest `Var[θ]/E[θ]²` reported, so that the SNR stays finite (at most
/// `1/√SNR_VAR_FLOOR = 1e30`, representable in `f32`). Over the clipped
/// parameter box the true value never goes below about 7e-37.
pub const SNR_VAR_FLOOR: f64 = 1e-60;

/// A parameter after the model's clip, and whether gradients pass through it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clipped {
    /// The clipped value.
    pub value: f64,
    /// False when the clip is active (the value lay outside `[PARAM_MIN, PARAM_MAX]`).
    pub passes_grad: bool,
}

/// Clips an SBP parameter (μ or log σ) to `[PARAM_MIN, PARAM_MAX]`.
pub fn clip_param(x: f64) -> Clipped {
    if x < PARAM_MIN {
        Clipped {
            value: PARAM_MIN,
            passes_grad: false,
        }
    } else if x > PARAM_MAX {
        Clipped {
            value: PARAM_MAX,
            passes_grad: false,
        }
    } else {
        Clipped {
            value: x,
            passes_grad: true,
        }
    }
}

/// Clipped parameters and the standardized truncation interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standardized {
    pub mu: Clipped,
    pub log_sigma: Clipped,
    pub sigma: f64,
    pub alpha: f64,
    pub beta: f64,
}

pub(crate) fn standardize(mu: f64, log_sigma: f64) -> Standardized {
    let mu = clip_param(mu);
    let log_sigma = clip_param(log_sigma);
    let sigma = log_sigma.value.exp();
    Standardized {
        mu,
        log_sigma,
        sigma,
        alpha: (LOG_THETA_MIN - mu.value) / sigma,
        beta: (LOG_THETA_MAX - mu.value) / sigma,
    }
}

/// `log(b-a) - ½·log(2πe)`.
fn kl_constant() -> f64 {
    (LOG_THETA_MAX - LOG_THETA_MIN).ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() - 0.5
}

/// KL(q(θ | μ, σ) ‖ log-uniform prior) of one noise variable.
pub fn kl(mu: f64, log_sigma: f64) -> f64 {
    let s = standardize(mu, log_sigma);
    kl_constant() - s.log_sigma.value + kl_core(s.alpha, s.beta).value
}

/// `(∂KL/∂μ, ∂KL/∂log σ)`, analytic:
/// `∂KL/∂μ = -(∂A/∂α + ∂A/∂β)/σ`, `∂KL/∂log σ = -1 - α·∂A/∂α - β·∂A/∂β`.
pub fn kl_grad(mu: f64, log_sigma: f64) -> (f64, f64) {
    kl_value_and_grad(mu, log_sigma).1
}

/// KL and its gradient in one evaluation.
pub fn kl_value_and_grad(mu: f64, log_sigma: f64) -> (f64, (f64, f64)) {
    let s = standardize(mu, log_sigma);
    let core = kl_core(s.alpha, s.beta);
    let value = kl_constant() - s.log_sigma.value + core.value;
    let d_mu = if s.mu.passes_grad {
        -(core.d_alpha + core.d_beta) / s.sigma
    } else {
        0.0
    };
    let d_ls = if s.log_sigma.passes_grad {
        let a_term = if core.d_alpha == 0.0 {
            0.0
        } else {
            s.alpha * core.d_alpha
        };
        let b_term = if core.d_beta == 0.0 {
            0.0
        } else {
            s.beta * core.d_beta
        };
        -1.0 - a_term - b_term
    } else {
        0.0
    };
    (value, (d_mu, d_ls))
}

/// `(eₖ, Rₖ)` of the module documentation, for k ≥ 1.
fn moment_parts(s: &Standardized, k: f64) -> (f64, f64) {
    let mu = s.mu.value;
    let sigma = s.sigma;
    let mu_k = mu + k * sigma * sigma;
    // (cₖ - μ, dₖ)
    let (ck_minus_mu, dk) = if mu_k > LOG_THETA_MAX {
        (LOG_THETA_MAX - mu, s.beta)
    } else if mu_k < LOG_THETA_MIN {
        (LOG_THETA_MIN - mu, s.alpha)
    } else {
        (k * sigma * sigma, k * sigma)
    };
    let d0 = d0(s);
    let e_k = k * ck_minus_mu - 0.5 * (dk - d0) * (dk + d0);
    let r_k = log_mass(s.alpha - k * sigma, s.beta - k * sigma).r;
    (e_k, r_k)
}

fn d0(s: &Standardized) -> f64 {
    let mu = s.mu.value;
    if mu > LOG_THETA_MAX {
        s.beta
    } else if mu < LOG_THETA_MIN {
        s.alpha
    } else {
        0.0
    }
}

/// Log-moments `(log E[θ], log E[θ²], log E[θ²] - 2·log E[θ])`.
pub(crate) fn log_moments(s: &Standardized) -> (f64, f64, f64) {
    let r0 = log_mass(s.alpha, s.beta).r;
    let (e1, r1) = moment_parts(s, 1.0);
    let (e2, r2) = moment_parts(s, 2.0);
    let mu = s.mu.value;
    let lm1 = mu + e1 + (r1 - r0);
    let lm2 = 2.0 * mu + e2 + (r2 - r0);
    let excess = (e2 - 2.0 * e1) + (r2 - 2.0 * r1 + r0);
    (lm1, lm2, excess)
}

/// E\[θ\] = exp(μ + σ²/2)·[Φ(σ-α) - Φ(σ-β)]/Z, in `[e^a, e^b]`.
pub fn expected_theta(mu: f64, log_sigma: f64) -> f64 {
    log_moments(&standardize(mu, log_sigma)).0.exp()
}

/// E\[θ²\] = exp(2μ + 2σ²)·[Φ(2σ-α) - Φ(2σ-β)]/Z.
pub fn expected_theta_sq(mu: f64, log_sigma: f64) -> f64 {
    log_moments(&standardize(mu, log_sigma)).1.exp()
}

/// `K(2) - 2K(1)` by the integral of the module documentation.
fn log_moment_excess_integral(s: &Standardized) -> f64 {
    let sigma = s.sigma;
    let mut acc = 0.0;
    for &(x, w) in &GL12 {
        for node in [0.5 - 0.5 * x, 0.5 + 0.5 * x] {
            // node in (0, 1): weight w(s) = s on [0, 1] and 2 - s on [1, 2].
            for (shift, weight) in [(node, node), (1.0 + node, 1.0 - node)] {
                let v = truncated_variance(s.alpha - shift * sigma, s.beta - shift * sigma);
                acc += 0.5 * w * weight * v;
            }
        }
    }
    sigma * sigma * acc
}

/// `Var[θ]/E[θ]²` given the standardized parameters and the direct excess.
pub(crate) fn relative_variance_of(s: &Standardized, excess: f64) -> f64 {
    let v = excess.exp_m1();
    if v.is_nan() {
        return v;
    }
    let v = if v < DIRECT_VAR_MIN {
        log_moment_excess_integral(s).exp_m1()
    } else {
        v
    };
    v.max(SNR_VAR_FLOOR)
}

/// `Var[θ]/E[θ]²`, floored at [`SNR_VAR_FLOOR`].
pub fn relative_variance(mu: f64, log_sigma: f64) -> f64 {
    let s = standardize(mu, log_sigma);
    let excess = log_moments(&s).2;
    relative_variance_of(&s, excess)
}

/// Signal-to-noise ratio `E[θ]/√Var[θ]` (at most `1e30`).
pub fn snr(mu: f64, log_sigma: f64) -> f64 {
    1.0 / relative_variance(mu, log_sigma).sqrt()
}

/// Whether the unit is kept at test time: `SNR > 1`, i.e. `Var[θ] < E[θ]²`.
pub fn keep(mu: f64, log_sigma: f64) -> bool {
    relative_variance(mu, log_sigma) < 1.0
}

/// The test-time multiplier of a unit: `E[θ]·1[SNR > 1]`.
pub fn test_time_scale(mu: f64, log_sigma: f64) -> f64 {
    let s = standardize(mu, log_sigma);
    let (lm1, _, excess) = log_moments(&s);
    if relative_variance_of(&s, excess) < 1.0 {
        lm1.exp()
    } else {
        0.0
    }
}

/// Largest reported signal-to-noise ratio, `1/√SNR_VAR_FLOOR`.
pub const SNR_MAX: f64 = 1e30;

/// The per-unit statistics of one noise variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    /// E\[θ\].
    pub mean: f64,
    /// E\[θ\]/√Var\[θ\], at most [`SNR_MAX`].
    pub snr: f64,
    /// KL(q ‖ log-uniform prior on \[e^a, e^b\]).
    pub kl: f64,
    /// Whether the unit is kept at test time: `SNR > 1`, decided as `Var[θ] < E[θ]²`.
    pub keep: bool,
}

impl ChannelStats {
    /// The test-time multiplier `E[θ]·1[SNR > 1]`.
    pub fn scale(&self) -> f64 {
        if self.keep {
            self.mean
        } else {
            0.0
        }
    }
}

/// E\[θ\], SNR and KL of one unit in one evaluation.
pub fn stats(mu: f64, log_sigma: f64) -> ChannelStats {
    let s = standardize(mu, log_sigma);
    let (lm1, _, excess) = log_moments(&s);
    let v = relative_variance_of(&s, excess);
    ChannelStats {
        mean: lm1.exp(),
        snr: 1.0 / v.sqrt(),
        kl: kl_constant() - s.log_sigma.value + kl_core(s.alpha, s.beta).value,
        keep: v < 1.0,
    }
}
