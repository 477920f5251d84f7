//! The CUDA backend's ops, each composed from the prune-kernels wrappers:
//!
//! | op | kernels |
//! | --- | --- |
//! | unary, its backward | `ew_unary`; backward as `ew_binary` products (ReLU: `ReluGrad`; abs, clamp: two `ReluGrad` masks) |
//! | binary, backward, broadcast | `ew_binary` with NumPy broadcasting |
//! | sum to shape, all-finite | `reduce_axes` (all-finite: `Σ x·0` is NaN iff some `x` is not finite) |
//! | log-softmax, cross-entropy | `log_softmax_fwd/bwd`, `nll_fwd/bwd`, a mean by `reduce_rows` |
//! | index-select / add, concat / split | `index_select_channels`, `index_add_channels`, `copy_channels` on `[outer, C, inner]` views |
//! | dropout mask | `dropout_fwd` on ones (Philox keyed by two draws of the caller's RNG) |
//! | SGD, Adam | `sgd_step`, `adam_step` |
//! | SBP noise, statistics, KL | `sbp_forward`, `sbp_backward_tiles/finalize`, `sbp_stats`, `sbp_kl_grad` |
//!
//! GEMM, convolution, pooling and batch norm are in `nn.rs`.

use super::{kernel_err, nn, CudaStorage, GpuBackend, GpuDevice, GpuRuntime};
use crate::autograd::{Binary, Unary};
use crate::backend::{
    gate_view, AdamStep, Backend, BnBatchStats, BnTrainOutput, Device, SbpForward, SbpGateGrads,
    SbpKl, SbpNoiseArgs, SbpSaved, SbpStats, SgdStep,
};
use crate::cpu::{BnGrads, Conv2dGrads, Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::{IndexStorage, Indices, Storage};
use crate::tensor::{numel, Tensor};
use prune_kernels::cpu_ref::elementwise::{Binary as KB, Unary as KU};
use prune_kernels::ops::update;
use prune_kernels::{SbpParams, SbpShape};
use rand::RngCore;
use std::sync::Arc;

/// The device storage of `t`, or an error naming `op` when `t` is on the host.
pub(super) fn st<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a CudaStorage> {
    match t.storage() {
        Storage::Cuda(s) => Ok(s),
        Storage::Cpu(_) => Err(CoreError::InvalidArgument {
            op,
            reason: "a host tensor was given to the CUDA backend".into(),
        }),
    }
}

/// The device buffer of `t`.
pub(super) fn sl<'a, R: GpuRuntime>(op: &'static str, t: &'a Tensor) -> Result<&'a R::Buf<f32>> {
    st(op, t)?.buf::<R>()
}

/// Device `i32` indices (host indices are copied over: labels arrive once per batch).
fn idx<R: GpuRuntime>(
    op: &'static str,
    d: &Arc<GpuDevice<R>>,
    i: &Indices,
) -> Result<super::CudaIndices> {
    match i.storage() {
        IndexStorage::Cuda(s) => Ok(s.clone()),
        IndexStorage::Cpu(v) => {
            let _ = op;
            super::CudaIndices::upload(d.ordinal(), v)
        }
    }
}

/// A device tensor of `shape` over `buf`.
pub(super) fn wrap<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    shape: Vec<usize>,
    buf: R::Buf<f32>,
) -> Result<Tensor> {
    let n = numel(&shape);
    Tensor::from_storage(shape, Storage::Cuda(CudaStorage::new(d.clone(), buf, n)))
}

/// `op(x; a)` elementwise.
pub(super) fn un<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    op: KU,
    a: f32,
) -> Result<Tensor> {
    let n = x.numel();
    let mut y = d.zeros(n)?;
    d.nn.unary(d.stream(), op, sl::<R>("unary", x)?, &mut y, n, a)
        .map_err(kernel_err("unary"))?;
    wrap(d, x.shape().to_vec(), y)
}

