//! CPU reference of `kernels/sbp_kl.cu`: the per-channel SBP KL term and its gradient.
//! The KL value is [`super::sbp::stats`]; the gradient follows the closed form documented
//! in the kernel file, step by step.

use super::sbp::{stats, A, B, LOG_SIGMA_MAX, LOG_SIGMA_MIN};
use super::special::{
    erf, erfcx, frac_1_sqrt_2, log_cdf_scaled, mills_gap, norm_pdf, SQRT_PI_OVER_2,
};

/// `Q(t) = E[(beta - X)^2 | X < beta]` at `t = -beta`, as `sbp_tail_q`.
pub fn tail_q(t: f64, r: f64, g: f64) -> f64 {
    if t <= 1000.0 {
        return (r - t * g) / r;
    }
    let u = 1.0 / (t * t);
    2.0 * u * (1.0 - u * (6.0 - u * (45.0 - 420.0 * u))) / (1.0 - u * (1.0 - u * (3.0 - 15.0 * u)))
}

/// `(dH/dalpha, dH/dbeta)` of the truncated-normal entropy, evaluated as `sbp_kl_hgrad`
/// (lower-tail form with the stable `Q = (r - t G)/r`, the upper tail by mirroring).
pub fn entropy_grad(alpha: f64, beta: f64) -> (f64, f64) {
    let mirror = alpha >= 0.0;
    let (alpha, beta) = if mirror {
        (-beta, -alpha)
    } else {
        (alpha, beta)
    };
    let s2 = frac_1_sqrt_2();
    let (pa, pb, ea, eb) = if beta <= 0.0 {
        let t = -beta;
        let lb = log_cdf_scaled(beta);
        let q = 0.5 * (alpha - beta) * (alpha + beta);
        let e = log_cdf_scaled(alpha) - lb - q;
        let m = -e.exp_m1();
        let rho = e.exp();
        let r = SQRT_PI_OVER_2 * erfcx(t * s2);
        let g = mills_gap(t * s2);
        let pb = 1.0 / (r * m);
        let pa = (-q).exp() / (r * m);
        let apa = if pa == 0.0 { 0.0 } else { alpha * pa };
        let nz = apa + t * pb;
        let qq = tail_q(t, r, g);
        let eb = (qq - rho * (1.0 + t * t)) / m - apa;
        let ea = if pa == 0.0 {
            0.0
        } else {
            1.0 + alpha * alpha - nz
        };
        (pa, pb, ea, eb)
    } else {
        let z = 0.5 * (erf(beta * s2) + erf(-alpha * s2));
        let (pa, pb) = (norm_pdf(alpha) / z, norm_pdf(beta) / z);
        let apa = if pa == 0.0 { 0.0 } else { alpha * pa };
        let bpb = if pb == 0.0 { 0.0 } else { beta * pb };
        let nz = apa - bpb;
        let ea = if pa == 0.0 {
            0.0
        } else {
            1.0 + alpha * alpha - nz
        };
        let eb = if pb == 0.0 {
            0.0
        } else {
            1.0 + beta * beta - nz
        };
        (pa, pb, ea, eb)
    };
    let (ha, hb) = (-0.5 * pa * ea, 0.5 * pb * eb);
    if mirror {
        (-hb, -ha)
    } else {
        (ha, hb)
    }
}

/// `(KL, dKL/dmu, dKL/dlog_sigma)` of one channel.
pub fn kl_grad(mu: f64, log_sigma: f64) -> (f64, f64, f64) {
    let kl = stats(mu, log_sigma).kl;
    if kl <= 0.0 {
        return (kl, 0.0, 0.0);
    }
    let clamped = !(LOG_SIGMA_MIN..=LOG_SIGMA_MAX).contains(&log_sigma);
    let sigma = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX).exp();
    let (alpha, beta) = ((A - mu) / sigma, (B - mu) / sigma);
    let (h_a, h_b) = entropy_grad(alpha, beta);
    let dmu = (h_a + h_b) / sigma;
    let dls = if clamped {
        0.0
    } else {
        let ah = if h_a == 0.0 { 0.0 } else { alpha * h_a };
        let bh = if h_b == 0.0 { 0.0 } else { beta * h_b };
        -1.0 + ah + bh
    };
    (kl, dmu, dls)
}
