//! Numerically stable pieces of the standard normal truncated to `[l, u]`.
//!
//! The probability mass `Z = Φ(u) - Φ(l)` can be as small as `exp(-10²⁰)` for
//! the parameter ranges of SBP, so it is carried as
//! `log Z = -m²/2 + R` where `m` is the point of `[l, u]` closest to zero and
//! `R` (the *reduced* log mass) is a moderate number:
//!
//! * `u ≤ 0` (lower tail): `Z = φ(u)·D`, `D = M(u) - M(l)·exp((u²-l²)/2)`,
//!   `M = Φ/φ` the Mills ratio, so `R = log M(u) + log1p(-ρ) - log √(2π)` with
//!   `ρ = M(l)/M(u)·exp((u-l)(u+l)/2) ∈ [0, 1)`;
//! * `l < 0 < u`: `m = 0`, `Z = 1 - Φ(l) - (1-Φ(u))` through `log1p` of the two
//!   tails when they are small, else `(erf(u/√2) + erf(-l/√2))/2` (a sum of
//!   positive terms);
//! * `l ≥ 0`: mirror image of the first case;
//! * narrow intervals (`(u-l)·max(1,|m|) < ½`): 12-point Gauss–Legendre of
//!   `exp(-(t-m)(t+m)/2)` over `[l, u]`, which avoids the cancellation `1 - ρ`.

use super::special::{
    cdf_over_pdf, erf, laplace_cf, log_norm_pdf, lower_tail, norm_sf, LowerTail, LN_SQRT_2PI,
    LOWER_TAIL_Y,
};
use std::f64::consts::FRAC_1_SQRT_2;

/// Positive nodes and weights of 12-point Gauss–Legendre on [-1, 1].
pub(crate) const GL12: [(f64, f64); 6] = [
    (0.125_233_408_511_468_9, 0.249_147_045_813_402_8),
    (0.367_831_498_998_180_2, 0.233_492_536_538_354_8),
    (0.587_317_954_286_617_4, 0.203_167_426_723_065_9),
    (0.769_902_674_194_304_7, 0.160_078_328_543_346_2),
    (0.904_117_256_370_474_9, 0.106_939_325_995_318_4),
    (0.981_560_634_246_719_3, 0.047_175_336_386_511_83),
];

/// `log Z = -m²/2 + r` for the mass of N(0,1) on `[l, u]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogMass {
    /// The point of `[l, u]` closest to zero.
    pub m: f64,
    /// The reduced log mass `log Z + m²/2`.
    pub r: f64,
}

impl LogMass {
    /// `log Z` itself (may be very negative, never NaN for finite inputs).
    pub fn log_z(&self) -> f64 {
        -0.5 * self.m * self.m + self.r
    }
}

/// Closest point of `[l, u]` to zero.
pub fn closest_to_zero(l: f64, u: f64) -> f64 {
    if u <= 0.0 {
        u
    } else if l >= 0.0 {
        l
    } else {
        0.0
    }
}

/// `log ∫_l^u exp(-(t-m)(t+m)/2) dt` by 12-point Gauss–Legendre (narrow intervals).
fn narrow_log_integral(l: f64, u: f64, m: f64) -> f64 {
    let half = 0.5 * (u - l);
    let mid = 0.5 * (u + l);
    let mut s = 0.0;
    for &(x, w) in &GL12 {
        for t in [mid - half * x, mid + half * x] {
            s += w * (-0.5 * (t - m) * (t + m)).exp();
        }
    }
    (s * half).ln()
}

/// Reduced log mass of the lower-tail case `l < u ≤ 0` (m = u).
fn lower_reduced(l: f64, u: f64) -> f64 {
    let mu = cdf_over_pdf(u);
    let rho = if l == f64::NEG_INFINITY {
        0.0
    } else {
        cdf_over_pdf(l) / mu * (0.5 * (u - l) * (u + l)).exp()
    };
    mu.ln() + (-rho).ln_1p() - LN_SQRT_2PI
}

