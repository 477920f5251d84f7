//! Direct convolution for stride-2, single-group layers, by phase planes.
//!
//! The zero-padded input plane `P` (`Hp × Wp`) is split into its four
//! phases, the values at even or odd rows and even or odd columns:
//!
//! ```text
//! Q[a][b][r][s] = P[2r + a][2s + b]      a, b ∈ {0, 1},  r < Hq = ⌈Hp/2⌉,  s < Wq = ⌈Wp/2⌉
//! ```
//!
//! (a phase that runs past the padded plane reads zeros). A stride-2 output
//! `y[oh][ow] = Σ_{ki,kj} w[ki][kj] · P[2·oh + ki][2·ow + kj]` reads
//! `P[2(oh + ⌊ki/2⌋) + ki mod 2][2(ow + ⌊kj/2⌋) + kj mod 2]`, so on the
//! phases it is a stride-1 correlation whose every tap reads one phase:
//!
//! ```text
//! y[oh][ow] = Σ_{ki,kj} w[ki][kj] · Q[ki mod 2][kj mod 2][oh + ⌊ki/2⌋][ow + ⌊kj/2⌋]
//! ```
//!
//! With the four phases of a channel stored one after the other and the
//! output indexed on their row pitch `Wq`, each tap is a fixed offset
//! `((ki mod 2)·2 + kj mod 2)·Hq·Wq + ⌊ki/2⌋·Wq + ⌊kj/2⌋` into the
//! channel's phases, which is what the stride-1 micro-kernel of
//! `conv_flat.rs` sums over: every multiply-add is one of the convolution's
//! (no zero taps), no im2col matrix is built, and the vectors run over the
//! `OH·Wq` flattened positions (`Wq − OW` of each row are discarded: one of
//! 15 for a 28×28 input under a 3×3 kernel with padding 1).
//!
//! A valid position reads inside its phase: `OW − 1 + ⌊(kw−1)/2⌋ < Wq`
//! and `OH − 1 + ⌊(kh−1)/2⌋ < Hq` for any kernel with `kh ≤ Hp`,
//! `kw ≤ Wp`; discarded positions may read into the next phase or channel,
//! and the buffer has slack after the last one.
//!
//! Every output value is one sum in a fixed order (input channel, then tap,
//! as in `conv_flat.rs`), and images run in parallel, so results do not
//! depend on the thread count. The input gradient on phase planes is in
//! `conv_phase_grad.rs`.

use super::conv::{assume_written, ConvGeom, PostFn};
use super::conv_flat::{self, block_width, Kernel};
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Lanes of the micro-kernel's vectors.
const LANES: usize = 16;

/// Shape of one stride-2 correlation on phase planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PhaseGeom {
    pub cin: usize,
    pub cout: usize,
    /// Unpadded input size.
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl PhaseGeom {
    /// The layer as a phase correlation: one group, stride 2 both ways, a
    /// kernel of at least 2×2 (a 1×1 kernel reads one phase: its im2col is
    /// a plain subsampling, cheaper than writing all four) and no larger
    /// than the padded input, a vector micro-kernel on this CPU, and a
    /// batch of several images or a single image small enough for one
    /// thread (larger single images split better as a GEMM).
    pub(crate) fn of(g: &ConvGeom) -> Option<Self> {
        let c = &g.col;
        let pg = PhaseGeom {
            cin: g.cin,
            cout: g.cout,
            h: c.h,
            w: c.w,
            kh: c.kh,
            kw: c.kw,
            ph: c.ph,
            pw: c.pw,
        };
        let fits = g.groups == 1
            && (c.sh, c.sw) == (2, 2)
            && c.kh >= 2
            && c.kw >= 2
            && c.kh <= c.h + 2 * c.ph
            && c.kw <= c.w + 2 * c.pw
            && g.cin > 0
            && conv_flat::vectorised()
            && (g.n >= 2 || pg.macs() < conv_flat::SPLIT_MIN_MACS);
        fits.then_some(pg)
    }

    /// Rows and columns of one phase, `(⌈Hp/2⌉, ⌈Wp/2⌉)`.
    pub(crate) fn hq_wq(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.ph).div_ceil(2),
            (self.w + 2 * self.pw).div_ceil(2),
        )
    }

    /// Values of one phase.
    fn phase(&self) -> usize {
        let (hq, wq) = self.hq_wq();
        hq * wq
    }

    /// Output size `(⌊(Hp − kh)/2⌋ + 1, ⌊(Wp − kw)/2⌋ + 1)`.
    pub(crate) fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.ph - self.kh) / 2 + 1,
            (self.w + 2 * self.pw - self.kw) / 2 + 1,
        )
    }

    /// Flattened positions computed per output plane, whole vectors.
    fn positions(&self) -> usize {
        (self.out_hw().0 * self.hq_wq().1).next_multiple_of(LANES)
    }

    /// Multiply-adds of one image.
    fn macs(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.cout * self.cin * self.kh * self.kw * oh * ow
    }

    /// Tap offsets into a channel's four phases, in weight order.
    pub(crate) fn taps(&self) -> Vec<usize> {
        let (phase, wq) = (self.phase(), self.hq_wq().1);
        (0..self.kh)
            .flat_map(|ki| {
                (0..self.kw).map(move |kj| ((ki % 2) * 2 + kj % 2) * phase + (ki / 2) * wq + kj / 2)
            })
            .collect()
    }

    /// Length of the phase buffer of one image: the four phases of every
    /// channel, plus slack for the discarded positions of the last one.
    fn buffer_len(&self) -> usize {
        let last = self.taps().into_iter().max().unwrap_or(0);
        let channel = 4 * self.phase();
        (self.cin - 1) * channel + channel.max(last + self.positions())
    }
}

