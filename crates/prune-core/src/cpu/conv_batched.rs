//! im2col + GEMM over several images at once, for layers whose output
//! planes are small (deep layers of VGG-style nets on 4×4 or 2×2 maps,
//! stride-2 layers on 7×7).
//!
//! Per image the forward product `Y_g = W_g · col_g` has only `OH·OW`
//! columns; with 4 or 16 of them the 32-column micro-kernel computes mostly
//! padding and every product re-reads all of `W_g`. Putting the column
//! matrices of `s` images side by side,
//!
//! ```text
//! [Y_{n0,g} … Y_{n0+s−1,g}] = W_g · [col_{n0,g} … col_{n0+s−1,g}]
//! ```
//!
//! gives one product of `s·OH·OW` columns, whose blocks are the images'
//! outputs. The input gradient is batched the same way,
//! `[dcol_{n0} … ] = W_gᵀ · [dY_{n0} … ]`, followed by col2im per image.
//!
//! Every output value is still the dot product of one row of `W_g` with
//! one column, accumulated by the same micro-kernel in the same k-order
//! (the GEMM's k-blocks depend only on `K`), so results are bit-identical
//! to the per-image products and independent of `s` and the thread count.

use super::conv::{add_bias, assume_written, ConvGeom, PostFn};
use super::gemm::{gemm_prepacked, COut, Operand, PackedA};
use super::im2col::{col2im_add_ld, im2col_ld};
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Columns a batched product should reach: a full `NC` sweep of the GEMM.
const TARGET_COLS: usize = 256;

/// Values of one batch's column matrix that stay in a core's L2 cache
/// (1 MB): a deep layer (`Cin·kh·kw` rows) gets fewer columns, so that the
/// GEMM packs its columns from cache rather than from memory.
const COL_BUDGET: usize = 1 << 18;

/// Columns of a batched product for a column matrix of `rows` rows:
/// [`TARGET_COLS`], or fewer when that many would not fit [`COL_BUDGET`]
/// (at least 32). VGG-like's 512-channel layers on 4×4 maps (4608 rows)
/// ran their forward 1.3x faster with 64 columns than with 256; ResNet's
/// 7×7 layers (576 rows) keep 256.
fn target_cols(rows: usize) -> usize {
    (COL_BUDGET / rows.max(1)).clamp(32, TARGET_COLS)
}

/// Images concatenated per product: enough for the target columns when
/// one image's output plane is smaller, else 1. Depends only on the shape.
pub(crate) fn images_per_gemm(g: &ConvGeom) -> usize {
    let hwo = g.col.cols();
    let target = target_cols(g.col.rows());
    if g.n < 2 || hwo == 0 || hwo >= target / 2 {
        1
    } else {
        target.div_ceil(hwo).min(g.n)
    }
}

/// Whether `nb` batches run as parallel tasks (each product on one
/// thread) rather than one after the other with each product split across
/// the threads: only when there are at least [`TASKS_PER_THREAD`] per
/// thread, so that a few large tasks do not leave a thread idle (or wait
/// for one the machine has descheduled). Either way gives the same values.
fn batches_in_parallel(nb: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && nb >= TASKS_PER_THREAD * threads
}

/// Batches per thread from which batches are the parallel tasks.
const TASKS_PER_THREAD: usize = 4;

