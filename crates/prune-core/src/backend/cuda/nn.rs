//! GEMM (cuBLAS), convolution, pooling and batch norm of the CUDA backend.
//!
//! * GEMM: row-major `C[m,n] = op(A) op(B)` is the column-major product
//!   `Cᵀ = op(B)ᵀ op(A)ᵀ`, so cuBLAS gets B as its first operand and A as its second,
//!   each with the transposition flag the caller gave.
//! * Convolution: the implicit-GEMM kernels of `masked_conv.cu` with every channel kept
//!   (forward, input gradient, weight gradient with a deterministic split-K). Grouped
//!   convolutions run group by group: the group's input channels and filters are gathered
//!   (`index_select`), convolved, and the outputs concatenated. The bias is a broadcast
//!   add; its gradient the sum of `g` over batch and space.
//! * Pooling: `pooling.cu` on `N·C` planes; the max-pool argmax is the flat index inside
//!   each input plane (the CPU backend records the flat index in the tensor; each backend
//!   reads back only its own).
//! * Batch norm: `batchnorm.cu` on the `[N, C, H·W]` view (a `[N, C]` input has H·W = 1).

use super::ops::{bin, reduce, sl, wrap};
use super::{kernel_err, CudaIndices, GpuDevice, GpuRuntime, Sgemm};
use crate::backend::{BnBatchStats, BnTrainOutput};
use crate::cpu::{BnGrads, Conv2dGrads, Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::{IndexStorage, Indices};
use crate::tensor::{numel, Tensor};
use prune_kernels::cpu_ref::elementwise::Binary as KB;
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::ops::nn::BnParams;
use prune_kernels::{ConvShape, KeepList};
use std::sync::Arc;

/// Row-major `C[m,n] = op(A) op(B)` (A stored with `a_cols` columns, B with `b_cols`) as
/// the column-major SGEMM `Cᵀ = op(B)ᵀ op(A)ᵀ`: B is the first operand, A the second, each
/// with the caller's transposition flag; a row-major matrix's column count is its
/// column-major leading dimension.
pub(super) fn swap_for_column_major(
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    a_cols: usize,
    b_cols: usize,
) -> Sgemm {
    Sgemm {
        trans_a: trans_b,
        trans_b: trans_a,
        m: n,
        n: m,
        k,
        lda: b_cols,
        ldb: a_cols,
        ldc: n,
    }
}

/// `op(a) @ op(b)` of row-major 2-D tensors through cuBLAS SGEMM.
pub(super) fn matmul<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    const OP: &str = "matmul";
    a.expect_rank(2, OP)?;
    b.expect_rank(2, OP)?;
    let (m, ka) = if trans_a {
        (a.shape()[1], a.shape()[0])
    } else {
        (a.shape()[0], a.shape()[1])
    };
    let (kb, n) = if trans_b {
        (b.shape()[1], b.shape()[0])
    } else {
        (b.shape()[0], b.shape()[1])
    };
    if ka != kb {
        return Err(CoreError::ShapeMismatch {
            op: OP,
            lhs: a.shape().to_vec(),
            rhs: b.shape().to_vec(),
        });
    }
    let k = ka;
    let mut c = d.zeros(m * n)?;
    if m * n > 0 && k > 0 {
        let g = swap_for_column_major(m, n, k, trans_a, trans_b, a.shape()[1], b.shape()[1]);
        R::sgemm(d, g, sl::<R>(OP, b)?, sl::<R>(OP, a)?, &mut c)?;
    }
    wrap(d, vec![m, n], c)
}

/// The keep list of all `bound` channels (uploaded once per size).
fn keep_all<R: GpuRuntime>(d: &GpuDevice<R>, bound: usize) -> Result<Arc<KeepList<R>>> {
    let mut keeps = d.keeps.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = keeps.get(&bound) {
        return Ok(k.clone());
    }
    let k = Arc::new(KeepList::<R>::all(d.stream(), bound).map_err(kernel_err("conv2d"))?);
    keeps.insert(bound, k.clone());
    Ok(k)
}