/// Writes the four phases of every channel of one image `x [cin, h, w]`
/// into `q` (whatever it held before), zeros where a phase reads padding,
/// and zeros in the slack after the last channel. Each input row is dealt
/// out to the rows of its two column phases ([`Dealer`]); rows of padding
/// are zeros in both.
pub(crate) fn split_image(g: &PhaseGeom, x: &[f32], q: &mut [f32]) {
    let (hq, wq) = g.hq_wq();
    let phase = hq * wq;
    let plane = g.h * g.w;
    let mut dealer = Dealer::new(g);
    for (c, qc) in q.chunks_mut(4 * phase).enumerate().take(g.cin) {
        let xc = &x[c * plane..(c + 1) * plane];
        for (a, rows) in qc.chunks_mut(2 * phase).enumerate() {
            let (q0, q1) = rows.split_at_mut(phase.min(rows.len()));
            for r in 0..hq {
                let (Some(row0), Some(row1)) = (
                    q0.get_mut(r * wq..(r + 1) * wq),
                    q1.get_mut(r * wq..(r + 1) * wq),
                ) else {
                    break;
                };
                // Padded row 2r + a is input row 2r + a − ph.
                match (2 * r + a).checked_sub(g.ph).filter(|&u| u < g.h) {
                    Some(u) => dealer.deal(&xc[u * g.w..(u + 1) * g.w], row0, row1),
                    None => {
                        row0.fill(0.0);
                        row1.fill(0.0);
                    }
                }
            }
        }
    }
    let used = (g.cin * 4 * phase).min(q.len());
    q[used..].fill(0.0);
}

/// Deals an input row out to its two column phases:
/// `row_b[s] = P[2s + b]` with `P` the row with `pw` zeros before it and
/// zeros after it. Rows of at most 32 values with AVX-512 take two masked
/// loads and one two-source permute per phase, from indices computed once
/// per image; other rows are copied into a zero-padded row and dealt out
/// by pairs.
struct Dealer {
    pw: usize,
    /// One padded row, rounded up to an even length; the padding stays zero.
    padded: Vec<f32>,
    /// Per column phase, the source index of each lane and the lanes that
    /// have one (the others read padding).
    #[cfg(target_arch = "x86_64")]
    short: Option<[([i32; 16], u16); 2]>,
}

impl Dealer {
    fn new(g: &PhaseGeom) -> Self {
        let wq = g.hq_wq().1;
        #[cfg(target_arch = "x86_64")]
        let short =
            (g.w <= 32 && wq <= 16 && std::arch::is_x86_feature_detected!("avx512f")).then(|| {
                [0, 1].map(|b| {
                    let (mut idx, mut valid) = ([0i32; 16], 0u16);
                    for (s, i) in idx.iter_mut().enumerate().take(wq) {
                        let v = 2 * s + b;
                        if v >= g.pw && v - g.pw < g.w {
                            *i = (v - g.pw) as i32;
                            valid |= 1 << s;
                        }
                    }
                    (idx, valid)
                })
            });
        #[cfg(not(target_arch = "x86_64"))]
        let short: Option<()> = None;
        Dealer {
            pw: g.pw,
            // Only the row-by-row fallback uses it.
            padded: if short.is_some() {
                Vec::new()
            } else {
                vec![0.0; 2 * wq]
            },
            #[cfg(target_arch = "x86_64")]
            short,
        }
    }

