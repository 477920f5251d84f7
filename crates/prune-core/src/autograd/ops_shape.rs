//! Reductions and shape operations: sum/mean over axes, reshape, flatten,
//! concat and index-select (channel gather).

use super::broadcast::reduce_to_shape;
use super::{Op, Tape, Var};
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

/// The shape with `axes` set to 1, after validating them.
pub(crate) fn keepdim_shape(
    shape: &[usize],
    axes: &[usize],
    op: &'static str,
) -> Result<Vec<usize>> {
    let mut out = shape.to_vec();
    for (i, &a) in axes.iter().enumerate() {
        if a >= shape.len() || axes[..i].contains(&a) {
            return Err(CoreError::InvalidArgument {
                op,
                reason: format!("bad axes {axes:?} for shape {shape:?}"),
            });
        }
        out[a] = 1;
    }
    Ok(out)
}

fn drop_axes(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect()
}

/// `(outer, dim, inner)` sizes around `axis`.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Sum over `axes` of a tensor (no tape), keeping size-1 dims when `keepdim`.
pub fn sum_axes(x: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    let kd = keepdim_shape(x.shape(), axes, "sum")?;
    let s = reduce_to_shape(x, &kd)?;
    if keepdim {
        Ok(s)
    } else {
        s.into_reshaped(drop_axes(x.shape(), axes))
    }
}

/// Gathers `indices` along `axis` (no tape).
pub fn index_select(x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
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
pub(crate) fn index_scatter_add(
    grad: &Tensor,
    shape: &[usize],
    axis: usize,
    indices: &[usize],
) -> Result<Tensor> {
    let (outer, dim, inner) = split_at_axis(shape, axis);
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

impl Tape<'_> {
    /// Sum over `axes`.
    pub fn sum(&mut self, x: Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        let y = sum_axes(self.value(x)?, axes, keepdim)?;
        Ok(self.push(
            y,
            Op::Sum {
                x,
                axes: axes.to_vec(),
                keepdim,
            },
        ))
    }

    /// Sum of every element, as a scalar.
    pub fn sum_all(&mut self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.value(x)?.rank()).collect();
        self.sum(x, &axes, false)
    }

    /// Mean over `axes`.
    pub fn mean(&mut self, x: Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        let xv = self.value(x)?;
        let count: usize = axes.iter().filter_map(|&a| xv.shape().get(a)).product();
        let mut y = sum_axes(xv, axes, keepdim)?;
        let inv = 1.0 / count.max(1) as f32;
        y.data_mut().iter_mut().for_each(|v| *v *= inv);
        Ok(self.push(
            y,
            Op::Mean {
                x,
                axes: axes.to_vec(),
                keepdim,
            },
        ))
    }

    /// Global average pooling: `[N, C, H, W] -> [N, C]`.
    pub fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        self.value(x)?.expect_rank(4, "global_avg_pool")?;
        self.mean(x, &[2, 3], false)
    }

    /// Same data under a new shape.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.value(x)?.reshape(shape.to_vec())?;
        Ok(self.push(y, Op::Reshape { x }))
    }

    /// `[N, ...] -> [N, prod(...)]`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let s = self.value(x)?.shape().to_vec();
        let n = s.first().copied().unwrap_or(1);
        let rest: usize = s.iter().skip(1).product();
        self.reshape(x, &[n, rest])
    }

    /// Concatenates along `axis`; every other dim must agree.
    pub fn concat(&mut self, xs: &[Var], axis: usize) -> Result<Var> {
        let first = xs.first().ok_or(CoreError::InvalidArgument {
            op: "concat",
            reason: "no inputs".into(),
        })?;
        let base = self.value(*first)?.shape().to_vec();
        if axis >= base.len() {
            return Err(CoreError::InvalidArgument {
                op: "concat",
                reason: format!("axis {axis} out of range for shape {base:?}"),
            });
        }
        let mut total = 0;
        for v in xs {
            let s = self.value(*v)?.shape();
            let same_rank = s.len() == base.len();
            if !same_rank
                || s.iter()
                    .zip(&base)
                    .enumerate()
                    .any(|(i, (a, b))| i != axis && a != b)
            {
                return Err(CoreError::ShapeMismatch {
                    op: "concat",
                    lhs: base.clone(),
                    rhs: s.to_vec(),
                });
            }
            total += s[axis];
        }
        let (outer, _, inner) = split_at_axis(&base, axis);
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for v in xs {
                let t = self.value(*v)?;
                let chunk = t.shape()[axis] * inner;
                out.extend_from_slice(&t.data()[o * chunk..(o + 1) * chunk]);
            }
        }
        let mut shape = base;
        shape[axis] = total;
        let y = Tensor::from_vec(shape, out)?;
        Ok(self.push(
            y,
            Op::Concat {
                xs: xs.to_vec(),
                axis,
            },
        ))
    }

    /// Gathers `indices` along `axis` (channel gather with `axis = 1`).
    pub fn index_select(&mut self, x: Var, axis: usize, indices: &[usize]) -> Result<Var> {
        let y = index_select(self.value(x)?, axis, indices)?;
        Ok(self.push(
            y,
            Op::IndexSelect {
                x,
                axis,
                indices: indices.to_vec(),
            },
        ))
    }
}