/// `log(Φ(u) - Φ(l))` split as [`LogMass`]; requires `l < u` (`l` may be -∞,
/// `u` may be +∞).
pub fn log_mass(l: f64, u: f64) -> LogMass {
    let m = closest_to_zero(l, u);
    let width = u - l;
    if width * m.abs().max(1.0) < 0.5 {
        return LogMass {
            m,
            r: narrow_log_integral(l, u, m) - LN_SQRT_2PI,
        };
    }
    let r = if u <= 0.0 {
        lower_reduced(l, u)
    } else if l >= 0.0 {
        lower_reduced(-u, -l)
    } else {
        let tails = norm_sf(u) + norm_sf(-l);
        if tails <= 0.5 {
            (-tails).ln_1p()
        } else {
            (0.5 * (erf(u * FRAC_1_SQRT_2) + erf(-l * FRAC_1_SQRT_2))).ln()
        }
    };
    LogMass { m, r }
}

/// The part of the SBP KL divergence that depends on the standardized interval
/// `[α, β]`, and its partial derivatives:
///
/// `A(α, β) = -log Z - (α·φ(α) - β·φ(β)) / (2Z)`,
/// `∂A/∂α = (r_α/2)·(1 + α² - N)`, `∂A/∂β = -(r_β/2)·(1 + β² - N)`,
/// with `r_t = φ(t)/Z` and `N = α·r_α - β·r_β`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlCore {
    /// A(α, β).
    pub value: f64,
    /// ∂A/∂α.
    pub d_alpha: f64,
    /// ∂A/∂β.
    pub d_beta: f64,
}

/// Evaluates [`KlCore`] for `α < β`, picking a cancellation-free form.
pub fn kl_core(alpha: f64, beta: f64) -> KlCore {
    if beta <= LOWER_TAIL_Y {
        kl_core_lower_tail(alpha, beta)
    } else if alpha >= -LOWER_TAIL_Y {
        // Reflection t → -t maps [α, β] to [-β, -α] and leaves A unchanged.
        let r = kl_core_lower_tail(-beta, -alpha);
        KlCore {
            value: r.value,
            d_alpha: -r.d_beta,
            d_beta: -r.d_alpha,
        }
    } else {
        kl_core_direct(alpha, beta)
    }
}

/// Direct evaluation, used when neither endpoint lies beyond the tail cut on the
/// far side of the mode (the cancellation in `1 + β² - N` is then bounded by a
/// factor of a few thousand).
fn kl_core_direct(alpha: f64, beta: f64) -> KlCore {
    let lm = log_mass(alpha, beta);
    let log_z = lm.log_z();
    let r_a = (log_norm_pdf(alpha) - log_z).exp();
    let r_b = (log_norm_pdf(beta) - log_z).exp();
    let ar = if r_a == 0.0 { 0.0 } else { alpha * r_a };
    let br = if r_b == 0.0 { 0.0 } else { beta * r_b };
    let n = ar - br;
    let value = -log_z - 0.5 * n;
    let d_alpha = if r_a == 0.0 {
        0.0
    } else {
        0.5 * r_a * (1.0 + alpha * alpha - n)
    };
    let d_beta = if r_b == 0.0 {
        0.0
    } else {
        -0.5 * r_b * (1.0 + beta * beta - n)
    };
    KlCore {
        value,
        d_alpha,
        d_beta,
    }
}

/// Lower-tail evaluation for `α < β ≤ LOWER_TAIL_Y`.
///
/// With `M_β = Φ(β)/φ(β)`, `q = 1 + β·M_β`, `p = M_β + β·q` (from
/// [`lower_tail`]), `ρ = M_α/M_β·exp((β-α)(β+α)/2)` and `D = M_β(1-ρ)`:
/// `log Z = -β²/2 - log √(2π) + log D`, `r_β = 1/D`, `r_α = ρ/(M_α(1-ρ))`,
/// `β + r_β = (q - β·M_β·ρ)/D =: w`, `1 + β·w = (p - ρ·M_β(1+β²))/D`, so
/// `A = log √(2π) - log D + β·w/2 - α·r_α/2` and
/// `∂A/∂β = -(r_β/2)·(1 + β·w - α·r_α)` carry no cancellation.
fn kl_core_lower_tail(alpha: f64, beta: f64) -> KlCore {
    let LowerTail { m: mb, q, p } = lower_tail(beta);
    let (rho, ma) = if alpha == f64::NEG_INFINITY {
        (0.0, 1.0)
    } else {
        let ma = lower_tail(alpha).m;
        (ma / mb * (0.5 * (beta - alpha) * (beta + alpha)).exp(), ma)
    };
    let one_minus_rho = 1.0 - rho;
    let d = mb * one_minus_rho;
    let r_b = 1.0 / d;
    let r_a = rho / (ma * one_minus_rho);
    let ar = if r_a == 0.0 { 0.0 } else { alpha * r_a };
    let w = (q - beta * mb * rho) / d;
    let one_plus_bw = (p - rho * mb * (1.0 + beta * beta)) / d;
    let value = LN_SQRT_2PI - d.ln() + 0.5 * beta * w - 0.5 * ar;
    let n = ar - beta * r_b;
    let d_alpha = if r_a == 0.0 {
        0.0
    } else {
        0.5 * r_a * (1.0 + alpha * alpha - n)
    };
    let d_beta = -0.5 * r_b * (one_plus_bw - ar);
    KlCore {
        value,
        d_alpha,
        d_beta,
    }
}

