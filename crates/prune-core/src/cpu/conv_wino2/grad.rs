//! The weight gradient of the 2-D transform (see `conv_wino2.rs`, "Weight
//! gradient"): per group of images the transformed input and output
//! gradient, 36 products `DY_p · V_pᵀ` over the group's tiles, then
//! `Gᵀ·D·G`.
//!
//! Narrow layers (under [`WIDE_PAIRS`] channel pairs) sum the fixed chunks
//! of images of `conv_backward.rs` into their own partials, in parallel,
//! and add the partials in chunk order. Wider layers (from 64 × 64: ResNet's
//! last stage, VGG-like's 128- to 512-channel layers) would make eight
//! partials of 36 weight-sized products each (300 MB at 512 channels) for
//! products only a few tiles deep; they sum the whole batch into one `D`,
//! in groups of images fixed by the shape and the batch size, with the
//! group's channels transformed in parallel and its 36 products as parallel
//! tasks. Either way every value is summed in an order fixed by the shape
//! and the batch size, so the result does not depend on the thread count.

use super::super::conv_backward::plane_sums;
use super::super::conv_wino_grad::{chunk_partials, GROUP_BYTES};
use super::super::dispatch::dispatch;
use super::super::gemm::gemm;
use super::super::gemm_pack::Operand;
use super::super::scratch::{with_scratch, Kept, Slot};
use super::{row_len, transform_planes, Planes, Stack, Wino2, G, PTS, XI};
use rayon::prelude::*;

/// Channel pairs from which a layer sums its whole batch into one `D`
/// (measured per layer: 64 → 128 and 128 → 128 on 16×16 maps 1.15–1.35x,
/// ResNet's 64-channel 7×7 layers 1.05–1.1x faster that way; 32 × 32 pairs
/// on 14×14 maps 0.9x).
const WIDE_PAIRS: usize = 64 * 64;

/// Bytes of transformed input and gradient per group of a wide layer.
const WIDE_GROUP_BYTES: usize = 16 << 20;

/// Weight gradient `dw [cout, cin, 3, 3]` (overwritten) and the per-image,
/// per-channel sums of `dy` (`sums [n, cout]`) of a batch of `n` images.
pub(crate) fn weight_grad(
    wg: &Wino2,
    n: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    sums: &mut [f64],
) {
    weight_grad_in(wg, n, x, dy, dw, sums, WIDE_GROUP_BYTES)
}

/// [`weight_grad`] with groups of about `group_bytes` of transformed
/// planes for a wide layer.
pub(crate) fn weight_grad_in(
    wg: &Wino2,
    n: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    sums: &mut [f64],
    group_bytes: usize,
) {
    let g = &wg.g;
    let (img_out, t) = (g.cout * wg.oh * wg.ow, wg.tiles());
    dw.fill(0.0);
    if n == 0 || img_out == 0 || g.cin == 0 {
        return;
    }
    sums.par_chunks_mut(g.cout)
        .zip(dy.par_chunks(img_out))
        .for_each(|(s, d)| plane_sums(d, s));
    let pairs = g.cout * g.cin;
    let per_image = 4 * PTS * (g.cin + g.cout) * t;
    if pairs >= WIDE_PAIRS {
        let group = (group_bytes / per_image).max(1);
        let total = wide_products(wg, n, x, dy, group);
        return fold(&total, pairs, dw);
    }
    let total = chunk_partials(n, GROUP_BYTES / per_image, PTS * pairs, |g0, gn, part| {
        transformed(wg, x, dy, g0, gn, false, |row, v, d| {
            for (p, c) in part.chunks_exact_mut(pairs).take(PTS).enumerate() {
                product(wg, p, gn * t, row, v, d, 1.0, c);
            }
        });
    });
    fold(&total, pairs, dw);
}

