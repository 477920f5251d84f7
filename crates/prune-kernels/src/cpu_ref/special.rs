//! Double-precision special functions for the CPU references: erf, erfc, erfcx, the
//! standard normal pdf / cdf / quantile, and the helpers the SBP closed forms use.
//! Each mirrors the CUDA math function of the same role in `kernels/common.cuh`.
//!
//! erf / erfc: for |x| < 2 the everywhere-positive series
//!   erf(x) = (2/sqrt(pi)) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)),
//! for x >= 2 the Laplace continued fraction
//!   sqrt(pi) exp(x^2) erfc(x) = 1 / (x + (1/2) / (x + 1 / (x + (3/2) / (x + ...))))
//! evaluated with the modified Lentz method.

use std::f64::consts::PI;

const SQRT_PI: f64 = 1.772_453_850_905_516;
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const LOG_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// sqrt(pi / 2)
pub const SQRT_PI_OVER_2: f64 = 1.253_314_137_315_500_3;
const SERIES_LIMIT: f64 = 2.0;

/// sum_n 2^n x^(2n+1) / (2n+1)!!, so that erf(x) = 2/sqrt(pi) exp(-x^2) * this.
fn erf_series_scaled(x: f64) -> f64 {
    let x2 = 2.0 * x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 1.0;
    while term.abs() > 1e-17 * sum.abs() {
        term *= x2 / (2.0 * n + 1.0);
        sum += term;
        n += 1.0;
        if n > 500.0 {
            break;
        }
    }
    sum
}

/// sqrt(pi) erfcx(x) for x >= SERIES_LIMIT by the continued fraction (modified Lentz).
fn erfcx_cf(x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for k in 1..5000 {
        let a = 0.5 * k as f64;
        d = x + a * d;
        if d.abs() < TINY {
            d = TINY;
        }
        d = 1.0 / d;
        c = x + a / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    1.0 / f
}

/// The error function.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    let v = if ax < SERIES_LIMIT {
        2.0 / SQRT_PI * (-ax * ax).exp() * erf_series_scaled(ax)
    } else {
        1.0 - erfc(ax)
    };
    v.copysign(x)
}

/// The complementary error function, accurate in relative terms for large x.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < SERIES_LIMIT {
        return 1.0 - 2.0 / SQRT_PI * (-x * x).exp() * erf_series_scaled(x);
    }
    if x > 27.3 {
        return 0.0;
    }
    (-x * x).exp() * erfcx_cf(x) / SQRT_PI
}

/// The scaled complementary error function exp(x^2) erfc(x).
pub fn erfcx(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 * (x * x).exp() - erfcx(-x);
    }
    if x < SERIES_LIMIT {
        return (x * x).exp() - 2.0 / SQRT_PI * erf_series_scaled(x);
    }
    erfcx_cf(x) / SQRT_PI
}

/// Standard normal density.
pub fn norm_pdf(x: f64) -> f64 {
    (-0.5 * x * x - LOG_SQRT_2PI).exp()
}

/// Standard normal distribution function Phi(x) = erfc(-x/sqrt 2) / 2.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * FRAC_1_SQRT_2)
}

/// Standard normal quantile Phi^-1(u): Abramowitz & Stegun 26.2.23 as the start, then
/// Halley steps on Phi(z) - u until the step is below 1e-15 |z|.
pub fn norm_quantile(u: f64) -> f64 {
    if u.is_nan() || !(0.0..=1.0).contains(&u) {
        return f64::NAN;
    }
    if u == 0.0 {
        return f64::NEG_INFINITY;
    }
    if u == 1.0 {
        return f64::INFINITY;
    }
    if u > 0.5 {
        // 1 - u is exact for u in [0.5, 1].
        return -norm_quantile(1.0 - u);
    }
    let t = (-2.0 * u.ln()).sqrt();
    let mut z = -(t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t));
    for _ in 0..50 {
        let e = norm_cdf(z) - u;
        let d = e / norm_pdf(z);
        let step = d / (1.0 + 0.5 * z * d);
        z -= step;
        if step.abs() <= 1e-15 * z.abs().max(1.0) {
            break;
        }
    }
    z
}

/// L(x) = log Phi(x) + x^2/2 for x <= 0, finite everywhere.
pub fn log_cdf_scaled(x: f64) -> f64 {
    (0.5 * erfcx(-x * FRAC_1_SQRT_2)).ln()
}

