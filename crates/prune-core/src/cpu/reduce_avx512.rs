//! AVX-512 forms of the reductions of `reduce.rs`, with the same lanes:
//! 32 partial sums per sum, element `i` of a full block of 32 to lane
//! `i mod 32` (lane `8k + l` is lane `l` of register `k`), the partial last
//! block one register of 8 at a time and then its last few elements into
//! the next register's first lanes (a masked addition: the other lanes are
//! left as they are), and the same tree for the total
//! (`reduce::lanes_total`). Each lane adds the same values in the same
//! order by the same IEEE operations as the portable form (no fused
//! multiply-add), so the results are the same to the bit; what changes is
//! that every step is one vector instruction, where the compiler's own
//! vectorisation of the portable loop mixed 8-, 4- and 1-lane pieces and
//! kept the partial sums in memory.

use super::reduce::{LANES, REGS, VEC};
use std::arch::x86_64::*;

/// `(Σ f(a, b, c).0, Σ f(a, b, c).1)` over equal-length slices, `f` taking
/// eight values of each slice and giving their two terms as f64 vectors;
/// without `TWO` only the first sum (the second is 0, and no addition is
/// spent on it: `x + 0.0` is not `x` for `x = −0.0`, so the compiler keeps
/// an addition of a zero term).
///
/// # Safety
/// AVX-512F must be available; `b` and `c` at least as long as `a`.
#[inline(always)]
unsafe fn sum_pairs<const TWO: bool>(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(__m256, __m256, __m256) -> (__m512d, __m512d),
) -> (f64, f64) {
    let n = a.len();
    debug_assert!(b.len() >= n && c.len() >= n);
    let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_ptr());
    // SAFETY: AVX-512F (the caller's contract); every load reads 8 values
    // at offsets below `n` (whole blocks and whole registers of the partial
    // block), or is masked to the last few values below `n`.
    unsafe {
        let mut acc0 = [_mm512_setzero_pd(); REGS];
        let mut acc1 = [_mm512_setzero_pd(); REGS];
        let step = |o: usize, acc0: &mut __m512d, acc1: &mut __m512d| {
            let (u, v) = f(
                _mm256_loadu_ps(pa.add(o)),
                _mm256_loadu_ps(pb.add(o)),
                _mm256_loadu_ps(pc.add(o)),
            );
            *acc0 = _mm512_add_pd(*acc0, u);
            if TWO {
                *acc1 = _mm512_add_pd(*acc1, v);
            }
        };
        let blocks = n / LANES;
        for blk in 0..blocks {
            for k in 0..REGS {
                step(blk * LANES + k * VEC, &mut acc0[k], &mut acc1[k]);
            }
        }
        let rest = n - blocks * LANES;
        let regs = rest / VEC;
        for k in 0..regs {
            step(blocks * LANES + k * VEC, &mut acc0[k], &mut acc1[k]);
        }
        let tail = rest - regs * VEC;
        if tail > 0 {
            // The last `tail < 8` values by masked loads (zeros in the other
            // lanes, nothing read past `n`): a copy into a zeroed buffer
            // read back as one vector stalled on store forwarding, twice
            // per plane of 196 or 49 values (14×14 and 7×7 maps).
            let o = blocks * LANES + regs * VEC;
            let load = |p: *const f32| {
                _mm512_castps512_ps256(_mm512_maskz_loadu_ps((1u16 << tail) - 1, p.add(o)))
            };
            let (u, v) = f(load(pa), load(pb), load(pc));
            let m: __mmask8 = (1u8 << tail) - 1;
            acc0[regs] = _mm512_mask_add_pd(acc0[regs], m, acc0[regs], u);
            if TWO {
                acc1[regs] = _mm512_mask_add_pd(acc1[regs], m, acc1[regs], v);
            }
        }
        (total(&acc0), if TWO { total(&acc1) } else { 0.0 })
    }
}

/// The lanes added as `reduce::lanes_total` adds them.
#[inline(always)]
unsafe fn total(acc: &[__m512d; REGS]) -> f64 {
    let mut r = [0.0f64; VEC];
    // SAFETY: AVX-512F (the caller's contract); `r` holds 8 values.
    unsafe {
        let s = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
        _mm512_storeu_pd(r.as_mut_ptr(), s);
    }
    let h: [f64; 4] = std::array::from_fn(|l| r[l] + r[l + 4]);
    (h[0] + h[2]) + (h[1] + h[3])
}

/// `reduce::sum`.
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sum(a: &[f32]) -> f64 {
    let zero = _mm512_setzero_pd();
    // SAFETY: AVX-512F (the caller's contract), one slice thrice.
    unsafe { sum_pairs::<false>(a, a, a, |u, _, _| (_mm512_cvtps_pd(u), zero)).0 }
}

/// `reduce::plane_moments`: the sum, then the centred squares.
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn plane_moments(p: &[f32]) -> (f64, f64) {
    let zero = _mm512_setzero_pd();
    // SAFETY: AVX-512F (the caller's contract), one slice thrice.
    unsafe {
        let s = sum_pairs::<false>(p, p, p, |u, _, _| (_mm512_cvtps_pd(u), zero)).0;
        let m = _mm512_set1_pd(s / p.len().max(1) as f64);
        let q = sum_pairs::<false>(p, p, p, |u, _, _| {
            let d = _mm512_sub_pd(_mm512_cvtps_pd(u), m);
            (_mm512_mul_pd(d, d), zero)
        });
        (s, q.0)
    }
}

/// `(Σ d, Σ d·(x − μ))` of eight values.
#[inline(always)]
unsafe fn grad_terms(d: __m256, x: __m256, mu: __m512d) -> (__m512d, __m512d) {
    // SAFETY: AVX-512F (the caller's contract).
    unsafe {
        let d = _mm512_cvtps_pd(d);
        (d, _mm512_mul_pd(d, _mm512_sub_pd(_mm512_cvtps_pd(x), mu)))
    }
}

/// `reduce::grad_sums`.
///
/// # Safety
/// AVX-512F must be available; `x` at least as long as `dy`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn grad_sums(dy: &[f32], x: &[f32], mu: f64) -> (f64, f64) {
    let mu = _mm512_set1_pd(mu);
    // SAFETY: AVX-512F and the lengths (the caller's contract).
    unsafe { sum_pairs::<true>(dy, x, x, |d, v, _| grad_terms(d, v, mu)) }
}

/// `reduce::masked_grad_sums`: `d = g·[x·a + c > 0]` formed in f32 as the
/// forward formed its output (multiply, then add, then compare).
///
/// # Safety
/// AVX-512F must be available; `x` at least as long as `g`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn masked_grad_sums(g: &[f32], x: &[f32], mu: f64, a: f32, c: f32) -> (f64, f64) {
    let mu = _mm512_set1_pd(mu);
    let (av, cv) = (_mm256_set1_ps(a), _mm256_set1_ps(c));
    // SAFETY: AVX-512F and the lengths (the caller's contract).
    unsafe {
        sum_pairs::<true>(g, x, x, |gg, v, _| {
            let pre = _mm256_add_ps(_mm256_mul_ps(v, av), cv);
            let on = _mm256_cmp_ps::<_CMP_GT_OQ>(pre, _mm256_setzero_ps());
            grad_terms(_mm256_and_ps(on, gg), v, mu)
        })
    }
}
