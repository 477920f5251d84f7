//! AVX-512 pieces of the 2-D transform (`conv_wino2.rs`): the 1-D
//! transforms of six or four vectors (used along rows and columns by
//! `lanes.rs`) and the weight transform's gathered runs.

use super::XI;
use std::arch::x86_64::*;

/// `Bᵀ·(d0 … d5)` (the input transform of `conv_wino.rs`).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn input_points(d: [__m512; 6]) -> [__m512; 6] {
    let (four, five, two) = (
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
        _mm512_set1_ps(2.0),
    );
    let t0 = _mm512_fnmadd_ps(four, d[2], d[4]);
    let t1 = _mm512_fnmadd_ps(four, d[1], d[3]);
    let t2 = _mm512_sub_ps(d[4], d[2]);
    let t3 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
    [
        _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4])),
        _mm512_add_ps(t0, t1),
        _mm512_sub_ps(t0, t1),
        _mm512_add_ps(t2, t3),
        _mm512_sub_ps(t2, t3),
        _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5])),
    ]
}

/// `A·(y0 … y3)` (the gradient transform of `conv_wino_grad.rs`).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn gradient_points(y: [__m512; 4]) -> [__m512; 6] {
    let (two, four) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0));
    let (e, o) = (_mm512_add_ps(y[0], y[2]), _mm512_add_ps(y[1], y[3]));
    let (e4, o2) = (
        _mm512_fmadd_ps(four, y[2], y[0]),
        _mm512_fmadd_ps(four, y[3], y[1]),
    );
    [
        y[0],
        _mm512_add_ps(e, o),
        _mm512_sub_ps(e, o),
        _mm512_fmadd_ps(two, o2, e4),
        _mm512_fnmadd_ps(two, o2, e4),
        y[3],
    ]
}

/// `Aᵀ·(m0 … m5)` (the output transform of `conv_wino.rs`).
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn output_points(m: [__m512; 6]) -> [__m512; 4] {
    let (two, four, eight) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(8.0),
    );
    let (a, b) = (_mm512_add_ps(m[1], m[2]), _mm512_sub_ps(m[1], m[2]));
    let (c, d) = (_mm512_add_ps(m[3], m[4]), _mm512_sub_ps(m[3], m[4]));
    [
        _mm512_add_ps(_mm512_add_ps(m[0], a), c),
        _mm512_fmadd_ps(two, d, b),
        _mm512_fmadd_ps(four, c, a),
        _mm512_add_ps(_mm512_fmadd_ps(eight, d, b), m[5]),
    ]
}

/// `G·(a, b, c)` over 8 lanes of doubles, with the operations (and so the
/// roundings) of `conv_wino2::g6`: `(−(a + b + c))·S` as `(a + b + c)·(−S)`
/// (the same value: rounding is symmetric in sign).
#[target_feature(enable = "avx512f")]
#[inline]
fn g6_pd(a: __m512d, b: __m512d, c: __m512d) -> [__m512d; XI] {
    let q = _mm512_set1_pd(0.25);
    let s = _mm512_set1_pd(1.0 / 6.0);
    let ns = _mm512_set1_pd(-(1.0 / 6.0));
    let t = _mm512_set1_pd(1.0 / 12.0);
    let w = _mm512_set1_pd(1.0 / 24.0);
    let (aw, bt, cs) = (
        _mm512_mul_pd(a, w),
        _mm512_mul_pd(b, t),
        _mm512_mul_pd(c, s),
    );
    [
        _mm512_mul_pd(a, q),
        _mm512_mul_pd(_mm512_add_pd(_mm512_add_pd(a, b), c), ns),
        _mm512_mul_pd(_mm512_add_pd(_mm512_sub_pd(a, b), c), ns),
        _mm512_add_pd(_mm512_add_pd(aw, bt), cs),
        _mm512_add_pd(_mm512_sub_pd(aw, bt), cs),
        c,
    ]
}

/// The transformed weights of 16 consecutive channel pairs (`w` at their
/// first 3×3 kernel): `out[(ξ·6 + η)·pairs + l] = (G·k_l·Gᵀ)[ξ][η]` for
/// lane `l`, in double precision with the operations of
/// `conv_wino2::portable_run`, so the values are the same to the bit. The
/// kernels are gathered tap by tap (nine gathers) rather than written to
/// memory lane by lane and read back as vectors.
///
/// # Safety
/// AVX-512F; `w` readable for 144 values; `out + (35·pairs + 15)` writable.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn weight_run(w: *const f32, pairs: usize, out: *mut f32) {
    // SAFETY: the gathers read w[9l + i], l < 16, i < 9; the stores write
    // 16 values at each point's row, as the caller guarantees.
    unsafe {
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(9),
        );
        // k[i] = tap i of the 16 pairs, as two halves of 8 doubles.
        let mut k = [[_mm512_setzero_pd(); 2]; 9];
        for (i, ki) in k.iter_mut().enumerate() {
            let v = _mm512_i32gather_ps::<4>(
                _mm512_add_epi32(idx, _mm512_set1_epi32(i as i32)),
                w.cast(),
            );
            ki[0] = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            ki[1] = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(v),
            )));
        }
        for h in 0..2 {
            let cols = [
                g6_pd(k[0][h], k[3][h], k[6][h]),
                g6_pd(k[1][h], k[4][h], k[7][h]),
                g6_pd(k[2][h], k[5][h], k[8][h]),
            ];
            for xi in 0..XI {
                let row = g6_pd(cols[0][xi], cols[1][xi], cols[2][xi]);
                for (eta, v) in row.into_iter().enumerate() {
                    let dst = out.add((xi * XI + eta) * pairs + 8 * h);
                    _mm256_storeu_ps(dst, _mm512_cvtpd_ps(v));
                }
            }
        }
    }
}
