//! Weight gradient of a stride-1 convolution with 3-wide kernels by the
//! row-wise Winograd transform of `conv_wino.rs`.
//!
//! Per tile of four outputs (`p = 4s + i`) and kernel row `ki`, the weight
//! gradient collects `Σ_{i<4} dy[4s + i] · d[i + kj]` for `kj < 3`, with
//! `d = P[c][4s + ki·Wp ..][..6]`. This is the derivative of the forward
//! pass's `Σ_i dy[i]·y[i]` with respect to the kernel row `g`, and the
//! forward pass's bilinear form gives it by the transposed matrices
//! (`y = Aᵀ[(G·g) ⊙ (Bᵀ·d)]`, so `Σ_i dy[i]·y[i] = Σ_ξ (A·dy)[ξ]·(G·g)[ξ]·(Bᵀ·d)[ξ]`):
//!
//! ```text
//! dW[co][c][ki][kj] = Σ_ξ G[ξ][kj] · D[ξ][co][c][ki]
//! D[ξ][co][c][ki]   = Σ_n Σ_s DY[n][ξ][co][s] · V[n][ξ][c][s + ki·Wq]
//! DY[ξ][co][s]      = (A · dy[co][4s .. 4s + 4])[ξ]
//!
//!          ⎡1  0  0  0⎤
//!          ⎢1  1  1  1⎥
//!      A = ⎢1 −1  1 −1⎥     (the transpose of the forward pass's Aᵀ)
//!          ⎢1  2  4  8⎥
//!          ⎢1 −2  4 −8⎥
//!          ⎣0  0  0  1⎦
//! ```
//!
//! where `V` are the transformed input planes of the forward pass and the
//! output gradient is laid out on the same pitch, zeros in the columns that
//! do not exist. Each of the six sums `D[ξ]` runs over `kh` taps of whole
//! tiles: `6·kh` products per tile of four positions against `12·kh` for
//! the direct gradient (`conv_flat_grad.rs`). The micro-kernel keeps
//! 4 output channels × 2 input channels × `kh` taps of accumulators (three
//! rows at most per call), loading 4 gradient and `2·kh` input vectors
//! per 16 tiles.
//!
//! As in `conv_flat_grad.rs` the batch is cut into the fixed chunks of
//! images of the GEMM path; each chunk sums its images in order into its
//! own transformed partial, the partials are added in chunk order and `G`
//! is applied last, so the result does not depend on the thread count.
//! Within a chunk, groups of images whose transformed planes fit in about
//! 1 MB are transformed together and each accumulator runs over all their
//! tiles before its 16 lanes are added: on a 14×14 plane one image has
//! only 4 vectors of tiles per sum, too few to pay for the reduction.

use super::conv_backward::{chunk_len, plane_sums};
use super::conv_wino::{self, WinoGeom, G};
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;

/// Transformed values per tile.
const XI: usize = 6;
/// Tiles per vector.
const LANES: usize = 16;
/// Output channels, input channels and kernel rows per micro-kernel call.
const CO_BLK: usize = 4;
const CI_BLK: usize = 2;
const KH_BLK: usize = 3;
/// Bytes of transformed input and gradient held for one group of images,
/// whose products are summed in registers before one reduction across
/// lanes (about half of a 2 MB level-2 cache).
pub(crate) const GROUP_BYTES: usize = 1 << 20;

