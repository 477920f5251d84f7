//! CPU reference of the SBP noise kernels (`kernels/sbp_noise.cu`), in double precision.
//! The formulas and their derivations are documented next to the device code; every
//! function here follows the device function of the same name step by step.

use super::philox::{philox4x32_10, uniform_open};
use super::special::{
    erf, erfcx, frac_1_sqrt_2, log_cdf_scaled, log_sqrt_2pi, mills_gap, norm_cdf, norm_pdf,
    norm_quantile, SQRT_PI_OVER_2,
};
use crate::error::KernelError;
use crate::shapes::{NoiseMode, SbpShape};

/// Lower truncation bound of log theta.
pub const A: f64 = -20.0;
/// Upper truncation bound of log theta.
pub const B: f64 = 0.0;
/// Clip of the uniform variate before the normal quantile.
pub const U_CLIP: f64 = 1e-5;
/// log_sigma is clamped to [LOG_SIGMA_MIN, LOG_SIGMA_MAX].
pub const LOG_SIGMA_MIN: f64 = -20.0;
/// See [`LOG_SIGMA_MIN`].
pub const LOG_SIGMA_MAX: f64 = 20.0;
/// Largest reported signal-to-noise ratio.
pub const SNR_MAX: f64 = 1e6;

/// The uniform variate of channel `channel` (and example `example` in per-example mode):
/// Philox4x32-10 of counter (channel, example, mode, 0) under key (seed_lo, seed_hi).
pub fn noise_eps(channel: u32, example: u32, mode: NoiseMode, seed: u64) -> f64 {
    let example = match mode {
        NoiseMode::PerChannel => 0,
        NoiseMode::PerExample => example,
    };
    let r = philox4x32_10(
        [channel, example, mode.counter_tag(), 0],
        [seed as u32, (seed >> 32) as u32],
    );
    uniform_open(r[0])
}

/// A noise sample and its pathwise derivatives at fixed eps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub theta: f64,
    pub dtheta_dmu: f64,
    pub dtheta_dlog_sigma: f64,
}

/// theta = exp(clip(mu + sigma Phi^-1(clip(Phi(alpha) + eps Z)), A, B)) and its derivatives.
pub fn sample(mu: f64, log_sigma: f64, eps: f64) -> Sample {
    let ls_clamped = !(LOG_SIGMA_MIN..=LOG_SIGMA_MAX).contains(&log_sigma);
    let ls = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX);
    let sigma = ls.exp();
    let alpha = (A - mu) / sigma;
    let beta = (B - mu) / sigma;
    let mirror = alpha > 0.0;
    let w = if !mirror {
        let (pa, pb) = (norm_cdf(alpha), norm_cdf(beta));
        pa + eps * (pb - pa)
    } else {
        let (qa, qb) = (norm_cdf(-alpha), norm_cdf(-beta));
        qa + eps * (qb - qa)
    };
    let u_clipped = !(U_CLIP..=1.0 - U_CLIP).contains(&w);
    let w = w.clamp(U_CLIP, 1.0 - U_CLIP);
    let z = if mirror {
        -norm_quantile(w)
    } else {
        norm_quantile(w)
    };
    let (pdf_a, pdf_b) = (norm_pdf(alpha), norm_pdf(beta));
    let (mut dz_dmu, mut dz_dls) = (0.0, 0.0);
    if !u_clipped {
        let inv_pdf_z = 1.0 / norm_pdf(z);
        let du_dmu = -((1.0 - eps) * pdf_a + eps * pdf_b) / sigma;
        let ta = if pdf_a == 0.0 { 0.0 } else { alpha * pdf_a };
        let tb = if pdf_b == 0.0 { 0.0 } else { beta * pdf_b };
        let du_dls = -((1.0 - eps) * ta + eps * tb);
        dz_dmu = du_dmu * inv_pdf_z;
        dz_dls = du_dls * inv_pdf_z;
    }
    let l = mu + sigma * z;
    if l <= A || l >= B {
        Sample {
            theta: l.clamp(A, B).exp(),
            dtheta_dmu: 0.0,
            dtheta_dlog_sigma: 0.0,
        }
    } else {
        let theta = l.exp();
        Sample {
            theta,
            dtheta_dmu: theta * (1.0 + sigma * dz_dmu),
            dtheta_dlog_sigma: if ls_clamped {
                0.0
            } else {
                theta * (sigma * z + sigma * dz_dls)
            },
        }
    }
}

