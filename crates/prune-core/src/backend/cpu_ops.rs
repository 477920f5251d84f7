//! The CPU loops of the ops that have no kernel in [`crate::cpu`]:
//! elementwise maps and their derivatives, log-softmax and cross-entropy,
//! gather/scatter, concatenation, dropout masks and optimizer updates.

use super::cpu_broadcast::broadcast_zip;
use super::{AdamStep, SgdStep};
use crate::autograd::{Binary, Unary};
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rand::{Rng, RngCore};

/// `(outer, dim, inner)` sizes around `axis`.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Applies `op` to every element, with the match hoisted out of the loop so
/// each arm compiles to a tight (vectorizable) loop.
pub(super) fn unary(op: Unary, x: &[f32]) -> Vec<f32> {
    let m = |f: &dyn Fn(f32) -> f32| x.iter().map(|&v| f(v)).collect::<Vec<f32>>();
    match op {
        Unary::Relu => crate::cpu::elementwise::relu(x),
        Unary::Scale(s) => x.iter().map(|&v| v * s).collect(),
        Unary::Shift(s) => x.iter().map(|&v| v + s).collect(),
        Unary::Square => x.iter().map(|&v| v * v).collect(),
        Unary::Neg => x.iter().map(|&v| -v).collect(),
        other => m(&|v| other.apply(v)),
    }
}

/// `g · op'(x)` elementwise (`y` is the forward output).
pub(super) fn unary_backward(op: Unary, x: &[f32], y: &[f32], g: &[f32]) -> Vec<f32> {
    match op {
        Unary::Relu => crate::cpu::elementwise::relu_backward(x, g),
        op => x
            .iter()
            .zip(y)
            .zip(g)
            .map(|((&a, &b), &gg)| gg * op.derivative(a, b))
            .collect(),
    }
}

/// `a op b` with broadcasting.
pub(super) fn binary(a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
    match op {
        Binary::Add if a.shape() == b.shape() => Tensor::from_vec(
            a.shape().to_vec(),
            crate::cpu::elementwise::add(a.data(), b.data()),
        ),
        Binary::Add => broadcast_zip(a, b, "add", |x, y| x + y),
        Binary::Sub => broadcast_zip(a, b, "sub", |x, y| x - y),
        Binary::Mul => broadcast_zip(a, b, "mul", |x, y| x * y),
        Binary::Div => broadcast_zip(a, b, "div", |x, y| x / y),
    }
}

/// Gradients of `y = a op b` at the broadcast shape of `g`.
pub(super) fn binary_backward(
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    Ok(match op {
        Binary::Add => (g.clone(), g.clone()),
        Binary::Sub => (g.clone(), g.map(|v| -v)),
        Binary::Mul => (
            broadcast_zip(g, b, "mul backward", |x, y| x * y)?,
            broadcast_zip(g, a, "mul backward", |x, y| x * y)?,
        ),
        Binary::Div => {
            let ga = broadcast_zip(g, b, "div backward", |x, y| x / y)?;
            // d(a/b)/db = -(a/b)/b = -y/b
            let gy = g.zip_map(y, "div backward", |x, q| x * q)?;
            let gb = broadcast_zip(&gy, b, "div backward", |x, y| -x / y)?;
            (ga, gb)
        }
    })
}

/// Row-wise log-softmax of a `[rows, cols]` tensor (max-shifted for stability).
pub(super) fn log_softmax_rows(x: &Tensor) -> Result<Tensor> {
    x.expect_rank(2, "log_softmax")?;
    let cols = x.shape()[1];
    let mut out = x.clone();
    if cols == 0 {
        return Ok(out);
    }
    for row in out.data_mut().chunks_mut(cols) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
        row.iter_mut().for_each(|v| *v -= lse);
    }
    Ok(out)
}

/// `dx = g − softmax · Σ_row g`, with `softmax = exp(y)`.
pub(super) fn log_softmax_backward(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    y.expect_same_shape(g, "log_softmax backward")?;
    y.expect_rank(2, "log_softmax backward")?;
    let cols = y.shape()[1].max(1);
    let mut d = g.clone();
    for (dr, yr) in d.data_mut().chunks_mut(cols).zip(y.data().chunks(cols)) {
        let s: f32 = dr.iter().sum();
        dr.iter_mut().zip(yr).for_each(|(v, &l)| *v -= l.exp() * s);
    }
    Ok(d)
}

