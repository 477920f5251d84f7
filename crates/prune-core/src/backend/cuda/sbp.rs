//! The SBP noise gate, its statistics and KL on the device: `sbp_forward`,
//! `sbp_backward_tiles/finalize`, `sbp_stats`, `sbp_kl_grad`.

use super::buffers::{sl, wrap};
use super::elementwise::{bin, reduce, un};
use super::{kernel_err, GpuDevice, GpuRuntime};
use crate::backend::{
    gate_view, SbpForward, SbpGateGrads, SbpKl, SbpNoiseArgs, SbpSaved, SbpStats,
};
use crate::error::Result;
use crate::tensor::Tensor;
use prune_kernels::cpu_ref::elementwise::{Binary as KB, Unary as KU};
use prune_kernels::{SbpParams, SbpShape};
use std::sync::Arc;

/// The gate `y = θ·x` with θ sampled on the device, and what its backward needs.
pub(super) fn noise_forward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    mu: &Tensor,
    log_sigma: &Tensor,
    noise: &SbpNoiseArgs,
) -> Result<SbpForward> {
    let shape = gate_view(x.shape());
    let p = SbpParams {
        mu: sl::<R>("sbp gate", mu)?,
        log_sigma: sl::<R>("sbp gate", log_sigma)?,
        stream: noise.stream,
        mode: noise.mode,
    };
    let n = shape.numel().map_err(kernel_err("sbp gate"))?;
    let tn = shape
        .theta_len(noise.mode)
        .map_err(kernel_err("sbp gate"))?;
    let (mut y, mut theta) = (d.zeros(n)?, d.zeros(tn)?);
    // Per example, the samples' pathwise derivatives (interleaved d/dmu, d/dlog_sigma)
    // are drawn with them and kept for the backward pass.
    let mut dth = match noise.mode {
        prune_kernels::NoiseMode::PerChannel => None,
        prune_kernels::NoiseMode::PerExample => Some(d.zeros(2 * tn)?),
    };
    d.sbp
        .forward_into(
            d.stream(),
            sl::<R>("sbp gate", x)?,
            shape,
            &p,
            &mut y,
            &mut theta,
            dth.as_mut(),
        )
        .map_err(kernel_err("sbp gate"))?;
    let dtheta = match dth {
        Some(b) => {
            let t = wrap(d, vec![tn, 2], b)?;
            Some((t.clone(), t))
        }
        None => None,
    };
    Ok(SbpForward {
        y: wrap(d, x.shape().to_vec(), y)?,
        saved: SbpSaved {
            shape,
            noise: *noise,
            mu: mu.clone(),
            log_sigma: log_sigma.clone(),
            theta: wrap(d, theta_shape(&shape, noise), theta)?,
            dtheta,
        },
    })
}

/// The gradients of the gate with respect to `x`, μ and log σ.
pub(super) fn noise_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    g: &Tensor,
    saved: &SbpSaved,
) -> Result<SbpGateGrads> {
    x.expect_same_shape(g, "sbp gate backward")?;
    const OP: &str = "sbp gate backward";
    let shape = saved.shape;
    let p = SbpParams {
        mu: sl::<R>(OP, &saved.mu)?,
        log_sigma: sl::<R>(OP, &saved.log_sigma)?,
        stream: saved.noise.stream,
        mode: saved.noise.mode,
    };
    let gr = d
        .sbp
        .backward(
            d.stream(),
            sl::<R>(OP, g)?,
            sl::<R>(OP, x)?,
            sl::<R>(OP, &saved.theta)?,
            match &saved.dtheta {
                Some((dth, _)) => Some(sl::<R>(OP, dth)?),
                None => None,
            },
            shape,
            &p,
        )
        .map_err(kernel_err(OP))?;
    let c = shape.channels;
    Ok(SbpGateGrads {
        dx: wrap(d, x.shape().to_vec(), gr.dx)?,
        dmu: wrap(d, vec![c], gr.dmu)?,
        dlog_sigma: wrap(d, vec![c], gr.dlog_sigma)?,
    })
}

/// E[θ], SNR and the evaluation scale E[θ]·[SNR > 1] per channel.
pub(super) fn stats<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    mu: &Tensor,
    log_sigma: &Tensor,
) -> Result<SbpStats> {
    let c = mu.numel();
    let s = d
        .sbp
        .stats(
            d.stream(),
            sl::<R>("sbp stats", mu)?,
            sl::<R>("sbp stats", log_sigma)?,
            c,
        )
        .map_err(kernel_err("sbp stats"))?;
    let mean = wrap(d, vec![c], s.mean)?;
    let snr = wrap(d, vec![c], s.snr)?;
    // E[θ]·[SNR − 1 > 0]
    let scale = bin(d, &mean, &un(d, &snr, KU::AddScalar, -1.0)?, KB::ReluGrad)?;
    Ok(SbpStats {
        expected_theta: mean,
        snr,
        scale,
    })
}

/// Σ KL over the channels and its gradient.
pub(super) fn kl<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    mu: &Tensor,
    log_sigma: &Tensor,
) -> Result<SbpKl> {
    let c = mu.numel();
    let (mut kl, mut dmu, mut dls) = (d.zeros(c)?, d.zeros(c)?, d.zeros(c)?);
    d.nn.sbp_kl_grad(
        d.stream(),
        sl::<R>("sbp kl", mu)?,
        sl::<R>("sbp kl", log_sigma)?,
        c,
        &mut kl,
        &mut dmu,
        &mut dls,
    )
    .map_err(kernel_err("sbp kl"))?;
    let kl = wrap(d, vec![c], kl)?;
    Ok(SbpKl {
        sum: reduce(d, &kl, &[0], false, vec![])?,
        dmu: wrap(d, vec![c], dmu)?,
        dlog_sigma: wrap(d, vec![c], dls)?,
    })
}

fn theta_shape(shape: &SbpShape, noise: &SbpNoiseArgs) -> Vec<usize> {
    match noise.mode {
        prune_kernels::NoiseMode::PerChannel => vec![shape.channels],
        prune_kernels::NoiseMode::PerExample => vec![shape.rows, shape.channels],
    }
}
