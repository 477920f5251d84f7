//! Elementwise maps with broadcasting, their backward passes, reductions to a shape,
//! the finiteness check and dropout masks: `ew_unary`, `ew_binary` (NumPy broadcasting),
//! `reduce_axes` and `dropout_fwd`.

use super::buffers::{sl, wrap};
use super::channels;
use super::{kernel_err, GpuDevice, GpuRuntime};
use crate::autograd::{Binary, Unary};
use crate::error::{CoreError, Result};
use crate::tensor::{numel, Tensor};
use prune_kernels::cpu_ref::elementwise::{Binary as KB, Unary as KU};
use rand::RngCore;
use std::sync::Arc;

/// `op(x; a)` elementwise.
pub(super) fn un<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    op: KU,
    a: f32,
) -> Result<Tensor> {
    let n = x.numel();
    let mut y = d.output(n)?;
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
    let mut out = d.output(numel(&shape))?;
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
    let mut y = d.output_of(numel(&out_shape), x.numel() > 0)?;
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

/// `op(x)` elementwise (clamp as a max and a min against device scalars).
pub(super) fn unary<R: GpuRuntime>(d: &Arc<GpuDevice<R>>, x: &Tensor, op: Unary) -> Result<Tensor> {
    match op {
        Unary::Relu => un(d, x, KU::Relu, 0.0),
        Unary::Exp => un(d, x, KU::Exp, 0.0),
        Unary::Log => un(d, x, KU::Log, 0.0),
        Unary::Sqrt => un(d, x, KU::Sqrt, 0.0),
        Unary::Square => un(d, x, KU::Square, 0.0),
        Unary::Abs => un(d, x, KU::Abs, 0.0),
        Unary::Neg => un(d, x, KU::Neg, 0.0),
        Unary::Scale(s) => un(d, x, KU::Scale, s),
        Unary::Shift(s) => un(d, x, KU::AddScalar, s),
        Unary::Clamp(lo, hi) => {
            let lo_t = full(d, &[], lo)?;
            let hi_t = full(d, &[], hi)?;
            let m = bin(d, x, &lo_t, KB::Max)?;
            bin(d, &m, &hi_t, KB::Min)
        }
    }
}

/// The gradient of `op` at input `x` (output `y`) applied to `g`.
pub(super) fn unary_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    op: Unary,
    x: &Tensor,
    y: &Tensor,
    g: &Tensor,
) -> Result<Tensor> {
    x.expect_same_shape(g, "unary backward")?;
    x.expect_same_shape(y, "unary backward")?;
    // g·[z > 0] for z = x − t (or t − x): the masks of ReLU, abs and clamp.
    let above = |g: &Tensor, z: &Tensor| bin(d, g, z, KB::ReluGrad);
    match op {
        Unary::Relu => above(g, x),
        Unary::Exp => bin(d, g, y, KB::Mul),
        Unary::Log => bin(d, g, x, KB::Div),
        Unary::Sqrt => un(d, &bin(d, g, y, KB::Div)?, KU::Scale, 0.5),
        Unary::Square => un(d, &bin(d, g, x, KB::Mul)?, KU::Scale, 2.0),
        // g·[x > 0] − g·[−x > 0]: subgradient 0 at 0
        Unary::Abs => {
            let pos = above(g, x)?;
            let neg = above(g, &un(d, x, KU::Neg, 0.0)?)?;
            bin(d, &pos, &neg, KB::Sub)
        }
        Unary::Neg => un(d, g, KU::Neg, 0.0),
        Unary::Scale(s) => un(d, g, KU::Scale, s),
        Unary::Shift(_) => Ok(g.clone()),
        // g·[lo ≤ x ≤ hi] = t − t·[x − hi > 0] with t = g − g·[lo − x > 0]
        Unary::Clamp(lo, hi) => {
            let lo_minus_x = un(d, &un(d, x, KU::Neg, 0.0)?, KU::AddScalar, lo)?;
            let t = bin(d, g, &above(g, &lo_minus_x)?, KB::Sub)?;
            let x_minus_hi = un(d, x, KU::AddScalar, -hi)?;
            bin(d, &t, &above(&t, &x_minus_hi)?, KB::Sub)
        }
    }
}

