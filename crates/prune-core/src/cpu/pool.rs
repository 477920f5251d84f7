//! 2-D max and average pooling over NCHW tensors.
//!
//! Window `(oh, ow)` covers input rows `oh·sh − ph .. oh·sh − ph + kh` and
//! columns `ow·sw − pw .. ow·sw − pw + kw`; `OH = (H + 2·ph − kh)/sh + 1`
//! (floor, as PyTorch without `ceil_mode`).
//!
//! * Max pooling ignores padding (it is `−∞`), takes the first maximum in
//!   row-major window order, and propagates NaN. It records the flat index
//!   `ih·W + iw` of the winner within its `(n, c)` plane; backward routes
//!   each output gradient to that input: `dx[argmax] += dy`.
//! * Average pooling counts padding as zeros (`count_include_pad = true`):
//!   `y = Σ_window x / (kh·kw)`, so `dx[i] = Σ_{windows ∋ i} dy / (kh·kw)`.
//!
//! Every `(n, c)` plane is independent and handled by one rayon task.

use super::pool_plane::Plane;
use super::shape::checked_numel;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Window size, stride and zero padding of a 2-D pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolParams {
    /// Window size, `(rows, columns)`.
    pub kernel: (usize, usize),
    /// Step between windows, `(rows, columns)`.
    pub stride: (usize, usize),
    /// Padding on each side, `(rows, columns)`; at most half the window.
    pub padding: (usize, usize),
}

/// Validated shapes of one pooling call.
#[derive(Clone, Copy, Debug)]
struct PoolGeom {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    p: PoolParams,
}

impl PoolGeom {
    /// Geometry of one plane.
    fn plane(&self) -> Plane {
        Plane::new(
            (self.h, self.w),
            (self.oh, self.ow),
            self.p.kernel,
            self.p.stride,
            self.p.padding,
        )
    }
}

/// Checks an `[N, C, H, W]` shape against the pooling parameters.
fn geometry(op: &'static str, shape: &[usize], p: &PoolParams) -> Result<PoolGeom> {
    if shape.len() != 4 {
        return Err(CoreError::BadShape {
            op,
            shape: shape.to_vec(),
            reason: "expected [N, C, H, W]".into(),
        });
    }
    checked_numel(op, shape)?;
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!(
                "kernel {:?} and stride {:?} must be positive",
                p.kernel, p.stride
            ),
        });
    }
    if ph > kh / 2 || pw > kw / 2 {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!(
                "padding {:?} exceeds half the kernel {:?}",
                p.padding, p.kernel
            ),
        });
    }
    let (h, w) = (shape[2], shape[3]);
    if h == 0 || w == 0 {
        return Err(CoreError::BadShape {
            op,
            shape: shape.to_vec(),
            reason: "empty image plane".into(),
        });
    }
    // ph ≤ kh/2 and pw ≤ kw/2 here, so the padded sizes cannot overflow.
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    if kh > hp || kw > wp {
        return Err(CoreError::BadShape {
            op,
            shape: shape.to_vec(),
            reason: format!("kernel {kh}x{kw} larger than padded input {hp}x{wp}"),
        });
    }
    if h * w > u32::MAX as usize {
        return Err(CoreError::BadShape {
            op,
            shape: shape.to_vec(),
            reason: "plane too large for 32-bit argmax indices".into(),
        });
    }
    Ok(PoolGeom {
        planes: shape[0] * shape[1],
        h,
        w,
        oh: (hp - kh) / sh + 1,
        ow: (wp - kw) / sw + 1,
        p: *p,
    })
}

/// Checks that `grad_out` has the output shape of pooling `x_shape`.
fn check_grad_out(
    op: &'static str,
    g: &PoolGeom,
    x_shape: &[usize],
    grad_out: &Tensor,
) -> Result<()> {
    let expected = [x_shape[0], x_shape[1], g.oh, g.ow];
    if grad_out.shape() != expected {
        return Err(CoreError::ShapeMismatch {
            op,
            lhs: grad_out.shape().to_vec(),
            rhs: expected.to_vec(),
        });
    }
    Ok(())
}

