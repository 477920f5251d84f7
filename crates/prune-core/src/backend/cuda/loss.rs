//! Log-softmax and the mean cross-entropy with their backward passes:
//! `log_softmax_fwd/bwd`, `nll_fwd/bwd` and a mean by `reduce_rows`.

use super::buffers::{idx, sl, wrap};
use super::elementwise::{bin, full, reduce};
use super::{kernel_err, GpuDevice, GpuRuntime};
use crate::error::Result;
use crate::storage::Indices;
use crate::tensor::Tensor;
use prune_kernels::cpu_ref::elementwise::Binary as KB;
use std::sync::Arc;

pub(super) fn log_softmax<R: GpuRuntime>(d: &Arc<GpuDevice<R>>, x: &Tensor) -> Result<Tensor> {
    x.expect_rank(2, "log_softmax")?;
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let mut y = d.output(rows * cols)?;
    d.nn.log_softmax(d.stream(), sl::<R>("log_softmax", x)?, &mut y, rows, cols)
        .map_err(kernel_err("log_softmax"))?;
    wrap(d, x.shape().to_vec(), y)
}

pub(super) fn log_softmax_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    y: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    y.expect_same_shape(g, "log_softmax backward")?;
    y.expect_rank(2, "log_softmax backward")?;
    let (rows, cols) = (y.shape()[0], y.shape()[1]);
    let mut dx = d.zeros(rows * cols)?;
    d.nn.log_softmax_backward(
        d.stream(),
        sl::<R>("log_softmax backward", g)?,
        sl::<R>("log_softmax backward", y)?,
        &mut dx,
        rows,
        cols,
    )
    .map_err(kernel_err("log_softmax backward"))?;
    wrap(d, y.shape().to_vec(), dx)
}

/// The mean over rows of `−log softmax(logits)[label]`.
pub(super) fn cross_entropy<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    logits: &Tensor,
    labels: &Indices,
) -> Result<Tensor> {
    let logp = log_softmax(d, logits)?;
    let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
    let lab = idx(d, labels)?;
    let mut loss = d.zeros(rows)?;
    d.nn.nll(
        d.stream(),
        sl::<R>("cross_entropy", &logp)?,
        lab.buf::<R>()?,
        &mut loss,
        rows,
        cols,
    )
    .map_err(kernel_err("cross_entropy"))?;
    let loss = wrap(d, vec![rows], loss)?;
    reduce(d, &loss, &[0], true, vec![])
}

/// The gradient of [`cross_entropy`] with respect to the logits, scaled by the scalar `g`.
pub(super) fn cross_entropy_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    logits: &Tensor,
    labels: &Indices,
    g: &Tensor,
) -> Result<Tensor> {
    let logp = log_softmax(d, logits)?;
    let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
    let lab = idx(d, labels)?;
    // dℓ_r = g for every row; d log p = −onehot·g/N; then through the log-softmax:
    // −onehot·g/N + softmax·g/N.
    let g_rows = bin(d, &g.reshape([1])?, &full(d, &[rows], 1.0)?, KB::Mul)?;
    let mut dlogp = d.zeros(rows * cols)?;
    let scale = if rows == 0 { 0.0 } else { 1.0 / rows as f32 };
    d.nn.nll_backward(
        d.stream(),
        sl::<R>("cross_entropy backward", &g_rows)?,
        lab.buf::<R>()?,
        &mut dlogp,
        rows,
        cols,
        scale,
    )
    .map_err(kernel_err("cross_entropy backward"))?;
    let dlogp = wrap(d, vec![rows, cols], dlogp)?;
    log_softmax_backward(d, &logp, &dlogp)
}
