//! 2-D convolution (cross-correlation, as in every deep-learning library),
//! NCHW, with stride, zero padding and channel groups.
//!
//! ```text
//! y[n][co][oh][ow] = b[co] + Σ_{c<Cin/G} Σ_{ki<kh} Σ_{kj<kw}
//!                     w[co][c][ki][kj] · x[n][g·Cin/G + c][oh·sh + ki − ph][ow·sw + kj − pw]
//! ```
//!
//! where `g = co / (Cout/G)` is the group of output channel `co` and `x` is
//! zero outside the image. Per image and group this is the matrix product
//! `Y_g[Cout/G × OH·OW] = W_g[Cout/G × K] · col_g[K × OH·OW]` with
//! `K = Cin/G·kh·kw` and `col_g` the im2col matrix (see `im2col.rs`).
//!
//! Backward, with `dY` the gradient of the output:
//!
//! ```text
//! dW_g  = Σ_n dY_{n,g} · col_{n,g}ᵀ
//! dX_n  = col2im(W_gᵀ · dY_{n,g})         (the adjoint of im2col)
//! db    = Σ_{n,oh,ow} dY
//! ```
//!
//! The backward entry points ([`conv2d_backward`], [`conv2d_backward_with`])
//! live in `conv_grad.rs`, re-exported here.
//!
//! Weights are packed for the GEMM once per call and images are processed
//! in parallel, each with a reused per-thread im2col buffer. Weight
//! gradients are summed per fixed chunk of images and the chunk partials
//! added in chunk order, so results do not depend on the thread count
//! (`conv_backward.rs`).
//! When every group has a single input channel (depthwise convolution) a
//! direct loop kernel replaces the GEMM (see `conv_direct.rs`). Stride-1,
//! single-group layers with few channels may instead run a direct kernel
//! over padded planes (`conv_flat.rs`, `conv_flat_grad.rs`) for the output
//! and for all gradients, whichever measured faster for the shape
//! (`conv_tune.rs`); 3×3 (and other 3-wide) layers among them run by a
//! Winograd transform, row-wise F(4, 3) or 2-D F(4×4, 3×3)
//! (`conv_wino.rs`, `conv_wino_grad.rs`, `conv_wino2.rs`). Layers with small output planes run the GEMM over
//! several images at once (`conv_batched.rs`); a single image of a large
//! layer is split across threads by blocks of output columns
//! (`conv_columns.rs`). A plane with fewer pixels than the kernel has taps
//! (2×2 under 3×3) is one product of the whole batch with the weights
//! unrolled over the plane (`conv_plane.rs`). The GEMM and direct kernels write every output
//! value without reading it, so their output is not zero-filled first.

use super::conv_batched;
use super::conv_columns::{column_blocks, forward_columns};
use super::conv_direct;
use super::conv_flat::{self, FlatGeom};
#[cfg(test)]
pub(crate) use super::conv_grad::input_grad_direct;
pub use super::conv_grad::{conv2d_backward, conv2d_backward_with, Conv2dGrads};
use super::conv_phase::{self, PhaseGeom};
use super::conv_plane;
use super::conv_tune::{self, Algo, Pass, Transform};
use super::conv_wino;
use super::conv_wino2;
use super::elementwise;
use super::gemm::{gemm_prepacked, COut, Operand, PackedA};
use super::im2col::{im2col, Im2ColGeom};
use super::scratch::{with_scratch, Slot};
use super::shape::{checked_numel, padded};
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Stride, zero padding and channel groups of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conv2dParams {
    /// Step between output pixels, `(rows, columns)`.
    pub stride: (usize, usize),
    /// Zeros added on each side, `(rows, columns)`.
    pub padding: (usize, usize),
    /// Channel groups; `Cin` and `Cout` must both be multiples.
    pub groups: usize,
}

impl Default for Conv2dParams {
    /// Unit stride, no padding, one group.
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            groups: 1,
        }
    }
}

/// Output size `((h + 2·ph − kh)/sh + 1, (w + 2·pw − kw)/sw + 1)`; errors on
/// a zero stride or kernel, or a kernel larger than the padded input.
pub fn conv2d_out_hw(
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    p: &Conv2dParams,
) -> Result<(usize, usize)> {
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    if sh == 0 || sw == 0 {
        return Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("stride must be positive, got {:?}", p.stride),
        });
    }
    if kh == 0 || kw == 0 {
        return Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("kernel must be at least 1x1, got {kh}x{kw}"),
        });
    }
    let (Some(hp), Some(wp)) = (padded(h, ph), padded(w, pw)) else {
        return Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("padding {:?} too large", p.padding),
        });
    };
    if kh > hp || kw > wp {
        return Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("kernel {kh}x{kw} larger than padded input {hp}x{wp}"),
        });
    }
    Ok(((hp - kh) / sh + 1, (wp - kw) / sw + 1))
}

