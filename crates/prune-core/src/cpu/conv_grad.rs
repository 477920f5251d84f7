//! The backward pass of the convolution: the public entry points
//! ([`conv2d_backward`], [`conv2d_backward_with`]) choosing per layer
//! between the plane product (`conv_plane.rs`), im2col + GEMM
//! (`conv_backward.rs`), the direct kernels and the Winograd transforms
//! (`conv_flat_grad.rs`, `conv_wino_grad.rs`, `conv_wino2/grad.rs`), and
//! the input gradient as a forward correlation of the output gradient with
//! the flipped weights — for stride-2 layers on phase planes
//! (`conv_phase_grad.rs`).

#[cfg(test)]
use super::conv::as_uninit;
use super::conv::{assume_written, geometry, Conv2dParams, ConvGeom, PostFn};
use super::conv_backward::{backward_gemm, bias_from_sums, plane_sums};
use super::conv_direct;
use super::conv_flat::{self, FlatGeom};
use super::conv_flat_grad;
use super::conv_phase::PhaseGeom;
use super::conv_phase_grad;
use super::conv_plane;
use super::conv_tune::{self, Algo, Pass, Transform};
use super::conv_wino;
use super::conv_wino2;
use super::conv_wino_grad;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[cfg(test)]
/// The input gradient of a stride-1, single-group layer by the direct
/// kernel: the correlation of `dy` with the flipped, transposed weights and
/// padding `(kh − 1 − ph, kw − 1 − pw)` (see `conv_flat.rs`), into `dx`;
/// by the Winograd transform where `conv_tune::backward_form` says so.
pub(crate) fn input_grad_direct(g: &ConvGeom, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    // SAFETY: every form writes only finished values into `dx`.
    input_grad_into(g, w, dy, unsafe { as_uninit(dx) })
}

/// [`input_grad_direct`] into uninitialised memory: every form writes each
/// value of `dx` without reading it.
fn input_grad_into(g: &ConvGeom, w: &[f32], dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let c = &g.col;
    let wf = conv_flat::flipped_weights(g.cout, g.cin, c.kh, c.kw, w);
    let fg = input_grad_geom(g);
    let none: &PostFn = &|_, _| {};
    match (
        conv_tune::backward_form(&fg, g.n),
        conv_tune::transform(&fg, g.n),
    ) {
        (Algo::Winograd, Some(Transform::Tiles(t))) => {
            conv_wino2::forward_post(&t, g.n, dy, &wf, None, dx, none)
        }
        (Algo::Winograd, Some(Transform::Rows(t))) => {
            conv_wino::forward_post(&t, g.n, dy, &wf, None, dx, none)
        }
        _ => conv_flat::forward_post(&fg, g.n, dy, &wf, None, dx, none),
    }
}

/// `d` filled with zeros (in parallel), as values.
fn zero_filled(d: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    d.par_chunks_mut(1 << 16)
        .for_each(|c| c.fill(MaybeUninit::new(0.0)));
    // SAFETY: every value was just written.
    unsafe { assume_written(d) }
}

/// The geometry of the input gradient's correlation (see
/// [`input_grad_direct`]).
fn input_grad_geom(g: &ConvGeom) -> FlatGeom {
    let c = &g.col;
    FlatGeom {
        cin: g.cout,
        cout: g.cin,
        h: c.oh,
        w: c.ow,
        kh: c.kh,
        kw: c.kw,
        ph: c.kh - 1 - c.ph,
        pw: c.kw - 1 - c.pw,
    }
}

/// True when a layer whose backward pass runs on the GEMM takes its input
/// gradient by the 2-D transform instead (3×3 layers on small planes of at
/// least four tiles: on VGG-like's 512-channel 4×4 maps, one tile per
/// image, the GEMM's input gradient is faster, 60–65 against 71–75 ms).
fn tiles_input_grad(g: &ConvGeom) -> bool {
    let ig = input_grad_geom(g);
    g.col.oh.div_ceil(4) * g.col.ow.div_ceil(4) >= 4
        && conv_tune::backward_form(&ig, g.n) == Algo::Winograd
        && matches!(conv_tune::transform(&ig, g.n), Some(Transform::Tiles(_)))
}

/// Gradients of a convolution: `x` and `bias` are `None` unless requested
/// ([`conv2d_backward`] always gives the bias's: on the CPU its sums come
/// with the other passes).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dGrads {
    /// `∂L/∂x`, `[N, Cin, H, W]`.
    pub x: Option<Tensor>,
    /// `∂L/∂w`, `[Cout, Cin/G, kh, kw]`.
    pub w: Tensor,
    /// `∂L/∂b`, `[Cout]`.
    pub bias: Option<Tensor>,
}

/// Backward convolution from `grad_out [N, Cout, OH, OW]`. The input
/// gradient is computed only when `need_x_grad`. Shape errors name both
/// offending shapes.
pub fn conv2d_backward(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    p: &Conv2dParams,
    need_x_grad: bool,
) -> Result<Conv2dGrads> {
    conv2d_backward_with(x, w, grad_out, p, need_x_grad, true)
}