/// Max pooling; returns the output and, per output element, the flat index
/// of the selected input within its `(n, c)` plane.
pub fn max_pool2d_forward(x: &Tensor, p: &PoolParams) -> Result<(Tensor, Vec<u32>)> {
    let g = geometry("max_pool2d_forward", x.shape(), p)?;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut y = vec![0.0f32; g.planes * ohw];
    let mut idx = vec![0u32; g.planes * ohw];
    let plane = g.plane();
    if g.planes > 0 {
        y.par_chunks_mut(ohw)
            .zip(idx.par_chunks_mut(ohw))
            .zip(x.data().par_chunks(hw))
            .for_each(|((yp, ip), xp)| plane.max(xp, yp, ip));
    }
    Ok((
        Tensor::from_vec([x.shape()[0], x.shape()[1], g.oh, g.ow], y)?,
        idx,
    ))
}

/// Gradient of max pooling: `dx[n][c][argmax] += dy` for every output.
/// Errors when `argmax` does not match `grad_out` or indexes outside a plane
/// of `x_shape`.
pub fn max_pool2d_backward(grad_out: &Tensor, argmax: &[u32], x_shape: &[usize]) -> Result<Tensor> {
    let op = "max_pool2d_backward";
    if x_shape.len() != 4 || grad_out.rank() != 4 || grad_out.shape()[..2] != x_shape[..2] {
        return Err(CoreError::ShapeMismatch {
            op,
            lhs: grad_out.shape().to_vec(),
            rhs: x_shape.to_vec(),
        });
    }
    if argmax.len() != grad_out.numel() {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!(
                "{} argmax indices for grad_out of shape {:?}",
                argmax.len(),
                grad_out.shape()
            ),
        });
    }
    let numel = checked_numel(op, x_shape)?;
    let hw = x_shape[2] * x_shape[3];
    if let Some(&bad) = argmax.iter().find(|&&i| i as usize >= hw) {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!("argmax index {bad} outside a plane of {x_shape:?}"),
        });
    }
    let ohw = grad_out.shape()[2] * grad_out.shape()[3];
    let mut dx = vec![0.0f32; numel];
    if hw > 0 && ohw > 0 {
        dx.par_chunks_mut(hw)
            .zip(grad_out.data().par_chunks(ohw))
            .zip(argmax.par_chunks(ohw))
            .for_each(|((dxp, gp), ip)| {
                for (&gv, &i) in gp.iter().zip(ip) {
                    dxp[i as usize] += gv;
                }
            });
    }
    Tensor::from_vec(x_shape.to_vec(), dx)
}

/// Average pooling with padding counted as zeros (`count_include_pad`).
pub fn avg_pool2d_forward(x: &Tensor, p: &PoolParams) -> Result<Tensor> {
    let g = geometry("avg_pool2d_forward", x.shape(), p)?;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let scale = 1.0 / (p.kernel.0 * p.kernel.1) as f32;
    let mut y = vec![0.0f32; g.planes * ohw];
    let plane = g.plane();
    if g.planes > 0 {
        y.par_chunks_mut(ohw)
            .zip(x.data().par_chunks(hw))
            .for_each(|(yp, xp)| plane.avg(xp, yp, scale));
    }
    Tensor::from_vec([x.shape()[0], x.shape()[1], g.oh, g.ow], y)
}

/// Gradient of average pooling: each output gradient is spread evenly
/// (`/ (kh·kw)`) over the input positions of its window.
pub fn avg_pool2d_backward(grad_out: &Tensor, x_shape: &[usize], p: &PoolParams) -> Result<Tensor> {
    let op = "avg_pool2d_backward";
    let g = geometry(op, x_shape, p)?;
    check_grad_out(op, &g, x_shape, grad_out)?;
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let scale = 1.0 / (p.kernel.0 * p.kernel.1) as f32;
    let mut dx = vec![0.0f32; g.planes * hw];
    let plane = g.plane();
    if g.planes > 0 {
        dx.par_chunks_mut(hw)
            .zip(grad_out.data().par_chunks(ohw))
            .for_each(|(dxp, gp)| plane.avg_backward(gp, dxp, scale));
    }
    Tensor::from_vec(x_shape.to_vec(), dx)
}