/// `(N, K)` of `[N, K]` logits, checked against `N` labels in `0..K`.
fn logits_and_labels(logits: &Tensor, labels: &[u32]) -> Result<(usize, usize)> {
    logits.expect_rank(2, "cross_entropy")?;
    let (n, k) = (logits.shape()[0], logits.shape()[1]);
    if labels.len() != n || n == 0 {
        return Err(CoreError::ShapeMismatch {
            op: "cross_entropy (labels)",
            lhs: logits.shape().to_vec(),
            rhs: vec![labels.len()],
        });
    }
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
        return Err(CoreError::InvalidArgument {
            op: "cross_entropy",
            reason: format!("label {bad} out of range for {k} classes"),
        });
    }
    Ok((n, k))
}

/// Mean negative log-likelihood `−(1/N) Σᵢ log softmax(zᵢ)[yᵢ]`, summed in f64.
pub(super) fn cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let (n, k) = logits_and_labels(logits, labels)?;
    let lp = log_softmax_rows(logits)?;
    let loss: f64 = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| -(lp.data()[i * k + l as usize] as f64))
        .sum::<f64>()
        / n as f64;
    Ok(Tensor::scalar(loss as f32))
}

/// d/dlogits of the mean NLL: `(softmax − onehot) · g / N`.
pub(super) fn cross_entropy_backward(
    logits: &Tensor,
    labels: &[u32],
    g: &Tensor,
) -> Result<Tensor> {
    let (_, k) = logits_and_labels(logits, labels)?;
    let mut d = log_softmax_rows(logits)?;
    let scale = g.item()? / labels.len() as f32;
    for (row, &l) in d.data_mut().chunks_mut(k).zip(labels) {
        row.iter_mut().for_each(|v| *v = v.exp());
        row[l as usize] -= 1.0;
        row.iter_mut().for_each(|v| *v *= scale);
    }
    Ok(d)
}

/// Gathers `indices` along `axis`.
pub(super) fn index_select(x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
    if axis >= x.rank() {
        return Err(CoreError::InvalidArgument {
            op: "index_select",
            reason: format!("axis {axis} out of range for shape {:?}", x.shape()),
        });
    }
    let (outer, dim, inner) = split_at_axis(x.shape(), axis);
    if let Some(&bad) = indices.iter().find(|&&i| i >= dim) {
        return Err(CoreError::InvalidArgument {
            op: "index_select",
            reason: format!("index {bad} out of range for axis {axis} of size {dim}"),
        });
    }
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    let d = x.data();
    for o in 0..outer {
        for &i in indices {
            let s = (o * dim + i) * inner;
            out.extend_from_slice(&d[s..s + inner]);
        }
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = indices.len();
    Tensor::from_vec(shape, out)
}

/// Scatter-adds `grad` (shaped like an index-select result) back into `shape`.
pub(super) fn index_add(
    grad: &Tensor,
    shape: &[usize],
    axis: usize,
    indices: &[usize],
) -> Result<Tensor> {
    let op = "index_select backward";
    if axis >= shape.len() || indices.iter().any(|&i| i >= shape[axis]) {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!("indices {indices:?} on axis {axis} of shape {shape:?}"),
        });
    }
    let (outer, dim, inner) = split_at_axis(shape, axis);
    if grad.numel() != outer * indices.len() * inner {
        return Err(CoreError::ShapeMismatch {
            op,
            lhs: grad.shape().to_vec(),
            rhs: shape.to_vec(),
        });
    }
    let mut out = Tensor::zeros(shape.to_vec());
    let (g, o_data) = (grad.data(), out.data_mut());
    for o in 0..outer {
        for (k, &i) in indices.iter().enumerate() {
            let src = (o * indices.len() + k) * inner;
            let dst = (o * dim + i) * inner;
            for j in 0..inner {
                o_data[dst + j] += g[src + j];
            }
        }
    }
    Ok(out)
}