/// [`conv2d_backward`], with the bias gradient only when `need_bias` (a
/// layer without a bias, before a batch norm, skips the pass over
/// `grad_out` that sums it; the result's `bias` is then `None`).
pub fn conv2d_backward_with(
    x: &Tensor,
    w: &Tensor,
    grad_out: &Tensor,
    p: &Conv2dParams,
    need_x_grad: bool,
    need_bias: bool,
) -> Result<Conv2dGrads> {
    let g = geometry("conv2d_backward", x, w, p)?;
    let expected = [g.n, g.cout, g.col.oh, g.col.ow];
    if grad_out.shape() != expected {
        return Err(CoreError::ShapeMismatch {
            op: "conv2d_backward (grad_out vs expected output)",
            lhs: grad_out.shape().to_vec(),
            rhs: expected.to_vec(),
        });
    }
    let dy = grad_out.data();
    let mut dw = vec![0.0f32; g.weight_len()];
    // The input gradient, written by the pass below: zero-filled first
    // where it accumulates (col2im, the depthwise kernel), overwritten
    // without being read by the direct and transformed forms.
    let dx_len = if need_x_grad { g.n * g.img_in() } else { 0 };
    let mut dx = Vec::<f32>::with_capacity(dx_len);
    let dxu = &mut dx.spare_capacity_mut()[..dx_len];
    // Per-image bias-gradient sums, filled by the GEMM pass while each
    // image's dY is in cache, or by a separate pass otherwise; none (every
    // path skips an empty `sums`) without a bias.
    let mut sums = vec![0.0f64; if need_bias { g.n * g.cout } else { 0 }];
    let gemm_path = !g.is_depthwise() && g.n * g.img_out() > 0 && g.img_in() > 0 && !dw.is_empty();
    // A stride-2 layer's input gradient on phase planes.
    let phases = (gemm_path && need_x_grad && conv_tune::direct_allowed())
        .then(|| PhaseGeom::of(&g))
        .flatten();
    if gemm_path && conv_plane::applies(&g) {
        let dx = need_x_grad.then(|| zero_filled(dxu));
        conv_plane::backward(&g, x.data(), w.data(), dy, &mut dw, dx, &mut sums);
    } else if let Some(pg) = phases {
        // Stride 2: the weight gradient by the GEMM, the input gradient on
        // phase planes.
        let (x, w) = (x.data(), w.data());
        backward_gemm(&g, x, w, dy, &mut dw, None, &mut sums)?;
        conv_phase_grad::input_grad(&pg, g.n, w, dy, dxu);
    } else if gemm_path {
        let (x, w) = (x.data(), w.data());
        // The whole backward by `algo`, into the given buffers.
        let run = |algo: Algo, dw: &mut [f32], dx: &mut [MaybeUninit<f32>], sums: &mut [f64]| match (
            algo,
            g.flat(),
        ) {
            (Algo::Direct, Some(fg)) => {
                match (
                    conv_tune::backward_form(&fg, g.n),
                    conv_tune::transform(&fg, g.n),
                ) {
                    (Algo::Winograd, Some(Transform::Tiles(t))) => {
                        conv_wino2::weight_grad(&t, g.n, x, dy, dw, sums)
                    }
                    (Algo::Winograd, Some(Transform::Rows(t))) => {
                        conv_wino_grad::weight_grad(&t, g.n, x, dy, dw, sums)
                    }
                    _ => conv_flat_grad::weight_grad(&fg, g.n, x, dy, dw, sums),
                }
                if need_x_grad {
                    input_grad_into(&g, w, dy, dx);
                }
                Ok(())
            }
            // On small planes the input gradient by the 2-D transform
            // (3×3 layers), the weight gradient by the GEMM.
            _ if need_x_grad && g.flat().is_some() && tiles_input_grad(&g) => {
                backward_gemm(&g, x, w, dy, dw, None, sums)?;
                input_grad_into(&g, w, dy, dx);
                Ok(())
            }
            _ => backward_gemm(&g, x, w, dy, dw, need_x_grad.then(|| zero_filled(dx)), sums),
        };
        let algo = match g.flat() {
            Some(fg) => conv_tune::choose(Pass::Backward, g.n, fg, |a| {
                let (mut tw, mut tx, mut ts) = (
                    vec![0.0; dw.len()],
                    Vec::<f32>::with_capacity(dx_len),
                    vec![0.0; sums.len()],
                );
                // A failing trial fails again in the real run below.
                let _ = run(a, &mut tw, &mut tx.spare_capacity_mut()[..dx_len], &mut ts);
            }),
            None => Algo::Gemm,
        };
        run(algo, &mut dw, dxu, &mut sums)?;
    } else {
        let dxz = need_x_grad.then(|| zero_filled(dxu));
        if g.n * g.img_out() > 0 {
            sums.par_chunks_mut(g.cout)
                .zip(dy.par_chunks(g.img_out()))
                .for_each(|(s, dyn_)| plane_sums(dyn_, s));
        }
        if g.is_depthwise() && g.n * g.img_out() > 0 && g.img_in() > 0 && !dw.is_empty() {
            conv_direct::depthwise_backward(&g, x.data(), w.data(), dy, &mut dw, dxz);
        }
    }
    // SAFETY: every path above wrote all `dx_len` values (zero-filled,
    // accumulated into, or overwritten by a forward form).
    unsafe { dx.set_len(dx_len) };
    let bias = if need_bias {
        Some(Tensor::from_vec([g.cout], bias_from_sums(&sums, g.cout))?)
    } else {
        None
    };
    Ok(Conv2dGrads {
        x: if need_x_grad {
            Some(Tensor::from_vec(x.shape().to_vec(), dx)?)
        } else {
            None
        },
        w: Tensor::from_vec(w.shape().to_vec(), dw)?,
        bias,
    })
}
