//! The im2col + GEMM backward pass of a convolution (see [`super::conv`]).
//!
//! With `col_n` the im2col matrix of image `n` (per group):
//!
//! ```text
//! dW_g = Σ_n dY_{n,g} · col_{n,g}ᵀ        db = Σ_{n,pixel} dY
//! dX_n = col2im(W_gᵀ · dY_{n,g})
//! ```
//!
//! The batch is split into at most eight fixed chunks of images (fewer for
//! deep layers on small planes, see [`gemm_chunk_len`]), processed in
//! parallel; each chunk sums its own weight gradient and the chunk sums
//! are added in chunk order, so the result does not depend on the thread
//! count. When a group has more output channels than output pixels (deep
//! layers on small images), the weight-gradient product of one image is
//! short (`depth = OH·OW`) while its result `dW_g` is large, so several
//! images are concatenated along the depth,
//!
//! ```text
//! dW_g += [dY_{n0} … dY_{n0+s−1}] · [col_{n0} … col_{n0+s−1}]ᵀ
//! ```
//!
//! and `dW_g` is read and written once per `s` images instead of once per
//! image.

use super::conv::{pack_weights, ConvGeom};
use super::conv_batched;
use super::gemm::{gemm, gemm_prepacked, COut, Operand};
use super::im2col::{col2im_add, im2col_ld};
use super::reduce;
use super::scratch::{with_scratch, Slot};
use crate::error::Result;
use rayon::prelude::*;

/// Number of images per chunk of the weight-gradient sum: `ceil(n / 8)`,
/// so at most eight partial sums, fixed by the batch size.
pub(crate) fn chunk_len(n: usize) -> usize {
    n.div_ceil(8).max(1)
}

/// Largest depth of one concatenated weight-gradient product.
const MAX_DEPTH: usize = 512;

/// Images per chunk of the GEMM weight-gradient sum: [`chunk_len`], or
/// more when a group has more output channels than output pixels, so that
/// a chunk's products reach about [`MAX_DEPTH`] of depth. On small planes
/// (2×2 or 4×4 maps of 512 channels) eight chunks would each write and
/// re-read a full weight-sized partial sum for a product only 16–128 deep.
/// Fixed by the shape and the batch size, like [`chunk_len`].
fn gemm_chunk_len(n: usize, cout_g: usize, hwo: usize) -> usize {
    if hwo == 0 || cout_g <= hwo {
        chunk_len(n)
    } else {
        chunk_len(n).max(MAX_DEPTH.div_ceil(hwo)).min(n.max(1))
    }
}

/// Images concatenated per weight-gradient product: about `Cout/G` pixels
/// of depth when a group has more output channels than output pixels,
/// else one image.
fn images_per_product(cout_g: usize, hwo: usize, chunk: usize) -> usize {
    if hwo == 0 || cout_g <= hwo {
        1
    } else {
        (cout_g.min(MAX_DEPTH) / hwo).clamp(1, chunk.max(1))
    }
}

/// `out[co] = Σ_pixel dY[co][pixel]` in f64 for one image's gradient.
pub(crate) fn plane_sums(dy_image: &[f32], out: &mut [f64]) {
    let hwo = dy_image.len() / out.len().max(1);
    for (o, plane) in out.iter_mut().zip(dy_image.chunks(hwo.max(1))) {
        *o = reduce::sum(plane);
    }
}

/// `db[co] = Σ_n sums[n][co]`, added image by image in order.
pub(crate) fn bias_from_sums(sums: &[f64], cout: usize) -> Vec<f32> {
    let mut total = vec![0.0f64; cout];
    for image in sums.chunks(cout.max(1)) {
        for (t, v) in total.iter_mut().zip(image) {
            *t += v;
        }
    }
    total.into_iter().map(|v| v as f32).collect()
}

/// What one chunk of images writes.
struct ChunkOut<'a> {
    /// The chunk's partial weight gradient.
    part: &'a mut [f32],
    /// Per-image, per-channel sums of the output gradient.
    bsum: &'a mut [f64],
    /// The input gradients of the chunk's images, when requested.
    dx: Option<&'a mut [f32]>,
}