/// K(t) of sqrt(pi) erfcx(t) = 1/(t + K(t)): the same 60-term bottom-up evaluation as the
/// kernel, used for t >= 4.
pub fn erfc_cf_tail(t: f64) -> f64 {
    let mut f = 0.0;
    for k in (1..=60).rev() {
        f = (0.5 * k as f64) / (t + f);
    }
    f
}

/// G(t) = 1 - sqrt(pi) t erfcx(t) for t >= 0 (= 1 + beta r(beta) at beta = -t sqrt 2).
pub fn mills_gap(t: f64) -> f64 {
    if t < 4.0 {
        1.0 - SQRT_PI * t * erfcx(t)
    } else {
        let k = erfc_cf_tail(t);
        k / (t + k)
    }
}

/// log sqrt(2 pi)
pub fn log_sqrt_2pi() -> f64 {
    LOG_SQRT_2PI
}

/// 1/sqrt(2)
pub fn frac_1_sqrt_2() -> f64 {
    FRAC_1_SQRT_2
}

/// log(2 pi e) / 2
pub fn half_log_2pi_e() -> f64 {
    0.5 * (2.0 * PI * std::f64::consts::E).ln()
}

#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn erfc_matches_reference_values() {
        let cases = [
            (0.1, 0.887_537_083_981_715_1),
            (0.5, 0.479_500_122_186_953_46),
            (1.0, 0.157_299_207_050_285_13),
            (2.0, 0.004_677_734_981_047_265_8),
            (3.0, 2.209_049_699_858_544_1e-5),
            (5.0, 1.537_459_794_428_034_9e-12),
            (10.0, 2.088_487_583_762_544_8e-45),
        ];
        for (x, want) in cases {
            assert!(
                rel(erfc(x), want) < 1e-13,
                "erfc({x}) = {} want {want}",
                erfc(x)
            );
        }
        assert!(rel(erf(0.1), 0.112_462_916_018_284_89) < 1e-14);
        assert!(rel(erfc(-1.0), 2.0 - 0.157_299_207_050_285_13) < 1e-15);
    }

    #[test]
    fn erfcx_is_continuous_across_methods_and_matches_values() {
        assert!(rel(erfcx(1.0), 0.427_583_576_155_807_0) < 1e-14);
        assert!(rel(erfcx(10.0), 0.056_140_992_743_822_58) < 1e-14);
        let below = erfcx(SERIES_LIMIT - 1e-12);
        let above = erfcx(SERIES_LIMIT);
        assert!(rel(below, above) < 1e-12);
        // Tail continued fraction against the Lentz evaluation.
        for &t in &[4.0, 5.5, 10.0, 100.0, 1e6] {
            let a = 1.0 / (t + erfc_cf_tail(t));
            let b = SQRT_PI * erfcx(t);
            assert!(rel(a, b) < 1e-14, "t = {t}");
        }
    }

    #[test]
    fn quantile_inverts_cdf() {
        assert!(rel(norm_quantile(0.975), 1.959_963_984_540_054) < 1e-14);
        assert!(rel(norm_quantile(1e-5), -4.264_890_793_922_825) < 1e-13);
        for &u in &[1e-300, 1e-20, 1e-5, 0.01, 0.3, 0.5, 0.7, 0.99, 1.0 - 1e-5] {
            let z = norm_quantile(u);
            // Relative sensitivity of Phi at z is |z| dz, and dz ~ 1e-15 |z|.
            assert!(
                rel(norm_cdf(z), u) < 1e-14 + 4e-15 * z * z,
                "u = {u}: z = {z}, cdf = {}",
                norm_cdf(z)
            );
        }
    }

    #[test]
    fn mills_gap_matches_direct_form_where_both_are_accurate() {
        for &t in &[3.9, 4.0, 4.1] {
            let direct = 1.0 - SQRT_PI * t * erfcx(t);
            assert!(rel(mills_gap(t), direct) < 1e-12, "t = {t}");
        }
        // Asymptotics 1/(2t^2) - 3/(4t^4) for large t.
        let t: f64 = 1e4;
        let asym = 1.0 / (2.0 * t * t) - 3.0 / (4.0 * t.powi(4));
        assert!(rel(mills_gap(t), asym) < 1e-10);
    }
}
