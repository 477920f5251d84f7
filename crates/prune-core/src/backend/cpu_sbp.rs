//! The SBP op of the CPU backend: the kernel crate's CPU reference
//! (`prune_kernels::cpu_ref::sbp`), the one SBP math of the workspace, on host tensors.
//! See [`super::sbp_op`] for the formulas.

use super::sbp_op::{gate_view, SbpForward, SbpGateGrads, SbpKl, SbpNoiseArgs, SbpSaved, SbpStats};
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use prune_kernels::cpu_ref::sbp::{kl_layer_sum_and_grad, layer_stats, samples};
use prune_kernels::{KernelError, NoiseMode, SbpShape};

fn kernel_err(op: &'static str, e: KernelError) -> CoreError {
    CoreError::InvalidArgument {
        op,
        reason: e.to_string(),
    }
}

/// Shape of a θ buffer: `[C]` or `[N, C]`.
fn theta_shape(shape: &SbpShape, mode: NoiseMode) -> Vec<usize> {
    match mode {
        NoiseMode::PerChannel => vec![shape.channels],
        NoiseMode::PerExample => vec![shape.rows, shape.channels],
    }
}

/// Index of the θ entry of row `n`, channel `c`.
fn theta_index(mode: NoiseMode, channels: usize, n: usize, c: usize) -> usize {
    match mode {
        NoiseMode::PerChannel => c,
        NoiseMode::PerExample => n * channels + c,
    }
}

fn vector(v: Vec<f32>) -> Result<Tensor> {
    Tensor::from_vec([v.len()], v)
}

/// Samples θ (once per entry, in f64, stored as f32) and multiplies.
pub(super) fn forward(
    x: &Tensor,
    mu: &Tensor,
    log_sigma: &Tensor,
    noise: &SbpNoiseArgs,
) -> Result<SbpForward> {
    let shape = gate_view(x.shape());
    let smp = samples(
        &shape,
        mu.data(),
        log_sigma.data(),
        noise.stream,
        noise.mode,
    )
    .map_err(|e| kernel_err("sbp gate", e))?;
    let ts = theta_shape(&shape, noise.mode);
    let col = |f: fn(&prune_kernels::cpu_ref::sbp::Sample) -> f64| -> Result<Tensor> {
        Tensor::from_vec(ts.clone(), smp.iter().map(|s| f(s) as f32).collect())
    };
    let theta = col(|s| s.theta)?;
    let mut y = x.data().to_vec();
    let inner = shape.inner;
    for n in 0..shape.rows {
        for c in 0..shape.channels {
            let th = theta.data()[theta_index(noise.mode, shape.channels, n, c)];
            let base = (n * shape.channels + c) * inner;
            y[base..base + inner].iter_mut().for_each(|v| *v *= th);
        }
    }
    Ok(SbpForward {
        y: Tensor::from_vec(x.shape().to_vec(), y)?,
        saved: SbpSaved {
            shape,
            noise: *noise,
            mu: mu.clone(),
            log_sigma: log_sigma.clone(),
            theta,
            dtheta: Some((col(|s| s.dtheta_dmu)?, col(|s| s.dtheta_dlog_sigma)?)),
        },
    })
}

/// `dx = g·θ`; per θ entry `s = Σ g·x` (f64), then the chain rule through the saved
/// derivatives, summed per channel in f64.
pub(super) fn backward(x: &Tensor, g: &Tensor, saved: &SbpSaved) -> Result<SbpGateGrads> {
    x.expect_same_shape(g, "sbp gate backward")?;
    let SbpShape {
        rows,
        channels,
        inner,
    } = saved.shape;
    if x.numel() != rows * channels * inner {
        return Err(CoreError::BadShape {
            op: "sbp gate backward",
            shape: x.shape().to_vec(),
            reason: format!("the forward pass saw {rows}×{channels}×{inner} elements"),
        });
    }
    let Some((d_mu, d_ls)) = &saved.dtheta else {
        return Err(CoreError::InvalidArgument {
            op: "sbp gate backward",
            reason: "the saved samples lack their derivatives (not a CPU forward pass)".into(),
        });
    };
    let (theta, d_mu, d_ls) = (saved.theta.data(), d_mu.data(), d_ls.data());
    let mode = saved.noise.mode;
    let mut dx = vec![0f32; x.numel()];
    let mut dmu = vec![0f64; channels];
    let mut dls = vec![0f64; channels];
    for n in 0..rows {
        for c in 0..channels {
            let k = theta_index(mode, channels, n, c);
            let th = theta[k];
            let base = (n * channels + c) * inner;
            let (gs, xs) = (&g.data()[base..base + inner], &x.data()[base..base + inner]);
            let mut s = 0f64;
            for ((d, &gv), &xv) in dx[base..base + inner].iter_mut().zip(gs).zip(xs) {
                *d = gv * th;
                s += (gv * xv) as f64;
            }
            dmu[c] += s * d_mu[k] as f64;
            dls[c] += s * d_ls[k] as f64;
        }
    }
    let to = |v: Vec<f64>| vector(v.into_iter().map(|a| a as f32).collect());
    Ok(SbpGateGrads {
        dx: Tensor::from_vec(x.shape().to_vec(), dx)?,
        dmu: to(dmu)?,
        dlog_sigma: to(dls)?,
    })
}

/// E\[θ\], SNR and the test-time scale per channel.
pub(super) fn stats(mu: &Tensor, log_sigma: &Tensor) -> Result<SbpStats> {
    let st = layer_stats(mu.data(), log_sigma.data()).map_err(|e| kernel_err("sbp stats", e))?;
    Ok(SbpStats {
        expected_theta: vector(st.expected_theta)?,
        snr: vector(st.snr)?,
        scale: vector(st.scale)?,
    })
}

/// The summed KL and its gradient.
pub(super) fn kl(mu: &Tensor, log_sigma: &Tensor) -> Result<SbpKl> {
    let kl =
        kl_layer_sum_and_grad(mu.data(), log_sigma.data()).map_err(|e| kernel_err("sbp kl", e))?;
    Ok(SbpKl {
        sum: Tensor::scalar(kl.sum as f32),
        dmu: vector(kl.d_mu)?,
        dlog_sigma: vector(kl.d_log_sigma)?,
    })
}
