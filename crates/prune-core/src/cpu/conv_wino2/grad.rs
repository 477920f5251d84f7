//! The weight gradient of the 2-D transform (see `conv_wino2.rs`, "Weight
//! gradient"): per group of images the transformed input and output
//! gradient, 36 products `DY_p · V_pᵀ` over the group's tiles, chunk
//! partials added in order, then `Gᵀ·D·G`.

use super::super::conv_backward::plane_sums;
use super::super::conv_wino_grad::{chunk_partials, GROUP_BYTES};
use super::super::gemm::gemm;
use super::super::gemm_pack::Operand;
use super::super::scratch::{with_scratch, Slot};
use super::{row_len, transform_planes, Planes, Stack, Wino2, G, PTS, XI};
use rayon::prelude::*;

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
    let g = &wg.g;
    let (img_in, img_out, t) = (g.cin * g.h * g.w, g.cout * wg.oh * wg.ow, wg.tiles());
    dw.fill(0.0);
    if n == 0 || img_out == 0 || g.cin == 0 {
        return;
    }
    sums.par_chunks_mut(g.cout)
        .zip(dy.par_chunks(img_out))
        .for_each(|(s, d)| plane_sums(d, s));
    let pairs = g.cout * g.cin;
    let per_image = 4 * PTS * (g.cin + g.cout) * t;
    let total = chunk_partials(n, GROUP_BYTES / per_image, PTS * pairs, |g0, gn, part| {
        let row = row_len(gn * t);
        let st = Stack::new(wg, gn);
        with_scratch(Slot::Transform, PTS * g.cin * row, |v| {
            with_scratch(Slot::PackA, PTS * g.cout * row, |d| {
                let xg = &x[g0 * img_in..(g0 + gn) * img_in];
                let dyg = &dy[g0 * img_out..(g0 + gn) * img_out];
                transform_planes(wg, &st, gn, Planes::Input, xg, v, row);
                transform_planes(wg, &st, gn, Planes::Gradient, dyg, d, row);
                products(wg, gn * t, row, v, d, part);
            });
        });
    });
    // dW[a][b] = Σ_ξη G[ξ][a] · D[ξη] · G[η][b], in double precision,
    // point by point over all channel pairs at once.
    let mut acc = vec![0.0f64; 9 * pairs];
    for xi in 0..XI {
        for eta in 0..XI {
            let d = &total[(xi * XI + eta) * pairs..(xi * XI + eta + 1) * pairs];
            for a in 0..3 {
                for b in 0..3 {
                    let coef = G[xi][a] * G[eta][b];
                    if coef == 0.0 {
                        continue;
                    }
                    let ab = &mut acc[(a * 3 + b) * pairs..(a * 3 + b + 1) * pairs];
                    for (o, &v) in ab.iter_mut().zip(d) {
                        *o += coef * v as f64;
                    }
                }
            }
        }
    }
    for (r, out) in dw.chunks_exact_mut(9).take(pairs).enumerate() {
        for (ab, o) in out.iter_mut().enumerate() {
            *o = acc[ab * pairs + r] as f32;
        }
    }
}

/// Adds `D[ξη][co][c] = Σ_{t<tiles} d[(ξη·cout + co)·row + t] · v[(ξη·cin + c)·row + t]`
/// to `part [36, cout, cin]`: per point one product `DY·Vᵀ` of depth
/// `tiles` by the GEMM (on this thread; the chunks run in parallel).
fn products(wg: &Wino2, tiles: usize, row: usize, v: &[f32], d: &[f32], part: &mut [f32]) {
    let (cin, cout) = (wg.g.cin, wg.g.cout);
    assert!(tiles <= row && v.len() >= PTS * cin * row && d.len() >= PTS * cout * row);
    for (p, c) in part.chunks_exact_mut(cout * cin).take(PTS).enumerate() {
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
        gemm(cout, cin, tiles, 1.0, a, b, 1.0, c, cin, false);
    }
}