/// The output shape `[N, Cout, OH, OW]` of a convolution of an input of
/// shape `x` (`[N, Cin, H, W]`) with weights of shape `w`
/// (`[Cout, Cin/groups, kh, kw]`); an error naming both when either is not
/// 4-D or the sizes do not fit ([`conv2d_out_hw`]).
pub fn conv2d_out_shape(x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<[usize; 4]> {
    if x.len() != 4 || w.len() != 4 {
        return Err(CoreError::ShapeMismatch {
            op: "conv2d (expected x [N, Cin, H, W] and w [Cout, Cin/groups, kh, kw])",
            lhs: x.to_vec(),
            rhs: w.to_vec(),
        });
    }
    let (oh, ow) = conv2d_out_hw(x[2], x[3], w[2], w[3], p)?;
    Ok([x[0], w[0], oh, ow])
}

/// Validated shapes of one convolution call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
    /// im2col geometry of one group of one image (`cin` = `cin_g`).
    pub col: Im2ColGeom,
}

impl ConvGeom {
    /// Values per input image.
    pub(crate) fn img_in(&self) -> usize {
        self.cin * self.col.h * self.col.w
    }

    /// Values per output image.
    pub(crate) fn img_out(&self) -> usize {
        self.cout * self.col.cols()
    }

    /// Values of the weight tensor.
    pub(crate) fn weight_len(&self) -> usize {
        self.cout * self.col.rows()
    }

    /// The geometry of the direct kernel of `conv_flat.rs` when it applies:
    /// one group, stride 1, a kernel larger than 1×1, padding smaller than
    /// the kernel (so the input gradient is a correlation too), at most 128
    /// channels each way (wider layers are large GEMMs, where im2col is a
    /// small share) unless the 2-D Winograd transform takes the layer, and a
    /// vector micro-kernel on this CPU.
    pub(crate) fn flat(&self) -> Option<FlatGeom> {
        let c = &self.col;
        let fits = self.groups == 1
            && (c.sh, c.sw) == (1, 1)
            && c.kh * c.kw > 1
            && c.ph < c.kh
            && c.pw < c.kw
            && conv_flat::vectorised();
        let fg = FlatGeom {
            cin: self.cin,
            cout: self.cout,
            h: c.h,
            w: c.w,
            kh: c.kh,
            kw: c.kw,
            ph: c.ph,
            pw: c.pw,
        };
        // Wider layers take the 2-D transform for the forward pass (with
        // the channels of a group split across threads when the batch makes
        // fewer groups than threads: VGG-like's 512-channel 4×4 layers at
        // batch 64, 20.8 → 17.8 ms); their backward stays on the GEMM
        // (`tiles_input_grad`).
        let narrow = self.cin <= 128 && self.cout <= 128;
        let tiles = || matches!(conv_tune::transform(&fg, self.n), Some(Transform::Tiles(_)));
        (fits && (narrow || tiles())).then_some(fg)
    }

    /// True when the direct depthwise kernel applies (one input channel per
    /// group, more than one group).
    pub(crate) fn is_depthwise(&self) -> bool {
        self.cin_g == 1 && self.groups > 1
    }
}

