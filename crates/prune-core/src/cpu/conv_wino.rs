//! Stride-1 convolution with 3-wide kernels by the one-dimensional
//! Winograd transform F(4, 3) along the rows, over the flattened padded
//! planes of `conv_flat.rs`.
//!
//! ## The transform
//!
//! Four outputs of a 3-tap correlation, `y[i] = Σ_{k<3} g[k]·d[i + k]`
//! (`i < 4`), from six inputs `d[0..6]`, take six products instead of
//! twelve (Lavin & Gray 2016, interpolation points 0, ±1, ±2, ∞):
//!
//! ```text
//! y = Aᵀ · [(G·g) ⊙ (Bᵀ·d)]
//!
//!      ⎡ 4  0 −5  0  1  0⎤        ⎡ 1/4    0     0  ⎤
//!      ⎢ 0 −4 −4  1  1  0⎥        ⎢−1/6 −1/6  −1/6  ⎥        ⎡1  1  1  1  1  0⎤
//! Bᵀ = ⎢ 0  4 −4 −1  1  0⎥    G = ⎢−1/6  1/6  −1/6  ⎥   Aᵀ = ⎢0  1 −1  2 −2  0⎥
//!      ⎢ 0 −2 −1  2  1  0⎥        ⎢1/24  1/12  1/6  ⎥        ⎢0  1  1  4  4  0⎥
//!      ⎢ 0  2 −1 −2  1  0⎥        ⎢1/24 −1/12  1/6  ⎥        ⎣0  1 −1  8 −8  1⎦
//!      ⎣ 0  4  0 −5  0  1⎦        ⎣  0     0     1  ⎦
//! ```
//!
//! ## Over flattened planes
//!
//! With stride 1 and the padded planes stored row after row at a pitch
//! `Wp` (`conv_flat.rs`), the output at flattened position `p` is
//! `Σ_c Σ_ki Σ_kj w[co][c][ki][kj] · P[c][p + ki·Wp + kj]`: for each input
//! channel and kernel row a 3-tap correlation along the flattened plane.
//! Here the pitch is rounded up to a multiple of four (`Wp = 4·Wq`, extra
//! zero columns on the right), positions are grouped in tiles of four
//! (`p = 4s + i`), and a kernel row `ki` moves a tile by exactly `ki·Wq`
//! tiles. With `V[ξ][c][s] = (Bᵀ·P[c][4s .. 4s + 6])[ξ]` (one input
//! transform per channel and tile, shared by every kernel row and output
//! channel) and `U[ξ][co][c][ki] = (G·w[co][c][ki][·])[ξ]`:
//!
//! ```text
//! M[ξ][co][s] = Σ_c Σ_ki U[ξ][co][c][ki] · V[ξ][c][s + ki·Wq]      (ξ < 6)
//! Y'[co][4s + i] = Σ_ξ Aᵀ[i][ξ] · M[ξ][co][s]
//! ```
//!
//! Each `M[ξ]` is the correlation of `conv_flat.rs`'s micro-kernel with
//! `kh` taps `{0, Wq, 2·Wq, …}` over the planes `V[ξ]`, so the same
//! register-blocked kernel runs it: `6·kh·Cin` multiply-adds per tile of
//! four outputs against `12·kh·Cin` directly. The padded planes `P[c]` are
//! never written: each vector of 16 positions is built in registers from
//! the image values it holds (`conv_wino_kernels.rs`, `PadPlane`), and the
//! output transform writes `y` directly, dropping the positions past `OW`. The transforms add about
//! `14/4` operations per position and input channel and `10/4` per position
//! and output channel, a few per cent for 16 channels and less for more.
//!
//! Every output is one fixed sequence of operations, and work is split only
//! across images and output channels, so results do not depend on the
//! thread count. The rounding differs from the direct sum: the transformed
//! values are combinations with coefficients up to 8 (Aᵀ) and 5 (Bᵀ), so
//! the error is a few times the direct kernel's (tested against a
//! double-precision reference relative to the sum of absolute terms).

