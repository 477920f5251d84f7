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
//! ## The forward pass: images in the lanes
//!
//! The forward pass (`conv_wino2/lanes.rs`) puts 16 images in the 16 lanes
//! of every vector, so a tile's transforms are plain vector arithmetic on
//! 36 vectors and rows enter and leave the lanes by 16 × 16 transposes; the
//! module doc there has the layout and the tiling of the batch into tasks.
//!
//! ## The weight gradient's transforms: whole planes with full vectors
//!
//! The weight gradient sums over every tile of a group of images, in any
//! order, so its transforms keep each image's tiles in the lanes:
//! Tiles sit at rows and columns `4tr`, `4tc` of the zero-padded plane
//! (`TH × TW` tiles cover the output; the plane is padded to `4·TH + 2`
//! rows and a pitch `Wp = 4·(TW + 1)` of whole tiles). Its rows are stored
//! by their remainder modulo four (`P_ρ[r] = P[4r + ρ]`), so the row
//! transform of `conv_wino.rs` over each flattened `P_ρ` gives
//! `H[η][ρ][r·Wq + tc] = (P[4r + ρ][4tc ..][..6]·B)[η]` with every lane used,
//! and the column transform of a tile combines `H[η][ρ][u]` (`ρ < 4`) and
//! `H[η][ρ][u + Wq]` (`ρ = 0, 1`, the rows `4tr + 4`, `4tr + 5`) for
//! consecutive `u = tr·Wq + tc`, again contiguous. The tiles with
//! `tc = TW` (the pitch's spare column) are dropped by a permutation that
//! packs the tiles of each vector so the products run over real tiles only.
//! Both forms apply the same operations in the same order (`B` along the
//! rows, then `Bᵀ` along the columns), so their values agree to the bit.
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
//! `D[ξη]` is a sum over all tiles of a group of images, held in 4 × 6
//! vector accumulators and reduced across lanes once per group; groups and
//! the fixed chunks of `conv_backward.rs` make the result independent of the
//! thread count, as everywhere in this backend.
//!
//! Rounding: the transformed values combine up to 36 inputs with
//! coefficients up to 8 (Aᵀ) and 5 (Bᵀ) per axis; tested against a
//! double-precision sum relative to the sum of absolute terms.

use super::conv::PostFn;
use super::conv_flat::{self, FlatGeom};
use super::conv_wino::{input_transform, G, XI};
use super::conv_wino_grad::gradient_transform;
use super::scratch::{with_scratch, Kept, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Tiles per vector.
const LANES: usize = 16;
/// Transform points per tile (6 × 6).
const PTS: usize = XI * XI;
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
    /// Row pitch `4·(TW + 1)` and tiles per pitch row.
    wp: usize,
    wq: usize,
}

impl Wino2 {
    /// The geometry for `g` when the transform applies: a 3×3 kernel with
    /// padding under 3 and the vector kernel on this CPU.
    pub(crate) fn new(g: &FlatGeom) -> Option<Self> {
        let (oh, ow) = g.out_hw();
        if (g.kh, g.kw) != (3, 3) || oh == 0 || ow == 0 || !conv_flat::vectorised() {
            return None;
        }
        let (th, tw) = (oh.div_ceil(4), ow.div_ceil(4));
        let wq = tw + 1;
        Some(Self {
            g: *g,
            oh,
            ow,
            th,
            tw,
            wp: 4 * wq,
            wq,
        })
    }

    /// Tiles per image.
    fn tiles(&self) -> usize {
        self.th * self.tw
    }
}

/// The remainder planes of a group of `gn` images stacked: each image
/// contributes `TH + 1` rows of `Wq` tiles to every plane `P_ρ`, so the row
/// and column passes run over the whole group in full vectors (a 7×7 output
/// has 4 tiles; alone it would fill a quarter of one vector).
struct Stack {
    /// Row-transformed tiles per remainder plane (covers `ut + Wq`).
    hq: usize,
    /// Per vector of the column pass: the lanes that are tiles (`tr < TH`,
    /// `tc < TW`), in order, and the count of tiles before it.
    masks: Vec<Pack>,
}

/// The tiles of one vector of the column pass: their lanes (first
/// `count` entries, the rest repeat lane 0) and the tiles before them.
pub(crate) struct Pack {
    pub(crate) lanes: [i32; LANES],
    pub(crate) kept: usize,
}

impl Stack {
    fn new(wg: &Wino2, gn: usize) -> Self {
        let rows = wg.th + 1;
        let used = gn * rows * wg.wq;
        let ut = used.next_multiple_of(LANES);
        let hq = (ut + wg.wq).next_multiple_of(LANES);
        let mut masks = Vec::with_capacity(ut / LANES);
        let mut before = 0;
        for b in 0..ut / LANES {
            let mut pack = Pack {
                lanes: [0; LANES],
                kept: before,
            };
            let mut count = 0;
            for l in 0..LANES {
                let u = b * LANES + l;
                if u < used && (u / wg.wq) % rows < wg.th && u % wg.wq < wg.tw {
                    pack.lanes[count] = l as i32;
                    count += 1;
                }
            }
            masks.push(pack);
            before += count;
        }
        Self { hq, masks }
    }

    /// Values of one remainder plane: the row transform reads up to
    /// `4·hq + 4` values.
    fn rho_len(&self) -> usize {
        4 * self.hq + LANES
    }
}

