//! The per-plane loops of pooling, written offset-major so they vectorise.
//!
//! For each output row, the loops run over the window offsets `(ki, kj)`
//! in row-major order and, innermost, over the output columns:
//!
//! ```text
//! for oh:  for ki:  for kj:  for ow in valid(kj):
//!     candidate x[oh·sh + ki − ph][ow·sw + kj − pw] for output (oh, ow)
//! ```
//!
//! Each output still sees its window's candidates in row-major order, so
//! max pooling keeps the first maximum, but the innermost loop is a
//! branch-free compare-and-select (or add) over a whole output row. The
//! loops are compiled twice, for AVX2 and for the baseline, and chosen at
//! run time.

use super::im2col::valid_range;

/// Geometry of one `(n, c)` plane.
#[derive(Clone, Debug)]
pub(crate) struct Plane {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    /// Per kernel column `kj`: output columns `lo..hi` that read inside the
    /// image, and the input column read by `lo`.
    cols: Vec<(usize, usize, usize)>,
}

/// Max-pooling order: larger wins, the first maximum is kept, NaN wins over
/// any number (so it propagates).
#[inline(always)]
fn better(v: f32, best: f32) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// One max-pooling row update: for `q < yrow.len()`, candidate
/// `xrow[first + q·sw]` (flat plane index `idx0 + q·sw`) replaces output `q`
/// when it is [`better`].
///
/// # Safety
/// `first + (yrow.len() − 1)·sw < xrow.len()`, `irow.len() == yrow.len()`,
/// and the implementation's CPU features must be present.
trait MaxRow {
    unsafe fn update(
        xrow: &[f32],
        first: usize,
        sw: usize,
        yrow: &mut [f32],
        irow: &mut [u32],
        idx0: u32,
    );
}

/// Portable row update.
struct ScalarMax;

impl MaxRow for ScalarMax {
    #[inline(always)]
    unsafe fn update(
        xrow: &[f32],
        first: usize,
        sw: usize,
        yrow: &mut [f32],
        irow: &mut [u32],
        idx0: u32,
    ) {
        for (q, (y, i)) in yrow.iter_mut().zip(irow.iter_mut()).enumerate() {
            let v = xrow[first + q * sw];
            // Select by bit masks rather than branching on random data.
            let m = (better(v, *y) as u32).wrapping_neg();
            *y = f32::from_bits((v.to_bits() & m) | (y.to_bits() & !m));
            *i = (idx0.wrapping_add((q * sw) as u32) & m) | (*i & !m);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_max {
    use super::MaxRow;
    use std::arch::x86_64::*;

    /// Eight outputs per step: gather (or load) the candidates, compare,
    /// and blend values and indices; the tail is masked.
    pub(super) struct Avx2;

    impl MaxRow for Avx2 {
        #[inline(always)]
        unsafe fn update(
            xrow: &[f32],
            first: usize,
            sw: usize,
            yrow: &mut [f32],
            irow: &mut [u32],
            idx0: u32,
        ) {
            let n = yrow.len();
            // SAFETY: every lane read or written is masked to q < n, whose
            // candidates lie inside `xrow` (caller contract); AVX2 present.
            unsafe {
                let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let step = _mm256_mullo_epi32(lane, _mm256_set1_epi32(sw as i32));
                let base = xrow.as_ptr().add(first);
                let (yp, ip) = (yrow.as_mut_ptr(), irow.as_mut_ptr() as *mut i32);
                let mut q = 0;
                while q < n {
                    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((n - q).min(8) as i32), lane);
                    let maskf = _mm256_castsi256_ps(mask);
                    let offs = _mm256_add_epi32(step, _mm256_set1_epi32((q * sw) as i32));
                    let v = if sw == 1 {
                        _mm256_maskload_ps(base.add(q), mask)
                    } else {
                        _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), base, offs, maskf)
                    };
                    let best = _mm256_maskload_ps(yp.add(q), mask);
                    let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
                    let v_nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
                    let best_num = _mm256_cmp_ps::<_CMP_ORD_Q>(best, best);
                    let take =
                        _mm256_and_ps(_mm256_or_ps(gt, _mm256_and_ps(v_nan, best_num)), maskf);
                    _mm256_maskstore_ps(yp.add(q), mask, _mm256_blendv_ps(best, v, take));
                    let old = _mm256_maskload_epi32(ip.add(q), mask);
                    let cand = _mm256_add_epi32(_mm256_set1_epi32(idx0 as i32), offs);
                    let idx = _mm256_blendv_epi8(old, cand, _mm256_castps_si256(take));
                    _mm256_maskstore_epi32(ip.add(q), mask, idx);
                    q += 8;
                }
            }
        }
    }
}

/// Runs `$body` through an AVX2-compiled copy when AVX2 is present.
macro_rules! with_avx2 {
    ($name:ident, ($($arg:ident: $ty:ty),*), $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $name($($arg: $ty),*) {
            $body
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was detected.
                unsafe { $name($($arg),*) };
                return;
            }
        }
        $body
    }};
}