/// Weight gradient `dw [cout, cin, kh, 3]` (overwritten) and the per-image,
/// per-channel sums of `dy` (`sums [n, cout]`, for the bias gradient) of a
/// batch of `n` images `x` with output gradient `dy`.
pub(crate) fn weight_grad(
    wg: &WinoGeom,
    n: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    sums: &mut [f64],
) {
    let g = &wg.g;
    let (oh, ow) = g.out_hw();
    let (img_in, img_out) = (g.cin * g.h * g.w, g.cout * oh * ow);
    dw.fill(0.0);
    if n == 0 || img_out == 0 || g.cin == 0 {
        return;
    }
    sums.par_chunks_mut(g.cout)
        .zip(dy.par_chunks(img_out))
        .for_each(|(s, d)| plane_sums(d, s));
    let rows = g.cout * g.cin * g.kh;
    let (vlen, dlen) = (wg.transformed_len(), XI * g.cout * wg.ntile);
    let pad_plane = wg.pad_plane();
    let group = GROUP_BYTES / (4 * (vlen + dlen));
    let total = chunk_partials(n, group, XI * rows, |g0, gn, part| {
        with_scratch(Slot::Transform, gn * vlen, |v| {
            with_scratch(Slot::Col2, gn * dlen + 4 * g.cout * wg.ntile, |d| {
                let (d, pitched) = d.split_at_mut(gn * dlen);
                for j in 0..gn {
                    let ni = g0 + j;
                    conv_wino::transform_image(
                        wg,
                        &pad_plane,
                        &x[ni * img_in..(ni + 1) * img_in],
                        &mut v[j * vlen..],
                    );
                    let dyn_ = &dy[ni * img_out..(ni + 1) * img_out];
                    transform_gradient(wg, dyn_, pitched, &mut d[j * dlen..(j + 1) * dlen]);
                }
                images(wg, gn, v, d, part);
            });
        });
    });
    // dW[co][c][ki][kj] = Σ_ξ G[ξ][kj] · D[ξ][co][c][ki], in double precision.
    for (r, out) in dw.chunks_exact_mut(3).take(rows).enumerate() {
        for (kj, o) in out.iter_mut().enumerate() {
            let v: f64 = (0..XI)
                .map(|xi| G[xi][kj] * total[xi * rows + r] as f64)
                .sum();
            *o = v as f32;
        }
    }
}

/// The sum of `add(first, count, part)` over the batch of `n` images: the
/// fixed chunks of the GEMM path ([`chunk_len`]) run in parallel, each
/// adding its groups of at most `group` images (clamped to 1..=chunk) in
/// order into its own partial of `len` values; the partials are added in
/// chunk order, so the result does not depend on the thread count.
pub(crate) fn chunk_partials(
    n: usize,
    group: usize,
    len: usize,
    add: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    partials(n, chunk_len(n), group, len, add)
}

/// [`chunk_partials`] over chunks of `chunk` images.
pub(crate) fn partials(
    n: usize,
    chunk: usize,
    group: usize,
    len: usize,
    add: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let chunk = chunk.max(1);
    let group = group.clamp(1, chunk);
    let parts: Vec<Vec<f32>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|ci| {
            let mut part = vec![0.0f32; len];
            let (first, end) = (ci * chunk, ((ci + 1) * chunk).min(n));
            for g0 in (first..end).step_by(group) {
                add(g0, (end - g0).min(group), &mut part);
            }
            part
        })
        .collect();
    let mut total = vec![0.0f32; len];
    for part in &parts {
        for (a, b) in total.iter_mut().zip(part) {
            *a += b;
        }
    }
    total
}

/// One image's output gradient `[cout, OH, OW]`, laid out on the pitch in
/// `pitched` (`[cout, 4·ntile]`, zeros in the columns that do not exist
/// and the tail) and transformed into `out = DY [6, cout, ntile]`.
fn transform_gradient(wg: &WinoGeom, dy: &[f32], pitched: &mut [f32], out: &mut [f32]) {
    let g = &wg.g;
    let (oh, ow) = g.out_hw();
    let (ntile, wp) = (wg.ntile, wg.wp);
    for co in 0..g.cout {
        let pc = &mut pitched[co * 4 * ntile..(co + 1) * 4 * ntile];
        for (r, row) in pc.chunks_mut(wp).enumerate() {
            if r < oh {
                row[..ow].copy_from_slice(&dy[(co * oh + r) * ow..][..ow]);
                row[ow..].fill(0.0);
            } else {
                row.fill(0.0);
            }
        }
        gradient_transform(pc, ntile, out, co * ntile, g.cout * ntile);
    }
}

/// `DY[ξ][s] = (A·d[4s .. 4s + 4])[ξ]` for `s < tiles` into `out[at + ξ·stride + s]`.
pub(crate) fn gradient_transform(
    d: &[f32],
    tiles: usize,
    out: &mut [f32],
    at: usize,
    stride: usize,
) {
    assert!(tiles.is_multiple_of(LANES) && d.len() >= 4 * tiles);
    assert!(out.len() >= at + (XI - 1) * stride + tiles);
    #[cfg(target_arch = "x86_64")]
    if super::conv_flat::vectorised() {
        // SAFETY: AVX-512F is available; the assertions bound every access.
        unsafe { avx512::gradient_transform(d, tiles, out, at, stride) };
        return;
    }
    gradient_transform_scalar(d, tiles, out, at, stride);
}

