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
//! four outputs against `12·kh·Cin` directly. The transforms add about
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
use super::pad::Padding;
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
    /// Padded rows `H + 2·ph`.
    pub(crate) hp: usize,
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
        let hp = g.h + 2 * g.ph;
        let wp = (g.w + 2 * g.pw).next_multiple_of(4);
        let wq = wp / 4;
        let ntile = (oh * wq).next_multiple_of(LANES);
        let vplane = ((g.kh - 1) * wq + ntile).next_multiple_of(LANES);
        Some(Self {
            g: *g,
            hp,
            wp,
            wq,
            ntile,
            vplane,
        })
    }

    /// Values per padded input plane.
    pub(crate) fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// Length of the padded-input buffer: the input transform of the last
    /// channel reads up to `4·vplane + 4` values into its plane.
    fn padded_len(&self) -> usize {
        (self.g.cin - 1) * self.plane() + (4 * self.vplane + 16).max(self.plane())
    }

    /// Length of the transformed input, `6 · Cin · vplane`.
    pub(crate) fn transformed_len(&self) -> usize {
        XI * self.g.cin * self.vplane
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

/// Copies one image `x [cin, h, w]` into planes of pitch `wp` (whatever
/// the buffer held): `pw` zeros, the row, zeros to the pitch; zero rows
/// above and below, and zeros after the last plane (`pad.rs`).
fn pad(wg: &WinoGeom, x: &[f32], p: &mut [f32]) {
    Padding::of(&wg.g, wg.hp, wg.wp).apply(x, p);
}

/// One image: `x [cin, h, w]` into `y [cout, OH, OW]` (every value
/// written, none read) plus the bias, then `post(base + offset, values)`
/// on each output channel while it is in cache. With `split` the blocks of
/// output channels run in parallel (each value the same as unsplit).
#[allow(clippy::too_many_arguments)]
fn image(
    wg: &WinoGeom,
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
        transform_image(wg, x, v);
        let v = &*v;
        if !split {
            return channels(wg, u, v, 0, g.cout, bias, y, post, base);
        }
        let mut tasks = Vec::new();
        let mut rest = y;
        for (co0, co1) in conv_flat::channel_blocks(g.cout) {
            let (yb, tail) = rest.split_at_mut((co1 - co0) * oh * ow);
            tasks.push((co0, co1, yb));
            rest = tail;
        }
        tasks.into_par_iter().for_each(|(co0, co1, yb)| {
            channels(wg, u, v, co0, co1, bias, yb, post, base + co0 * oh * ow);
        });
    });
}

/// The transformed planes `v [6, cin, vplane]` of one image `x [cin, h, w]`:
/// padded to the pitch, then [`input_transform`] per channel.
pub(crate) fn transform_image(wg: &WinoGeom, x: &[f32], v: &mut [f32]) {
    let cin = wg.g.cin;
    with_scratch(Slot::Col, wg.padded_len(), |p| {
        pad(wg, x, p);
        for c in 0..cin {
            let at = c * wg.vplane;
            input_transform(&p[c * wg.plane()..], wg.vplane, v, at, cin * wg.vplane);
        }
    });
}