/// Checks `x [N, Cin, H, W]` against `w [Cout, Cin/G, kh, kw]`.
pub(crate) fn geometry(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    p: &Conv2dParams,
) -> Result<ConvGeom> {
    let mismatch = || CoreError::ShapeMismatch {
        op,
        lhs: x.shape().to_vec(),
        rhs: w.shape().to_vec(),
    };
    if x.rank() != 4 || w.rank() != 4 {
        return Err(mismatch());
    }
    if p.groups == 0 {
        return Err(CoreError::InvalidArgument {
            op,
            reason: "groups must be positive".into(),
        });
    }
    let (xs, ws) = (x.shape(), w.shape());
    let (n, cin, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (cout, cin_g, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    if cin % p.groups != 0 || cout % p.groups != 0 || cin_g * p.groups != cin {
        return Err(mismatch());
    }
    let (oh, ow) = conv2d_out_hw(h, wd, kh, kw, p)?;
    checked_numel(op, &[n, cout, oh, ow])?;
    Ok(ConvGeom {
        n,
        cin,
        cout,
        groups: p.groups,
        cin_g,
        cout_g: cout / p.groups,
        col: Im2ColGeom {
            cin: cin_g,
            h,
            w: wd,
            kh,
            kw,
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            oh,
            ow,
        },
    })
}

/// Packs each group's weights `W_g [Cout/G × K]` (or `W_gᵀ` when `trans`).
pub(crate) fn pack_weights(g: &ConvGeom, w: &[f32], trans: bool) -> Result<Vec<PackedA>> {
    let k = g.col.rows();
    (0..g.groups)
        .map(|gi| {
            let wg = &w[gi * g.cout_g * k..(gi + 1) * g.cout_g * k];
            if trans {
                PackedA::new(true, k, g.cout_g, wg)
            } else {
                PackedA::new(false, g.cout_g, k, wg)
            }
        })
        .collect()
}

/// Forward convolution: `x [N, Cin, H, W]`, `w [Cout, Cin/G, kh, kw]`,
/// optional `bias [Cout]`, returning `[N, Cout, OH, OW]`. Shape errors name
/// both offending shapes.
pub fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    forward_with(x, w, bias, p, &|_, _| {}, None)
}

/// `relu(conv2d(x) + b + residual)` (`residual` optional, shaped like the
/// output) with the add and the ReLU applied to each image's output while
/// it is in cache, instead of as two more passes over memory. Every value
/// is `max((Σ + b) + r, 0)`, the arithmetic of the unfused chain.
pub fn conv2d_relu_forward(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let post: &PostFn = match residual.map(|r| r.data()) {
        Some(r) => &move |at, ys| elementwise::add_relu_in_place(ys, &r[at..]),
        None => &|_, ys| elementwise::relu_in_place(ys),
    };
    forward_with(x, w, bias, p, post, residual)
}

/// A pass over finished output values `(offset into the output, values)`,
/// run per image (or block of channels) while they are in cache.
pub(crate) type PostFn<'a> = dyn Fn(usize, &mut [f32]) + Sync + 'a;

/// The forward pass with `post` applied to the finished output; a
/// `residual` (read by `post`) must have the output's shape.
pub(crate) fn forward_with(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    post: &PostFn,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let g = geometry("conv2d_forward", x, w, p)?;
    if let Some(b) = bias {
        if b.shape() != [g.cout] {
            return Err(CoreError::ShapeMismatch {
                op: "conv2d_forward (bias)",
                lhs: w.shape().to_vec(),
                rhs: b.shape().to_vec(),
            });
        }
    }
    let shape = [g.n, g.cout, g.col.oh, g.col.ow];
    if let Some(r) = residual {
        if r.shape() != shape {
            return Err(CoreError::ShapeMismatch {
                op: "conv2d_relu (residual vs output)",
                lhs: r.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
    }
    let len = g.n * g.img_out();
    let bias = bias.map(|b| b.data());
    if len > 0 && g.img_in() > 0 && conv_plane::applies(&g) {
        let mut y = elementwise::zeros(len);
        conv_plane::forward(&g, x.data(), w.data(), bias, &mut y);
        post(0, &mut y);
        return Tensor::from_vec(shape, y);
    }
    if len > 0 && !g.is_depthwise() && g.col.rows() > 0 {
        // The GEMM (β = 0) and the direct kernel store every output value
        // without reading it: no zero-fill pass before them.
        let (x, w) = (x.data(), w.data());
        let run = |algo: Algo, y: &mut [MaybeUninit<f32>]| match (algo, g.flat()) {
            (Algo::Direct, Some(fg)) => {
                conv_flat::forward_post(&fg, g.n, x, w, bias, y, post);
                Ok(())
            }
            (Algo::Winograd, Some(fg)) => {
                match conv_tune::transform(&fg, g.n) {
                    Some(Transform::Tiles(t)) => {
                        conv_wino2::forward_post(&t, g.n, x, w, bias, y, post)
                    }
                    Some(Transform::Rows(t)) => {
                        conv_wino::forward_post(&t, g.n, x, w, bias, y, post)
                    }
                    None => conv_flat::forward_post(&fg, g.n, x, w, bias, y, post),
                }
                Ok(())
            }
            _ => forward_gemm_post(&g, x, w, bias, y, post),
        };
        if let Some(pg) = PhaseGeom::of(&g).filter(|_| conv_tune::direct_allowed()) {
            let mut y = Vec::<f32>::with_capacity(len);
            conv_phase::forward_post(
                &pg,
                g.n,
                x,
                w,
                bias,
                &mut y.spare_capacity_mut()[..len],
                post,
            );
            // SAFETY: `forward_post` wrote all `len` values.
            unsafe { y.set_len(len) };
            return Tensor::from_vec(shape, y);
        }
        let algo = match g.flat() {
            Some(fg) => conv_tune::choose(Pass::Forward, g.n, fg, |a| {
                // A failing trial fails again in the real run below.
                let _ = run(a, &mut Vec::with_capacity(len).spare_capacity_mut()[..len]);
            }),
            None => Algo::Gemm,
        };
        let mut y = Vec::<f32>::with_capacity(len);
        run(algo, &mut y.spare_capacity_mut()[..len])?;
        // SAFETY: `run` wrote all `len` values (it returned `Ok`).
        unsafe { y.set_len(len) };
        return Tensor::from_vec(shape, y);
    }
    // The depthwise kernel accumulates into zeros; without weights the
    // output is the bias alone.
    let mut y = elementwise::zeros(len);
    if len > 0 {
        if g.is_depthwise() {
            conv_direct::depthwise_forward(&g, x.data(), w.data(), bias, &mut y);
            post(0, &mut y);
        } else {
            if let Some(b) = bias {
                y.chunks_mut(g.img_out()).for_each(|yn| add_bias(yn, b));
            }
            post(0, &mut y);
        }
    }
    Tensor::from_vec(shape, y)
}

#[cfg(test)]
/// `y` as uninitialised memory, for functions that write every value
/// without reading any.
///
/// # Safety
/// Only initialised values may be written through the result (any `f32`
/// is a valid `MaybeUninit<f32>`, but `y` is read as `f32` afterwards).
pub(crate) unsafe fn as_uninit(y: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the caller
    // writes only initialised values.
    unsafe { &mut *(y as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// `s` as values, once every element has been written.
///
/// # Safety
/// Every element of `s` must have been written.
pub(crate) unsafe fn assume_written(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32` and the caller
    // guarantees every element is initialised.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Adds `b[co]` to every value of output plane `co` of one image `yn`.
pub(crate) fn add_bias(yn: &mut [f32], b: &[f32]) {
    let hwo = yn.len() / b.len().max(1);
    for (plane, &bv) in yn.chunks_mut(hwo.max(1)).zip(b) {
        plane.iter_mut().for_each(|v| *v += bv);
    }
}

/// The im2col + GEMM forward pass into `y` (zeroed, `N·Cout·OH·OW`),
/// adding the bias image by image while the output is in cache.
#[cfg(test)]
pub(crate) fn forward_gemm(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<()> {
    // SAFETY: the forward pass writes only finished values into `y`.
    forward_gemm_post(g, x, w, bias, unsafe { as_uninit(y) }, &|_, _| {})
}

/// [`forward_gemm`] followed by `post` on each image after its bias; every
/// value of `y` is written, none read before.
fn forward_gemm_post(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
) -> Result<()> {
    let packs = pack_weights(g, w, false)?;
    let per_gemm = conv_batched::images_per_gemm(g);
    if per_gemm > 1 {
        conv_batched::forward(g, x, &packs, bias, y, post, per_gemm);
        return Ok(());
    }
    let (k, hwo) = (g.col.rows(), g.col.cols());
    let plane_in = g.cin_g * g.col.h * g.col.w;
    let outer = g.n >= 2 && rayon::current_num_threads() > 1;
    let per_image = |(ni, yn): (usize, &mut [MaybeUninit<f32>])| {
        let xn = &x[ni * g.img_in()..(ni + 1) * g.img_in()];
        for (gi, pa) in packs.iter().enumerate() {
            let xg = &xn[gi * plane_in..(gi + 1) * plane_in];
            let yg = &mut yn[gi * g.cout_g * hwo..(gi + 1) * g.cout_g * hwo];
            let mut run = |col: &[f32]| {
                let b = Operand {
                    data: col,
                    ld: hwo,
                    trans: false,
                };
                gemm_prepacked(pa, hwo, 1.0, b, COut::Overwrite(yg), hwo, !outer);
            };
            if g.col.is_identity() {
                run(xg);
            } else {
                with_scratch(Slot::Col, k * hwo, |col| {
                    im2col(&g.col, xg, col);
                    run(col);
                });
            }
        }
        // SAFETY: the groups' products wrote every value of `yn`.
        let yn = unsafe { assume_written(yn) };
        if let Some(b) = bias {
            add_bias(yn, b);
        }
        post(ni * g.img_out(), yn);
    };
    if outer {
        y.par_chunks_mut(g.img_out())
            .enumerate()
            .for_each(per_image);
    } else if let Some(width) = column_blocks(g) {
        for (ni, yn) in y.chunks_mut(g.img_out()).enumerate() {
            let xn = &x[ni * g.img_in()..(ni + 1) * g.img_in()];
            forward_columns(g, xn, &packs, yn, width);
            // SAFETY: `forward_columns` wrote every value of `yn`.
            let yn = unsafe { assume_written(yn) };
            if let Some(b) = bias {
                add_bias(yn, b);
            }
            post(ni * g.img_out(), yn);
        }
    } else {
        y.chunks_mut(g.img_out()).enumerate().for_each(per_image);
    }
    Ok(())
}
