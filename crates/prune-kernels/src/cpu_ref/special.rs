//! Special functions of the standard normal distribution, in `f64`.
//!
//! * `erf`, `erfc`, `erfcx` — W. J. Cody's rational Chebyshev approximations
//!   ("Rational Chebyshev approximations for the error function", Math. Comp.
//!   1969, coefficients of the SPECFUN routine `CALERF`).  In IEEE double
//!   arithmetic they are accurate to a few ulp; `exp(-y²)` is evaluated with
//!   Cody's split `y = y₁ + (y - y₁)`, `y₁ = ⌊16y⌋/16`, so the squaring does
//!   not amplify the rounding error of `y`.
//! * `norm_cdf` Φ, `norm_sf` 1-Φ, `log_norm_cdf` log Φ, `norm_pdf` φ: built on
//!   the above. In the lower tail Φ(x) = ½·erfcx(-x/√2)·exp(-x²/2) with the
//!   exponential split on `x` itself, so Φ keeps full relative accuracy down to
//!   underflow and log Φ never underflows.
//! * `norm_ppf` Φ⁻¹ — M. J. Wichura's AS 241 (`PPND16`, relative error about
//!   1e-16), followed by one Newton step in log space:
//!   `x ← x - expm1(log Φ(x) - log p) · Φ(x)/φ(x)`, which stays finite in both
//!   tails.
//! * `laplace_cf` — the tails `T₁`, `T₂` of Laplace's continued fraction
//!   `√π·erfcx(z) = 1/(z + T₁)`, `T_n = (n/2)/(z + T_{n+1})`, evaluated by
//!   backward recurrence. For `z ≥ 4` a depth of 40 reaches full double
//!   precision (checked against 40-digit references); [`CF_DEPTH`] keeps a margin.

// Published coefficients are kept digit for digit, as printed by their authors.
#![allow(clippy::excessive_precision)]

use std::f64::consts::{FRAC_1_SQRT_2, SQRT_2};

/// 1/√π.
pub const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
/// log √(2π).
pub const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// √(π/2).
pub const SQRT_PI_OVER_2: f64 = 1.253_314_137_315_500_3;
/// 1/√(2π).
pub const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Depth of the backward recurrence in [`laplace_cf`].
pub const CF_DEPTH: usize = 64;
/// Smallest argument for which [`laplace_cf`] is used.
pub const CF_MIN_Z: f64 = 4.0;

// Cody, first interval |x| <= 0.46875: erf(x) = x·A(x²)/B(x²).
const A: [f64; 5] = [
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
];
const B: [f64; 4] = [
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
];
// Cody, second interval 0.46875 < x <= 4: erfcx(x) = C(x)/D(x).
const C: [f64; 9] = [
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
];
const D: [f64; 8] = [
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
];
// Cody, third interval x > 4: erfcx(x) = (1/√π - P(1/x²)/(x²·Q(1/x²)))/x.
const P: [f64; 6] = [
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
];
const Q: [f64; 5] = [
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
];
const THRESH: f64 = 0.468_75;
/// erfc(x) underflows to zero at and above this argument.
const XBIG: f64 = 26.543;
/// Above this, erfcx(x) = 1/(√π·x) to working precision.
const XHUGE: f64 = 6.71e7;
/// Above this, erfcx(x) underflows.
const XMAX: f64 = 2.53e307;
/// Below this, erfcx(x) overflows.
const XNEG: f64 = -26.628;

/// erf(x)/x·x for |x| ≤ 0.46875 (Cody's first rational function).
fn erf_small(x: f64) -> f64 {
    let ysq = if x.abs() > 1.11e-16 { x * x } else { 0.0 };
    let mut num = A[4] * ysq;
    let mut den = ysq;
    for i in 0..3 {
        num = (num + A[i]) * ysq;
        den = (den + B[i]) * ysq;
    }
    x * (num + A[3]) / (den + B[3])
}

/// erfcx(y) for y > 0.46875 (Cody's second and third rational functions).
fn erfcx_pos(y: f64) -> f64 {
    if y <= 4.0 {
        let mut num = C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        (num + C[7]) / (den + D[7])
    } else if y >= XMAX {
        0.0
    } else if y >= XHUGE {
        FRAC_1_SQRT_PI / y
    } else {
        let ysq = 1.0 / (y * y);
        let mut num = P[5] * ysq;
        let mut den = ysq;
        for i in 0..4 {
            num = (num + P[i]) * ysq;
            den = (den + Q[i]) * ysq;
        }
        let r = ysq * (num + P[4]) / (den + Q[4]);
        (FRAC_1_SQRT_PI - r) / y
    }
}