fn conv_shape(x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<ConvShape> {
    if x.len() != 4 || w.len() != 4 || x[1] != w[1] {
        return Err(CoreError::ShapeMismatch {
            op: "conv2d",
            lhs: x.to_vec(),
            rhs: w.to_vec(),
        });
    }
    Ok(ConvShape {
        batch: x[0],
        in_channels: x[1],
        height: x[2],
        width: x[3],
        out_channels: w[0],
        kernel: (w[2], w[3]),
        stride: p.stride,
        padding: p.padding,
    })
}

/// One ungrouped convolution (no bias).
fn conv_dense<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let s = conv_shape(x.shape(), w.shape(), p)?;
    let (ho, wo) = s.output_hw().map_err(kernel_err("conv2d"))?;
    let (ki, ko) = (keep_all(d, s.in_channels)?, keep_all(d, s.out_channels)?);
    let shape = vec![s.batch, s.out_channels, ho, wo];
    let mut y = d.zeros(numel(&shape))?;
    d.conv
        .forward_into(
            d.stream(),
            sl::<R>("conv2d", x)?,
            sl::<R>("conv2d", w)?,
            &s,
            &ki,
            &ko,
            &mut y,
        )
        .map_err(kernel_err("conv2d"))?;
    wrap(d, shape, y)
}

/// Input and weight gradients of one ungrouped convolution.
fn conv_dense_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    p: &Conv2dParams,
    need_x: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    const OP: &str = "conv2d backward";
    let s = conv_shape(x.shape(), w.shape(), p)?;
    let (ki, ko) = (keep_all(d, s.in_channels)?, keep_all(d, s.out_channels)?);
    let dx = if need_x {
        let mut dx = d.zeros(x.numel())?;
        d.conv
            .backward_input_into(
                d.stream(),
                sl::<R>(OP, g)?,
                sl::<R>(OP, w)?,
                &s,
                &ki,
                &ko,
                &mut dx,
            )
            .map_err(kernel_err(OP))?;
        Some(wrap(d, x.shape().to_vec(), dx)?)
    } else {
        None
    };
    let mut dw = d.zeros(w.numel())?;
    d.conv
        .backward_weight_into(
            d.stream(),
            sl::<R>(OP, g)?,
            sl::<R>(OP, x)?,
            &s,
            &ki,
            &ko,
            &mut dw,
        )
        .map_err(kernel_err(OP))?;
    Ok((dx, wrap(d, w.shape().to_vec(), dw)?))
}

fn group_range(g: usize, per: usize) -> Vec<usize> {
    (g * per..(g + 1) * per).collect()
}

/// Per-group channel counts `(Cin/groups, Cout/groups)`, checked.
fn groups_of(x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<(usize, usize)> {
    let groups = p.groups.max(1);
    if x.len() != 4 || w.len() != 4 || !x[1].is_multiple_of(groups) || !w[0].is_multiple_of(groups)
    {
        return Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("{groups} groups do not divide input {x:?} and weight {w:?} channels"),
        });
    }
    Ok((x[1] / groups, w[0] / groups))
}

pub(super) fn conv2d<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let y = if p.groups <= 1 {
        conv_dense(d, x, w, p)?
    } else {
        let be = super::backend(d.ordinal());
        let (cin, cout) = groups_of(x.shape(), w.shape(), p)?;
        let mut parts = Vec::with_capacity(p.groups);
        for g in 0..p.groups {
            let xg = be.index_select(x, 1, &group_range(g, cin))?;
            let wg = be.index_select(w, 0, &group_range(g, cout))?;
            parts.push(conv_dense(d, &xg, &wg, p)?);
        }
        be.concat(&parts.iter().collect::<Vec<_>>(), 1)?
    };
    match bias {
        Some(b) => bin(d, &y, &b.reshape([1, b.numel(), 1, 1])?, KB::Add),
        None => Ok(y),
    }
}