/// `y` (`N·Cout·OH·OW`) from batches of `s` images: per batch and group,
/// im2col of each image into its block of a `K × s·OH·OW` matrix, one
/// product with the packed weights, and the blocks copied out; then the
/// bias and `post` per image (every value of `y` written, none read
/// before). Batches run in parallel when there are enough of them,
/// otherwise the product itself is parallel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    g: &ConvGeom,
    x: &[f32],
    packs: &[PackedA],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
    s: usize,
) {
    let (k, hwo) = (g.col.rows(), g.col.cols());
    let plane_in = g.cin_g * g.col.h * g.col.w;
    let nb = g.n.div_ceil(s);
    let outer = batches_in_parallel(nb);
    let batch = |(bi, yb): (usize, &mut [MaybeUninit<f32>])| {
        let n0 = bi * s;
        let imgs = yb.len() / g.img_out();
        let cols = imgs * hwo;
        for (gi, pa) in packs.iter().enumerate() {
            with_scratch(Slot::Col, k * cols, |col| {
                for j in 0..imgs {
                    let xg = &x[(n0 + j) * g.img_in() + gi * plane_in..][..plane_in];
                    im2col_ld(&g.col, xg, &mut col[j * hwo..], cols);
                }
                with_scratch(Slot::Col2, g.cout_g * cols, |out| {
                    let b = Operand {
                        data: col,
                        ld: cols,
                        trans: false,
                    };
                    gemm_prepacked(pa, cols, 1.0, b, COut::Update(out, 0.0), cols, !outer);
                    for (j, yn) in yb.chunks_mut(g.img_out()).enumerate() {
                        let yg = &mut yn[gi * g.cout_g * hwo..(gi + 1) * g.cout_g * hwo];
                        for (co, row) in yg.chunks_mut(hwo).enumerate() {
                            let src = &out[co * cols + j * hwo..][..hwo];
                            for (d, &v) in row.iter_mut().zip(src) {
                                d.write(v);
                            }
                        }
                    }
                });
            });
        }
        for (j, yn) in yb.chunks_mut(g.img_out()).enumerate() {
            // SAFETY: the groups' blocks above wrote every value of `yn`.
            let yn = unsafe { assume_written(yn) };
            if let Some(b) = bias {
                add_bias(yn, b);
            }
            post((n0 + j) * g.img_out(), yn);
        }
    };
    if outer {
        y.par_chunks_mut(s * g.img_out())
            .enumerate()
            .for_each(batch);
    } else {
        y.chunks_mut(s * g.img_out()).enumerate().for_each(batch);
    }
}

/// Adds the input gradient of every image to `dx` (`N·Cin·H·W`) from
/// batches of `s` images: per batch and group, the images' `dY_g` side by
/// side in one `Cout/G × s·OH·OW` matrix, one product with the packed
/// `W_gᵀ`, and col2im of each image's block.
pub(crate) fn input_grad(g: &ConvGeom, dy: &[f32], packs_t: &[PackedA], dx: &mut [f32], s: usize) {
    let (k, hwo) = (g.col.rows(), g.col.cols());
    let plane_in = g.cin_g * g.col.h * g.col.w;
    let nb = g.n.div_ceil(s);
    let outer = batches_in_parallel(nb);
    let batch = |(bi, dxb): (usize, &mut [f32])| {
        let n0 = bi * s;
        let imgs = dxb.len() / g.img_in().max(1);
        let cols = imgs * hwo;
        for (gi, pt) in packs_t.iter().enumerate() {
            with_scratch(Slot::Col, g.cout_g * cols, |dyb| {
                for j in 0..imgs {
                    let dyg = &dy[(n0 + j) * g.img_out() + gi * g.cout_g * hwo..];
                    for (co, row) in dyg[..g.cout_g * hwo].chunks(hwo).enumerate() {
                        dyb[co * cols + j * hwo..][..hwo].copy_from_slice(row);
                    }
                }
                with_scratch(Slot::Col2, k * cols, |dcol| {
                    let b = Operand {
                        data: dyb,
                        ld: cols,
                        trans: false,
                    };
                    gemm_prepacked(pt, cols, 1.0, b, COut::Update(dcol, 0.0), cols, !outer);
                    for (j, dxn) in dxb.chunks_mut(g.img_in()).enumerate() {
                        let dxg = &mut dxn[gi * plane_in..(gi + 1) * plane_in];
                        col2im_add_ld(&g.col, &dcol[j * hwo..], dxg, cols);
                    }
                });
            });
        }
    };
    if outer {
        dx.par_chunks_mut(s * g.img_in())
            .enumerate()
            .for_each(batch);
    } else {
        dx.chunks_mut(s * g.img_in()).enumerate().for_each(batch);
    }
}
