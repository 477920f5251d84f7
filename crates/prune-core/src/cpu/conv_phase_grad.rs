//! The input gradient of stride-2, single-group convolutions on phase
//! planes (`conv_phase.rs`), without an im2col matrix or a col2im scatter.
//! (Their weight gradient stays on im2col + GEMM: the direct weight-gradient
//! kernel of `conv_flat_grad.rs` over the phases, its accumulators summed
//! over one image or over groups of images before their lanes are reduced,
//! took 1.1–1.3x the GEMM's time on ResNet's downsampling layers.)
//!
//! The gradient of the padded input `dP[u][v]` collects `w[ki][kj]·dy[oh][ow]`
//! over `u = 2·oh + ki`, `v = 2·ow + kj`. On its phase `(a, b)`
//! (`u = 2r + a`, `v = 2s + b`) only the taps `ki = a + 2α`, `kj = b + 2β`
//! reach it, from `oh = r − α`, `ow = s − β`:
//!
//! ```text
//! dQ[a][b][c][r][s] = Σ_co Σ_{α,β} w[co][c][a + 2α][b + 2β] · dy[co][r − α][s − β]
//! ```
//!
//! (`dy` zero outside its plane) — a stride-1 correlation of the output
//! gradient padded by `Ah = ⌈kh/2⌉ − 1` rows above and `Aw = ⌈kw/2⌉ − 1`
//! columns to the left, with the tap `(α, β)` at the offset
//! `(Ah − α)·Wd + (Aw − β)` on the padded pitch `Wd = Wq + Aw`. The flat
//! micro-kernel computes the four phases of every input channel of one
//! image from one padded copy of its gradient, each only over its rows
//! that hold input values (`ph ≤ 2r + a < ph + H`: 7 of a 7×7 output's 8
//! phase rows) (each tap in exactly one
//! phase: no multiply-add by a zero tap, as col2im's GEMM makes none, and
//! no scatter), and each input row `i` is then read off its two column
//! phases,
//! `dx[c][i][j] = dQ[(i + ph) mod 2][(j + pw) mod 2][c][⌊(i + ph)/2⌋][⌊(j + pw)/2⌋]`,
//! by two-source permutes with AVX-512. (A phase no tap reaches, which a
//! kernel one tap tall or wide would leave, is zero.)
//!
//! Every value is one sum in a fixed order (output channel, then tap) and
//! images run in parallel, so results do not depend on the thread count.

use super::conv_flat::{self, block_width, Kernel};
use super::conv_phase::{per_image, PhaseGeom};
use super::pad::Padding;
use super::scratch::{with_scratch, Slot};
use std::mem::MaybeUninit;

/// Lanes of the micro-kernel's vectors.
const LANES: usize = 16;

/// One phase `(a, b)` of the input gradient: the rows of it that hold
/// input values, its tap offsets into the padded output gradient (moved
/// down to its first such row) and its weights `[cin][cout][taps]`.
struct Phase {
    /// First phase row `r` with `2r + a ≥ ph`.
    first: usize,
    /// Positions computed per channel, its rows at the pitch in whole
    /// vectors.
    npos: usize,
    /// Where its channels start in the phases' buffer.
    at: usize,
    taps: Vec<usize>,
    weights: Vec<f32>,
}

/// The layout of the input gradient's correlation for one image.
struct Layout {
    /// The output gradient's padded planes: `Ah` rows above and `Aw`
    /// columns to the left, rows `Hq + Ah` at the pitch `Wd = Wq + Aw`.
    padding: Padding,
    /// Length of the padded output gradient of one image, with slack.
    padded_len: usize,
    /// Length of the four phases of every input channel.
    phases_len: usize,
    /// The four phases, `a·2 + b`.
    phases: [Phase; 4],
}

