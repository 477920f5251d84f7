//! Stride-1 3×3 convolution by the two-dimensional Winograd transform
//! F(4×4, 3×3): the forward pass (and so the input gradient) and the weight
//! gradient.
//!
//! ## The transform
//!
//! A 4×4 tile of outputs from the 6×6 input patch `d` under the 3×3 kernel
//! `g` takes 36 products instead of 144 (Lavin & Gray 2016; the 1-D
//! matrices `Bᵀ`, `G`, `Aᵀ` of `conv_wino.rs`, applied along both axes):
//!
//! ```text
//! Y = Aᵀ · [(G·g·Gᵀ) ⊙ (Bᵀ·d·B)] · A
//! M[ξη][co][t] = Σ_c U[ξη][co][c] · V[ξη][c][t]          (36 products per tile)
//! U = G·w[co][c]·Gᵀ,   V = Bᵀ·d_t·B,   y_t = Aᵀ·M[··][co][t]·A
//! ```
//!
//! For each of the 36 points `ξη` the products over the input channels are
//! the correlation of `conv_flat.rs`'s micro-kernel with a single tap over
//! planes of tiles, and the tiles of several images are laid end to end, so
//! the kernel runs over at least [`MIN_TILES`] tiles whatever the plane
//! size: 7×7 outputs (four tiles) count 4·36 = 144 products per channel
//! pair against the direct kernel's 64·9 = 576.
//!
//! ## Images in the lanes
//!
//! Both passes (`conv_wino2/lanes.rs`) put 16 images in the 16 lanes of
//! every vector, so a tile's transforms are plain vector arithmetic on 36
//! vectors and rows enter and leave the lanes by 16 × 16 transposes; the
//! module doc there has the layout and the tiling of the batch into tasks.
//!
//! ## Weight gradient
//!
//! By the transposed bilinear form (as in `conv_wino_grad.rs`),
//!
//! ```text
//! dW[co][c] = Gᵀ·D[··][co][c]·G,   D[ξη][co][c] = Σ_n Σ_t DY[ξη][co][t] · V[ξη][c][t],
//! DY = A·dy_t·Aᵀ
//! ```
//!
//! with `dy_t` the 4×4 output-gradient tile (zeros beyond the plane). Each
//! `D[ξη]` is a GEMM over the tiles of a group of images (`grad.rs`); the
//! groups and their order are fixed by the shape and the batch size, so the
//! result does not depend on the thread count, as everywhere in this
//! backend.
//!
//! Rounding: the transformed values combine up to 36 inputs with
//! coefficients up to 8 (Aᵀ) and 5 (Bᵀ) per axis; tested against a
//! double-precision sum relative to the sum of absolute terms.

use super::conv::PostFn;
use super::conv_flat::{self, FlatGeom};
use super::conv_wino::{G, XI};
use super::scratch::Kept;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Tiles per vector.
const LANES: usize = 16;
/// Transform points per tile (6 × 6).
const PTS: usize = XI * XI;
/// Values of slack after each channel's row of transformed input (and
/// each point's block of products): the 36 rows a tile writes and the
/// products read are `Cin·npos` values apart, a multiple of 4 KB for
/// ResNet's 32- and 64-channel layers (16 or 32 KB), where every one of
/// them falls in the same level-1 cache set and they evict each other;
/// one vector of slack spreads them. Measured on ResNet's 14×14 layers:
/// 32 → 17 channels 5–10 % faster forward, the weight gradient 2–5 %.
pub(crate) const ROW_PAD: usize = LANES;
/// Tiles the micro-kernel runs over at least: images (lane sets in the
/// forward pass) are grouped until their tiles fill four vectors.
pub(crate) const MIN_TILES: usize = 64;

/// The geometry of one transformed 3×3 correlation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wino2 {
    pub(crate) g: FlatGeom,
    oh: usize,
    ow: usize,
    /// Tile rows and columns covering the output.
    th: usize,
    tw: usize,
}