pub(super) fn conv2d_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    p: &Conv2dParams,
    need_x: bool,
) -> Result<Conv2dGrads> {
    let cout = w.shape().first().copied().unwrap_or(0);
    let bias = reduce(d, g, &[0, 2, 3], false, vec![cout])?;
    let (dx, dw) = if p.groups <= 1 {
        conv_dense_backward(d, x, w, g, p, need_x)?
    } else {
        let be = super::backend(d.ordinal());
        let (cin, cpg) = groups_of(x.shape(), w.shape(), p)?;
        let (mut dxs, mut dws) = (Vec::new(), Vec::new());
        for k in 0..p.groups {
            let xg = be.index_select(x, 1, &group_range(k, cin))?;
            let wg = be.index_select(w, 0, &group_range(k, cpg))?;
            let gg = be.index_select(g, 1, &group_range(k, cpg))?;
            let (dxg, dwg) = conv_dense_backward(d, &xg, &wg, &gg, p, need_x)?;
            dxs.extend(dxg);
            dws.push(dwg);
        }
        let dx = if need_x {
            Some(be.concat(&dxs.iter().collect::<Vec<_>>(), 1)?)
        } else {
            None
        };
        (dx, be.concat(&dws.iter().collect::<Vec<_>>(), 0)?)
    };
    Ok(Conv2dGrads { x: dx, w: dw, bias })
}

fn pool_of(op: &'static str, x_shape: &[usize], p: &PoolParams) -> Result<Pool> {
    if x_shape.len() != 4 {
        return Err(CoreError::BadShape {
            op,
            shape: x_shape.to_vec(),
            reason: "expected [N, C, H, W]".into(),
        });
    }
    Ok(Pool {
        planes: x_shape[0] * x_shape[1],
        h: x_shape[2],
        w: x_shape[3],
        kernel: p.kernel,
        stride: p.stride,
        padding: p.padding,
    })
}

fn pooled_shape(x_shape: &[usize], pool: &Pool) -> Vec<usize> {
    let (ho, wo) = pool.out_hw();
    vec![x_shape[0], x_shape[1], ho, wo]
}

pub(super) fn max_pool2d<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    p: &PoolParams,
) -> Result<(Tensor, Indices)> {
    const OP: &str = "max_pool2d";
    let pool = pool_of(OP, x.shape(), p)?;
    let shape = pooled_shape(x.shape(), &pool);
    let n = numel(&shape);
    let mut y = d.zeros(n)?;
    let mut am = R::zeros::<i32>(d.stream(), n).map_err(kernel_err(OP))?;
    d.nn.max_pool(d.stream(), &pool, sl::<R>(OP, x)?, &mut y, &mut am)
        .map_err(kernel_err(OP))?;
    let idx = Indices::from_storage(
        shape.clone(),
        IndexStorage::Cuda(CudaIndices::new(d.clone(), am, n)),
    )?;
    Ok((wrap(d, shape, y)?, idx))
}

pub(super) fn max_pool2d_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    g: &Tensor,
    argmax: &CudaIndices,
    x_shape: &[usize],
    p: &PoolParams,
) -> Result<Tensor> {
    const OP: &str = "max_pool2d backward";
    let pool = pool_of(OP, x_shape, p)?;
    let mut dx = d.zeros(numel(x_shape))?;
    d.nn.max_pool_backward(
        d.stream(),
        &pool,
        sl::<R>(OP, g)?,
        argmax.buf::<R>()?,
        &mut dx,
    )
    .map_err(kernel_err(OP))?;
    wrap(d, x_shape.to_vec(), dx)
}

