//! The weight gradient of the 2-D transform (see `conv_wino2.rs`, "Weight
//! gradient"): per group of images the transformed input and output
//! gradient in the lanes' layout of `lanes.rs` (16 images per vector, one
//! set's tiles at a time; the lanes of missing images are zeros in both,
//! so they add nothing), 36 products `DY_p · V_pᵀ` over the group's tiles,
//! then `Gᵀ·D·G`.
//!
//! Narrow layers (under [`WIDE_PAIRS`] channel pairs) sum chunks of whole
//! lane sets (at most eight chunks, fixed by the batch size) into their
//! own partials, in parallel, one band of tile rows of one set at a time
//! (about [`GROUP_BYTES`] of transformed planes), and add the partials in
//! chunk order. Wider layers (from 64 × 64: ResNet's last stage,
//! VGG-like's 128- to 512-channel layers) would make eight partials of 36
//! weight-sized products each (300 MB at 512 channels) for products only a
//! few tiles deep; they sum the whole batch into one `D`, in groups of lane
//! sets fixed by the shape and the batch size, with the group's channels
//! transformed in parallel and its 36 products as parallel tasks. Either
//! way every value is summed in an order fixed by the shape and the batch
//! size, so the result does not depend on the thread count.

use super::super::conv_backward::plane_sums;
use super::super::conv_wino_grad::{partials, GROUP_BYTES};
use super::super::dispatch::dispatch;
use super::super::gemm::gemm;
use super::super::gemm_pack::Operand;
use super::super::scratch::{with_scratch, Kept, Slot};
#[cfg(target_arch = "x86_64")]
use super::lanes::Task;
use super::{SyncPtr, Wino2, G, LANES, PLANE_TASK, PTS, ROW_PAD, XI};
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
    let img_out = g.cout * wg.oh * wg.ow;
    dw.fill(0.0);
    if n == 0 || img_out == 0 || g.cin == 0 {
        return;
    }
    sums.par_chunks_mut(g.cout)
        .zip(dy.par_chunks(img_out))
        .for_each(|(s, d)| plane_sums(d, s));
    let pairs = g.cout * g.cin;
    // Bytes of transformed input and gradient per lane set and tile row.
    let per_row = 4 * PTS * (g.cin + g.cout) * wg.tw * LANES;
    if pairs >= WIDE_PAIRS {
        let most = (group_bytes / (per_row * wg.th)).max(1);
        let total = wide_products(wg, n, x, dy, most);
        return fold(&total, pairs, dw);
    }
    let sets = n.div_ceil(LANES);
    let chunk = LANES * sets.div_ceil(8);
    let band = wg.band((GROUP_BYTES / per_row).max(1));
    let total = partials(n, chunk, LANES, PTS * pairs, |g0, gn, part| {
        for r0 in (0..wg.th).step_by(band) {
            let rows = (r0, (r0 + band).min(wg.th));
            transformed(wg, x, dy, g0, gn, rows, false, |npos, ld, v, d| {
                for (p, c) in part.chunks_exact_mut(pairs).take(PTS).enumerate() {
                    product(wg, p, npos, ld, v, d, 1.0, c);
                }
            });
        }
    });
    fold(&total, pairs, dw);
}