/// The backward pass: weight gradient into `dw`, per-image bias sums into
/// `sums` (`N × Cout`; empty when the layer has no bias), and the input
/// gradient into `dx` (zeroed) when given.
pub(crate) fn backward_gemm(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dx: Option<&mut [f32]>,
    sums: &mut [f64],
) -> Result<()> {
    let packs_t = if dx.is_some() {
        pack_weights(g, w, true)?
    } else {
        Vec::new()
    };
    let (k, hwo) = (g.col.rows(), g.col.cols());
    let plane_in = g.cin_g * g.col.h * g.col.w;
    let wlen = g.weight_len();
    let clen = gemm_chunk_len(g.n, g.cout_g, hwo);
    let nchunks = g.n.div_ceil(clen);
    // A few large chunks (deep layers on small planes) run one after the
    // other with each product split across the threads instead.
    let outer = nchunks >= 4 && rayon::current_num_threads() > 1;
    let per_product = images_per_product(g.cout_g, hwo, clen);
    // Input gradients of small output planes: batched after the chunks.
    let per_gemm = conv_batched::images_per_gemm(g);
    let (dx, dx_batched) = if per_gemm > 1 { (None, dx) } else { (dx, None) };

    // dW_g (+)= dY · colᵀ over images n0..n1 of one group, concatenated
    // along the depth when there is more than one.
    let weight_step = |n0: usize, n1: usize, gi: usize, dwg: &mut [f32], beta: f32| {
        let depth = (n1 - n0) * hwo;
        let x_group = |ni: usize| &x[ni * g.img_in() + gi * plane_in..][..plane_in];
        let dy_group = |ni: usize| &dy[ni * g.img_out() + gi * g.cout_g * hwo..][..g.cout_g * hwo];
        let product = |a: &[f32], col: &[f32], dwg: &mut [f32]| {
            let a = Operand {
                data: a,
                ld: depth,
                trans: false,
            };
            let b = Operand {
                data: col,
                ld: depth,
                trans: true,
            };
            gemm(g.cout_g, k, depth, 1.0, a, b, beta, dwg, k, !outer);
        };
        if n1 - n0 == 1 && g.col.is_identity() {
            product(dy_group(n0), x_group(n0), dwg);
            return;
        }
        with_scratch(Slot::Col, k * depth, |col| {
            for (j, ni) in (n0..n1).enumerate() {
                im2col_ld(&g.col, x_group(ni), &mut col[j * hwo..], depth);
            }
            if n1 - n0 == 1 {
                product(dy_group(n0), col, dwg);
                return;
            }
            with_scratch(Slot::Col2, g.cout_g * depth, |dyb| {
                for (j, ni) in (n0..n1).enumerate() {
                    for (co, row) in dy_group(ni).chunks(hwo).enumerate() {
                        dyb[co * depth + j * hwo..][..hwo].copy_from_slice(row);
                    }
                }
                product(dyb, col, dwg);
            });
        });
    };

    // One chunk of images: bias sums and input gradients image by image,
    // then the weight gradient in products of `per_product` images.
    let chunk = |ci: usize, out: ChunkOut| {
        let (n0, n1) = (ci * clen, ((ci + 1) * clen).min(g.n));
        let ChunkOut { part, bsum, mut dx } = out;
        for ni in n0..n1 {
            let dyn_ = &dy[ni * g.img_out()..(ni + 1) * g.img_out()];
            let local = ni - n0;
            if !bsum.is_empty() {
                plane_sums(dyn_, &mut bsum[local * g.cout..(local + 1) * g.cout]);
            }
            // dcol = W_gᵀ · dY_g, then dX_g = col2im(dcol).
            let Some(dxc) = dx.as_deref_mut() else {
                continue;
            };
            for (gi, pt) in packs_t.iter().enumerate() {
                let dyg = &dyn_[gi * g.cout_g * hwo..(gi + 1) * g.cout_g * hwo];
                let dxg = &mut dxc[local * g.img_in() + gi * plane_in..][..plane_in];
                let b = Operand {
                    data: dyg,
                    ld: hwo,
                    trans: false,
                };
                if g.col.is_identity() {
                    gemm_prepacked(pt, hwo, 1.0, b, COut::Update(dxg, 0.0), hwo, !outer);
                } else {
                    with_scratch(Slot::Col2, k * hwo, |dcol| {
                        gemm_prepacked(pt, hwo, 1.0, b, COut::Update(dcol, 0.0), hwo, !outer);
                        col2im_add(&g.col, dcol, dxg);
                    });
                }
            }
        }
        for (bi, b0) in (n0..n1).step_by(per_product).enumerate() {
            let b1 = (b0 + per_product).min(n1);
            let beta = if bi == 0 { 0.0 } else { 1.0 };
            for gi in 0..g.groups {
                weight_step(
                    b0,
                    b1,
                    gi,
                    &mut part[gi * g.cout_g * k..(gi + 1) * g.cout_g * k],
                    beta,
                );
            }
        }
    };

    let mut partials = vec![0.0f32; nchunks * wlen];
    let dxs: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx.chunks_mut(clen * g.img_in()).map(Some).collect(),
        None => (0..nchunks).map(|_| None).collect(),
    };
    // No bias: empty sums for every chunk (the chunks still run).
    let bsums: Vec<&mut [f64]> = if sums.is_empty() {
        (0..nchunks).map(|_| <&mut [f64]>::default()).collect()
    } else {
        sums.chunks_mut(clen * g.cout).collect()
    };
    let work: Vec<ChunkOut> = partials
        .chunks_mut(wlen)
        .zip(bsums)
        .zip(dxs)
        .map(|((part, bsum), dx)| ChunkOut { part, bsum, dx })
        .collect();
    if outer {
        work.into_par_iter()
            .enumerate()
            .for_each(|(ci, o)| chunk(ci, o));
    } else {
        work.into_iter()
            .enumerate()
            .for_each(|(ci, o)| chunk(ci, o));
    }
    sum_partials(&partials, dw);
    if let Some(dx) = dx_batched {
        conv_batched::input_grad(g, dy, &packs_t, dx, per_gemm);
    }
    Ok(())
}

