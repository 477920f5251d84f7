//! im2col and its adjoint col2im for one image and one channel group.
//!
//! For an input `x[c][ih][iw]` (`c < cin`, `H × W`), a `kh × kw` kernel,
//! stride `(sh, sw)` and zero padding `(ph, pw)`, the column matrix has one
//! row per `(c, ki, kj)` and one column per output pixel `(oh, ow)`:
//!
//! ```text
//! col[(c·kh + ki)·kw + kj][oh·OW + ow] = x[c][oh·sh + ki − ph][ow·sw + kj − pw]   (0 outside)
//! ```
//!
//! so that a convolution is the product `W[cout × cin·kh·kw] · col`.
//! col2im is the transpose of this linear map: it scatters-adds each column
//! entry back to the input pixel it was read from.

/// A half-open index range `(lo, hi)`.
pub(crate) type Range = (usize, usize);

/// The index map shared by im2col and col2im.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Im2ColGeom {
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Im2ColGeom {
    /// Rows of the column matrix.
    pub(crate) fn rows(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    /// Columns of the column matrix (output pixels).
    pub(crate) fn cols(&self) -> usize {
        self.oh * self.ow
    }

    /// True when the column matrix equals the input itself
    /// (a 1×1 kernel, unit stride, no padding).
    pub(crate) fn is_identity(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Output columns `ow` whose input column `ow·sw + kj − pw` lies in
    /// `0..w`, as a half-open range.
    pub(crate) fn valid_ow(&self, kj: usize) -> (usize, usize) {
        valid_range(self.ow, self.sw, self.pw, kj, self.w)
    }

    /// [`valid_oh`](Self::valid_oh) for every kernel row and
    /// [`valid_ow`](Self::valid_ow) for every kernel column, computed once
    /// per call instead of once per matrix row (they divide by the stride).
    pub(crate) fn valid_ranges(&self) -> (Vec<Range>, Vec<Range>) {
        (
            (0..self.kh).map(|ki| self.valid_oh(ki)).collect(),
            (0..self.kw).map(|kj| self.valid_ow(kj)).collect(),
        )
    }

    /// Output rows `oh` whose input row `oh·sh + ki − ph` lies in `0..h`.
    pub(crate) fn valid_oh(&self, ki: usize) -> (usize, usize) {
        valid_range(self.oh, self.sh, self.ph, ki, self.h)
    }
}

/// Outputs `o < out` with `0 ≤ o·s + k − pad < len`, as a half-open range.
pub(crate) fn valid_range(
    out: usize,
    s: usize,
    pad: usize,
    k: usize,
    len: usize,
) -> (usize, usize) {
    // o·s + k − pad ≥ 0  ⇔  o ≥ ceil((pad − k) / s)
    let lo = if k >= pad { 0 } else { (pad - k).div_ceil(s) };
    // o·s + k − pad ≤ len − 1  ⇔  o ≤ (len − 1 + pad − k) / s
    let hi = if len + pad > k {
        ((len - 1 + pad - k) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Row primitives of the im2col loops, so that the same loops run with
/// explicit AVX2 moves (short rows would otherwise become `memcpy` and
/// `memset` calls) or portable code.
///
/// # Safety
/// Implementations may require CPU features; callers must only use an
/// implementation whose features are present.
trait RowOps {
    /// `d[i] = s[i]` for `i < n`; both ranges must be valid and disjoint.
    unsafe fn copy(d: *mut f32, s: *const f32, n: usize);
    /// `d[i] += s[i]` for `i < n`; both ranges must be valid and disjoint.
    unsafe fn add(d: *mut f32, s: *const f32, n: usize);
    /// `dst[i] = 0`.
    unsafe fn zero(dst: &mut [f32]);
    /// `d[i] = s[2·i]` for `i < n` (a stride-2 row); `d` must be valid for
    /// `n` values and `s` for `2·n − 1`, the two disjoint.
    unsafe fn copy_stride2(d: *mut f32, s: *const f32, n: usize) {
        for i in 0..n {
            // SAFETY: caller contract.
            unsafe { *d.add(i) = *s.add(2 * i) };
        }
    }
    /// `d[2·i] += s[i]` for `i < n`, the odd positions untouched; `d` must
    /// be valid for `2·n − 1` values and `s` for `n`, the two disjoint.
    unsafe fn add_stride2(d: *mut f32, s: *const f32, n: usize) {
        for i in 0..n {
            // SAFETY: caller contract.
            unsafe { *d.add(2 * i) += *s.add(i) };
        }
    }
}

/// Plain Rust loops.
struct Portable;

impl RowOps for Portable {
    unsafe fn copy(d: *mut f32, s: *const f32, n: usize) {
        // SAFETY: caller contract.
        unsafe { std::ptr::copy_nonoverlapping(s, d, n) };
    }
    unsafe fn add(d: *mut f32, s: *const f32, n: usize) {
        for i in 0..n {
            // SAFETY: caller contract.
            unsafe { *d.add(i) += *s.add(i) };
        }
    }
    unsafe fn zero(dst: &mut [f32]) {
        dst.fill(0.0);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2_rows {
    use std::arch::x86_64::*;

    /// 8-lane AVX2 moves; requires AVX2. Tails avoid masked stores (slow
    /// on AMD cores): a copy or fill of at least 8 values ends with an
    /// overlapping full vector, shorter ones and the tail of an add are
    /// scalar.
    pub(super) struct Avx2;

    impl super::RowOps for Avx2 {
        #[inline(always)]
        unsafe fn copy(d: *mut f32, s: *const f32, n: usize) {
            // SAFETY: every access lies in `0..n`, inside both ranges; AVX2
            // is present (trait contract).
            unsafe {
                if n < 8 {
                    for i in 0..n {
                        *d.add(i) = *s.add(i);
                    }
                    return;
                }
                let mut i = 0;
                while i + 8 <= n {
                    _mm256_storeu_ps(d.add(i), _mm256_loadu_ps(s.add(i)));
                    i += 8;
                }
                if i < n {
                    _mm256_storeu_ps(d.add(n - 8), _mm256_loadu_ps(s.add(n - 8)));
                }
            }
        }

        #[inline(always)]
        unsafe fn add(d: *mut f32, s: *const f32, n: usize) {
            let mut i = 0;
            // SAFETY: as in `copy`.
            unsafe {
                while i + 8 <= n {
                    let v = _mm256_add_ps(_mm256_loadu_ps(d.add(i)), _mm256_loadu_ps(s.add(i)));
                    _mm256_storeu_ps(d.add(i), v);
                    i += 8;
                }
                while i < n {
                    *d.add(i) += *s.add(i);
                    i += 1;
                }
            }
        }

        /// Eight outputs per step from two loads of sixteen values; the
        /// loop stops where the second load would pass `s[2·n − 2]`, one
        /// overlapping step covers what it can of the rest, and the last
        /// value is scalar.
        #[inline(always)]
        unsafe fn copy_stride2(d: *mut f32, s: *const f32, n: usize) {
            // SAFETY: a step at `i` reads `s[2i..2i+16]` and writes
            // `d[i..i+8]`, in bounds for `i + 9 ≤ n`; AVX2 is present
            // (trait contract).
            unsafe {
                #[inline(always)]
                unsafe fn step(d: *mut f32, s: *const f32, i: usize) {
                    // SAFETY: forwarded from `copy_stride2`.
                    unsafe {
                        let a = _mm256_loadu_ps(s.add(2 * i));
                        let b = _mm256_loadu_ps(s.add(2 * i + 8));
                        // [s0 s2 s8 s10 | s4 s6 s12 s14] → [s0 s2 s4 … s14]
                        let t = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                        let r = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(t));
                        _mm256_storeu_ps(d.add(i), _mm256_castpd_ps(r));
                    }
                }
                let mut i = 0;
                while i + 9 <= n {
                    step(d, s, i);
                    i += 8;
                }
                if i < n && n >= 9 {
                    step(d, s, n - 9);
                    i = n - 1;
                }
                for j in i..n {
                    *d.add(j) = *s.add(2 * j);
                }
            }
        }

        /// Eight inputs per step: the sums are blended into the even
        /// positions of sixteen destination values, the odd ones stored
        /// back unchanged; bounds as in `copy_stride2`.
        #[inline(always)]
        unsafe fn add_stride2(d: *mut f32, s: *const f32, n: usize) {
            // SAFETY: a step at `i` reads `s[i..i+8]` and reads and writes
            // `d[2i..2i+16]`, in bounds for `i + 9 ≤ n`.
            unsafe {
                let mut i = 0;
                while i + 9 <= n {
                    let v = _mm256_loadu_ps(s.add(i));
                    // [v0 v1 v2 v3 v4 v5 v6 v7] → [v0 _ v1 _ v2 _ v3 _], [v4 _ … v7 _]
                    let lo = _mm256_unpacklo_ps(v, v); // v0 v0 v1 v1 | v4 v4 v5 v5
                    let hi = _mm256_unpackhi_ps(v, v); // v2 v2 v3 v3 | v6 v6 v7 v7
                    let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
                    let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
                    for (k, w) in [first, second].into_iter().enumerate() {
                        let p = d.add(2 * i + 8 * k);
                        let old = _mm256_loadu_ps(p);
                        let sum = _mm256_add_ps(old, w);
                        _mm256_storeu_ps(p, _mm256_blend_ps::<0b0101_0101>(old, sum));
                    }
                    i += 8;
                }
                for j in i..n {
                    *d.add(2 * j) += *s.add(j);
                }
            }
        }

        #[inline(always)]
        unsafe fn zero(dst: &mut [f32]) {
            let n = dst.len();
            if n < 8 {
                dst.iter_mut().for_each(|v| *v = 0.0);
                return;
            }
            let d = dst.as_mut_ptr();
            // SAFETY: as in `copy`.
            unsafe {
                let z = _mm256_setzero_ps();
                let mut i = 0;
                while i + 8 <= n {
                    _mm256_storeu_ps(d.add(i), z);
                    i += 8;
                }
                if i < n {
                    _mm256_storeu_ps(d.add(n - 8), z);
                }
            }
        }
    }
}

/// Writes the column matrix of `x` (`cin × H × W`) into `col`
/// (`rows() × cols()`).
pub(crate) fn im2col(g: &Im2ColGeom, x: &[f32], col: &mut [f32]) {
    im2col_ld(g, x, col, g.cols());
}

/// [`im2col`] into a matrix whose rows are `ld ≥ cols()` values apart (so
/// several images can sit side by side in one wider matrix).
pub(crate) fn im2col_ld(g: &Im2ColGeom, x: &[f32], col: &mut [f32], ld: usize) {
    assert!(ld >= g.cols(), "im2col: row stride shorter than a row");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected.
            unsafe { im2col_avx2(g, x, col, ld) };
            return;
        }
    }
    // SAFETY: the portable row operations need no CPU features.
    unsafe { im2col_impl::<Portable>(g, x, col, ld) };
}

/// [`im2col_impl`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn im2col_avx2(g: &Im2ColGeom, x: &[f32], col: &mut [f32], ld: usize) {
    // SAFETY: AVX2 is enabled for this function.
    unsafe { im2col_impl::<avx2_rows::Avx2>(g, x, col, ld) };
}

/// # Safety
/// The CPU features of `R` must be present.
#[inline(always)]
unsafe fn im2col_impl<R: RowOps>(g: &Im2ColGeom, x: &[f32], col: &mut [f32], ld: usize) {
    let ncols = g.cols();
    let (oh_ranges, ow_ranges) = g.valid_ranges();
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for (ki, &(oh_lo, oh_hi)) in oh_ranges.iter().enumerate() {
            for (kj, &(lo, hi)) in ow_ranges.iter().enumerate() {
                let row = (c * g.kh + ki) * g.kw + kj;
                let dst = &mut col[row * ld..row * ld + ncols];
                // SAFETY (all `R` calls): forwarded caller contract.
                // Rows and columns that read padding are zero.
                unsafe {
                    R::zero(&mut dst[..oh_lo * g.ow]);
                    R::zero(&mut dst[oh_hi * g.ow..]);
                }
                if lo == hi {
                    unsafe { R::zero(&mut dst[oh_lo * g.ow..oh_hi * g.ow]) };
                    continue;
                }
                let first = lo * g.sw + kj - g.pw;
                if g.sw == 1 {
                    // Output rows oh_lo..oh_hi copy `hi − lo` values each
                    // from input rows `sh` apart.
                    let rows = oh_hi - oh_lo;
                    let (len, step) = (hi - lo, g.sh * g.w);
                    let s0 = (oh_lo * g.sh + ki - g.ph) * g.w + first;
                    let d0 = oh_lo * g.ow + lo;
                    if rows > 0 {
                        assert!(s0 + (rows - 1) * step + len <= plane.len());
                        assert!(d0 + (rows - 1) * g.ow + len <= dst.len());
                    }
                    let (sp, dp) = (plane.as_ptr(), dst.as_mut_ptr());
                    for r in 0..rows {
                        // SAFETY: the ranges were checked above; the
                        // features of `R` are the caller's contract.
                        unsafe { R::copy(dp.add(d0 + r * g.ow), sp.add(s0 + r * step), len) };
                    }
                } else if g.sw == 2 {
                    let len = hi - lo;
                    for oh in oh_lo..oh_hi {
                        let out = &mut dst[oh * g.ow + lo..oh * g.ow + hi];
                        let src = &plane[(oh * g.sh + ki - g.ph) * g.w + first..];
                        assert!(src.len() > 2 * (len - 1));
                        // SAFETY: `out` holds `len` values and `src` at
                        // least `2·len − 1`; features as above.
                        unsafe { R::copy_stride2(out.as_mut_ptr(), src.as_ptr(), len) };
                    }
                } else {
                    for oh in oh_lo..oh_hi {
                        let out = &mut dst[oh * g.ow + lo..oh * g.ow + hi];
                        let src = &plane[(oh * g.sh + ki - g.ph) * g.w + first..];
                        for (o, v) in out.iter_mut().zip(src.iter().step_by(g.sw)) {
                            *o = *v;
                        }
                    }
                }
                if lo > 0 || hi < g.ow {
                    for oh in oh_lo..oh_hi {
                        let out = &mut dst[oh * g.ow..(oh + 1) * g.ow];
                        // SAFETY: forwarded caller contract.
                        unsafe {
                            R::zero(&mut out[..lo]);
                            R::zero(&mut out[hi..]);
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column matrix `col` back into `dx` (`cin × H × W`): the adjoint
/// of [`im2col`]. `dx` is accumulated into, not overwritten.
pub(crate) fn col2im_add(g: &Im2ColGeom, col: &[f32], dx: &mut [f32]) {
    col2im_add_ld(g, col, dx, g.cols());
}

/// [`col2im_add`] from a matrix whose rows are `ld ≥ cols()` values apart
/// (one image's columns inside a wider matrix, see [`im2col_ld`]).
pub(crate) fn col2im_add_ld(g: &Im2ColGeom, col: &[f32], dx: &mut [f32], ld: usize) {
    assert!(ld >= g.cols(), "col2im: row stride shorter than a row");
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected.
            unsafe { col2im_add_avx2(g, col, dx, ld) };
            return;
        }
    }
    // SAFETY: the portable row operations need no CPU features.
    unsafe { col2im_add_impl::<Portable>(g, col, dx, ld) };
}

/// [`col2im_add_impl`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn col2im_add_avx2(g: &Im2ColGeom, col: &[f32], dx: &mut [f32], ld: usize) {
    // SAFETY: AVX2 is enabled for this function.
    unsafe { col2im_add_impl::<avx2_rows::Avx2>(g, col, dx, ld) };
}

/// # Safety
/// The CPU features of `R` must be present.
#[inline(always)]
unsafe fn col2im_add_impl<R: RowOps>(g: &Im2ColGeom, col: &[f32], dx: &mut [f32], ld: usize) {
    let ncols = g.cols();
    let (oh_ranges, ow_ranges) = g.valid_ranges();
    for c in 0..g.cin {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for (ki, &(oh_lo, oh_hi)) in oh_ranges.iter().enumerate() {
            for (kj, &(lo, hi)) in ow_ranges.iter().enumerate() {
                let row = (c * g.kh + ki) * g.kw + kj;
                let src = &col[row * ld..row * ld + ncols];
                if lo == hi {
                    continue;
                }
                let first = lo * g.sw + kj - g.pw;
                if g.sw == 1 {
                    let rows = oh_hi - oh_lo;
                    let (len, step) = (hi - lo, g.sh * g.w);
                    let d0 = (oh_lo * g.sh + ki - g.ph) * g.w + first;
                    let s0 = oh_lo * g.ow + lo;
                    if rows > 0 {
                        assert!(d0 + (rows - 1) * step + len <= plane.len());
                        assert!(s0 + (rows - 1) * g.ow + len <= src.len());
                    }
                    let (sp, dp) = (src.as_ptr(), plane.as_mut_ptr());
                    for r in 0..rows {
                        // SAFETY: the ranges were checked above; the
                        // features of `R` are the caller's contract.
                        unsafe { R::add(dp.add(d0 + r * step), sp.add(s0 + r * g.ow), len) };
                    }
                } else if g.sw == 2 {
                    let len = hi - lo;
                    for oh in oh_lo..oh_hi {
                        let vals = &src[oh * g.ow + lo..oh * g.ow + hi];
                        let dst = &mut plane[(oh * g.sh + ki - g.ph) * g.w + first..];
                        assert!(dst.len() > 2 * (len - 1));
                        // SAFETY: `vals` holds `len` values and `dst` at
                        // least `2·len − 1`; features as above.
                        unsafe { R::add_stride2(dst.as_mut_ptr(), vals.as_ptr(), len) };
                    }
                } else {
                    for oh in oh_lo..oh_hi {
                        let vals = &src[oh * g.ow + lo..oh * g.ow + hi];
                        let dst = &mut plane[(oh * g.sh + ki - g.ph) * g.w + first..];
                        for (d, v) in dst.iter_mut().step_by(g.sw).zip(vals) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_util::{rand_vec, rng};

    fn geoms() -> Vec<Im2ColGeom> {
        let mut out = Vec::new();
        for &(h, w, kh, kw, sh, sw, ph, pw) in &[
            (
                5usize, 7usize, 3usize, 3usize, 1usize, 1usize, 1usize, 1usize,
            ),
            (6, 5, 2, 3, 2, 1, 0, 2),
            (7, 7, 3, 1, 3, 2, 2, 0),
            (4, 4, 1, 1, 1, 1, 0, 0),
            (3, 8, 5, 5, 2, 3, 2, 2),
            (2, 2, 4, 4, 1, 1, 3, 3),
            // stride 2 on rows long enough for the vector copies
            (9, 40, 3, 3, 2, 2, 1, 1),
            (5, 30, 1, 1, 2, 2, 0, 0),
            (6, 35, 3, 3, 2, 2, 1, 1),
            (4, 19, 3, 3, 2, 2, 0, 1),
        ] {
            let oh = (h + 2 * ph - kh) / sh + 1;
            let ow = (w + 2 * pw - kw) / sw + 1;
            out.push(Im2ColGeom {
                cin: 2,
                h,
                w,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
                oh,
                ow,
            });
        }
        out
    }

    /// Direct definition of the column matrix.
    fn naive(g: &Im2ColGeom, x: &[f32]) -> Vec<f32> {
        let mut col = vec![0.0; g.rows() * g.cols()];
        for c in 0..g.cin {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    for oh in 0..g.oh {
                        for ow in 0..g.ow {
                            let ih = (oh * g.sh + ki) as isize - g.ph as isize;
                            let iw = (ow * g.sw + kj) as isize - g.pw as isize;
                            if ih >= 0 && iw >= 0 && (ih as usize) < g.h && (iw as usize) < g.w {
                                let row = (c * g.kh + ki) * g.kw + kj;
                                col[row * g.cols() + oh * g.ow + ow] =
                                    x[(c * g.h + ih as usize) * g.w + iw as usize];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn im2col_matches_definition() {
        let mut r = rng(1);
        for g in geoms() {
            let x = rand_vec(g.cin * g.h * g.w, &mut r);
            let mut col = vec![f32::NAN; g.rows() * g.cols()];
            im2col(&g, &x, &mut col);
            assert_eq!(col, naive(&g, &x), "{g:?}");
        }
    }

    #[test]
    fn portable_path_matches_dispatched_path() {
        let mut r = rng(3);
        for g in geoms() {
            let x = rand_vec(g.cin * g.h * g.w, &mut r);
            let mut fast = vec![f32::NAN; g.rows() * g.cols()];
            let mut portable = vec![f32::NAN; g.rows() * g.cols()];
            im2col(&g, &x, &mut fast);
            // SAFETY: the portable row operations need no CPU features.
            unsafe { im2col_impl::<Portable>(&g, &x, &mut portable, g.cols()) };
            assert_eq!(fast, portable, "{g:?}");
            let c = rand_vec(g.rows() * g.cols(), &mut r);
            let mut fast = x.clone();
            let mut portable = x.clone();
            col2im_add(&g, &c, &mut fast);
            // SAFETY: as above.
            unsafe { col2im_add_impl::<Portable>(&g, &c, &mut portable, g.cols()) };
            assert_eq!(fast, portable, "{g:?}");
        }
    }

    #[test]
    fn col2im_is_the_adjoint() {
        // <im2col(x), c> == <x, col2im(c)> for random x and c.
        let mut r = rng(2);
        for g in geoms() {
            let x = rand_vec(g.cin * g.h * g.w, &mut r);
            let c = rand_vec(g.rows() * g.cols(), &mut r);
            let mut col = vec![0.0; c.len()];
            im2col(&g, &x, &mut col);
            let mut back = vec![0.0; x.len()];
            col2im_add(&g, &c, &mut back);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rhs: f64 = x
                .iter()
                .zip(&back)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }
}