impl Plane {
    /// Geometry for an `h × w` plane pooled to `oh × ow`.
    pub(crate) fn new(
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Self {
        let cols = (0..kernel.1)
            .map(|kj| {
                let (lo, hi) = valid_range(ow, stride.1, padding.1, kj, w);
                (lo, hi, (lo * stride.1 + kj).saturating_sub(padding.1))
            })
            .collect();
        Self {
            h,
            w,
            oh,
            ow,
            kernel,
            stride,
            padding,
            cols,
        }
    }

    /// Input row read by output row `oh` at kernel row `ki`, if inside.
    #[inline(always)]
    fn input_row(&self, oh: usize, ki: usize) -> Option<usize> {
        (oh * self.stride.0 + ki)
            .checked_sub(self.padding.0)
            .filter(|&r| r < self.h)
    }

    /// The candidates of kernel column `kj` in input row `xrow`: calls
    /// `f(output column, input column, value)` for each output column whose
    /// input column is inside the image.
    #[inline(always)]
    fn row_candidates(&self, xrow: &[f32], kj: usize, mut f: impl FnMut(usize, usize, f32)) {
        let (lo, hi, first) = self.cols[kj];
        if lo == hi {
            return;
        }
        let sw = self.stride.1;
        assert!(first + (hi - lo - 1) * sw < xrow.len() && hi <= self.ow);
        for q in 0..hi - lo {
            let c = first + q * sw;
            // SAFETY: c ≤ first + (hi − lo − 1)·sw < xrow.len() (asserted).
            f(lo + q, c, unsafe { *xrow.get_unchecked(c) });
        }
    }

    /// Max pooling of plane `xp` into `yp` with winner indices in `ip`.
    pub(crate) fn max(&self, xp: &[f32], yp: &mut [f32], ip: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if self.kernel == (2, 2) && self.stride == (2, 2) && self.padding == (0, 0) {
                return self.max_2x2(xp, yp, ip);
            }
            if std::arch::is_x86_feature_detected!("avx2") && self.w <= i32::MAX as usize {
                #[target_feature(enable = "avx2")]
                unsafe fn max_avx2(p: &Plane, xp: &[f32], yp: &mut [f32], ip: &mut [u32]) {
                    p.max_impl::<avx2_max::Avx2>(xp, yp, ip);
                }
                // SAFETY: AVX2 was detected; rows are shorter than 2³¹.
                unsafe { max_avx2(self, xp, yp, ip) };
                return;
            }
        }
        self.max_impl::<ScalarMax>(xp, yp, ip);
    }

    /// 2×2 windows with stride 2 and no padding (the common case), four
    /// windows at a time with SSE2: the two input rows are split into even
    /// and odd columns, and the four candidates of each window are compared
    /// in row-major order with branch-free selects.
    #[cfg(target_arch = "x86_64")]
    fn max_2x2(&self, xp: &[f32], yp: &mut [f32], ip: &mut [u32]) {
        use std::arch::x86_64::*;
        let (w, ow) = (self.w, self.ow);
        for oh in 0..self.oh {
            let r = 2 * oh;
            // Both input rows; 2·ow ≤ w, so every window lies inside.
            let (row0, row1) = (&xp[r * w..(r + 1) * w], &xp[(r + 1) * w..(r + 2) * w]);
            let yrow = &mut yp[oh * ow..(oh + 1) * ow];
            let irow = &mut ip[oh * ow..(oh + 1) * ow];
            let mut q = 0;
            while q + 4 <= ow {
                // SAFETY: columns 2q..2q+8 ≤ 2·ow ≤ w lie inside both rows;
                // outputs q..q+4 lie inside `yrow` and `irow`. SSE2 is part
                // of the x86_64 baseline.
                unsafe {
                    let split = |row: &[f32]| {
                        let lo = _mm_loadu_ps(row.as_ptr().add(2 * q));
                        let hi = _mm_loadu_ps(row.as_ptr().add(2 * q + 4));
                        (
                            _mm_shuffle_ps::<0b10_00_10_00>(lo, hi),
                            _mm_shuffle_ps::<0b11_01_11_01>(lo, hi),
                        )
                    };
                    let (a, b) = split(row0);
                    let (c, d) = split(row1);
                    let first = (r * w + 2 * q) as i32;
                    let base = _mm_add_epi32(_mm_set1_epi32(first), _mm_setr_epi32(0, 2, 4, 6));
                    let (mut best, mut arg) = (a, base);
                    for (v, off) in [(b, 1), (c, w as i32), (d, w as i32 + 1)] {
                        let take = _mm_or_ps(
                            _mm_cmpgt_ps(v, best),
                            _mm_and_ps(_mm_cmpunord_ps(v, v), _mm_cmpord_ps(best, best)),
                        );
                        best = _mm_or_ps(_mm_and_ps(take, v), _mm_andnot_ps(take, best));
                        let cand = _mm_add_epi32(base, _mm_set1_epi32(off));
                        let t = _mm_castps_si128(take);
                        arg = _mm_or_si128(_mm_and_si128(t, cand), _mm_andnot_si128(t, arg));
                    }
                    _mm_storeu_ps(yrow.as_mut_ptr().add(q), best);
                    _mm_storeu_si128(irow.as_mut_ptr().add(q) as *mut __m128i, arg);
                }
                q += 4;
            }
            for o in q..ow {
                let mut best = row0[2 * o];
                let mut arg = r * w + 2 * o;
                for (v, at) in [
                    (row0[2 * o + 1], arg + 1),
                    (row1[2 * o], arg + w),
                    (row1[2 * o + 1], arg + w + 1),
                ] {
                    if better(v, best) {
                        best = v;
                        arg = at;
                    }
                }
                yrow[o] = best;
                irow[o] = arg as u32;
            }
        }
    }