impl Wino2 {
    /// The geometry for `g` when the transform applies: a 3×3 kernel with
    /// padding under 3 and the vector kernel on this CPU.
    pub(crate) fn new(g: &FlatGeom) -> Option<Self> {
        let (oh, ow) = g.out_hw();
        if (g.kh, g.kw) != (3, 3) || oh == 0 || ow == 0 || !conv_flat::vectorised() {
            return None;
        }
        Some(Self {
            g: *g,
            oh,
            ow,
            th: oh.div_ceil(4),
            tw: ow.div_ceil(4),
        })
    }

    /// Tile rows per band when bands hold at most `most` rows: as many
    /// bands as that needs, of equal height but the last.
    fn band(&self, most: usize) -> usize {
        self.th.div_ceil(self.th.div_ceil(most.max(1)))
    }
}

/// Lanes of the weight transform: pairs of channels transformed together.
const WL: usize = 16;

/// `G·(a, b, c)` in double precision for [`WL`] lanes at once.
#[inline(always)]
fn g6(a: &[f64; WL], b: &[f64; WL], c: &[f64; WL]) -> [[f64; WL]; XI] {
    const Q: f64 = 0.25;
    const S: f64 = 1.0 / 6.0;
    const T: f64 = 1.0 / 12.0;
    const W: f64 = 1.0 / 24.0;
    let mut out = [[0.0; WL]; XI];
    for l in 0..WL {
        let (a, b, c) = (a[l], b[l], c[l]);
        out[0][l] = a * Q;
        out[1][l] = -(a + b + c) * S;
        out[2][l] = -(a - b + c) * S;
        out[3][l] = a * W + b * T + c * S;
        out[4][l] = a * W - b * T + c * S;
        out[5][l] = c;
    }
    out
}

/// `(G·k·Gᵀ)[ξ][η]` for [`WL`] kernels `k[tap][lane]` at once: the columns of
/// `G·k` (6 × 3), then each row times `Gᵀ`.
#[inline(always)]
fn gkg(k: &[[f64; WL]; 9]) -> [[[f64; WL]; XI]; XI] {
    let cols = [
        g6(&k[0], &k[3], &k[6]),
        g6(&k[1], &k[4], &k[7]),
        g6(&k[2], &k[5], &k[8]),
    ];
    let mut out = [[[0.0; WL]; XI]; XI];
    for (xi, o) in out.iter_mut().enumerate() {
        *o = g6(&cols[0][xi], &cols[1][xi], &cols[2][xi]);
    }
    out
}

/// `U[ξη][co][c] = (G·w[co][c]·Gᵀ)[ξ][η]`, each rounded once from double
/// precision; [`WL`] channel pairs at a time (by AVX-512 gathers, or
/// [`portable_run`] for a partial run), stored as 36 runs of [`WL`] values. Runs
/// of [`WEIGHT_TASK`] pairs are transformed in parallel (a 512 × 512 layer
/// has 262,144 pairs, 37.7 MB of transformed weights).
pub(crate) fn transform_weights(g: &FlatGeom, w: &[f32]) -> Kept {
    let pairs = g.cout * g.cin;
    let mut u = Kept::take(PTS * pairs);
    let out = SyncPtr(u.as_mut_ptr());
    let vector = conv_flat::vectorised();
    (0..pairs.div_ceil(WEIGHT_TASK))
        .into_par_iter()
        .for_each(|t| {
            let (t0, t1) = (t * WEIGHT_TASK, ((t + 1) * WEIGHT_TASK).min(pairs));
            for r0 in (t0..t1).step_by(WL) {
                let nr = (t1 - r0).min(WL);
                #[cfg(target_arch = "x86_64")]
                if nr == WL && vector {
                    // SAFETY: AVX-512F is available (the vector kernel);
                    // the run's 144 weights are in `w`; its 16 values of
                    // each point are inside `out` (`PTS·pairs` values) and
                    // belong to this task's pairs.
                    unsafe {
                        avx512::weight_run(w[r0 * 9..][..WL * 9].as_ptr(), pairs, out.get().add(r0))
                    };
                    continue;
                }
                // SAFETY: as above, for the run's `nr` pairs.
                unsafe { portable_run(w, pairs, r0, nr, out) };
            }
        });
    u
}

