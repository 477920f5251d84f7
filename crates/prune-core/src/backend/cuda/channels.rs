//! Channel gathers and copies on `[outer, C, inner]` views: index-select and its
//! backward (`index_select_channels`, `index_add_channels`, the index lists uploaded once
//! per content by the kernels' cache), concat and its backward (`copy_channels`, the
//! geometry passed by value).

use super::buffers::{sl, wrap};
use super::{kernel_err, GpuDevice, GpuRuntime};
use crate::error::{CoreError, Result};
use crate::tensor::{numel, Tensor};
use std::sync::Arc;

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

/// `x` at `indices` (which may repeat) along `axis`.
pub(super) fn index_select<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    axis: usize,
    indices: &[usize],
) -> Result<Tensor> {
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
    wrap(d, shape, y)
}

/// The backward of [`index_select`]: `g` added into a zero tensor of `shape` at `indices`.
pub(super) fn index_add<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    g: &Tensor,
    shape: &[usize],
    axis: usize,
    indices: &[usize],
) -> Result<Tensor> {
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
    wrap(d, shape.to_vec(), y)
}

/// `xs` concatenated along `axis`.
pub(super) fn concat<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    xs: &[&Tensor],
    axis: usize,
) -> Result<Tensor> {
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
    wrap(d, shape, y)
}

/// The backward of [`concat`]: `g` cut along `axis` into parts of `sizes`.
pub(super) fn split<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    g: &Tensor,
    axis: usize,
    sizes: &[usize],
) -> Result<Vec<Tensor>> {
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
        out.push(wrap(d, shape, y)?);
        off += c;
    }
    Ok(out)
}