    #[inline(always)]
    fn max_impl<R: MaxRow>(&self, xp: &[f32], yp: &mut [f32], ip: &mut [u32]) {
        let (w, sw) = (self.w, self.stride.1);
        let kh = self.kernel.0;
        for oh in 0..self.oh {
            let yrow = &mut yp[oh * self.ow..(oh + 1) * self.ow];
            let irow = &mut ip[oh * self.ow..(oh + 1) * self.ow];
            yrow.fill(f32::NEG_INFINITY);
            // Start from the window's first in-image element, the winner
            // when every candidate is −∞.
            let r0 = (0..kh).find_map(|ki| self.input_row(oh, ki)).unwrap_or(0);
            for (ow, i) in irow.iter_mut().enumerate() {
                let c0 = (ow * sw).saturating_sub(self.padding.1).min(w - 1);
                *i = (r0 * w + c0) as u32;
            }
            for ki in 0..kh {
                let Some(r) = self.input_row(oh, ki) else {
                    continue;
                };
                let xrow = &xp[r * w..(r + 1) * w];
                for &(lo, hi, first) in &self.cols {
                    if lo == hi {
                        continue;
                    }
                    assert!(first + (hi - lo - 1) * sw < xrow.len());
                    // SAFETY: the candidates lie inside `xrow` (asserted);
                    // the CPU features of `R` are present (see `max`).
                    unsafe {
                        R::update(
                            xrow,
                            first,
                            sw,
                            &mut yrow[lo..hi],
                            &mut irow[lo..hi],
                            (r * w + first) as u32,
                        );
                    }
                }
            }
        }
    }

    /// Average pooling (`Σ window · scale`) of plane `xp` into `yp`.
    pub(crate) fn avg(&self, xp: &[f32], yp: &mut [f32], scale: f32) {
        let p = self;
        with_avx2!(avg_avx2, (p: &Plane, xp: &[f32], yp: &mut [f32], scale: f32), p.avg_impl(xp, yp, scale))
    }

    #[inline(always)]
    fn avg_impl(&self, xp: &[f32], yp: &mut [f32], scale: f32) {
        let w = self.w;
        let (kh, kw) = self.kernel;
        for oh in 0..self.oh {
            let yrow = &mut yp[oh * self.ow..(oh + 1) * self.ow];
            yrow.fill(0.0);
            for ki in 0..kh {
                let Some(r) = self.input_row(oh, ki) else {
                    continue;
                };
                let xrow = &xp[r * w..(r + 1) * w];
                for kj in 0..kw {
                    self.row_candidates(xrow, kj, |o, _, v| yrow[o] += v);
                }
            }
            yrow.iter_mut().for_each(|y| *y *= scale);
        }
    }

    /// Average-pooling gradient: adds `gp[o] · scale` to every input of
    /// window `o` in `dxp`.
    pub(crate) fn avg_backward(&self, gp: &[f32], dxp: &mut [f32], scale: f32) {
        let p = self;
        with_avx2!(
            avg_backward_avx2,
            (p: &Plane, gp: &[f32], dxp: &mut [f32], scale: f32),
            p.avg_backward_impl(gp, dxp, scale)
        )
    }

    #[inline(always)]
    fn avg_backward_impl(&self, gp: &[f32], dxp: &mut [f32], scale: f32) {
        let (w, sw) = (self.w, self.stride.1);
        let (kh, kw) = self.kernel;
        for oh in 0..self.oh {
            let grow = &gp[oh * self.ow..(oh + 1) * self.ow];
            for ki in 0..kh {
                let Some(r) = self.input_row(oh, ki) else {
                    continue;
                };
                let dxrow = &mut dxp[r * w..(r + 1) * w];
                for kj in 0..kw {
                    let (lo, hi, first) = self.cols[kj];
                    if lo == hi {
                        continue;
                    }
                    assert!(first + (hi - lo - 1) * sw < dxrow.len() && hi <= grow.len());
                    for q in 0..hi - lo {
                        // SAFETY: both indices were bounded by the assertion.
                        unsafe {
                            *dxrow.get_unchecked_mut(first + q * sw) +=
                                *grow.get_unchecked(lo + q) * scale;
                        }
                    }
                }
            }
        }
    }
}