/// `a op b` with broadcasting.
pub(super) fn bin<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    a: &Tensor,
    b: &Tensor,
    op: KB,
) -> Result<Tensor> {
    let shape = crate::backend::broadcast_shape(a.shape(), b.shape(), "binary")?;
    let mut out = d.zeros(numel(&shape))?;
    d.nn.binary(
        d.stream(),
        op,
        sl::<R>("binary", a)?,
        a.shape(),
        sl::<R>("binary", b)?,
        b.shape(),
        &mut out,
    )
    .map_err(kernel_err("binary"))?;
    wrap(d, shape, out)
}

/// A device tensor of `shape` filled with `value` (no host copy).
pub(super) fn full<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    shape: &[usize],
    value: f32,
) -> Result<Tensor> {
    let zeros = wrap(d, shape.to_vec(), d.zeros(numel(shape))?)?;
    if value == 0.0 && value.is_sign_positive() {
        return Ok(zeros);
    }
    un(d, &zeros, KU::AddScalar, value)
}

/// Sum (or mean) of `x` over `axes`, the result shaped `out_shape`.
pub(super) fn reduce<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    axes: &[usize],
    mean: bool,
    out_shape: Vec<usize>,
) -> Result<Tensor> {
    if axes.is_empty() {
        return x.reshape(out_shape);
    }
    let mut y = d.zeros(numel(&out_shape))?;
    d.nn.reduce_axes(
        d.stream(),
        sl::<R>("reduce", x)?,
        x.shape(),
        axes,
        mean,
        &mut y,
    )
    .map_err(kernel_err("reduce"))?;
    wrap(d, out_shape, y)
}

/// `(outer, size, inner)` of `shape` around `axis`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn to_u32(op: &'static str, indices: &[usize]) -> Result<Vec<u32>> {
    indices
        .iter()
        .map(|&i| {
            u32::try_from(i).map_err(|_| CoreError::InvalidArgument {
                op,
                reason: format!("index {i} exceeds u32"),
            })
        })
        .collect()
}

fn log_softmax<R: GpuRuntime>(d: &Arc<GpuDevice<R>>, x: &Tensor) -> Result<Tensor> {
    x.expect_rank(2, "log_softmax")?;
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let mut y = d.zeros(rows * cols)?;
    d.nn.log_softmax(d.stream(), sl::<R>("log_softmax", x)?, &mut y, rows, cols)
        .map_err(kernel_err("log_softmax"))?;
    wrap(d, x.shape().to_vec(), y)
}