/// [`gradient_transform`] by scalar operations in the vector kernel's order.
pub(crate) fn gradient_transform_scalar(
    d: &[f32],
    tiles: usize,
    out: &mut [f32],
    at: usize,
    stride: usize,
) {
    for s in 0..tiles {
        let y = &d[4 * s..4 * s + 4];
        let (e, o) = (y[0] + y[2], y[1] + y[3]);
        let (e4, o2) = (4f32.mul_add(y[2], y[0]), 4f32.mul_add(y[3], y[1]));
        let v = [
            y[0],
            e + o,
            e - o,
            2f32.mul_add(o2, e4),
            (-2f32).mul_add(o2, e4),
            y[3],
        ];
        for (xi, val) in v.into_iter().enumerate() {
            out[at + xi * stride + s] = val;
        }
    }
}

/// Adds the transformed products of `gn` images to `part [6, cout, cin, kh]`:
/// image `j`'s planes are `v[j·vlen ..]` (`[6, cin, vplane]`) and
/// `d[j·dlen ..]` (`[6, cout, ntile]`). Each accumulator runs over the
/// tiles of every image before it is reduced across its lanes.
fn images(wg: &WinoGeom, gn: usize, v: &[f32], d: &[f32], part: &mut [f32]) {
    let g = &wg.g;
    let (cin, cout, kh) = (g.cin, g.cout, g.kh);
    let (ntile, vplane) = (wg.ntile, wg.vplane);
    let (vlen, dlen) = (wg.transformed_len(), XI * cout * ntile);
    let taps = wg.taps();
    let rows = cout * cin * kh;
    assert!(gn > 0 && v.len() >= gn * vlen && d.len() >= gn * dlen);
    assert!(part.len() >= XI * rows && taps[kh - 1] + ntile <= vplane);
    let mut out = [0.0f32; CO_BLK * CI_BLK * KH_BLK];
    for c in (0..cin).step_by(CI_BLK) {
        let nci = (cin - c).min(CI_BLK);
        for xi in 0..XI {
            for co in (0..cout).step_by(CO_BLK) {
                let nco = (cout - co).min(CO_BLK);
                for k0 in (0..kh).step_by(KH_BLK) {
                    let nk = (kh - k0).min(KH_BLK);
                    let blk = Block {
                        d: &d[(xi * cout + co) * ntile..],
                        v: &v[(xi * cin + c) * vplane..],
                        taps: &taps[k0..k0 + nk],
                        ntile,
                        vplane,
                        images: gn,
                        dlen,
                        vlen,
                    };
                    blk.run(nco, nci, &mut out);
                    for a in 0..nco {
                        for b in 0..nci {
                            let at = xi * rows + ((co + a) * cin + c + b) * kh + k0;
                            let src = &out[(a * CI_BLK + b) * KH_BLK..][..nk];
                            for (dst, s) in part[at..at + nk].iter_mut().zip(src) {
                                *dst += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One micro-kernel call: `out[(a·CI_BLK + b)·KH_BLK + t] = Σ_{j<images}
/// Σ_{s<ntile} d[j·dlen + a·ntile + s] · v[j·vlen + b·vplane + taps[t] + s]`.
struct Block<'a> {
    d: &'a [f32],
    v: &'a [f32],
    taps: &'a [usize],
    ntile: usize,
    vplane: usize,
    images: usize,
    dlen: usize,
    vlen: usize,
}

impl Block<'_> {
    fn run(&self, nco: usize, nci: usize, out: &mut [f32; CO_BLK * CI_BLK * KH_BLK]) {
        let j = self.images - 1;
        assert!(self.d.len() >= j * self.dlen + nco * self.ntile);
        let last =
            j * self.vlen + (nci - 1) * self.vplane + self.taps[self.taps.len() - 1] + self.ntile;
        assert!(self.v.len() >= last);
        #[cfg(target_arch = "x86_64")]
        if super::conv_flat::vectorised() {
            // SAFETY: AVX-512F is available; the assertions bound every read.
            unsafe { avx512::dispatch(self, nco, nci, out) };
            return;
        }
        for a in 0..nco {
            for b in 0..nci {
                for (t, &off) in self.taps.iter().enumerate() {
                    let mut sum = 0.0f32;
                    for j in 0..self.images {
                        let dv = &self.d[j * self.dlen + a * self.ntile..][..self.ntile];
                        let vv = &self.v[j * self.vlen + b * self.vplane + off..][..self.ntile];
                        sum += dv.iter().zip(vv).map(|(p, q)| p * q).sum::<f32>();
                    }
                    out[(a * CI_BLK + b) * KH_BLK + t] = sum;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::conv_wino::avx512::deinterleave;
    use super::{Block, CI_BLK, CO_BLK, KH_BLK, LANES, XI};
    use std::arch::x86_64::*;

    /// See `super::gradient_transform`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gradient_transform(
        d: &[f32],
        tiles: usize,
        out: &mut [f32],
        at: usize,
        stride: usize,
    ) {
        // SAFETY: the caller's assertions bound every access.
        unsafe {
            let (two, four) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0));
            let o = out.as_mut_ptr().add(at);
            for s0 in (0..tiles).step_by(LANES) {
                let [y0, y1, y2, y3] = deinterleave(d.as_ptr().add(4 * s0));
                let (e, od) = (_mm512_add_ps(y0, y2), _mm512_add_ps(y1, y3));
                let (e4, o2) = (_mm512_fmadd_ps(four, y2, y0), _mm512_fmadd_ps(four, y3, y1));
                let v = [
                    y0,
                    _mm512_add_ps(e, od),
                    _mm512_sub_ps(e, od),
                    _mm512_fmadd_ps(two, o2, e4),
                    _mm512_fnmadd_ps(two, o2, e4),
                    y3,
                ];
                for (xi, val) in v.into_iter().enumerate().take(XI) {
                    _mm512_storeu_ps(o.add(xi * stride + s0), val);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dispatch(
        b: &Block<'_>,
        nco: usize,
        nci: usize,
        out: &mut [f32; CO_BLK * CI_BLK * KH_BLK],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            macro_rules! taps {
                ($a:literal, $b:literal) => {
                    match b.taps.len() {
                        1 => block::<$a, $b, 1>(b, out),
                        2 => block::<$a, $b, 2>(b, out),
                        _ => block::<$a, $b, 3>(b, out),
                    }
                };
            }
            match (nco, nci) {
                (4, 2) => taps!(4, 2),
                (4, _) => taps!(4, 1),
                (3, 2) => taps!(3, 2),
                (3, _) => taps!(3, 1),
                (2, 2) => taps!(2, 2),
                (2, _) => taps!(2, 1),
                (_, 2) => taps!(1, 2),
                _ => taps!(1, 1),
            }
        }
    }

    /// `A × B × T` accumulators summed over the tiles in vectors of 16,
    /// then each reduced across its lanes.
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const A: usize, const B: usize, const T: usize>(
        b: &Block<'_>,
        out: &mut [f32; CO_BLK * CI_BLK * KH_BLK],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut acc = [[[_mm512_setzero_ps(); T]; B]; A];
            let mut offs = [0usize; T];
            offs.copy_from_slice(&b.taps[..T]);
            for j in 0..b.images {
                let (d, v) = (b.d.as_ptr().add(j * b.dlen), b.v.as_ptr().add(j * b.vlen));
                let mut s = 0;
                while s < b.ntile {
                    let mut dv = [_mm512_setzero_ps(); A];
                    for (a, x) in dv.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(d.add(a * b.ntile + s));
                    }
                    for bi in 0..B {
                        for (t, &off) in offs.iter().enumerate() {
                            let x = _mm512_loadu_ps(v.add(bi * b.vplane + off + s));
                            for (row, dk) in acc.iter_mut().zip(&dv) {
                                row[bi][t] = _mm512_fmadd_ps(*dk, x, row[bi][t]);
                            }
                        }
                    }
                    s += LANES;
                }
            }
            for (a, row) in acc.iter().enumerate() {
                for (bi, taps) in row.iter().enumerate() {
                    for (t, x) in taps.iter().enumerate() {
                        out[(a * CI_BLK + bi) * KH_BLK + t] = _mm512_reduce_add_ps(*x);
                    }
                }
            }
        }
    }
}