impl Layout {
    fn new(pg: &PhaseGeom, w: &[f32]) -> Self {
        let ((hq, wq), (oh, ow)) = (pg.hq_wq(), pg.out_hw());
        let pad = (pg.kh.div_ceil(2) - 1, pg.kw.div_ceil(2) - 1);
        let (pitch, rows) = (wq + pad.1, hq + pad.0);
        let kk = pg.kh * pg.kw;
        let mut at = 0;
        let phases: [Phase; 4] = std::array::from_fn(|k| {
            let (a, b) = (k / 2, k % 2);
            // rows r with ph ≤ 2r + a < ph + h: only those reach `dx`
            let first = pg.ph.saturating_sub(a).div_ceil(2);
            let end = (pg.ph + pg.h).saturating_sub(a).div_ceil(2).min(hq);
            let npos = (end.saturating_sub(first) * pitch).next_multiple_of(LANES);
            let kis: Vec<usize> = (a..pg.kh).step_by(2).collect();
            let kjs: Vec<usize> = (b..pg.kw).step_by(2).collect();
            let mut taps = Vec::new();
            for al in 0..kis.len() {
                for be in 0..kjs.len() {
                    taps.push((first + pad.0 - al) * pitch + (pad.1 - be));
                }
            }
            let mut weights = Vec::with_capacity(pg.cin * pg.cout * taps.len());
            for c in 0..pg.cin {
                for co in 0..pg.cout {
                    let wk = &w[(co * pg.cin + c) * kk..][..kk];
                    for &ki in &kis {
                        for &kj in &kjs {
                            weights.push(wk[ki * pg.kw + kj]);
                        }
                    }
                }
            }
            let phase = Phase {
                first,
                npos,
                at,
                taps,
                weights,
            };
            at += pg.cin * npos;
            phase
        });
        let padding = Padding {
            cin: pg.cout,
            h: oh,
            w: ow,
            ph: pad.0,
            pw: pad.1,
            hp: rows,
            wp: pitch,
        };
        let plane = rows * pitch;
        // the furthest any phase's vectors read past a plane's start
        let reach = phases
            .iter()
            .map(|p| p.taps.iter().max().map_or(0, |t| t + p.npos))
            .max()
            .unwrap_or(0);
        Layout {
            padding,
            padded_len: (pg.cout - 1) * plane + plane.max(reach),
            phases_len: at,
            phases,
        }
    }
}

/// The input gradient `dx [n, cin, h, w]` (every value written, none read)
/// of the stride-2 correlation `pg` with weights `w [cout, cin, kh, kw]`,
/// from `dy [n, cout, OH, OW]`; images in parallel.
pub(crate) fn input_grad(
    pg: &PhaseGeom,
    n: usize,
    w: &[f32],
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
) {
    let (oh, ow) = pg.out_hw();
    let (img_in, img_out) = (pg.cin * pg.h * pg.w, pg.cout * oh * ow);
    if img_in == 0 || n == 0 {
        return;
    }
    if img_out == 0 {
        dx.fill(MaybeUninit::new(0.0));
        return;
    }
    let l = Layout::new(pg, w);
    let (kern, vector) = (Kernel::detect(), conv_flat::vectorised());
    // four phases of every input channel, and a vector of slack for the
    // last row's loads
    let out_len = l.phases_len + LANES;
    let image = |ni: usize, dxn: &mut [MaybeUninit<f32>]| {
        with_scratch(Slot::Col, l.padded_len, |d| {
            l.padding.apply(&dy[ni * img_out..(ni + 1) * img_out], d);
            with_scratch(Slot::Col2, out_len, |out| {
                phases(pg, &l, kern, d, out);
                read_off(pg, &l, out, vector, dxn);
            });
        });
    };
    per_image(dx, img_in, n, image);
}

/// The four phases of every input channel's gradient from the padded
/// output gradient `d`: phase `k`'s channel `c` at `out[at_k + c·npos_k ..]`,
/// its rows from `first_k` on at the pitch.
fn phases(pg: &PhaseGeom, l: &Layout, kern: Kernel, d: &[f32], out: &mut [f32]) {
    let plane = l.padding.hp * l.padding.wp;
    for ph in &l.phases {
        let npos = ph.npos;
        let ob = &mut out[ph.at..ph.at + pg.cin * npos];
        if ph.taps.is_empty() || npos == 0 {
            ob.fill(0.0);
            continue;
        }
        let per = pg.cout * ph.taps.len();
        let mut c = 0;
        while c < pg.cin {
            let nc = block_width(pg.cin - c);
            let (w, o) = (&ph.weights[c * per..], &mut ob[c * npos..(c + nc) * npos]);
            kern.run_planes(pg.cout, plane, d, w, &ph.taps, nc, o, npos);
            c += nc;
        }
    }
}

