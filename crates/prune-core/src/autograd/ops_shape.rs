//! Reductions and shape operations: sum/mean over axes, reshape, flatten,
//! concat and index-select (channel gather).

use super::{Op, Tape, Unary, Var};
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

/// Sums `grad` (of a broadcast result) down to `shape`: the adjoint of
/// broadcasting, on `grad`'s backend (no tape).
pub fn reduce_to_shape(grad: &Tensor, shape: &[usize]) -> Result<Tensor> {
    grad.backend().sum_to_shape(grad, shape)
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
    let dim = x.shape()[axis];
    if let Some(&bad) = indices.iter().find(|&&i| i >= dim) {
        return Err(CoreError::InvalidArgument {
            op: "index_select",
            reason: format!("index {bad} out of range for axis {axis} of size {dim}"),
        });
    }
    x.backend().index_select(x, axis, indices)
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
        let y = sum_axes(xv, axes, keepdim)?;
        let inv = 1.0 / count.max(1) as f32;
        let y = y.backend().unary(&y, Unary::Scale(inv))?;
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
        }
        let values = xs
            .iter()
            .map(|v| self.value(*v))
            .collect::<Result<Vec<&Tensor>>>()?;
        let y = crate::backend::backend_of("concat", &values)?.concat(&values, axis)?;
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
