//! Weight gradient of a stride-1, single-group convolution over flattened
//! padded planes (the layout of `conv_flat.rs`), without an im2col matrix.
//!
//! With `P[n][c]` the zero-padded input planes (row pitch `Wp`) and
//! `dY'[n][co]` the output gradient laid out on the same pitch, with zeros
//! in the columns `ow ≥ OW` that do not exist,
//!
//! ```text
//! dW[co][c][ki][kj] = Σ_n Σ_{oh,ow} dy[n][co][oh][ow] · P[n][c][(oh + ki)·Wp + ow + kj]
//!                   = Σ_n Σ_{p < OH·Wp} dY'[n][co][p] · P[n][c][p + ki·Wp + kj]
//! ```
//!
//! The micro-kernel keeps `CO × TB` vector accumulators (2 output channels
//! × up to 9 taps of one input channel), loads `CO` gradient vectors and
//! `TB` shifted input vectors per 16 positions, and reduces each
//! accumulator across its lanes at the end (a fixed tree). The batch is cut
//! into the same fixed chunks of images as the GEMM path (at most eight);
//! each chunk sums its images in order into its own partial, and the
//! partials are added in chunk order, so the result does not depend on the
//! thread count. A single image is split into blocks of output channels
//! instead, each written by one task.

use super::conv_backward::{chunk_len, plane_sums};
use super::conv_flat::{pad_image, FlatGeom, Kernel};
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;

/// Output channels per micro-kernel call.
const CO_BLK: usize = 2;
/// Taps per micro-kernel call.
const TAP_BLK: usize = 9;
const LANES: usize = 16;

/// Weight gradient `dw [cout, cin, kh, kw]` (overwritten) and the
/// per-image, per-channel sums of `dy` (`sums [n, cout]`, for the bias
/// gradient) of a batch of `n` images `x` with output gradient `dy`.
pub(crate) fn weight_grad(
    g: &FlatGeom,
    n: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    sums: &mut [f64],
) {
    let (oh, ow) = g.out_hw();
    let (img_in, img_out, npos) = (g.cin * g.h * g.w, g.cout * oh * ow, g.positions());
    let kk = g.kh * g.kw;
    dw.fill(0.0);
    if n == 0 || img_out == 0 {
        return;
    }
    sums.par_chunks_mut(g.cout)
        .zip(dy.par_chunks(img_out))
        .for_each(|(s, d)| plane_sums(d, s));
    let chunk = chunk_len(n);
    let kern = Kernel::detect();
    if n == 1 {
        // One image: blocks of output channels in parallel instead.
        let mut p = vec![0.0f32; g.padded_len()];
        let mut d = vec![0.0f32; g.cout * npos];
        pad_image(g, x, &mut p);
        pitch_gradient(g, dy, &mut d);
        let blk = CO_BLK * g.cin * kk;
        dw.par_chunks_mut(blk).enumerate().for_each(|(bi, part)| {
            let co0 = bi * CO_BLK;
            image(g, kern, &p, &d, part, kk, co0, (co0 + CO_BLK).min(g.cout));
        });
        return;
    }
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|ci| {
            let mut part = vec![0.0f32; dw.len()];
            for ni in ci * chunk..((ci + 1) * chunk).min(n) {
                with_scratch(Slot::Col, g.padded_len(), |p| {
                    pad_image(g, &x[ni * img_in..(ni + 1) * img_in], p);
                    with_scratch(Slot::Col2, g.cout * npos, |d| {
                        pitch_gradient(g, &dy[ni * img_out..(ni + 1) * img_out], d);
                        image(g, kern, p, d, &mut part, kk, 0, g.cout);
                    });
                });
            }
            part
        })
        .collect();
    for part in &parts {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
}

/// Lays one image's output gradient `[cout, OH, OW]` out on the padded row
/// pitch: `d[co][oh·Wp + ow]`, zeros in the missing columns and the tail.
fn pitch_gradient(g: &FlatGeom, dy: &[f32], d: &mut [f32]) {
    let (oh, ow) = g.out_hw();
    let (wp, npos) = (g.w + 2 * g.pw, g.positions());
    d.fill(0.0);
    for co in 0..g.cout {
        for r in 0..oh {
            let src = &dy[(co * oh + r) * ow..(co * oh + r + 1) * ow];
            d[co * npos + r * wp..co * npos + r * wp + ow].copy_from_slice(src);
        }
    }
}