/// Runs `f(npos, ld, V, DY)` on the transformed input and output gradient
/// of images `g0..g0 + gn`, tile rows `rows.0..rows.1`, in the lanes'
/// layout (`npos` tile slots per channel: whole sets of 16 images; channel
/// rows `ld = npos + ROW_PAD` apart), their channels
/// transformed in parallel when `parallel`.
#[allow(clippy::too_many_arguments)]
fn transformed(
    wg: &Wino2,
    x: &[f32],
    dy: &[f32],
    g0: usize,
    gn: usize,
    rows: (usize, usize),
    parallel: bool,
    f: impl FnOnce(usize, usize, &[f32], &[f32]),
) {
    let g = &wg.g;
    let (img_in, img_out) = (g.cin * g.h * g.w, g.cout * wg.oh * wg.ow);
    let npos = (rows.1 - rows.0) * wg.tw * gn.next_multiple_of(LANES);
    let cs = npos + ROW_PAD;
    with_scratch(Slot::Transform, PTS * g.cin * cs, |v| {
        with_scratch(Slot::Col2, PTS * g.cout * cs, |d| {
            let xg = &x[g0 * img_in..(g0 + gn) * img_in];
            let dyg = &dy[g0 * img_out..(g0 + gn) * img_out];
            #[cfg(target_arch = "x86_64")]
            {
                let task = Task {
                    wg,
                    n: gn,
                    sets: (0, gn.div_ceil(LANES)),
                    rows,
                };
                debug_assert_eq!(task.npos(), npos);
                let (vp, dp) = (SyncPtr(v.as_mut_ptr()), SyncPtr(d.as_mut_ptr()));
                // SAFETY: AVX-512F is available (`Wino2::new`); `v` and `d`
                // hold every channel's rows, and each block writes its own
                // channels' rows only.
                let block = |c0: usize, c1: usize, grad: bool| unsafe {
                    if grad {
                        task.transform::<true>(dyg, c0, c1, cs, dp)
                    } else {
                        task.transform::<false>(xg, c0, c1, cs, vp)
                    }
                };
                let blocks = |ch: usize| {
                    (0..ch.div_ceil(PLANE_TASK))
                        .map(move |b| (b * PLANE_TASK, ((b + 1) * PLANE_TASK).min(ch)))
                };
                let jobs: Vec<(usize, usize, bool)> = blocks(g.cin)
                    .map(|(c0, c1)| (c0, c1, false))
                    .chain(blocks(g.cout).map(|(c0, c1)| (c0, c1, true)))
                    .collect();
                if parallel {
                    jobs.par_iter()
                        .for_each(|&(c0, c1, grad)| block(c0, c1, grad));
                } else {
                    block(0, g.cin, false);
                    block(0, g.cout, true);
                }
            }
            f(npos, cs, v, d);
        });
    });
}

/// `D [36, cout, cin]` of a wide layer over the whole batch: groups of at
/// most `most` lane sets (as many in each as the count of groups allows,
/// fixed by the shape and `n`), each group's products added to `D` point by
/// point in parallel.
fn wide_products(wg: &Wino2, n: usize, x: &[f32], dy: &[f32], most: usize) -> Kept {
    let pairs = wg.g.cout * wg.g.cin;
    let sets = n.div_ceil(LANES);
    let groups = sets.div_ceil(most);
    let group = LANES * sets.div_ceil(groups);
    let mut total = Kept::take(PTS * pairs);
    for (gi, g0) in (0..n).step_by(group).enumerate() {
        let gn = group.min(n - g0);
        transformed(wg, x, dy, g0, gn, (0, wg.th), true, |npos, ld, v, d| {
            let beta = if gi == 0 { 0.0 } else { 1.0 };
            total
                .par_chunks_mut(pairs)
                .enumerate()
                .for_each(|(p, c)| product(wg, p, npos, ld, v, d, beta, c));
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

/// `c (+)= D[p][co][c] = Σ_{t<row} d[(p·cout + co)·ld + t] · v[(p·cin + c)·ld + t]`
/// (`c [cout, cin]`, scaled by `beta` first): the product `DY_p·V_pᵀ` of
/// depth `row` by the GEMM, on this thread.
#[allow(clippy::too_many_arguments)]
fn product(
    wg: &Wino2,
    p: usize,
    row: usize,
    ld: usize,
    v: &[f32],
    d: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let (cin, cout) = (wg.g.cin, wg.g.cout);
    assert!(row <= ld && v.len() >= PTS * cin * ld && d.len() >= PTS * cout * ld);
    let a = Operand {
        data: &d[p * cout * ld..(p + 1) * cout * ld],
        ld,
        trans: false,
    };
    let b = Operand {
        data: &v[p * cin * ld..(p + 1) * cin * ld],
        ld,
        trans: true,
    };
    gemm(cout, cin, row, 1.0, a, b, beta, c, cin, false);
}