use super::conv::{assume_written, PostFn};
use super::conv_flat::{self, FlatGeom, Kernel};
pub(crate) use super::conv_wino_kernels::{avx512, input_transform_padded, PadPlane};
#[cfg(test)]
pub(crate) use super::conv_wino_kernels::{input_transform_scalar, output_plane_scalar};
pub(crate) use super::conv_wino_kernels::{output_plane, RowMasks};
use super::scratch::{with_scratch, Kept, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Tiles per vector (one lane per tile).
const LANES: usize = 16;
/// Transformed values per tile.
pub(crate) const XI: usize = 6;
/// Output columns from which the transform is used: a narrower plane wastes
/// more of its tiles on the pitch rounded up to four (7×7 outputs: 9
/// positions per row become 12).
pub(crate) const MIN_OUT_WIDTH: usize = 8;

/// The geometry of one transformed correlation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WinoGeom {
    pub(crate) g: FlatGeom,
    /// Row pitch, a multiple of four.
    pub(crate) wp: usize,
    /// Tiles per row, `wp / 4`.
    pub(crate) wq: usize,
    /// Output tiles per plane, `OH·wq`, rounded up to whole vectors.
    pub(crate) ntile: usize,
    /// Tiles per transformed plane: every tile an output tile reads.
    pub(crate) vplane: usize,
}

impl WinoGeom {
    /// The transform's geometry for `g` when it applies: a 3-wide kernel,
    /// outputs at least [`MIN_OUT_WIDTH`] wide, and the vector kernel.
    pub(crate) fn new(g: &FlatGeom) -> Option<Self> {
        let (oh, ow) = g.out_hw();
        if g.kw != 3 || ow < MIN_OUT_WIDTH || oh == 0 || !conv_flat::vectorised() {
            return None;
        }
        let wp = (g.w + 2 * g.pw).next_multiple_of(4);
        let wq = wp / 4;
        let ntile = (oh * wq).next_multiple_of(LANES);
        let vplane = ((g.kh - 1) * wq + ntile).next_multiple_of(LANES);
        Some(Self {
            g: *g,
            wp,
            wq,
            ntile,
            vplane,
        })
    }

    /// Length of the transformed input, `6 · Cin · vplane`.
    pub(crate) fn transformed_len(&self) -> usize {
        XI * self.g.cin * self.vplane
    }

    /// The padded input plane by vectors, for [`input_transform_padded`]
    /// over `vplane` tiles.
    pub(crate) fn pad_plane(&self) -> PadPlane {
        let g = &self.g;
        PadPlane::new(g.h, g.w, g.ph, g.pw, self.wp, self.vplane / 4 + 1)
    }

    /// The lanes of the output rows, for [`output_plane`].
    fn row_masks(&self) -> RowMasks {
        RowMasks::new(self.wp, self.g.out_hw().1)
    }

    /// Kernel-row offsets in tiles, `{0, Wq, 2·Wq, …}`.
    pub(crate) fn taps(&self) -> Vec<usize> {
        (0..self.g.kh).map(|ki| ki * self.wq).collect()
    }
}

/// `G` (6 × 3) of the transform, shared by the 2-D form and both weight
/// gradients.
pub(crate) const G: [[f64; 3]; XI] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The transformed weights `U[ξ][co][c][ki] = Σ_kj G[ξ][kj] · w[co][c][ki][kj]`
/// of `w [cout, cin, kh, 3]`, each rounded once from double precision.
pub(crate) fn transform_weights(g: &FlatGeom, w: &[f32]) -> Kept {
    let rows = g.cout * g.cin * g.kh;
    let mut u = Kept::take(XI * rows);
    for (r, k) in w.chunks_exact(3).take(rows).enumerate() {
        for (xi, gr) in G.iter().enumerate() {
            let v = gr[0] * k[0] as f64 + gr[1] * k[1] as f64 + gr[2] * k[2] as f64;
            u[xi * rows + r] = v as f32;
        }
    }
    u
}

/// One image: `x [cin, h, w]` into `y [cout, OH, OW]` (every value
/// written, none read) plus the bias, then `post(base + offset, values)`
/// on each output channel while it is in cache. With `split` the blocks of
/// output channels run in parallel (each value the same as unsplit).
#[allow(clippy::too_many_arguments)]
fn image(
    wg: &WinoGeom,
    pad_plane: &PadPlane,
    rows: &RowMasks,
    u: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
    base: usize,
    split: bool,
) {
    let g = &wg.g;
    let (oh, ow) = g.out_hw();
    with_scratch(Slot::Transform, wg.transformed_len(), |v| {
        transform_image(wg, pad_plane, x, v);
        let v = &*v;
        if !split {
            return channels(wg, rows, u, v, 0, g.cout, bias, y, post, base);
        }
        let mut tasks = Vec::new();
        let mut rest = y;
        for (co0, co1) in conv_flat::channel_blocks(g.cout) {
            let (yb, tail) = rest.split_at_mut((co1 - co0) * oh * ow);
            tasks.push((co0, co1, yb));
            rest = tail;
        }
        tasks.into_par_iter().for_each(|(co0, co1, yb)| {
            channels(
                wg,
                rows,
                u,
                v,
                co0,
                co1,
                bias,
                yb,
                post,
                base + co0 * oh * ow,
            );
        });
    });
}