fn log_softmax_backward<R: GpuRuntime>(
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

impl<R: GpuRuntime> GpuBackend<R> {
    /// The device of the first tensor (the tape checked they share one), or this
    /// backend's device when there is none.
    fn dev_of(&self, ts: &[&Tensor]) -> Result<Arc<GpuDevice<R>>> {
        match ts.first().map(|t| t.storage()) {
            Some(Storage::Cuda(s)) => Ok(s.gpu_device::<R>()?.clone()),
            // A missing device is reported first, then the misplaced tensor.
            Some(Storage::Cpu(_)) => {
                self.dev()?;
                Err(CoreError::InvalidArgument {
                    op: "cuda backend",
                    reason: "a host tensor was given to the CUDA backend".into(),
                })
            }
            None => self.dev(),
        }
    }
}

impl<R: GpuRuntime> Backend for GpuBackend<R> {
    fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        full(&self.dev()?, shape, value)
    }

    fn unary(&self, x: &Tensor, op: Unary) -> Result<Tensor> {
        let d = self.dev_of(&[x])?;
        match op {
            Unary::Relu => un(&d, x, KU::Relu, 0.0),
            Unary::Exp => un(&d, x, KU::Exp, 0.0),
            Unary::Log => un(&d, x, KU::Log, 0.0),
            Unary::Sqrt => un(&d, x, KU::Sqrt, 0.0),
            Unary::Square => un(&d, x, KU::Square, 0.0),
            Unary::Abs => un(&d, x, KU::Abs, 0.0),
            Unary::Neg => un(&d, x, KU::Neg, 0.0),
            Unary::Scale(s) => un(&d, x, KU::Scale, s),
            Unary::Shift(s) => un(&d, x, KU::AddScalar, s),
            Unary::Clamp(lo, hi) => {
                let lo_t = full(&d, &[], lo)?;
                let hi_t = full(&d, &[], hi)?;
                let m = bin(&d, x, &lo_t, KB::Max)?;
                bin(&d, &m, &hi_t, KB::Min)
            }
        }
    }

    fn unary_backward(&self, op: Unary, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        x.expect_same_shape(g, "unary backward")?;
        x.expect_same_shape(y, "unary backward")?;
        let d = self.dev_of(&[x, y, g])?;
        // g·[z > 0] for z = x − t (or t − x): the masks of ReLU, abs and clamp.
        let above = |g: &Tensor, z: &Tensor| bin(&d, g, z, KB::ReluGrad);
        match op {
            Unary::Relu => above(g, x),
            Unary::Exp => bin(&d, g, y, KB::Mul),
            Unary::Log => bin(&d, g, x, KB::Div),
            Unary::Sqrt => un(&d, &bin(&d, g, y, KB::Div)?, KU::Scale, 0.5),
            Unary::Square => un(&d, &bin(&d, g, x, KB::Mul)?, KU::Scale, 2.0),
            // g·[x > 0] − g·[−x > 0]: subgradient 0 at 0
            Unary::Abs => {
                let pos = above(g, x)?;
                let neg = above(g, &un(&d, x, KU::Neg, 0.0)?)?;
                bin(&d, &pos, &neg, KB::Sub)
            }
            Unary::Neg => un(&d, g, KU::Neg, 0.0),
            Unary::Scale(s) => un(&d, g, KU::Scale, s),
            Unary::Shift(_) => Ok(g.clone()),
            // g·[lo ≤ x ≤ hi] = t − t·[x − hi > 0] with t = g − g·[lo − x > 0]
            Unary::Clamp(lo, hi) => {
                let lo_minus_x = un(&d, &un(&d, x, KU::Neg, 0.0)?, KU::AddScalar, lo)?;
                let t = bin(&d, g, &above(g, &lo_minus_x)?, KB::Sub)?;
                let x_minus_hi = un(&d, x, KU::AddScalar, -hi)?;
                bin(&d, &t, &above(&t, &x_minus_hi)?, KB::Sub)
            }
        }
    }

    fn binary(&self, a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
        let d = self.dev_of(&[a, b])?;
        let k = match op {
            Binary::Add => KB::Add,
            Binary::Sub => KB::Sub,
            Binary::Mul => KB::Mul,
            Binary::Div => KB::Div,
        };
        bin(&d, a, b, k)
    }

    fn binary_backward(
        &self,
        op: Binary,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let d = self.dev_of(&[a, b, g])?;
        Ok(match op {
            Binary::Add => (g.clone(), g.clone()),
            Binary::Sub => (g.clone(), un(&d, g, KU::Neg, 0.0)?),
            Binary::Mul => (bin(&d, g, b, KB::Mul)?, bin(&d, g, a, KB::Mul)?),
            // d(a/b)/db = −(a/b)/b = −y/b
            Binary::Div => {
                let ga = bin(&d, g, b, KB::Div)?;
                let gy = bin(&d, g, y, KB::Mul)?;
                let gb = un(&d, &bin(&d, &gy, b, KB::Div)?, KU::Neg, 0.0)?;
                (ga, gb)
            }
        })
    }

    fn add_assign(&self, acc: &mut Tensor, x: &Tensor) -> Result<()> {
        acc.expect_same_shape(x, "add_assign")?;
        let d = self.dev_of(&[acc, x])?;
        *acc = bin(&d, acc, x, KB::Add)?;
        Ok(())
    }

    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let d = self.dev_of(&[x])?;
        let xs = x.shape();
        if shape.len() > xs.len() {
            return Err(CoreError::ShapeMismatch {
                op: "sum_to_shape",
                lhs: xs.to_vec(),
                rhs: shape.to_vec(),
            });
        }
        let lead = xs.len() - shape.len();
        let mut axes = Vec::new();
        for (i, &n) in xs.iter().enumerate() {
            let target = if i < lead { 1 } else { shape[i - lead] };
            if i < lead || (target == 1 && n != 1) {
                axes.push(i);
            } else if target != n {
                return Err(CoreError::ShapeMismatch {
                    op: "sum_to_shape",
                    lhs: xs.to_vec(),
                    rhs: shape.to_vec(),
                });
            }
        }
        reduce(&d, x, &axes, false, shape.to_vec())
    }

    fn broadcast_to(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        let d = self.dev_of(&[x])?;
        let y = bin(&d, x, &full(&d, shape, 1.0)?, KB::Mul)?;
        if y.shape() != shape {
            return Err(CoreError::ShapeMismatch {
                op: "broadcast_to",
                lhs: x.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        Ok(y)
    }

    fn all_finite(&self, x: &Tensor) -> Result<bool> {
        if x.numel() == 0 {
            return Ok(true);
        }
        let d = self.dev_of(&[x])?;
        // x·0 is 0 for finite x and NaN for ±∞ or NaN; the sum is finite iff all are.
        let z = bin(&d, x, &full(&d, &[], 0.0)?, KB::Mul)?;
        let flat = z.reshape([z.numel()])?;
        let s = reduce(&d, &flat, &[0], false, vec![])?;
        Ok(s.item()?.is_finite())
    }

    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        nn::matmul(&self.dev_of(&[a, b])?, a, b, trans_a, trans_b)
    }

    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        nn::conv2d(&self.dev_of(&[x, w])?, x, w, bias, p)
    }

    fn conv2d_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        p: &Conv2dParams,
        need_x: bool,
    ) -> Result<Conv2dGrads> {
        nn::conv2d_backward(&self.dev_of(&[x, w, g])?, x, w, g, p, need_x)
    }

    fn max_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<(Tensor, Indices)> {
        nn::max_pool2d(&self.dev_of(&[x])?, x, p)
    }

    fn max_pool2d_backward(
        &self,
        g: &Tensor,
        argmax: &Indices,
        x_shape: &[usize],
        p: &PoolParams,
    ) -> Result<Tensor> {
        let d = self.dev_of(&[g])?;
        let am = idx("max_pool2d backward", &d, argmax)?;
        nn::max_pool2d_backward(&d, g, &am, x_shape, p)
    }

    fn avg_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<Tensor> {
        nn::avg_pool2d(&self.dev_of(&[x])?, x, x.shape(), p, false)
    }

    fn avg_pool2d_backward(&self, g: &Tensor, x_shape: &[usize], p: &PoolParams) -> Result<Tensor> {
        nn::avg_pool2d(&self.dev_of(&[g])?, g, x_shape, p, true)
    }

    fn batch_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnTrainOutput> {
        nn::batch_norm_train(&self.dev_of(&[x, gamma, beta])?, x, gamma, beta, eps)
    }

    fn batch_norm_train_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        stats: &BnBatchStats,
        g: &Tensor,
    ) -> Result<BnGrads> {
        let d = self.dev_of(&[x, gamma, g])?;
        nn::batch_norm_backward(&d, x, gamma, &stats.mean, &stats.inv_std, g, true)
    }

    fn batch_norm_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        let d = self.dev_of(&[x, gamma, beta, running_mean, running_var])?;
        let inv_std = nn::inv_std(&d, running_var, eps)?;
        nn::batch_norm_apply(&d, x, gamma, beta, running_mean, &inv_std)
    }

    fn batch_norm_eval_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        g: &Tensor,
    ) -> Result<BnGrads> {
        let d = self.dev_of(&[x, gamma, running_mean, running_var, g])?;
        let inv_std = nn::inv_std(&d, running_var, eps)?;
        nn::batch_norm_backward(&d, x, gamma, running_mean, &inv_std, g, false)
    }

    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        log_softmax(&self.dev_of(&[x])?, x)
    }

    fn log_softmax_backward(&self, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        log_softmax_backward(&self.dev_of(&[y, g])?, y, g)
    }

    fn cross_entropy(&self, logits: &Tensor, labels: &Indices) -> Result<Tensor> {
        let d = self.dev_of(&[logits])?;
        let logp = log_softmax(&d, logits)?;
        let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
        let lab = idx("cross_entropy", &d, labels)?;
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
        let loss = wrap(&d, vec![rows], loss)?;
        reduce(&d, &loss, &[0], true, vec![])
    }

    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        labels: &Indices,
        g: &Tensor,
    ) -> Result<Tensor> {
        let d = self.dev_of(&[logits, g])?;
        let logp = log_softmax(&d, logits)?;
        let (rows, cols) = (logits.shape()[0], logits.shape()[1]);
        let lab = idx("cross_entropy backward", &d, labels)?;
        // dℓ_r = g for every row; d log p = −onehot·g/N; then through the log-softmax:
        // −onehot·g/N + softmax·g/N.
        let g_rows = bin(&d, &g.reshape([1])?, &full(&d, &[rows], 1.0)?, KB::Mul)?;
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
        let dlogp = wrap(&d, vec![rows, cols], dlogp)?;
        log_softmax_backward(&d, &logp, &dlogp)
    }

    fn index_select(&self, x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
        let d = self.dev_of(&[x])?;
        let (outer, c, inner) = around(x.shape(), axis);
        let mut shape = x.shape().to_vec();
        shape[axis] = indices.len();
        let mut y = d.zeros(numel(&shape))?;
        let ix = to_u32("index_select", indices)?;
        d.nn.index_select(
            d.stream(),
            sl::<R>("index_select", x)?,
            &ix,
            &mut y,
            (outer, c, inner),
        )
        .map_err(kernel_err("index_select"))?;
        wrap(&d, shape, y)
    }

    fn index_add(
        &self,
        g: &Tensor,
        shape: &[usize],
        axis: usize,
        indices: &[usize],
    ) -> Result<Tensor> {
        let d = self.dev_of(&[g])?;
        let (outer, c, inner) = around(shape, axis);
        let mut y = d.zeros(numel(shape))?;
        let ix = to_u32("index_select backward", indices)?;
        d.nn.index_add(
            d.stream(),
            sl::<R>("index_select backward", g)?,
            &ix,
            &mut y,
            (outer, c, inner),
        )
        .map_err(kernel_err("index_select backward"))?;
        wrap(&d, shape.to_vec(), y)
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        let d = self.dev_of(xs)?;
        let first = xs.first().ok_or_else(|| CoreError::InvalidArgument {
            op: "concat",
            reason: "no tensors".into(),
        })?;
        let mut shape = first.shape().to_vec();
        shape[axis] = xs.iter().map(|t| t.shape()[axis]).sum();
        let (outer, total, inner) = around(&shape, axis);
        let mut y = d.zeros(numel(&shape))?;
        let mut off = 0;
        for t in xs {
            let c = t.shape()[axis];
            d.nn.copy_channels(
                d.stream(),
                sl::<R>("concat", t)?,
                (c, 0),
                &mut y,
                (total, off),
                c,
                outer,
                inner,
            )
            .map_err(kernel_err("concat"))?;
            off += c;
        }
        wrap(&d, shape, y)
    }

    fn split(&self, g: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        let d = self.dev_of(&[g])?;
        let (outer, total, inner) = around(g.shape(), axis);
        let mut off = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &c in sizes {
            let mut shape = g.shape().to_vec();
            shape[axis] = c;
            let mut y = d.zeros(numel(&shape))?;
            d.nn.copy_channels(
                d.stream(),
                sl::<R>("split", g)?,
                (total, off),
                &mut y,
                (c, 0),
                c,
                outer,
                inner,
            )
            .map_err(kernel_err("split"))?;
            out.push(wrap(&d, shape, y)?);
            off += c;
        }
        Ok(out)
    }

    fn dropout_mask(&self, shape: &[usize], p: f32, rng: &mut dyn RngCore) -> Result<Tensor> {
        let d = self.dev()?;
        let n = numel(shape);
        let ones = d.ones(n)?;
        let (mut y, mut mask) = (d.zeros(n)?, d.zeros(n)?);
        let (seed, offset) = (rng.next_u64(), rng.next_u64());
        d.nn.dropout(d.stream(), &ones, &mut y, &mut mask, n, p, seed, offset)
            .map_err(kernel_err("dropout"))?;
        wrap(&d, shape.to_vec(), mask)
    }

    fn sbp_noise_forward(
        &self,
        x: &Tensor,
        mu: &Tensor,
        log_sigma: &Tensor,
        noise: &SbpNoiseArgs,
    ) -> Result<SbpForward> {
        let d = self.dev_of(&[x, mu, log_sigma])?;
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
                let t = wrap(&d, vec![tn, 2], b)?;
                Some((t.clone(), t))
            }
            None => None,
        };
        Ok(SbpForward {
            y: wrap(&d, x.shape().to_vec(), y)?,
            saved: SbpSaved {
                shape,
                noise: *noise,
                mu: mu.clone(),
                log_sigma: log_sigma.clone(),
                theta: wrap(&d, theta_shape(&shape, noise), theta)?,
                dtheta,
            },
        })
    }

    fn sbp_noise_backward(&self, x: &Tensor, g: &Tensor, saved: &SbpSaved) -> Result<SbpGateGrads> {
        x.expect_same_shape(g, "sbp gate backward")?;
        let d = self.dev_of(&[x, g])?;
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
            dx: wrap(&d, x.shape().to_vec(), gr.dx)?,
            dmu: wrap(&d, vec![c], gr.dmu)?,
            dlog_sigma: wrap(&d, vec![c], gr.dlog_sigma)?,
        })
    }

    fn sbp_stats(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpStats> {
        let d = self.dev_of(&[mu, log_sigma])?;
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
        let mean = wrap(&d, vec![c], s.mean)?;
        let snr = wrap(&d, vec![c], s.snr)?;
        // E[θ]·[SNR − 1 > 0]
        let scale = bin(&d, &mean, &un(&d, &snr, KU::AddScalar, -1.0)?, KB::ReluGrad)?;
        Ok(SbpStats {
            expected_theta: mean,
            snr,
            scale,
        })
    }

    fn sbp_kl(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpKl> {
        let d = self.dev_of(&[mu, log_sigma])?;
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
        let kl = wrap(&d, vec![c], kl)?;
        Ok(SbpKl {
            sum: reduce(&d, &kl, &[0], false, vec![])?,
            dmu: wrap(&d, vec![c], dmu)?,
            dlog_sigma: wrap(&d, vec![c], dls)?,
        })
    }

    fn sgd_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        velocity: Option<&mut Tensor>,
        h: &SgdStep,
    ) -> Result<()> {
        w.expect_same_shape(g, "sgd update")?;
        let d = self.dev_of(&[w, g])?;
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

    fn adam_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        h: &AdamStep,
    ) -> Result<()> {
        w.expect_same_shape(g, "adam update")?;
        let d = self.dev_of(&[w, g])?;
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
}

/// The writable device buffer of `t` (copied first when shared).
fn st_mut<'a, R: GpuRuntime>(op: &'static str, t: &'a mut Tensor) -> Result<&'a mut R::Buf<f32>> {
    match t.storage_mut() {
        Storage::Cuda(s) => s.buf_mut::<R>(),
        Storage::Cpu(_) => Err(CoreError::InvalidArgument {
            op,
            reason: "a host tensor was given to the CUDA backend".into(),
        }),
    }
}

fn theta_shape(shape: &SbpShape, noise: &SbpNoiseArgs) -> Vec<usize> {
    match noise.mode {
        prune_kernels::NoiseMode::PerChannel => vec![shape.channels],
        prune_kernels::NoiseMode::PerExample => vec![shape.rows, shape.channels],
    }
}