/// The `nr ≤ WL` pairs `r0..r0 + nr` of [`transform_weights`] through the
/// portable [`g6`] (the last, partial run of a layer; every run without
/// AVX-512, which the tests compare the vector runs against).
///
/// # Safety
/// `out` must hold `PTS·pairs` values, and no other thread may write the
/// positions of pairs `r0..r0 + nr` during the call.
unsafe fn portable_run(w: &[f32], pairs: usize, r0: usize, nr: usize, out: SyncPtr) {
    // k[i][l]: tap i of pair r0 + l (zeros past the last pair).
    let mut k = [[0.0f64; WL]; 9];
    for (l, kl) in w[r0 * 9..(r0 + nr) * 9].chunks_exact(9).enumerate() {
        for (i, &v) in kl.iter().enumerate() {
            k[i][l] = v as f64;
        }
    }
    for (xi, row) in gkg(&k).iter().enumerate() {
        for (eta, v) in row.iter().enumerate() {
            let at = (xi * XI + eta) * pairs + r0;
            assert!(at + nr <= PTS * pairs);
            for (l, &x) in v[..nr].iter().enumerate() {
                // SAFETY: inside `out` (asserted), a position of this call's
                // pairs (the caller's contract).
                unsafe { *out.get().add(at + l) = x as f32 };
            }
        }
    }
}

/// [`transform_weights`] run by run through [`portable_run`] only (test
/// reference for the AVX-512 runs, which must agree to the bit).
#[cfg(test)]
pub(crate) fn transform_weights_portable(pairs: usize, w: &[f32]) -> Vec<f32> {
    let mut u = vec![0.0f32; PTS * pairs];
    let out = SyncPtr(u.as_mut_ptr());
    for r0 in (0..pairs).step_by(WL) {
        // SAFETY: `u` holds `PTS·pairs` values; one thread.
        unsafe { portable_run(w, pairs, r0, (pairs - r0).min(WL), out) };
    }
    u
}

/// Channel pairs per task of [`transform_weights`] (a multiple of [`WL`]).
const WEIGHT_TASK: usize = 64 * WL;

/// A pointer to transformed values (weights, planes), written by parallel
/// tasks at disjoint positions.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(*mut f32);
// SAFETY: tasks write disjoint ranges; the pointer outlives the parallel
// region (it borrows the `Kept` buffer held by the caller).
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Channels per task when the transforms of a layer's planes run in
/// parallel (`lanes.rs`, `grad.rs`).
const PLANE_TASK: usize = 16;

/// The forward pass: `y [n, cout, OH, OW]` (every value written, none read)
/// from `x [n, cin, h, w]`, `w [cout, cin, 3, 3]` and the bias, then
/// `post(offset, values)` on the rows of each output plane as they are
/// finished. Tasks of 16 images (bands of tile rows, or several sets of 16
/// on small planes) run in parallel; with fewer tasks than threads each
/// task splits its channels (`lanes.rs`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_post(
    wg: &Wino2,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
) {
    let g = &wg.g;
    if g.cout == 0 || g.cin == 0 || n == 0 {
        return conv_flat::forward_post(g, n, x, w, bias, y, post);
    }
    #[cfg(target_arch = "x86_64")]
    {
        let u = transform_weights(g, w);
        lanes::forward_post(wg, n, x, &u, bias, y, post)
    }
    #[cfg(not(target_arch = "x86_64"))]
    conv_flat::forward_post(g, n, x, w, bias, y, post)
}

#[cfg(test)]
/// [`forward_post`] into an `f32` output, without a post-pass.
pub(crate) fn forward(
    wg: &Wino2,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    // SAFETY: the forward pass writes only finished values into `y`.
    forward_post(
        wg,
        n,
        x,
        w,
        bias,
        unsafe { super::conv::as_uninit(y) },
        &|_, _| {},
    );
}

#[cfg(target_arch = "x86_64")]
mod avx512;
mod grad;
#[cfg(target_arch = "x86_64")]
pub(crate) mod lanes;

pub(crate) use grad::weight_grad;
#[cfg(test)]
pub(crate) use grad::weight_grad_in;