/// The transformed planes `v [6, cin, vplane]` of one image `x [cin, h, w]`:
/// [`input_transform_padded`] per channel, the zero-padded plane built in
/// registers from the image values (`pad_plane`, from [`WinoGeom::pad_plane`]).
pub(crate) fn transform_image(wg: &WinoGeom, pad_plane: &PadPlane, x: &[f32], v: &mut [f32]) {
    let (cin, hw) = (wg.g.cin, wg.g.h * wg.g.w);
    for (c, xc) in x.chunks_exact(hw.max(1)).take(cin).enumerate() {
        let at = c * wg.vplane;
        input_transform_padded(xc, pad_plane, wg.vplane, v, at, cin * wg.vplane);
    }
}

/// Output channels `co0..co1` of one image into `y` (`[co1−co0, OH, OW]`)
/// from its transformed planes `v`: `M[ξ]` by the micro-kernel for each
/// block of channels, transformed back, plus the bias, then `post`.
#[allow(clippy::too_many_arguments)]
fn channels(
    wg: &WinoGeom,
    rows: &RowMasks,
    u: &[f32],
    v: &[f32],
    co0: usize,
    co1: usize,
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
    base: usize,
) {
    let g = &wg.g;
    let (oh, ow) = g.out_hw();
    let (cin, ntile, vplane) = (g.cin, wg.ntile, wg.vplane);
    let taps = wg.taps();
    let urows = g.cout * cin * g.kh;
    let kern = Kernel::detect();
    let wide = conv_flat::CO_WIDE * ntile;
    let mlen = XI * wide;
    with_scratch(Slot::Col2, mlen, |m| {
        let mut co = co0;
        while co < co1 {
            let nco = conv_flat::block_width(co1 - co);
            for xi in 0..XI {
                let vx = &v[xi * cin * vplane..(xi + 1) * cin * vplane];
                let ux = &u[xi * urows + co * cin * g.kh..];
                let mx = &mut m[xi * wide..xi * wide + nco * ntile];
                kern.run_planes(cin, vplane, vx, ux, &taps, nco, mx, ntile);
            }
            for k in 0..nco {
                let b = bias.map_or(0.0, |b| b[co + k]);
                let at = (co - co0 + k) * oh * ow;
                let yp = &mut y[at..at + oh * ow];
                output_plane(m, k * ntile, wide, ntile, b, rows, yp);
                // SAFETY: `output_plane` wrote every value of `yp`.
                post(base + at, unsafe { assume_written(yp) });
            }
            co += nco;
        }
    });
}

/// [`conv_flat::forward_post`] by the transform: every value of `y` is
/// written (none read), then `post` runs on each output channel of each
/// image. Images run in parallel; a single image of at least
/// [`conv_flat::SPLIT_MIN_MACS`] multiply-adds is split across threads by
/// blocks of output channels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_post(
    wg: &WinoGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
) {
    let g = &wg.g;
    let (oh, ow) = g.out_hw();
    let (img_in, img_out) = (g.cin * g.h * g.w, g.cout * oh * ow);
    if img_out == 0 || g.cin == 0 {
        return conv_flat::forward_post(g, n, x, w, bias, y, post);
    }
    let u = transform_weights(g, w);
    let (pp, rows) = (wg.pad_plane(), wg.row_masks());
    if n >= 2 {
        y.par_chunks_mut(img_out).enumerate().for_each(|(ni, yn)| {
            let xn = &x[ni * img_in..(ni + 1) * img_in];
            image(wg, &pp, &rows, &u, xn, bias, yn, post, ni * img_out, false);
        });
    } else {
        let split = rayon::current_num_threads() >= 2 && g.macs() >= conv_flat::SPLIT_MIN_MACS;
        for (ni, yn) in y.chunks_mut(img_out).enumerate() {
            let xn = &x[ni * img_in..(ni + 1) * img_in];
            image(wg, &pp, &rows, &u, xn, bias, yn, post, ni * img_out, split);
        }
    }
}

#[cfg(test)]
/// [`forward_post`] without a post-pass, into an `f32` output.
pub(crate) fn forward(
    wg: &WinoGeom,
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