/// Adds one image's contribution to output channels `co0..co1` of the
/// weight gradient, `part [co1 − co0, cin, kk]`.
#[allow(clippy::too_many_arguments)]
fn image(
    g: &FlatGeom,
    kern: Kernel,
    p: &[f32],
    d: &[f32],
    part: &mut [f32],
    kk: usize,
    co0: usize,
    co1: usize,
) {
    let taps = g.taps();
    let (npos, plane) = (g.positions(), g.hp_wp());
    assert!(p.len() >= (g.cin - 1) * plane + taps[kk - 1] + npos);
    assert!(co1 <= g.cout && d.len() >= g.cout * npos && part.len() >= (co1 - co0) * g.cin * kk);
    let mut out = [0.0f32; CO_BLK * TAP_BLK];
    let mut co = co0;
    while co < co1 {
        let nco = (co1 - co).min(CO_BLK);
        for c in 0..g.cin {
            let mut t0 = 0;
            while t0 < kk {
                let nt = (kk - t0).min(TAP_BLK);
                let pc = &p[c * plane..];
                let blk = Block {
                    d: &d[co * npos..],
                    p: pc,
                    taps: &taps[t0..t0 + nt],
                    npos,
                };
                blk.run(kern, nco, &mut out);
                for k in 0..nco {
                    let at = ((co - co0 + k) * g.cin + c) * kk + t0;
                    for (dst, v) in part[at..at + nt].iter_mut().zip(&out[k * TAP_BLK..]) {
                        *dst += v;
                    }
                }
                t0 += nt;
            }
        }
        co += nco;
    }
}

/// One micro-kernel call: `out[k·TAP_BLK + t] = Σ_{p<npos} d[k·npos + p] · p[p + taps[t]]`.
struct Block<'a> {
    d: &'a [f32],
    p: &'a [f32],
    taps: &'a [usize],
    npos: usize,
}

impl Block<'_> {
    fn run(&self, kern: Kernel, nco: usize, out: &mut [f32; CO_BLK * TAP_BLK]) {
        match kern {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was detected; the reads stay inside `d` and `p`
            // by the assertions of `image` (each tap's last read ends at
            // `taps[t] + npos ≤ p.len()`, each channel's at `npos ≤ d.len()`).
            Kernel::Avx512 => unsafe { avx512::dispatch(self, nco, out) },
            _ => {
                for k in 0..nco {
                    let dk = &self.d[k * self.npos..(k + 1) * self.npos];
                    for (t, &off) in self.taps.iter().enumerate() {
                        let src = &self.p[off..off + self.npos];
                        out[k * TAP_BLK + t] = dk.iter().zip(src).map(|(a, b)| a * b).sum();
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Block, CO_BLK, LANES, TAP_BLK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dispatch(b: &Block<'_>, nco: usize, out: &mut [f32; CO_BLK * TAP_BLK]) {
        // SAFETY: forwarded from the caller.
        unsafe {
            macro_rules! taps {
                ($c:literal) => {
                    match b.taps.len() {
                        1 => block::<$c, 1>(b, out),
                        2 => block::<$c, 2>(b, out),
                        3 => block::<$c, 3>(b, out),
                        4 => block::<$c, 4>(b, out),
                        5 => block::<$c, 5>(b, out),
                        6 => block::<$c, 6>(b, out),
                        7 => block::<$c, 7>(b, out),
                        8 => block::<$c, 8>(b, out),
                        _ => block::<$c, 9>(b, out),
                    }
                };
            }
            if nco == 1 {
                taps!(1)
            } else {
                taps!(2)
            }
        }
    }

    /// `C` channels × `T` taps of accumulators, summed over the positions
    /// in vectors of 16, then each reduced across its lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const C: usize, const T: usize>(
        b: &Block<'_>,
        out: &mut [f32; CO_BLK * TAP_BLK],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); T]; C];
            let mut offs = [0usize; T];
            offs.copy_from_slice(&b.taps[..T]);
            let (d, p) = (b.d.as_ptr(), b.p.as_ptr());
            let mut v = 0;
            while v < b.npos {
                let mut dv = [_mm512_setzero_ps(); C];
                for (k, x) in dv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(d.add(k * b.npos + v));
                }
                for (t, &off) in offs.iter().enumerate() {
                    let x = _mm512_loadu_ps(p.add(off + v));
                    for (row, dk) in acc.iter_mut().zip(&dv) {
                        row[t] = _mm512_fmadd_ps(*dk, x, row[t]);
                    }
                }
                v += LANES;
            }
            for (k, row) in acc.iter().enumerate() {
                for (t, a) in row.iter().enumerate() {
                    out[k * TAP_BLK + t] = _mm512_reduce_add_ps(*a);
                }
            }
        }
    }
}