/// Concatenates along `axis`; the caller has checked the other dims agree.
pub(super) fn concat(xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = xs.first().ok_or(CoreError::InvalidArgument {
        op: "concat",
        reason: "no inputs".into(),
    })?;
    let base = first.shape();
    if axis >= base.len() {
        return Err(CoreError::InvalidArgument {
            op: "concat",
            reason: format!("axis {axis} out of range for shape {base:?}"),
        });
    }
    let total: usize = xs
        .iter()
        .map(|t| t.shape().get(axis).copied().unwrap_or(0))
        .sum();
    let (outer, _, inner) = split_at_axis(base, axis);
    let mut out = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        for t in xs {
            let chunk = t.shape()[axis] * inner;
            let src = t.data().get(o * chunk..(o + 1) * chunk).ok_or_else(|| {
                CoreError::ShapeMismatch {
                    op: "concat",
                    lhs: base.to_vec(),
                    rhs: t.shape().to_vec(),
                }
            })?;
            out.extend_from_slice(src);
        }
    }
    let mut shape = base.to_vec();
    shape[axis] = total;
    Tensor::from_vec(shape, out)
}

/// Splits `g` along `axis` into pieces of `sizes`.
pub(super) fn split(g: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    if axis >= g.rank() || sizes.iter().sum::<usize>() != g.shape()[axis] {
        return Err(CoreError::InvalidArgument {
            op: "concat backward",
            reason: format!("sizes {sizes:?} on axis {axis} of shape {:?}", g.shape()),
        });
    }
    let (outer, total, inner) = split_at_axis(g.shape(), axis);
    let mut offset = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for &len in sizes {
        let mut d = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let start = (o * total + offset) * inner;
            d.extend_from_slice(&g.data()[start..start + len * inner]);
        }
        offset += len;
        let mut s = g.shape().to_vec();
        s[axis] = len;
        out.push(Tensor::from_vec(s, d)?);
    }
    Ok(out)
}

/// An inverted-dropout mask: 0 with probability `p`, else `1/(1−p)`.
pub(super) fn dropout_mask(shape: &[usize], p: f32, rng: &mut dyn RngCore) -> Result<Tensor> {
    let keep = 1.0 / (1.0 - p);
    let n = crate::tensor::numel(shape);
    let mask: Vec<f32> = (0..n)
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    Tensor::from_vec(shape.to_vec(), mask)
}

/// One SGD update (PyTorch's formulation, see [`crate::optim::Sgd`]).
/// `r ← (1 − m)·r + m·b` in place.
pub(super) fn ema_update(r: &mut Tensor, b: &Tensor, m: f32) -> Result<()> {
    r.expect_same_shape(b, "running average")?;
    for (r, &b) in r.data_mut().iter_mut().zip(b.data()) {
        *r = (1.0 - m) * *r + m * b;
    }
    Ok(())
}

pub(super) fn sgd_update(
    w: &mut Tensor,
    g: &Tensor,
    velocity: Option<&mut Tensor>,
    h: &SgdStep,
) -> Result<()> {
    w.expect_same_shape(g, "sgd update")?;
    let (lr, wd) = (h.lr, h.weight_decay);
    if h.momentum == 0.0 {
        for (w, &g) in w.data_mut().iter_mut().zip(g.data()) {
            *w -= lr * (g + wd * *w);
        }
        return Ok(());
    }
    let v = velocity.ok_or(CoreError::InvalidArgument {
        op: "sgd update",
        reason: "momentum needs a velocity buffer".into(),
    })?;
    v.expect_same_shape(g, "sgd update (velocity)")?;
    let (mu, nesterov) = (h.momentum, h.nesterov);
    for ((w, &g), v) in w.data_mut().iter_mut().zip(g.data()).zip(v.data_mut()) {
        let g = g + wd * *w;
        *v = mu * *v + g;
        *w -= lr * if nesterov { g + mu * *v } else { *v };
    }
    Ok(())
}

/// One Adam update (see [`crate::optim::Adam`]).
pub(super) fn adam_update(
    w: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    h: &AdamStep,
) -> Result<()> {
    w.expect_same_shape(g, "adam update")?;
    m.expect_same_shape(g, "adam update (m)")?;
    v.expect_same_shape(g, "adam update (v)")?;
    let (b1, b2, eps, wd, lr) = (h.beta1, h.beta2, h.eps, h.weight_decay, h.lr);
    let (bc1, bc2) = (h.bias_correction1, h.bias_correction2);
    for (((w, &g), m), v) in w
        .data_mut()
        .iter_mut()
        .zip(g.data())
        .zip(m.data_mut())
        .zip(v.data_mut())
    {
        let g = g + wd * *w;
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        let mh = *m as f64 / bc1;
        let vh = *v as f64 / bc2;
        *w -= (lr * mh / (vh.sqrt() + eps as f64)) as f32;
    }
    Ok(())
}