/// Variance of N(0,1) truncated to `[l, u]`:
/// `V = 1 + l·r_l - u·r_u - (r_l - r_u)²`, `r_t = φ(t)/Z`.
///
/// In the lower tail (`u ≤ LOWER_TAIL_Y`) with a negligible far end, the
/// one-sided variance `1 - λ(u + λ)`, `λ = φ(u)/Φ(u)`, equals `2·T₁·(T₂ - T₁)`
/// in terms of the continued-fraction tails at `z = -u/√2` (from
/// `M = (1/√2)/(z + T₁)`, `q = T₁/(z + T₁)` and `½ - T₁(z + T₁) = T₁(T₂ - T₁)`),
/// which is free of the cancellation of the direct form (`V ≈ 1/u²` there).
/// The upper tail is the mirror image.
///
/// On a narrow interval (the narrow case of [`log_mass`], `width·max(|m|, 1) <
/// 0.5`) the direct form subtracts numbers of order `1/width²` to get one of
/// order `width²`; there the centred moments are integrated instead
/// ([`narrow_variance`]).
pub fn truncated_variance(l: f64, u: f64) -> f64 {
    if (u - l) * closest_to_zero(l, u).abs().max(1.0) < 0.5 {
        return narrow_variance(l, u);
    }
    if u <= LOWER_TAIL_Y {
        if let Some(v) = one_sided_tail_variance(l, u) {
            return v;
        }
    } else if l >= -LOWER_TAIL_Y {
        if let Some(v) = one_sided_tail_variance(-u, -l) {
            return v;
        }
    }
    let log_z = log_mass(l, u).log_z();
    let r_l = (log_norm_pdf(l) - log_z).exp();
    let r_u = (log_norm_pdf(u) - log_z).exp();
    let lr = if r_l == 0.0 { 0.0 } else { l * r_l };
    let ur = if r_u == 0.0 { 0.0 } else { u * r_u };
    (1.0 + lr - ur - (r_l - r_u) * (r_l - r_u)).max(0.0)
}

/// Variance of N(0,1) truncated to a narrow `[l, u]`: with `x = t - (l+u)/2`
/// and the weight `g(x) = exp(-(t² - m²)/2)` (`m` the point of `[l, u]`
/// closest to zero, so `g ≤ 1` and nothing underflows),
/// `V = ∫g·x²/∫g - (∫g·x/∫g)²`. The exponent changes by less than about 0.5
/// across the interval, so 12-point Gauss–Legendre gives the integrals to
/// rounding accuracy, and the centred moments do not cancel (`V ≈ width²/12`).
fn narrow_variance(l: f64, u: f64) -> f64 {
    let m = closest_to_zero(l, u);
    let (mid, half) = (0.5 * (l + u), 0.5 * (u - l));
    let (mut s0, mut s1, mut s2) = (0.0, 0.0, 0.0);
    for &(x, w) in &GL12 {
        for d in [-half * x, half * x] {
            let t = mid + d;
            let g = w * (-0.5 * (t - m) * (t + m)).exp();
            s0 += g;
            s1 += g * d;
            s2 += g * d * d;
        }
    }
    let e1 = s1 / s0;
    (s2 / s0 - e1 * e1).max(0.0)
}

/// `2·T₁·(T₂ - T₁)` when the truncation at `l` is negligible (`ρ < 1e-17`).
fn one_sided_tail_variance(l: f64, u: f64) -> Option<f64> {
    if l != f64::NEG_INFINITY {
        let log_rho = cdf_over_pdf(l).ln() - cdf_over_pdf(u).ln() + 0.5 * (u - l) * (u + l);
        if log_rho > -39.0 {
            return None;
        }
    }
    let z = -u * FRAC_1_SQRT_2;
    let (t1, t2) = laplace_cf(z);
    Some(2.0 * t1 * (t2 - t1))
}