/// log(Phi(hi - s) - Phi(lo - s)) + s^2/2 for lo < hi, split as `r + q` with the large
/// quadratic part in `q` (see `sbp_log_mass`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogMass {
    pub r: f64,
    pub q: f64,
    /// 0: both bounds in the lower tail, 1: both in the upper tail, 2: straddling 0.
    pub kind: u8,
}

impl LogMass {
    /// The full value r + q.
    pub fn value(&self) -> f64 {
        self.r + self.q
    }
}

/// See [`LogMass`].
pub fn log_mass(lo: f64, hi: f64, s: f64) -> LogMass {
    let (lp, hp) = (lo - s, hi - s);
    if hp <= 0.0 {
        let lh = log_cdf_scaled(hp);
        let e = log_cdf_scaled(lp) - lh - 0.5 * (lo - hi) * (lo + hi - 2.0 * s);
        LogMass {
            r: lh + (-e.exp_m1()).ln(),
            q: hi * (s - 0.5 * hi),
            kind: 0,
        }
    } else if lp >= 0.0 {
        let ll = log_cdf_scaled(-lp);
        let e = log_cdf_scaled(-hp) - ll - 0.5 * (lo - hi) * (2.0 * s - lo - hi);
        LogMass {
            r: ll + (-e.exp_m1()).ln(),
            q: lo * (s - 0.5 * lo),
            kind: 1,
        }
    } else {
        LogMass {
            r: (0.5 * (erf(hp * frac_1_sqrt_2()) + erf(-lp * frac_1_sqrt_2()))).ln(),
            q: 0.5 * s * s,
            kind: 2,
        }
    }
}

/// q(sa) - q(sb), exact in the shift when both parts are of the same kind.
pub fn q_diff(a: &LogMass, b: &LogMass, lo: f64, hi: f64, sa: f64, sb: f64) -> f64 {
    if a.kind != b.kind {
        return a.q - b.q;
    }
    match a.kind {
        0 => hi * (sa - sb),
        1 => lo * (sa - sb),
        _ => 0.5 * (sa - sb) * (sa + sb),
    }
}

/// Entropy of the standard normal truncated to [alpha, beta] (see `sbp_trunc_entropy`).
pub fn trunc_entropy(alpha: f64, beta: f64) -> f64 {
    let (alpha, beta) = if alpha >= 0.0 {
        (-beta, -alpha)
    } else {
        (alpha, beta)
    };
    if beta <= 0.0 {
        let lb = log_cdf_scaled(beta);
        let q = 0.5 * (alpha - beta) * (alpha + beta);
        let e = log_cdf_scaled(alpha) - lb - q;
        let m = -e.exp_m1();
        let rho = e.exp();
        let t = -beta * frac_1_sqrt_2();
        let r = SQRT_PI_OVER_2 * erfcx(t);
        let g = mills_gap(t);
        let rm = r * m;
        return log_sqrt_2pi() + 0.5 + lb + m.ln() - beta * (g - beta * r * rho) / (2.0 * rm)
            + alpha * (-q).exp() / (2.0 * rm);
    }
    let z = 0.5 * (erf(beta * frac_1_sqrt_2()) + erf(-alpha * frac_1_sqrt_2()));
    let (pa, pb) = (norm_pdf(alpha), norm_pdf(beta));
    let ta = if pa == 0.0 { 0.0 } else { alpha * pa };
    let tb = if pb == 0.0 { 0.0 } else { beta * pb };
    log_sqrt_2pi() + 0.5 + z.ln() + (ta - tb) / (2.0 * z)
}

