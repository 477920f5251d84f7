//! Direct convolution loops for groups with a single input channel
//! (depthwise convolution, `groups == Cin`, optionally with a channel
//! multiplier `Cout/G > 1`).
//!
//! Here each output channel `co` reads only input channel `ci = co / (Cout/G)`
//! and a GEMM would have one-row operands, so the sums are written out:
//!
//! ```text
//! y[n][co][oh][ow]  = Σ_{ki,kj} w[co][0][ki][kj] · x[n][ci][oh·sh+ki−ph][ow·sw+kj−pw]
//! dx[n][ci][ih][iw] = Σ_{co ∈ group ci} Σ_{ki,kj : ih = oh·sh+ki−ph, iw = ow·sw+kj−pw} w[co][0][ki][kj] · dy[n][co][oh][ow]
//! dw[co][0][ki][kj] = Σ_{n,oh,ow} dy[n][co][oh][ow] · x[n][ci][oh·sh+ki−ph][ow·sw+kj−pw]
//! ```
//!
//! Each output plane, input-gradient plane and weight-gradient channel is
//! owned by one rayon task, so results do not depend on scheduling.

use super::conv::ConvGeom;
use rayon::prelude::*;

/// Calls `f(oh, ih, lo, hi, first)` for every output row `oh` whose input
/// row `ih` (at kernel row `ki`) lies inside the image, where output columns
/// `lo..hi` read input columns `first, first + sw, …` (kernel column `kj`).
fn for_each_row(
    g: &ConvGeom,
    ki: usize,
    kj: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize),
) {
    let c = &g.col;
    let (lo, hi) = c.valid_ow(kj);
    if lo >= hi {
        return;
    }
    let first = lo * c.sw + kj - c.pw;
    let (oh_lo, oh_hi) = c.valid_oh(ki);
    for oh in oh_lo..oh_hi {
        f(oh, oh * c.sh + ki - c.ph, lo, hi, first);
    }
}

/// Forward pass into `y` (zeroed, `N·Cout·OH·OW`), plus `bias[co]`.
pub(crate) fn depthwise_forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let c = &g.col;
    let (hw_in, hwo, kk) = (c.h * c.w, c.cols(), c.kh * c.kw);
    y.par_chunks_mut(hwo).enumerate().for_each(|(plane, yp)| {
        let (ni, co) = (plane / g.cout, plane % g.cout);
        let ci = co / g.cout_g;
        let xp = &x[(ni * g.cin + ci) * hw_in..(ni * g.cin + ci + 1) * hw_in];
        let wk = &w[co * kk..(co + 1) * kk];
        for ki in 0..c.kh {
            for kj in 0..c.kw {
                let wv = wk[ki * c.kw + kj];
                for_each_row(g, ki, kj, |oh, ih, lo, hi, first| {
                    let src = &xp[ih * c.w..(ih + 1) * c.w];
                    let dst = &mut yp[oh * c.ow + lo..oh * c.ow + hi];
                    for (d, s) in dst.iter_mut().zip(src[first..].iter().step_by(c.sw)) {
                        *d += wv * s;
                    }
                });
            }
        }
        if let Some(b) = bias {
            yp.iter_mut().for_each(|v| *v += b[co]);
        }
    });
}

/// Backward pass: weight gradient into `dw` (overwritten) and, when given,
/// input gradient into `dx` (zeroed, `N·Cin·H·W`).
pub(crate) fn depthwise_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let c = &g.col;
    let (hw_in, hwo, kk) = (c.h * c.w, c.cols(), c.kh * c.kw);
    if let Some(dx) = dx {
        dx.par_chunks_mut(hw_in)
            .enumerate()
            .for_each(|(plane, dxp)| {
                let (ni, ci) = (plane / g.cin, plane % g.cin);
                for co in ci * g.cout_g..(ci + 1) * g.cout_g {
                    let dyp = &dy[(ni * g.cout + co) * hwo..(ni * g.cout + co + 1) * hwo];
                    for ki in 0..c.kh {
                        for kj in 0..c.kw {
                            let wv = w[co * kk + ki * c.kw + kj];
                            for_each_row(g, ki, kj, |oh, ih, lo, hi, first| {
                                let src = &dyp[oh * c.ow + lo..oh * c.ow + hi];
                                let dst = &mut dxp[ih * c.w..(ih + 1) * c.w];
                                for (d, s) in dst[first..].iter_mut().step_by(c.sw).zip(src) {
                                    *d += wv * s;
                                }
                            });
                        }
                    }
                }
            });
    }
    dw.par_chunks_mut(kk).enumerate().for_each(|(co, dwk)| {
        let ci = co / g.cout_g;
        for ki in 0..c.kh {
            for kj in 0..c.kw {
                let mut acc = 0.0f64;
                for ni in 0..g.n {
                    let xp = &x[(ni * g.cin + ci) * hw_in..(ni * g.cin + ci + 1) * hw_in];
                    let dyp = &dy[(ni * g.cout + co) * hwo..(ni * g.cout + co + 1) * hwo];
                    for_each_row(g, ki, kj, |oh, ih, lo, hi, first| {
                        let src = &xp[ih * c.w..(ih + 1) * c.w];
                        let row = &dyp[oh * c.ow + lo..oh * c.ow + hi];
                        let dot: f32 = row
                            .iter()
                            .zip(src[first..].iter().step_by(c.sw))
                            .map(|(a, b)| a * b)
                            .sum();
                        acc += dot as f64;
                    });
                }
                dwk[ki * c.kw + kj] = acc as f32;
            }
        }
    });
}
