//! The fused optimizer steps on the device: `sgd_step`, `adam_step` (in place).

use super::buffers::{sl, st_mut};
use super::{kernel_err, GpuDevice, GpuRuntime};
use crate::backend::{AdamStep, SgdStep};
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use prune_kernels::ops::update;
use std::sync::Arc;

/// One SGD step on `w` (momentum, weight decay, Nesterov per `h`).
pub(super) fn sgd<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    w: &mut Tensor,
    g: &Tensor,
    velocity: Option<&mut Tensor>,
    h: &SgdStep,
) -> Result<()> {
    w.expect_same_shape(g, "sgd update")?;
    let n = w.numel();
    let step = update::SgdStep {
        lr: h.lr,
        momentum: h.momentum,
        weight_decay: h.weight_decay,
        nesterov: h.nesterov,
    };
    // Without momentum the kernel never reads the velocity; it still takes a buffer.
    let mut scratch;
    let vel: &mut R::Buf<f32> = match velocity {
        Some(v) => st_mut::<R>("sgd update", v)?,
        None if h.momentum == 0.0 => {
            scratch = d.zeros(n)?;
            &mut scratch
        }
        None => {
            return Err(CoreError::InvalidArgument {
                op: "sgd update",
                reason: "momentum needs a velocity buffer".into(),
            })
        }
    };
    d.nn.sgd_step(
        d.stream(),
        st_mut::<R>("sgd update", w)?,
        sl::<R>("sgd update", g)?,
        vel,
        n,
        step,
    )
    .map_err(kernel_err("sgd update"))
}

/// `r ← (1 − m)·r + m·b` in place, one launch.
pub(super) fn ema<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    r: &mut Tensor,
    b: &Tensor,
    m: f32,
) -> Result<()> {
    r.expect_same_shape(b, "running average")?;
    let n = r.numel();
    d.nn.ema_step(
        d.stream(),
        st_mut::<R>("running average", r)?,
        sl::<R>("running average", b)?,
        n,
        m,
    )
    .map_err(kernel_err("running average"))
}

/// One bias-corrected Adam step on `w` with moments `m`, `v`.
pub(super) fn adam<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    w: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    h: &AdamStep,
) -> Result<()> {
    w.expect_same_shape(g, "adam update")?;
    let n = w.numel();
    let step = update::AdamCorrected {
        lr: h.lr as f32,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        weight_decay: h.weight_decay,
        bias_correction1: h.bias_correction1 as f32,
        bias_correction2: h.bias_correction2 as f32,
    };
    d.nn.adam_step_corrected(
        d.stream(),
        st_mut::<R>("adam update", w)?,
        sl::<R>("adam update", g)?,
        st_mut::<R>("adam update", m)?,
        st_mut::<R>("adam update", v)?,
        n,
        step,
    )
    .map_err(kernel_err("adam update"))
}