/// `a op b` with broadcasting.
pub(super) fn binary<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    a: &Tensor,
    b: &Tensor,
    op: Binary,
) -> Result<Tensor> {
    let k = match op {
        Binary::Add => KB::Add,
        Binary::Sub => KB::Sub,
        Binary::Mul => KB::Mul,
        Binary::Div => KB::Div,
    };
    bin(d, a, b, k)
}

/// The gradients of `a op b` (output `y`) for the upstream gradient `g`, shaped like `y`.
pub(super) fn binary_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    Ok(match op {
        Binary::Add => (g.clone(), g.clone()),
        Binary::Sub => (g.clone(), un(d, g, KU::Neg, 0.0)?),
        Binary::Mul => (bin(d, g, b, KB::Mul)?, bin(d, g, a, KB::Mul)?),
        // d(a/b)/db = −(a/b)/b = −y/b
        Binary::Div => {
            let ga = bin(d, g, b, KB::Div)?;
            let gy = bin(d, g, y, KB::Mul)?;
            let gb = un(d, &bin(d, &gy, b, KB::Div)?, KU::Neg, 0.0)?;
            (ga, gb)
        }
    })
}

/// `x` summed down to `shape` (the adjoint of broadcasting).
pub(super) fn sum_to_shape<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    shape: &[usize],
) -> Result<Tensor> {
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
    reduce(d, x, &axes, false, shape.to_vec())
}

/// `x` broadcast to `shape` (a product with ones).
pub(super) fn broadcast_to<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    shape: &[usize],
) -> Result<Tensor> {
    let y = bin(d, x, &full(d, shape, 1.0)?, KB::Mul)?;
    if y.shape() != shape {
        return Err(CoreError::ShapeMismatch {
            op: "broadcast_to",
            lhs: x.shape().to_vec(),
            rhs: shape.to_vec(),
        });
    }
    Ok(y)
}

/// Whether every element of every tensor in `xs` is finite: the tensors laid end to end
/// (one copy each), then one product and one sum, and one scalar copied to the host for
/// all of them.
///
/// x·0 is 0 for finite x and NaN for ±∞ or NaN, so the sum of x·0 is 0 iff every element
/// is finite (a sum of the elements themselves could overflow for finite ones).
pub(super) fn all_finite<R: GpuRuntime>(d: &Arc<GpuDevice<R>>, xs: &[&Tensor]) -> Result<bool> {
    let flat: Vec<Tensor> = xs
        .iter()
        .filter(|x| x.numel() > 0)
        .map(|x| x.reshape([x.numel()]))
        .collect::<Result<_>>()?;
    let all = match flat.len() {
        0 => return Ok(true),
        1 => flat[0].clone(),
        _ => channels::concat(d, &flat.iter().collect::<Vec<_>>(), 0)?,
    };
    let z = bin(d, &all, &full(d, &[], 0.0)?, KB::Mul)?;
    let s = reduce(d, &z, &[0], false, vec![])?;
    Ok(s.item()?.is_finite())
}

/// A dropout mask of `shape`: 0 with probability `p`, else `1/(1 − p)` (Philox keyed by
/// two draws of `rng`).
pub(super) fn dropout_mask<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    shape: &[usize],
    p: f32,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    let n = numel(shape);
    let ones = d.ones(n)?;
    let (mut y, mut mask) = (d.zeros(n)?, d.zeros(n)?);
    let (seed, offset) = (rng.next_u64(), rng.next_u64());
    d.nn.dropout(d.stream(), &ones, &mut y, &mut mask, n, p, seed, offset)
        .map_err(kernel_err("dropout"))?;
    wrap(d, shape.to_vec(), mask)
}