/// Runs `f(row, V, DY)` on the transformed input and output gradient of
/// images `g0..g0 + gn` (tiles laid end to end in rows of `row` slots),
/// their channels transformed in parallel when `parallel`.
fn transformed(
    wg: &Wino2,
    x: &[f32],
    dy: &[f32],
    g0: usize,
    gn: usize,
    parallel: bool,
    f: impl FnOnce(usize, &[f32], &[f32]),
) {
    let g = &wg.g;
    let (img_in, img_out) = (g.cin * g.h * g.w, g.cout * wg.oh * wg.ow);
    let row = row_len(gn * wg.tiles());
    let st = Stack::new(wg, gn);
    with_scratch(Slot::Transform, PTS * g.cin * row, |v| {
        with_scratch(Slot::Col2, PTS * g.cout * row, |d| {
            let xg = &x[g0 * img_in..(g0 + gn) * img_in];
            let dyg = &dy[g0 * img_out..(g0 + gn) * img_out];
            transform_planes(wg, &st, gn, Planes::Input, xg, v, row, parallel);
            transform_planes(wg, &st, gn, Planes::Gradient, dyg, d, row, parallel);
            f(row, v, d);
        });
    });
}

/// `D [36, cout, cin]` of a wide layer over the whole batch: groups of at
/// most `max_group` images (as many in each as the count of groups allows,
/// fixed by the shape and `n`), each group's products added to `D` point by
/// point in parallel.
fn wide_products(wg: &Wino2, n: usize, x: &[f32], dy: &[f32], max_group: usize) -> Kept {
    let pairs = wg.g.cout * wg.g.cin;
    let groups = n.div_ceil(max_group);
    let group = n.div_ceil(groups);
    let mut total = Kept::take(PTS * pairs);
    for (gi, g0) in (0..n).step_by(group).enumerate() {
        let gn = group.min(n - g0);
        transformed(wg, x, dy, g0, gn, true, |row, v, d| {
            let beta = if gi == 0 { 0.0 } else { 1.0 };
            total
                .par_chunks_mut(pairs)
                .enumerate()
                .for_each(|(p, c)| product(wg, p, gn * wg.tiles(), row, v, d, beta, c));
        });
    }
    total
}

/// Pairs per task of [`fold`].
const FOLD_BLOCK: usize = 64;

/// `dW[a][b] = Σ_ξη G[ξ][a] · D[ξη] · G[η][b]` into `dw [pairs, 3, 3]`, in
/// double precision, the points in order for every value; blocks of
/// [`FOLD_BLOCK`] pairs in parallel.
fn fold(total: &[f32], pairs: usize, dw: &mut [f32]) {
    dw.par_chunks_mut(9 * FOLD_BLOCK)
        .enumerate()
        .for_each(|(bi, out)| fold_block(total, pairs, bi * FOLD_BLOCK, out));
}

dispatch!(
    /// [`fold`] for the pairs `r0..r0 + out.len() / 9`.
    fold_block,
    (total: &[f32], pairs: usize, r0: usize, out: &mut [f32]) -> (),
    {
        let nr = out.len() / 9;
        let mut acc = [[0.0f64; FOLD_BLOCK]; 9];
        for xi in 0..XI {
            for eta in 0..XI {
                let d = &total[(xi * XI + eta) * pairs + r0..][..nr];
                for a in 0..3 {
                    for b in 0..3 {
                        let coef = G[xi][a] * G[eta][b];
                        if coef == 0.0 {
                            continue;
                        }
                        for (o, &v) in acc[a * 3 + b].iter_mut().zip(d) {
                            *o += coef * v as f64;
                        }
                    }
                }
            }
        }
        for (l, o9) in out.chunks_exact_mut(9).enumerate() {
            for (ab, o) in o9.iter_mut().enumerate() {
                *o = acc[ab][l] as f32;
            }
        }
    }
);

/// `c (+)= D[p][co][c] = Σ_{t<tiles} d[(p·cout + co)·row + t] · v[(p·cin + c)·row + t]`
/// (`c [cout, cin]`, scaled by `beta` first): the product `DY_p·V_pᵀ` of
/// depth `tiles` by the GEMM, on this thread.
#[allow(clippy::too_many_arguments)]
fn product(
    wg: &Wino2,
    p: usize,
    tiles: usize,
    row: usize,
    v: &[f32],
    d: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let (cin, cout) = (wg.g.cin, wg.g.cout);
    assert!(tiles <= row && v.len() >= PTS * cin * row && d.len() >= PTS * cout * row);
    let a = Operand {
        data: &d[p * cout * row..(p + 1) * cout * row],
        ld: row,
        trans: false,
    };
    let b = Operand {
        data: &v[p * cin * row..(p + 1) * cin * row],
        ld: row,
        trans: true,
    };
    gemm(cout, cin, tiles, 1.0, a, b, beta, c, cin, false);
}