/// Tile slots of `n` images' tiles laid end to end: whole vectors plus a
/// vector of slack for the packed stores (each writes a whole vector).
fn row_len(tiles: usize) -> usize {
    tiles.next_multiple_of(LANES) + LANES
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

/// Which planes of a layer [`transform_planes`] transforms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Planes {
    /// The input `x [gn, cin, h, w]`, zero-padded: `Bᵀ·d·B` per 6×6 patch.
    Input,
    /// The output gradient `dy [gn, cout, OH, OW]`, zeros beyond the
    /// plane: `A·dy·Aᵀ` per 4×4 tile.
    Gradient,
}

/// The planes `src` of a group of `gn` images into their transformed tiles,
/// laid end to end: `out[(ξη·ch + c)·row + t]`, `t < gn·TH·TW`, with `ch`
/// the planes' channel count. Writes up to a vector past the last tile of
/// each row (slack in `row`). With `parallel`, blocks of channels run as
/// parallel tasks (each channel's transform is the same either way).
#[allow(clippy::too_many_arguments)]
fn transform_planes(
    wg: &Wino2,
    st: &Stack,
    gn: usize,
    planes: Planes,
    src: &[f32],
    out: &mut [f32],
    row: usize,
    parallel: bool,
) {
    let ch = match planes {
        Planes::Input => wg.g.cin,
        Planes::Gradient => wg.g.cout,
    };
    assert!(out.len() >= PTS * ch * row && row >= row_len(gn * wg.tiles()));
    let out = SyncPtr(out.as_mut_ptr());
    // SAFETY: `out` holds every channel's rows (asserted), and each call
    // writes the rows of its own channels only.
    let block = |c0: usize, c1: usize| unsafe {
        transform_channels(wg, st, gn, planes, src, out, row, c0, c1)
    };
    if parallel && ch >= 2 * PLANE_TASK {
        (0..ch.div_ceil(PLANE_TASK))
            .into_par_iter()
            .for_each(|b| block(b * PLANE_TASK, ((b + 1) * PLANE_TASK).min(ch)));
    } else {
        block(0, ch);
    }
}

/// Channels per task of a parallel [`transform_planes`].
const PLANE_TASK: usize = 16;

/// Channels `c0..c1` of [`transform_planes`].
///
/// # Safety
/// `out` must hold `36·ch·row` values with `row ≥ row_len(gn·TH·TW)`, and no
/// other thread may access the rows of channels `c0..c1` during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn transform_channels(
    wg: &Wino2,
    st: &Stack,
    gn: usize,
    planes: Planes,
    src: &[f32],
    out: SyncPtr,
    row: usize,
    c0: usize,
    c1: usize,
) {
    let g = &wg.g;
    let (ch, h, w, ph, pw) = match planes {
        Planes::Input => (g.cin, g.h, g.w, g.ph, g.pw),
        Planes::Gradient => (g.cout, wg.oh, wg.ow, 0, 0),
    };
    let (hq, rho) = (st.hq, st.rho_len());
    let (img, rows) = (ch * h * w, wg.th + 1);
    with_scratch(Slot::Col, 4 * rho + XI * 4 * hq, |buf| {
        let (p, hbuf) = buf.split_at_mut(4 * rho);
        // The padded planes by row remainders: zeros around the images,
        // which every channel's rows leave in place.
        p.fill(0.0);
        // Source and destination of each image row, the same for every
        // channel but for the channel's offset.
        let dsts: Vec<usize> = (0..gn)
            .flat_map(|j| (0..h).map(move |r| (j, r + ph)))
            .map(|(j, pr)| (pr % 4) * rho + (j * rows + pr / 4) * wg.wp + pw)
            .collect();
        let srcs: Vec<usize> = (0..gn)
            .flat_map(|j| (0..h).map(move |r| j * img + r * w))
            .collect();
        for c in c0..c1 {
            copy_rows(&src[c * h * w..], &srcs, p, &dsts, w);
            // Row pass: H[η][ρ][u] at (η·4 + ρ)·hq + u.
            for rho_i in 0..4 {
                let pr = &p[rho_i * rho..(rho_i + 1) * rho];
                match planes {
                    Planes::Input => input_transform(pr, hq, hbuf, rho_i * hq, 4 * hq),
                    Planes::Gradient => gradient_transform(pr, hq, hbuf, rho_i * hq, 4 * hq),
                }
            }
            // Column pass and packed stores.
            // SAFETY: AVX-512F is available (`Wino2::new`); `hbuf` holds
            // 6·4·hq values and every read is below ut + Wq ≤ hq; each
            // store writes 16 values at `kept ≤ gn·TH·TW`, inside the row
            // by `row_len`, of channel `c` (the caller's contract).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                let dst = out.get().add(c * row);
                match planes {
                    Planes::Input => {
                        avx512::column_pass::<false>(hbuf, hq, wg.wq, &st.masks, dst, ch * row)
                    }
                    Planes::Gradient => {
                        avx512::column_pass::<true>(hbuf, hq, wg.wq, &st.masks, dst, ch * row)
                    }
                }
            }
        }
    });
}

/// `dst[d..d + len] = src[s..s + len]` for each pair of `srcs` and `dsts`,
/// by vector moves (rows are a few to a few dozen values, where a call to
/// `memmove` per row costs more than the copy).
pub(crate) fn copy_rows(src: &[f32], srcs: &[usize], dst: &mut [f32], dsts: &[usize], len: usize) {
    assert_eq!(srcs.len(), dsts.len());
    assert!(
        srcs.iter().all(|&s| s + len <= src.len()) && dsts.iter().all(|&d| d + len <= dst.len())
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is available (`Wino2::new`, `WinoGeom::new`: the
    // vector kernel); every row is inside its slice by the assertion.
    unsafe {
        avx512::copy_rows(src.as_ptr(), srcs, dst.as_mut_ptr(), dsts, len)
    }
}

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