    fn deal(&mut self, src: &[f32], row0: &mut [f32], row1: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(ix) = &self.short {
            // SAFETY: `short` is set only with AVX-512F detected, for rows
            // of at most 32 values and phases of at most 16, with indices
            // below the row's length.
            unsafe { avx512::deal(src, ix, row0, row1) };
            return;
        }
        let len = src.len().min(self.padded.len().saturating_sub(self.pw));
        self.padded[self.pw..self.pw + len].copy_from_slice(&src[..len]);
        for ((d0, d1), pair) in row0.iter_mut().zip(row1).zip(self.padded.chunks_exact(2)) {
            *d0 = pair[0];
            *d1 = pair[1];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// The first `n` of 16 lanes.
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    /// `row_b[s] = src[ix[b].0[s]]` where bit `s` of `ix[b].1` is set, else
    /// zero, for `s < row_b.len()`.
    ///
    /// # Safety
    /// AVX-512F must be present, `src.len() ≤ 32`, `row0.len() ≤ 16`,
    /// `row1.len() ≤ 16`, and every index with its bit set below
    /// `src.len()`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn deal(
        src: &[f32],
        ix: &[([i32; 16], u16); 2],
        row0: &mut [f32],
        row1: &mut [f32],
    ) {
        // SAFETY: the masked loads read only `src`'s values (lanes past
        // its end are masked off and do not fault), the masked stores
        // write only the rows' values.
        unsafe {
            let n = src.len();
            let lo = _mm512_maskz_loadu_ps(lanes(n), src.as_ptr());
            let hi_mask = lanes(n.saturating_sub(16));
            let hi = _mm512_maskz_loadu_ps(hi_mask, src.as_ptr().wrapping_add(16));
            for ((idx, valid), row) in ix.iter().zip([row0, row1]) {
                let iv = _mm512_loadu_si512(idx.as_ptr().cast());
                let v = _mm512_maskz_permutex2var_ps(*valid, lo, iv, hi);
                _mm512_mask_storeu_ps(row.as_mut_ptr(), lanes(row.len()), v);
            }
        }
    }
}

/// Every output channel of one image into `y` (`[cout, OH, OW]`) from its
/// phases `q` (`taps` from [`PhaseGeom::taps`]), adding `bias[co]`; every
/// value of `y` is written (none read).
fn channels(
    g: &PhaseGeom,
    taps: &[usize],
    q: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
) {
    let (oh, ow) = g.out_hw();
    let (wq, npos) = (g.hq_wq().1, g.positions());
    let kern = Kernel::detect();
    with_scratch(Slot::Col2, g.cout * npos, |out| {
        let mut co = 0;
        while co < g.cout {
            let nco = block_width(g.cout - co);
            let ob = &mut out[co * npos..(co + nco) * npos];
            let wb = &w[co * g.cin * taps.len()..];
            kern.run_planes(g.cin, 4 * g.phase(), q, wb, taps, nco, ob, npos);
            co += nco;
        }
        conv_flat::store_planes(out, npos, wq, (oh, ow), y, bias);
    });
}

/// The stride-2 correlation of a batch: `x [n, cin, h, w]`,
/// `w [cout, cin, kh, kw]`, into `y [n, cout, OH, OW]` plus `bias[co]`,
/// then `post(offset, values)` on each image's output while it is in
/// cache. Images run in parallel; every value of `y` is written, none read.
pub(crate) fn forward_post(
    g: &PhaseGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
) {
    let (oh, ow) = g.out_hw();
    let (img_in, img_out) = (g.cin * g.h * g.w, g.cout * oh * ow);
    if img_out == 0 {
        return;
    }
    let (taps, len) = (g.taps(), g.buffer_len());
    let image = |ni: usize, yn: &mut [MaybeUninit<f32>]| {
        with_scratch(Slot::Col, len, |q| {
            split_image(g, &x[ni * img_in..(ni + 1) * img_in], q);
            channels(g, &taps, q, w, bias, yn);
            // SAFETY: `channels` wrote every value of `yn`.
            post(ni * img_out, unsafe { assume_written(yn) });
        })
    };
    per_image(y, img_out, n, image);
}

/// `image(ni, out_ni)` for each image's `len` values of `out`: in parallel
/// for a batch, on the calling thread for a single image.
pub(crate) fn per_image(
    out: &mut [MaybeUninit<f32>],
    len: usize,
    n: usize,
    image: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) {
    if n >= 2 {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(ni, on)| image(ni, on));
    } else {
        for (ni, on) in out.chunks_mut(len).enumerate() {
            image(ni, on);
        }
    }
}
