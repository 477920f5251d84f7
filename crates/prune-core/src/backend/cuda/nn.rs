//! GEMM (cuBLAS), convolution, pooling and batch norm of the CUDA backend.
//!
//! * GEMM: row-major `C[m,n] = op(A) op(B)` is the column-major product
//!   `Cᵀ = op(B)ᵀ op(A)ᵀ`, so cuBLAS gets B as its first operand and A as its second,
//!   each with the transposition flag the caller gave.
//! * Convolution: cuDNN, or the implicit-GEMM kernels where cuDNN cannot be used; see
//!   `conv.rs` (re-exported here for `ops.rs`).
//! * Pooling: `pooling.cu` on `N·C` planes; the max-pool argmax is the flat index inside
//!   each input plane (the CPU backend records the flat index in the tensor; each backend
//!   reads back only its own).
//! * Batch norm: `batchnorm.cu` on the `[N, C, H·W]` view (a `[N, C]` input has H·W = 1).

pub(super) use super::conv::{conv2d, conv2d_backward};
use super::ops::{sl, wrap};
use super::{kernel_err, CudaIndices, GpuDevice, GpuRuntime, Sgemm};
use crate::backend::{BnBatchStats, BnTrainOutput};
use crate::cpu::{BnGrads, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::{IndexStorage, Indices};
use crate::tensor::{numel, Tensor};
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::ops::nn::BnParams;
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
    // cuBLAS with beta = 0 does not read C; with k = 0 no call is made and C is 0.
    let mut c = d.output_of(m * n, m * n > 0 && k > 0)?;
    if m * n > 0 && k > 0 {
        let g = swap_for_column_major(m, n, k, trans_a, trans_b, a.shape()[1], b.shape()[1]);
        R::sgemm(d, g, sl::<R>(OP, b)?, sl::<R>(OP, a)?, &mut c)?;
    }
    wrap(d, vec![m, n], c)
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
    let run = x.numel() > 0;
    let (mut mean, mut inv_std, mut var) = (
        d.output_of(c, run)?,
        d.output_of(c, run)?,
        d.output_of(c, run)?,
    );
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
    let mut out = d.output(c)?;
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
    let mut y = d.output(x.numel())?;
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
    let run = x.numel() > 0;
    let (mut dx, mut dgamma, mut dbeta) = (
        d.output(x.numel())?,
        d.output_of(c, run)?,
        d.output_of(c, run)?,
    );
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
