//! One image's forward convolution split across threads by blocks of
//! output columns, for a batch too small to keep every thread busy:
//!
//! ```text
//! Y_g[:, j0..j1] = W_g · col_g[:, j0..j1]
//! ```
//!
//! one product per block of columns into its own buffer, copied into the
//! output. Each output value is the same dot product, in the same order,
//! as in the unsplit product, and the blocks depend only on the shape, so
//! the result does not depend on the thread count.

use super::conv::ConvGeom;
use super::gemm::{gemm_prepacked, COut, Operand, PackedA};
use super::im2col::im2col;
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output columns per task below which one image is not split.
const MIN_BLOCK: usize = 64;

/// Smallest product `Cout/G · OH·OW · K` worth splitting across threads,
/// the GEMM's and the direct kernel's bound: waking and joining the other
/// threads costs more than a product this small saves (a ResNet-20 stride-2
/// layer at batch 1, 0.5–0.9 million multiply-adds, ran faster unsplit).
const MIN_SPLIT_WORK: usize = 1 << 21;

/// How a single image's output columns are split when the batch is too
/// small to keep every thread busy: `Some(width)` of each block (the last
/// may be narrower), a multiple of 16 that depends only on the shape, so
/// the split — and the result — is the same whatever the thread count.
pub(crate) fn column_blocks(g: &ConvGeom) -> Option<usize> {
    let hwo = g.col.cols();
    let blocks = hwo / MIN_BLOCK;
    if g.n >= 2 || blocks < 2 || g.cout_g * hwo * g.col.rows() < MIN_SPLIT_WORK {
        return None;
    }
    Some(hwo.div_ceil(blocks).next_multiple_of(16))
}

/// Forward of one image with its output columns split into the blocks of
/// [`column_blocks`] (`width` each), run in parallel: im2col once, then one
/// GEMM per block (`Y[:, j0..j1] = W_g · col[:, j0..j1]`) into a block
/// buffer, copied into `yn` (every value written). Each output value is the
/// same dot product, in the same order, as in the unsplit GEMM.
pub(crate) fn forward_columns(
    g: &ConvGeom,
    xn: &[f32],
    packs: &[PackedA],
    yn: &mut [MaybeUninit<f32>],
    width: usize,
) {
    let (k, hwo) = (g.col.rows(), g.col.cols());
    let plane_in = g.cin_g * g.col.h * g.col.w;
    for (gi, pa) in packs.iter().enumerate() {
        let xg = &xn[gi * plane_in..(gi + 1) * plane_in];
        let yg = &mut yn[gi * g.cout_g * hwo..(gi + 1) * g.cout_g * hwo];
        let run = |col: &[f32], yg: &mut [MaybeUninit<f32>]| {
            let blocks: Vec<(usize, Vec<f32>)> = (0..hwo.div_ceil(width))
                .into_par_iter()
                .map(|bi| {
                    let (j0, j1) = (bi * width, ((bi + 1) * width).min(hwo));
                    let mut out = vec![0.0f32; g.cout_g * (j1 - j0)];
                    let b = Operand {
                        data: &col[j0..],
                        ld: hwo,
                        trans: false,
                    };
                    gemm_prepacked(
                        pa,
                        j1 - j0,
                        1.0,
                        b,
                        COut::Update(&mut out, 0.0),
                        j1 - j0,
                        false,
                    );
                    (j0, out)
                })
                .collect();
            for (j0, out) in blocks {
                let w = out.len() / g.cout_g.max(1);
                for (row, src) in yg.chunks_mut(hwo).zip(out.chunks(w.max(1))) {
                    for (d, &v) in row[j0..j0 + w].iter_mut().zip(src) {
                        d.write(v);
                    }
                }
            }
        };
        if g.col.is_identity() {
            run(xg, yg);
        } else {
            with_scratch(Slot::Col, k * hwo, |col| {
                im2col(&g.col, xg, col);
                run(col, yg);
            });
        }
    }
}