/// E\[theta\], SNR and KL of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    pub mean: f64,
    pub snr: f64,
    pub kl: f64,
}

/// Per-channel statistics (see `sbp_stats`): E\[theta\], SNR = E/sqrt(Var) capped at
/// [`SNR_MAX`], and KL(q || log-uniform on [A, B]) = max(0, log(B - A) - entropy).
pub fn stats(mu: f64, log_sigma: f64) -> ChannelStats {
    let ls = log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX);
    let sigma = ls.exp();
    let alpha = (A - mu) / sigma;
    let beta = (B - mu) / sigma;
    let m0 = log_mass(alpha, beta, 0.0);
    let m1 = log_mass(alpha, beta, sigma);
    let m2 = log_mass(alpha, beta, 2.0 * sigma);
    let q10 = q_diff(&m1, &m0, alpha, beta, sigma, 0.0);
    let q21 = q_diff(&m2, &m1, alpha, beta, 2.0 * sigma, sigma);
    let d = (m2.r - 2.0 * m1.r + m0.r) + (q21 - q10);
    let ratio = if d > 0.0 { d.exp_m1() } else { 0.0 };
    let snr = if ratio > 1.0 / (SNR_MAX * SNR_MAX) {
        (1.0 / ratio.sqrt()).min(SNR_MAX)
    } else {
        SNR_MAX
    };
    ChannelStats {
        mean: (mu + (m1.r - m0.r) + q10).exp(),
        snr,
        kl: ((B - A).ln() - ls - trunc_entropy(alpha, beta)).max(0.0),
    }
}

fn check_params(
    op: &'static str,
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
) -> Result<(), KernelError> {
    if mu.len() != shape.channels || ls.len() != shape.channels {
        return Err(KernelError::shape(
            op,
            format!(
                "mu has {} and log_sigma {} entries, expected {} channels",
                mu.len(),
                ls.len(),
                shape.channels
            ),
        ));
    }
    if shape.rows > u32::MAX as usize || shape.channels > u32::MAX as usize {
        return Err(KernelError::invalid(
            op,
            "rows and channels must fit in 32 bits",
        ));
    }
    Ok(())
}

/// The samples of every (example, channel) the forward pass uses: C entries per-channel,
/// rows*C entries per-example (row-major).
pub fn samples(
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
    seed: u64,
    mode: NoiseMode,
) -> Result<Vec<Sample>, KernelError> {
    check_params("cpu sbp samples", shape, mu, ls)?;
    let n = shape.theta_len(mode)?;
    Ok((0..n)
        .map(|k| {
            let c = k % shape.channels;
            let r = k / shape.channels;
            let eps = noise_eps(c as u32, r as u32, mode, seed);
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

/// Forward: (y = x * theta in float, theta as float), like `sbp_forward`.
pub fn forward(
    x: &[f32],
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
    seed: u64,
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
    let theta: Vec<f32> = samples(shape, mu, ls, seed, mode)?
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
    /// dy * theta (float, as the kernel computes it)
    pub dx: Vec<f32>,
    /// per channel
    pub dmu: Vec<f64>,
    /// per channel
    pub dlog_sigma: Vec<f64>,
    /// sum of dy * x per theta entry (C or rows*C entries)
    pub dtheta: Vec<f64>,
}

/// Backward of [`forward`] for upstream gradient `dy`.
pub fn backward(
    dy: &[f32],
    x: &[f32],
    shape: &SbpShape,
    mu: &[f32],
    ls: &[f32],
    seed: u64,
    mode: NoiseMode,
) -> Result<Grads, KernelError> {
    let n = shape.numel()?;
    if x.len() != n || dy.len() != n {
        return Err(KernelError::shape(
            "cpu sbp backward",
            format!(
                "x has {}, dy {} elements, shape {shape:?} needs {n}",
                x.len(),
                dy.len()
            ),
        ));
    }
    let s = samples(shape, mu, ls, seed, mode)?;
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
