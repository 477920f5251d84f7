//! The row-wise transform's kernels (`conv_wino.rs`): the input transform
//! of a channel's tiles, its zero-padded plane built in registers from the
//! image values, and the output transform of a channel's products straight
//! into its output plane. They run as AVX-512 kernels only (the transform
//! is used only where those run); the scalar forms over a padded plane and
//! pitch-wide rows do the same operations in the same order and are the
//! tests' references, equal to the bit.

use super::conv_flat;
use super::conv_wino::XI;
use std::mem::MaybeUninit;

/// Tiles per vector (one lane per tile).
const LANES: usize = 16;

/// `V[ξ][s] = (Bᵀ·p[4s .. 4s + 6])[ξ]` for `s < tiles` into
/// `v[at + ξ·stride + s]`, from a padded plane `p`, by scalar operations in
/// the vector kernel's order (so the two agree to the bit).
#[cfg(test)]
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
/// `s < tiles` (the bias added last), by scalar operations in the vector
/// kernel's order.
#[cfg(test)]
fn output_transform_scalar(
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

/// Where one channel's image values lie in its zero-padded plane
/// (`pad.rs`: row `r` of the image at padded row `r + ph`, column `pw`,
/// rows `wp` apart), by vectors of 16 flattened positions: the lanes of
/// vector `k` that hold image values, and how many image values come
/// before it. Those values are consecutive in the image (a row's last is
/// followed by the next row's first), so each vector is one masked load
/// expanded into its lanes. Positions past the plane are zeros.
pub(crate) struct PadPlane {
    masks: Vec<u16>,
    before: Vec<u32>,
}

impl PadPlane {
    /// The first `nvec` vectors of the padded plane of an `h × w` image
    /// with padding `(ph, pw)` at pitch `wp`.
    pub(crate) fn new(h: usize, w: usize, ph: usize, pw: usize, wp: usize, nvec: usize) -> Self {
        assert!(pw + w <= wp);
        let (mut masks, mut before) = (Vec::with_capacity(nvec), Vec::with_capacity(nvec));
        let mut seen = 0u32;
        for k in 0..nvec {
            before.push(seen);
            let mut m = 0u16;
            for l in 0..LANES {
                let p = LANES * k + l;
                let (r, c) = (p / wp, p % wp);
                if (ph..ph + h).contains(&r) && (pw..pw + w).contains(&c) {
                    m |= 1 << l;
                }
            }
            seen += m.count_ones();
            masks.push(m);
        }
        Self { masks, before }
    }
}

/// `V[ξ][s] = (Bᵀ·p[4s .. 4s + 6])[ξ]` for `s < tiles` into
/// `v[at + ξ·stride + s]`, `p` one channel's zero-padded plane built from
/// its image values `x` as it goes (`pad`, with at least `tiles / 4 + 1`
/// vectors) without being written: every tile inside the plane gets the
/// values [`input_transform_scalar`] gives on the padded plane, bit for
/// bit; tiles reaching past the plane read zeros there. Vector kernel only
/// (the transform is used only where it runs).
pub(crate) fn input_transform_padded(
    x: &[f32],
    pad: &PadPlane,
    tiles: usize,
    v: &mut [f32],
    at: usize,
    stride: usize,
) {
    assert!(tiles.is_multiple_of(LANES) && pad.masks.len() > tiles / 4);
    assert!(v.len() >= at + (XI - 1) * stride + tiles);
    let used = pad.before[tiles / 4] as usize + pad.masks[tiles / 4].count_ones() as usize;
    assert!(x.len() >= used && conv_flat::vectorised());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F is available (asserted); the loads stop at the
    // `used ≤ x.len()` values the masks take, the stores as asserted.
    unsafe {
        avx512::input_transform_padded(x, pad, tiles, v, at, stride)
    };
}

/// Which of the 16 lanes of each vector of flattened positions lie inside
/// an output row: positions `p` at pitch `pitch` whose column `p % pitch`
/// is below `width`. Vector `j` (positions `16j .. 16j + 16`) takes
/// `masks[j % masks.len()]` (the pattern repeats every `pitch / gcd(pitch,
/// 16)` vectors).
pub(crate) struct RowMasks {
    pitch: usize,
    width: usize,
    masks: Vec<u16>,
}

impl RowMasks {
    /// The masks of rows `width ≤ pitch` values long at pitch `pitch`.
    pub(crate) fn new(pitch: usize, width: usize) -> Self {
        assert!(width <= pitch && pitch > 0);
        let period = pitch / gcd(pitch, LANES);
        let masks = (0..period)
            .map(|j| {
                (0..LANES)
                    .filter(|l| (LANES * j + l) % pitch < width)
                    .fold(0u16, |m, l| m | (1 << l))
            })
            .collect();
        Self {
            pitch,
            width,
            masks,
        }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The output transform of one channel straight into its plane `y`
/// (`rows × width` values, every one written): `y[r][c] = out[r·pitch + c]`
/// of the output transform's pitch-wide rows
/// (`out[4s + i] = Σ_ξ Aᵀ[i][ξ] · m[at + ξ·stride + s] + bias`), the
/// positions past `width` in each row dropped. Vector kernel only (the transform is used
/// only where it runs).
pub(crate) fn output_plane(
    m: &[f32],
    at: usize,
    stride: usize,
    tiles: usize,
    bias: f32,
    rows: &RowMasks,
    y: &mut [MaybeUninit<f32>],
) {
    let (pitch, width) = (rows.pitch, rows.width);
    let n = y.len() / width.max(1);
    assert!(y.len() == n * width && (n == 0 || (n - 1) * pitch + width <= 4 * tiles));
    assert!(tiles.is_multiple_of(LANES) && m.len() >= at + (XI - 1) * stride + tiles);
    assert!(conv_flat::vectorised());
    #[cfg(target_arch = "x86_64")]
    if !y.is_empty() {
        let yp = y.as_mut_ptr().cast();
        // SAFETY: AVX-512F is available (asserted); the assertions bound
        // every load, and the stores stop at `y.len()`.
        unsafe { avx512::output_plane(m, at, stride, tiles, bias, &rows.masks, yp, y.len()) };
    }
}

/// [`output_plane`] by scalar operations: the pitch-wide rows into
/// `spare` (at least `4·tiles` values), then each row's first `width`
/// values into `y`.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn output_plane_scalar(
    m: &[f32],
    at: usize,
    stride: usize,
    tiles: usize,
    bias: f32,
    rows: &RowMasks,
    y: &mut [MaybeUninit<f32>],
    spare: &mut [f32],
) {
    let (pitch, width) = (rows.pitch, rows.width);
    output_transform_scalar(m, at, stride, tiles, bias, spare);
    for (r, row) in y.chunks_mut(width.max(1)).enumerate() {
        for (d, s) in row.iter_mut().zip(&spare[r * pitch..r * pitch + width]) {
            d.write(*s);
        }
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
            deinterleave_regs::<4>([a, b, c, d])
        }
    }

    /// [`deinterleave`] of the 64 values in `v` (16 each), for `j < J`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn deinterleave_regs<const J: usize>(v: [__m512; 4]) -> [__m512; J] {
        let [a, b, c, d] = v;
        std::array::from_fn(|j| {
            // SAFETY: `IDX[j]` holds 16 indices.
            let idx = unsafe { _mm512_loadu_si512(IDX[j].as_ptr().cast()) };
            let lo = _mm512_permutex2var_ps(a, idx, b);
            let hi = _mm512_permutex2var_ps(c, idx, d);
            // lanes 0–7 of `lo`, then lanes 0–7 of `hi`
            _mm512_shuffle_f32x4::<0x44>(lo, hi)
        })
    }

    static IDX: [[i32; 16]; 4] = [
        deinterleave_index(0),
        deinterleave_index(1),
        deinterleave_index(2),
        deinterleave_index(3),
    ];

    /// `Bᵀ·d` of 16 tiles (`d[j]` the tiles' `j`-th values) into
    /// `vo[ξ·stride ..][..16]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile_points(d: [__m512; 6], vo: *mut f32, stride: usize) {
        // SAFETY: the caller guarantees 16 writable values at each
        // `vo + ξ·stride`.
        unsafe {
            let [d0, d1, d2, d3, d4, d5] = d;
            let (four, five, two) = (
                _mm512_set1_ps(4.0),
                _mm512_set1_ps(5.0),
                _mm512_set1_ps(2.0),
            );
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
                _mm512_storeu_ps(vo.add(xi * stride), o);
            }
        }
    }

    /// See `super::input_transform_padded`: vector `k` of the padded plane
    /// (positions `16k .. 16k + 16`) is the `pad.before[k]`-th image value
    /// on expanded into the lanes `pad.masks[k]`, zeros elsewhere; the
    /// values four positions on are the same vectors moved by four lanes.
    ///
    /// # Safety
    /// AVX-512F; `x` holds the plane's `h·w` values; `pad` has a vector
    /// beyond the last the tiles read; `v` holds `at + 5·stride + tiles`
    /// values.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_transform_padded(
        x: &[f32],
        pad: &super::PadPlane,
        tiles: usize,
        v: &mut [f32],
        at: usize,
        stride: usize,
    ) {
        // SAFETY: each load is masked to the image values the mask takes,
        // which lie in `x` (`PadPlane::new`); every store is inside `v`.
        unsafe {
            let xp = x.as_ptr();
            let vector = |k: usize| {
                let (m, at) = (pad.masks[k], pad.before[k] as usize);
                match m {
                    0 => _mm512_setzero_ps(),
                    0xFFFF => _mm512_loadu_ps(xp.add(at)),
                    _ => {
                        let n = m.count_ones();
                        let raw = _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, xp.add(at));
                        _mm512_maskz_expand_ps(m, raw)
                    }
                }
            };
            let vo = v.as_mut_ptr().add(at);
            let mut next = vector(0);
            for s0 in (0..tiles).step_by(LANES) {
                let k = s0 / 4;
                let q = [next, vector(k + 1), vector(k + 2), vector(k + 3)];
                next = vector(k + 4);
                let [d0, d1, d2, d3] = deinterleave_regs::<4>(q);
                let four_on = |a: __m512, b: __m512| {
                    _mm512_castsi512_ps(_mm512_alignr_epi32::<4>(
                        _mm512_castps_si512(b),
                        _mm512_castps_si512(a),
                    ))
                };
                let shifted = [
                    four_on(q[0], q[1]),
                    four_on(q[1], q[2]),
                    four_on(q[2], q[3]),
                    four_on(q[3], next),
                ];
                let [d4, d5] = deinterleave_regs::<2>(shifted);
                tile_points([d0, d1, d2, d3, d4, d5], vo.add(s0), stride);
            }
        }
    }

    /// The output transform of tiles `s0 .. s0 + 16` whose `M[ξ]` start at
    /// `src` (`stride` apart), plus the bias: positions `4·s0 .. 4·s0 + 64`
    /// in four vectors of 16 consecutive positions.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn transform_block(src: *const f32, stride: usize, bv: __m512) -> [__m512; 4] {
        // SAFETY: the caller guarantees 16 readable values at each
        // `src + ξ·stride`.
        unsafe {
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
            [
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01l, lo64, p23l)),
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01l, hi64, p23l)),
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01h, lo64, p23h)),
                _mm512_castpd_ps(_mm512_permutex2var_pd(p01h, hi64, p23h)),
            ]
        }
    }

    /// See `super::output_plane`: each vector of 16 positions is compressed
    /// to its lanes inside the rows (`masks[j]` for the `j`-th vector,
    /// repeating) and stored after the values before it, up to `total`.
    ///
    /// # Safety
    /// AVX-512F; `M[ξ]` readable for every tile; `total` values writable at
    /// `y`; `masks` not empty.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_plane(
        m: &[f32],
        at: usize,
        stride: usize,
        tiles: usize,
        bias: f32,
        masks: &[u16],
        y: *mut f32,
        total: usize,
    ) {
        // SAFETY: the caller's contract bounds every load; each store is
        // masked to the values left of `total`.
        unsafe {
            let bv = _mm512_set1_ps(bias);
            let mp = m.as_ptr().add(at);
            let (mut written, mut j) = (0, 0);
            for s0 in (0..tiles).step_by(LANES) {
                for o in transform_block(mp.add(s0), stride, bv) {
                    let mask = masks[j];
                    j = if j + 1 == masks.len() { 0 } else { j + 1 };
                    let n = (mask.count_ones() as usize).min(total - written);
                    let keep = ((1u32 << n) - 1) as u16;
                    // A vector starting a row needs no compress (the lanes
                    // it keeps are its first ones).
                    let o = if mask & mask.wrapping_add(1) == 0 {
                        o
                    } else {
                        _mm512_maskz_compress_ps(mask, o)
                    };
                    _mm512_mask_storeu_ps(y.add(written), keep, o);
                    written += n;
                    if written == total {
                        return;
                    }
                }
            }
        }
    }
}