/// Output channels `co0..co1` of one image into `y` (`[co1−co0, OH, OW]`)
/// from its transformed planes `v`: `M[ξ]` by the micro-kernel for each
/// block of channels, transformed back, plus the bias, then `post`.
#[allow(clippy::too_many_arguments)]
fn channels(
    wg: &WinoGeom,
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
    with_scratch(Slot::Col2, mlen + 4 * ntile, |scratch| {
        let (m, yrow) = scratch.split_at_mut(mlen);
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
                output_transform(m, k * ntile, wide, ntile, b, yrow);
                let at = (co - co0 + k) * oh * ow;
                let yp = &mut y[at..at + oh * ow];
                copy_pitched(yrow, wg.wp, yp, ow);
                // SAFETY: `copy_pitched` wrote every value of `yp`.
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
    if n >= 2 {
        y.par_chunks_mut(img_out).enumerate().for_each(|(ni, yn)| {
            let xn = &x[ni * img_in..(ni + 1) * img_in];
            image(wg, &u, xn, bias, yn, post, ni * img_out, false);
        });
    } else {
        let split = rayon::current_num_threads() >= 2 && g.macs() >= conv_flat::SPLIT_MIN_MACS;
        for (ni, yn) in y.chunks_mut(img_out).enumerate() {
            let xn = &x[ni * img_in..(ni + 1) * img_in];
            image(wg, &u, xn, bias, yn, post, ni * img_out, split);
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

/// Rows of `width` values at pitch `pitch` in `src` into consecutive rows
/// of `dst` (every value of `dst` written): the output planes out of the
/// transform's pitch-wide rows.
fn copy_pitched(src: &[f32], pitch: usize, dst: &mut [MaybeUninit<f32>], width: usize) {
    let rows = dst.len() / width.max(1);
    assert!(width <= pitch && dst.len() == rows * width);
    assert!(rows == 0 || (rows - 1) * pitch + width <= src.len());
    #[cfg(target_arch = "x86_64")]
    if conv_flat::vectorised() {
        // SAFETY: AVX-512F is available (the vector kernel runs); every
        // row is inside its slice by the assertions.
        unsafe { avx512::copy_pitched(src.as_ptr(), pitch, dst.as_mut_ptr().cast(), width, rows) };
        return;
    }
    for (r, row) in dst.chunks_mut(width).enumerate() {
        for (d, s) in row.iter_mut().zip(&src[r * pitch..r * pitch + width]) {
            d.write(*s);
        }
    }
}

/// `V[ξ][s] = (Bᵀ·p[4s .. 4s + 6])[ξ]` for `s < tiles` into
/// `v[at + ξ·stride + s]`.
pub(crate) fn input_transform(p: &[f32], tiles: usize, v: &mut [f32], at: usize, stride: usize) {
    assert!(tiles.is_multiple_of(LANES) && p.len() >= 4 * tiles + 4);
    assert!(v.len() >= at + (XI - 1) * stride + tiles);
    #[cfg(target_arch = "x86_64")]
    if conv_flat::vectorised() {
        // SAFETY: AVX-512F is available (the vector kernel runs); the
        // assertions bound every load (`p[4s .. 4s + 68]` for the last
        // block) and store.
        unsafe { avx512::input_transform(p, tiles, v, at, stride) };
        return;
    }
    input_transform_scalar(p, tiles, v, at, stride);
}

/// [`input_transform`] by scalar operations, the vector kernel's in the
/// same order (so the two agree to the bit).
pub(crate) fn input_transform_scalar(
    p: &[f32],
    tiles: usize,
    v: &mut [f32],
    at: usize,
    stride: usize,
) {
    for s in 0..tiles {
        let d = &p[4 * s..4 * s + 6];
        let t0 = (-4f32).mul_add(d[2], d[4]);
        let t1 = (-4f32).mul_add(d[1], d[3]);
        let t2 = d[4] - d[2];
        let t3 = 2.0 * (d[3] - d[1]);
        // The vector kernel's operations, fused where it fuses them.
        let out = [
            4f32.mul_add(d[0], (-5f32).mul_add(d[2], d[4])),
            t0 + t1,
            t0 - t1,
            t2 + t3,
            t2 - t3,
            4f32.mul_add(d[1], (-5f32).mul_add(d[3], d[5])),
        ];
        for (xi, o) in out.into_iter().enumerate() {
            v[at + xi * stride + s] = o;
        }
    }
}

/// `out[4s + i] = Σ_ξ Aᵀ[i][ξ] · m[at + ξ·stride + s] + bias` for
/// `s < tiles` (the bias added last).
pub(crate) fn output_transform(
    m: &[f32],
    at: usize,
    stride: usize,
    tiles: usize,
    bias: f32,
    out: &mut [f32],
) {
    assert!(tiles.is_multiple_of(LANES) && out.len() >= 4 * tiles);
    assert!(m.len() >= at + (XI - 1) * stride + tiles);
    #[cfg(target_arch = "x86_64")]
    if conv_flat::vectorised() {
        // SAFETY: as in `input_transform`; the assertions bound every access.
        unsafe { avx512::output_transform(m, at, stride, tiles, bias, out) };
        return;
    }
    output_transform_scalar(m, at, stride, tiles, bias, out);
}

/// [`output_transform`] by scalar operations in the vector kernel's order.
pub(crate) fn output_transform_scalar(
    m: &[f32],
    at: usize,
    stride: usize,
    tiles: usize,
    bias: f32,
    out: &mut [f32],
) {
    for s in 0..tiles {
        let mv = |xi: usize| m[at + xi * stride + s];
        let (a, b) = (mv(1) + mv(2), mv(1) - mv(2));
        let (c, d) = (mv(3) + mv(4), mv(3) - mv(4));
        out[4 * s] = mv(0) + a + c + bias;
        out[4 * s + 1] = 2f32.mul_add(d, b) + bias;
        out[4 * s + 2] = 4f32.mul_add(c, a) + bias;
        out[4 * s + 3] = 8f32.mul_add(d, b) + mv(5) + bias;
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{LANES, XI};
    use std::arch::x86_64::*;

    /// Lanes `4l + j` (`l < 8`) of a pair of vectors, for each `j < 4`.
    const fn deinterleave_index(j: i32) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let mut l = 0;
        while l < 16 {
            idx[l] = 4 * (l as i32 % 8) + j;
            l += 1;
        }
        idx
    }

    /// Tiles `s0 .. s0 + 16`: `d[j][l] = p[4(s0 + l) + j]` for `j < 4` from
    /// the 64 values at `src`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn deinterleave(src: *const f32) -> [__m512; 4] {
        // SAFETY: the caller guarantees 64 readable values at `src`.
        unsafe {
            let (a, b) = (_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)));
            let (c, d) = (_mm512_loadu_ps(src.add(32)), _mm512_loadu_ps(src.add(48)));
            let mut out = [_mm512_setzero_ps(); 4];
            for (j, o) in out.iter_mut().enumerate() {
                let idx = _mm512_loadu_si512(IDX[j].as_ptr().cast());
                let lo = _mm512_permutex2var_ps(a, idx, b);
                let hi = _mm512_permutex2var_ps(c, idx, d);
                // lanes 0–7 of `lo`, then lanes 0–7 of `hi`
                *o = _mm512_shuffle_f32x4::<0x44>(lo, hi);
            }
            out
        }
    }

    static IDX: [[i32; 16]; 4] = [
        deinterleave_index(0),
        deinterleave_index(1),
        deinterleave_index(2),
        deinterleave_index(3),
    ];

    /// See `super::input_transform`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_transform(
        p: &[f32],
        tiles: usize,
        v: &mut [f32],
        at: usize,
        stride: usize,
    ) {
        // SAFETY: the caller's assertions bound every access.
        unsafe {
            let (four, five, two) = (
                _mm512_set1_ps(4.0),
                _mm512_set1_ps(5.0),
                _mm512_set1_ps(2.0),
            );
            let vo = v.as_mut_ptr().add(at);
            for s0 in (0..tiles).step_by(LANES) {
                let src = p.as_ptr().add(4 * s0);
                let [d0, d1, d2, d3] = deinterleave(src);
                let [d4, d5, _, _] = deinterleave(src.add(4));
                let t0 = _mm512_fnmadd_ps(four, d2, d4);
                let t1 = _mm512_fnmadd_ps(four, d1, d3);
                let t2 = _mm512_sub_ps(d4, d2);
                let t3 = _mm512_mul_ps(two, _mm512_sub_ps(d3, d1));
                let out = [
                    _mm512_fmadd_ps(four, d0, _mm512_fnmadd_ps(five, d2, d4)),
                    _mm512_add_ps(t0, t1),
                    _mm512_sub_ps(t0, t1),
                    _mm512_add_ps(t2, t3),
                    _mm512_sub_ps(t2, t3),
                    _mm512_fmadd_ps(four, d1, _mm512_fnmadd_ps(five, d3, d5)),
                ];
                for (xi, o) in out.into_iter().enumerate().take(XI) {
                    _mm512_storeu_ps(vo.add(xi * stride + s0), o);
                }
            }
        }
    }

    /// See `super::output_transform`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_transform(
        m: &[f32],
        at: usize,
        stride: usize,
        tiles: usize,
        bias: f32,
        out: &mut [f32],
    ) {
        // SAFETY: the caller's assertions bound every access.
        unsafe {
            let bv = _mm512_set1_ps(bias);
            let (two, four, eight) = (
                _mm512_set1_ps(2.0),
                _mm512_set1_ps(4.0),
                _mm512_set1_ps(8.0),
            );
            // 32-bit interleave of two vectors, lanes 0–7 and 8–15.
            let lo32 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi32 =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            // 64-bit interleave (pairs) of two vectors, lanes 0–3 and 4–7.
            let lo64 = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
            let hi64 = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
            let mp = m.as_ptr().add(at);
            let op = out.as_mut_ptr();
            for s0 in (0..tiles).step_by(LANES) {
                let src = mp.add(s0);
                let m0 = _mm512_loadu_ps(src);
                let m1 = _mm512_loadu_ps(src.add(stride));
                let m2 = _mm512_loadu_ps(src.add(2 * stride));
                let m3 = _mm512_loadu_ps(src.add(3 * stride));
                let m4 = _mm512_loadu_ps(src.add(4 * stride));
                let m5 = _mm512_loadu_ps(src.add(5 * stride));
                let (a, b) = (_mm512_add_ps(m1, m2), _mm512_sub_ps(m1, m2));
                let (c, d) = (_mm512_add_ps(m3, m4), _mm512_sub_ps(m3, m4));
                let y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m0, a), c), bv);
                let y1 = _mm512_add_ps(_mm512_fmadd_ps(two, d, b), bv);
                let y2 = _mm512_add_ps(_mm512_fmadd_ps(four, c, a), bv);
                let y3 = _mm512_add_ps(_mm512_add_ps(_mm512_fmadd_ps(eight, d, b), m5), bv);
                let p01l = _mm512_castps_pd(_mm512_permutex2var_ps(y0, lo32, y1));
                let p01h = _mm512_castps_pd(_mm512_permutex2var_ps(y0, hi32, y1));
                let p23l = _mm512_castps_pd(_mm512_permutex2var_ps(y2, lo32, y3));
                let p23h = _mm512_castps_pd(_mm512_permutex2var_ps(y2, hi32, y3));
                let dst = op.add(4 * s0);
                let outs = [
                    _mm512_permutex2var_pd(p01l, lo64, p23l),
                    _mm512_permutex2var_pd(p01l, hi64, p23l),
                    _mm512_permutex2var_pd(p01h, lo64, p23h),
                    _mm512_permutex2var_pd(p01h, hi64, p23h),
                ];
                for (k, o) in outs.into_iter().enumerate() {
                    _mm512_storeu_ps(dst.add(k * LANES), _mm512_castpd_ps(o));
                }
            }
        }
    }

    /// `dst[r·len ..][..len] = src[r·pitch ..][..len]` for `r < rows`, 16
    /// values per move, the last of a row masked.
    ///
    /// # Safety
    /// AVX-512F; every row readable at `src` and writable at `dst`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy_pitched(
        src: *const f32,
        pitch: usize,
        dst: *mut f32,
        len: usize,
        rows: usize,
    ) {
        // SAFETY: every access is masked to `len` values of a row.
        unsafe {
            for r in 0..rows {
                let (s, d) = (src.add(r * pitch), dst.add(r * len));
                let mut k = 0;
                while k < len {
                    let n = (len - k).min(LANES);
                    let m: __mmask16 = if n == LANES { 0xFFFF } else { (1u16 << n) - 1 };
                    _mm512_mask_storeu_ps(d.add(k), m, _mm512_maskz_loadu_ps(m, s.add(k)));
                    k += LANES;
                }
            }
        }
    }
}