/// `out[i] = Σ_c partials[c·len + i]`, summed in chunk order.
fn sum_partials(partials: &[f32], out: &mut [f32]) {
    let len = out.len();
    out.par_chunks_mut(4096).enumerate().for_each(|(bi, o)| {
        let (base, olen) = (bi * 4096, o.len());
        o.copy_from_slice(&partials[base..base + olen]);
        for part in partials.chunks(len).skip(1) {
            for (v, p) in o.iter_mut().zip(&part[base..base + olen]) {
                *v += p;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenation_only_when_channels_outnumber_pixels() {
        assert_eq!(images_per_product(50, 64, 13), 1);
        assert_eq!(images_per_product(256, 64, 4), 4);
        assert_eq!(images_per_product(256, 64, 3), 3);
        assert_eq!(images_per_product(1024, 16, 100), 32);
        assert_eq!(images_per_product(8, 0, 4), 1);
    }

    #[test]
    fn chunks_of_small_planes_reach_the_product_depth() {
        // fewer channels than pixels: eight chunks
        assert_eq!(gemm_chunk_len(128, 64, 64), 16);
        assert_eq!(gemm_chunk_len(4, 64, 64), 1);
        // 512 channels on 4x4 and 2x2 maps, batch 64: 2 chunks and 1
        assert_eq!(gemm_chunk_len(64, 512, 16), 32);
        assert_eq!(gemm_chunk_len(64, 512, 4), 64);
        assert_eq!(gemm_chunk_len(64, 256, 64), 8);
        assert_eq!(gemm_chunk_len(1, 512, 4), 1);
    }
}