/// exp(-y²) with the square split as `y₁² + (y - y₁)(y + y₁)`, `y₁ = trunc(16y)/16`.
pub fn exp_neg_sq(y: f64) -> f64 {
    if y.is_infinite() {
        return 0.0;
    }
    let y1 = (y * 16.0).trunc() / 16.0;
    let del = (y - y1) * (y + y1);
    (-y1 * y1).exp() * (-del).exp()
}

/// exp(+y²) with the same split as [`exp_neg_sq`].
fn exp_pos_sq(y: f64) -> f64 {
    if y.is_infinite() {
        return f64::INFINITY;
    }
    let y1 = (y * 16.0).trunc() / 16.0;
    let del = (y - y1) * (y + y1);
    (y1 * y1).exp() * del.exp()
}

/// exp(-x²/2) with the square split on `x` (so the halving is exact).
pub fn exp_neg_half_sq(x: f64) -> f64 {
    if x.is_infinite() {
        return 0.0;
    }
    let x1 = (x * 16.0).trunc() / 16.0;
    let del = (x - x1) * (x + x1);
    (-0.5 * x1 * x1).exp() * (-0.5 * del).exp()
}

/// The error function erf(x) = 2/√π ∫₀ˣ e^{-t²} dt.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= THRESH {
        return erf_small(x);
    }
    let c = if y >= XBIG {
        0.0
    } else {
        erfcx_pos(y) * exp_neg_sq(y)
    };
    let r = (0.5 - c) + 0.5;
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// The complementary error function erfc(x) = 1 - erf(x), accurate in relative
/// terms for large positive `x` (until it underflows at x ≈ 26.5).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= THRESH {
        return 1.0 - erf_small(x);
    }
    let c = if y >= XBIG {
        0.0
    } else {
        erfcx_pos(y) * exp_neg_sq(y)
    };
    if x < 0.0 {
        2.0 - c
    } else {
        c
    }
}

/// The scaled complementary error function erfcx(x) = exp(x²)·erfc(x).
/// Finite for x > -26.628 (it overflows below).
pub fn erfcx(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= THRESH {
        let ysq = if y > 1.11e-16 { y * y } else { 0.0 };
        return ysq.exp() * (1.0 - erf_small(x));
    }
    if x > 0.0 {
        return erfcx_pos(y);
    }
    if x < XNEG {
        return f64::INFINITY;
    }
    2.0 * exp_pos_sq(y) - erfcx_pos(y)
}

/// The standard normal density φ(x).
pub fn norm_pdf(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * exp_neg_half_sq(x)
}

/// log φ(x).
pub fn log_norm_pdf(x: f64) -> f64 {
    -0.5 * x * x - LN_SQRT_2PI
}

/// The standard normal CDF Φ(x), with full relative accuracy in the lower tail.
pub fn norm_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let z = -x * FRAC_1_SQRT_2;
    if z.abs() <= THRESH {
        0.5 + 0.5 * erf_small(-z)
    } else if x < 0.0 {
        0.5 * erfcx_pos(z) * exp_neg_half_sq(x)
    } else {
        1.0 - norm_sf(x)
    }
}

/// The standard normal survival function 1 - Φ(x) = Φ(-x).
pub fn norm_sf(x: f64) -> f64 {
    norm_cdf(-x)
}

/// log Φ(x); finite for every finite `x` (no underflow in the lower tail).
pub fn log_norm_cdf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < -0.7 {
        let z = -x * FRAC_1_SQRT_2;
        (0.5 * erfcx(z)).ln() - 0.5 * x * x
    } else if x <= 0.0 {
        norm_cdf(x).ln()
    } else {
        (-norm_sf(x)).ln_1p()
    }
}

/// The ratio Φ(x)/φ(x) = √(π/2)·erfcx(-x/√2) (Mills' ratio of the lower tail).
pub fn cdf_over_pdf(x: f64) -> f64 {
    SQRT_PI_OVER_2 * erfcx(-x * FRAC_1_SQRT_2)
}