/// `dx[c][i][j]` of one image from its phases (see the module doc), by
/// vector permutes when `vector`.
fn read_off(pg: &PhaseGeom, l: &Layout, out: &[f32], vector: bool, dx: &mut [MaybeUninit<f32>]) {
    let (h, w) = (pg.h, pg.w);
    for c in 0..pg.cin {
        for i in 0..h {
            let (a, r) = ((i + pg.ph) % 2, (i + pg.ph) / 2);
            let row = |b: usize| {
                let ph = &l.phases[a * 2 + b];
                &out[ph.at + c * ph.npos + (r - ph.first) * l.padding.wp..]
            };
            let dst = &mut dx[(c * h + i) * w..(c * h + i + 1) * w];
            interleave(row(0), row(1), pg.pw, vector, dst);
        }
    }
}

/// `dst[j] = even[(j + pw)/2]` for even `j + pw`, `odd[(j + pw)/2]` for odd;
/// with `vector` (AVX-512 present) both rows readable for 16 values past
/// the last one read.
fn interleave(even: &[f32], odd: &[f32], pw: usize, vector: bool, dst: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    if vector {
        let last = (dst.len() + pw).div_ceil(2) + LANES;
        assert!(even.len() >= last && odd.len() >= last);
        // SAFETY: AVX-512F is present (the vector kernel runs); the loads
        // stay inside both rows by the assertion, the stores inside `dst`.
        unsafe { avx512::interleave(even, odd, pw, dst) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = vector;
    interleave_scalar(even, odd, pw, dst);
}

/// [`interleave`] one value at a time.
fn interleave_scalar(even: &[f32], odd: &[f32], pw: usize, dst: &mut [MaybeUninit<f32>]) {
    for (j, d) in dst.iter_mut().enumerate() {
        let v = j + pw;
        d.write(if v.is_multiple_of(2) {
            even[v / 2]
        } else {
            odd[v / 2]
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::LANES;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Two-source permute indices for 16 outputs whose first reads the
    /// phase `par` (`0` even, `1` odd): output `j` takes value
    /// `(j + par)/2` of the even row (lanes 0–15) or the odd one (16–31).
    const fn indices(par: usize) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let mut j = 0;
        while j < 16 {
            idx[j] = ((j + par) / 2 + 16 * ((j + par) % 2)) as i32;
            j += 1;
        }
        idx
    }

    static IDX: [[i32; 16]; 2] = [indices(0), indices(1)];

    /// See `super::interleave`.
    ///
    /// # Safety
    /// AVX-512F; both rows readable up to `(dst.len() + pw)/2 + 16` values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn interleave(
        even: &[f32],
        odd: &[f32],
        pw: usize,
        dst: &mut [MaybeUninit<f32>],
    ) {
        // SAFETY: the caller guarantees the loads; each store is masked to
        // the values left in `dst`.
        unsafe {
            let n = dst.len();
            let mut j0 = 0;
            while j0 < n {
                let (base, par) = ((j0 + pw) / 2, (j0 + pw) % 2);
                let lo = _mm512_loadu_ps(even.as_ptr().add(base));
                let hi = _mm512_loadu_ps(odd.as_ptr().add(base));
                let idx = _mm512_loadu_si512(IDX[par].as_ptr().cast());
                let v = _mm512_permutex2var_ps(lo, idx, hi);
                let left = (n - j0).min(LANES);
                let mask = if left == LANES {
                    0xFFFF
                } else {
                    (1u16 << left) - 1
                };
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j0).cast(), mask, v);
                j0 += LANES;
            }
        }
    }
}

#[cfg(test)]
/// [`interleave_scalar`] into an `f32` row, for the tests.
pub(crate) fn interleave_reference(even: &[f32], odd: &[f32], pw: usize, dst: &mut [f32]) {
    // SAFETY: only finished values are written.
    interleave_scalar(even, odd, pw, unsafe { super::conv::as_uninit(dst) });
}

#[cfg(test)]
/// [`interleave`] into an `f32` row, for the tests.
pub(crate) fn interleave_rows(even: &[f32], odd: &[f32], pw: usize, dst: &mut [f32]) {
    // SAFETY: only finished values are written.
    interleave(even, odd, pw, conv_flat::vectorised(), unsafe {
        super::conv::as_uninit(dst)
    });
}

/// [`input_grad`] into an initialised output, for callers holding `f32`.
#[cfg(test)]
pub(crate) fn input_grad_f32(pg: &PhaseGeom, n: usize, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    // SAFETY: `input_grad` writes only finished values.
    input_grad(pg, n, w, dy, unsafe { super::conv::as_uninit(dx) });
}