/// Average pooling forward (`src = x`) or backward (`src = g`, result shaped `x_shape`).
pub(super) fn avg_pool2d<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    src: &Tensor,
    x_shape: &[usize],
    p: &PoolParams,
    backward: bool,
) -> Result<Tensor> {
    const OP: &str = "avg_pool2d";
    let pool = pool_of(OP, x_shape, p)?;
    let shape = if backward {
        x_shape.to_vec()
    } else {
        pooled_shape(x_shape, &pool)
    };
    let mut dst = d.zeros(numel(&shape))?;
    d.nn.avg_pool(d.stream(), &pool, backward, sl::<R>(OP, src)?, &mut dst)
        .map_err(kernel_err(OP))?;
    wrap(d, shape, dst)
}

/// `(N, C, H·W)` of a batch-norm input.
fn bn_view(x: &Tensor) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() < 2 {
        return Err(CoreError::BadShape {
            op: "batch_norm",
            shape: s.to_vec(),
            reason: "expected [N, C, ...]".into(),
        });
    }
    Ok((s[0], s[1], s[2..].iter().product()))
}

pub(super) fn batch_norm_train<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f32,
) -> Result<BnTrainOutput> {
    const OP: &str = "batch_norm";
    let view = bn_view(x)?;
    let c = view.1;
    let (mut mean, mut inv_std, mut var) = (d.zeros(c)?, d.zeros(c)?, d.zeros(c)?);
    d.nn.bn_stats(
        d.stream(),
        sl::<R>(OP, x)?,
        view,
        eps,
        &mut mean,
        &mut inv_std,
        &mut var,
    )
    .map_err(kernel_err(OP))?;
    let (mean, inv_std) = (wrap(d, vec![c], mean)?, wrap(d, vec![c], inv_std)?);
    let y = batch_norm_apply(d, x, gamma, beta, &mean, &inv_std)?;
    Ok(BnTrainOutput {
        y,
        stats: BnBatchStats { mean, inv_std },
        var: wrap(d, vec![c], var)?,
    })
}

/// `1/√(var + ε)` per channel.
pub(super) fn inv_std<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let c = var.numel();
    let mut out = d.zeros(c)?;
    d.nn.bn_invstd(d.stream(), sl::<R>("batch_norm", var)?, &mut out, c, eps)
        .map_err(kernel_err("batch_norm"))?;
    wrap(d, vec![c], out)
}

/// `γ (x − mean) inv_std + β`.
pub(super) fn batch_norm_apply<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    inv_std: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "batch_norm";
    let view = bn_view(x)?;
    let mut y = d.zeros(x.numel())?;
    let p = BnParams::<R> {
        gamma: sl::<R>(OP, gamma)?,
        beta: sl::<R>(OP, beta)?,
    };
    d.nn.bn_apply(
        d.stream(),
        sl::<R>(OP, x)?,
        view,
        sl::<R>(OP, mean)?,
        sl::<R>(OP, inv_std)?,
        &p,
        &mut y,
    )
    .map_err(kernel_err(OP))?;
    wrap(d, x.shape().to_vec(), y)
}

/// Gradients of batch norm with batch (`train`) or running statistics.
pub(super) fn batch_norm_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    inv_std: &Tensor,
    g: &Tensor,
    train: bool,
) -> Result<BnGrads> {
    const OP: &str = "batch_norm backward";
    x.expect_same_shape(g, OP)?;
    let view = bn_view(x)?;
    let c = view.1;
    let (mut dx, mut dgamma, mut dbeta) = (d.zeros(x.numel())?, d.zeros(c)?, d.zeros(c)?);
    d.nn.bn_backward(
        d.stream(),
        sl::<R>(OP, g)?,
        sl::<R>(OP, x)?,
        view,
        sl::<R>(OP, mean)?,
        sl::<R>(OP, inv_std)?,
        sl::<R>(OP, gamma)?,
        train,
        &mut dx,
        &mut dgamma,
        &mut dbeta,
    )
    .map_err(kernel_err(OP))?;
    Ok(BnGrads {
        x: wrap(d, x.shape().to_vec(), dx)?,
        gamma: wrap(d, vec![c], dgamma)?,
        beta: wrap(d, vec![c], dbeta)?,
    })
}