// Wichura AS 241 (PPND16) coefficients.
const PA: [f64; 8] = [
    3.3871328727963666080e0,
    1.3314166789178437745e2,
    1.9715909503065514427e3,
    1.3731693765509461125e4,
    4.5921953931549871457e4,
    6.7265770927008700853e4,
    3.3430575583588128105e4,
    2.5090809287301226727e3,
];
const PB: [f64; 8] = [
    1.0,
    4.2313330701600911252e1,
    6.8718700749205790830e2,
    5.3941960214247511077e3,
    2.1213794301586595867e4,
    3.9307895800092710610e4,
    2.8729085735721942674e4,
    5.2264952788528545610e3,
];
const PC: [f64; 8] = [
    1.42343711074968357734e0,
    4.63033784615654529590e0,
    5.76949722146069140550e0,
    3.64784832476320460504e0,
    1.27045825245236838258e0,
    2.41780725177450611770e-1,
    2.27238449892691845833e-2,
    7.74545014278341407640e-4,
];
const PD: [f64; 8] = [
    1.0,
    2.05319162663775882187e0,
    1.67638483018380384940e0,
    6.89767334985100004550e-1,
    1.48103976427480074590e-1,
    1.51986665636164571966e-2,
    5.47593808499534494600e-4,
    1.05075007164441684324e-9,
];
const PE: [f64; 8] = [
    6.65790464350110377720e0,
    5.46378491116411436990e0,
    1.78482653991729133580e0,
    2.96560571828504891230e-1,
    2.65321895265761230930e-2,
    1.24266094738807843860e-3,
    2.71155556874348757815e-5,
    2.01033439929228813265e-7,
];
const PF: [f64; 8] = [
    1.0,
    5.99832206555887937690e-1,
    1.36929880922735805310e-1,
    1.48753612908506148525e-2,
    7.86869131145613259100e-4,
    1.84631831751005468180e-5,
    1.42151175831644588870e-7,
    2.04426310338993978564e-15,
];

fn poly(c: &[f64; 8], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &ci| acc * x + ci)
}

/// AS 241 for the lower half, 0 < p ≤ 0.5.
fn as241_lower(p: f64) -> f64 {
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180_625 - q * q;
        return q * poly(&PA, r) / poly(&PB, r);
    }
    let r = (-p.ln()).sqrt();
    let x = if r <= 5.0 {
        let r = r - 1.6;
        poly(&PC, r) / poly(&PD, r)
    } else {
        let r = r - 5.0;
        poly(&PE, r) / poly(&PF, r)
    };
    -x
}

/// Quantile of the lower half with one Newton refinement in log space.
fn ppf_lower(p: f64) -> f64 {
    let x = as241_lower(p);
    // Newton on log Φ(x) = log p:  Δ = (Φ(x) - p)/φ(x) = expm1(log Φ(x) - log p)·Φ(x)/φ(x).
    let step = (log_norm_cdf(x) - p.ln()).exp_m1() * cdf_over_pdf(x);
    if step.is_finite() {
        x - step
    } else {
        x
    }
}

/// The standard normal quantile Φ⁻¹(p); ±∞ at p = 0 or 1, NaN outside [0, 1].
pub fn norm_ppf(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p <= 0.5 {
        ppf_lower(p)
    } else {
        // 1 - p is exact for p ≥ 0.5 (Sterbenz).
        -ppf_lower(1.0 - p)
    }
}

/// Backward recurrence of Laplace's continued fraction for erfcx:
/// returns `(T₁, T₂)` with `√π·erfcx(z) = 1/(z + T₁)`, `T₁ = ½/(z + T₂)`,
/// `T₂ = 1/(z + T₃)`, `T_n = (n/2)/(z + T_{n+1})`. Intended for `z ≥ CF_MIN_Z`.
pub fn laplace_cf(z: f64) -> (f64, f64) {
    let mut t = 0.0;
    for n in (2..=CF_DEPTH).rev() {
        t = (n as f64 * 0.5) / (z + t);
    }
    let t1 = 0.5 / (z + t);
    (t1, t)
}

/// Quantities of the lower tail of N(0,1) at `y ≤ -CF_MIN_Z·√2`, computed from the
/// continued fraction without cancellation:
/// `m = Φ(y)/φ(y)`, `q = 1 + y·m`, `p = m + y·q = m·(1 + y²) + y`.
#[derive(Debug, Clone, Copy)]
pub struct LowerTail {
    /// Mills ratio Φ(y)/φ(y).
    pub m: f64,
    /// 1 + y·m (≈ 1/y²).
    pub q: f64,
    /// m + y·q (≈ 2/|y|³).
    pub p: f64,
}

/// See [`LowerTail`]. `y` must satisfy `y ≤ -CF_MIN_Z·√2`.
pub fn lower_tail(y: f64) -> LowerTail {
    let z = -y * FRAC_1_SQRT_2;
    let (t1, t2) = laplace_cf(z);
    let m = FRAC_1_SQRT_2 / (z + t1);
    let q = t1 / (z + t1);
    let p = FRAC_1_SQRT_2 * t2 / ((z + t2) * (z + t1));
    LowerTail { m, q, p }
}

/// The argument below which [`lower_tail`] is used instead of direct formulas.
pub const LOWER_TAIL_Y: f64 = -CF_MIN_Z * SQRT_2;
