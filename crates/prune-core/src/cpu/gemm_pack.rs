//! Packing of GEMM operands into micro-panels.
//!
//! An `A` micro-panel holds `mr` rows of `op(A)` for `kc` depth steps,
//! depth-major: `panel[p·mr + i] = op(A)[i0 + i][p0 + p]`. A `B` micro-panel
//! holds `nr` columns of `op(B)`: `panel[p·nr + j] = op(B)[p0 + p][j0 + j]`,
//! zero-padded beyond the last column. Whenever the stored layout runs the
//! other way (`A` untransposed, `B` transposed) packing is a transpose,
//! done in 8×8 register tiles with AVX when available, else in 4×4 SSE
//! tiles.

/// A row-major matrix operand: `op(X)[r][c]` is `data[r·ld + c]`, or
/// `data[c·ld + r]` when `trans`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub ld: usize,
    pub trans: bool,
}

/// Packs rows `i0..i0+rows` and depth `p0..p0+kc` of `op(A)` into one
/// micro-panel of height `mr`. Rows `rows..mr` are left untouched: the
/// micro-kernel for a `rows`-row tile never reads them.
pub(crate) fn pack_a_panel(
    a: Operand,
    mr: usize,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    if a.trans {
        // op(A)[i][p] = A[p][i]: each depth step is a contiguous run of rows.
        for p in 0..kc {
            let src = &a.data[(p0 + p) * a.ld + i0..][..rows];
            dst[p * mr..p * mr + rows].copy_from_slice(src);
        }
    } else {
        transpose(&a.data[i0 * a.ld + p0..], a.ld, rows, kc, dst, mr);
    }
}

/// Packs depth `p0..p0+kc` and columns `j0..j0+cols` of `op(B)` into one
/// micro-panel of width `nr`, zero-padding columns `cols..nr`.
pub(crate) fn pack_b_panel(
    b: Operand,
    nr: usize,
    p0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
    dst: &mut [f32],
) {
    if b.trans {
        // op(B)[p][j] = B[j][p]: transpose `cols` stored rows.
        if cols < nr {
            // Zero the whole panel at once (one fill instead of a short
            // fill per row), then transpose over it.
            dst[..kc * nr].fill(0.0);
        }
        transpose(&b.data[j0 * b.ld + p0..], b.ld, cols, kc, dst, nr);
    } else {
        for p in 0..kc {
            let row = &mut dst[p * nr..(p + 1) * nr];
            row[..cols].copy_from_slice(&b.data[(p0 + p) * b.ld + j0..][..cols]);
            row[cols..].fill(0.0);
        }
    }
}

/// `dst[c·ldd + r] = src[r·lds + c]` for `r < rows`, `c < cols`.
pub(crate) fn transpose(
    src: &[f32],
    lds: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    ldd: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src.len() >= (rows - 1) * lds + cols && lds >= cols,
        "transpose: source too short"
    );
    assert!(
        dst.len() >= (cols - 1) * ldd + rows && ldd >= rows,
        "transpose: destination too short"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if rows >= 8 && cols >= 8 && std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX was detected; the bounds were asserted above and
            // every tile lies inside `rows × cols`.
            unsafe { avx::transpose_tiles(src.as_ptr(), lds, rows, cols, dst.as_mut_ptr(), ldd) };
            return;
        }
        if rows >= 4 && cols >= 4 {
            // SAFETY: SSE is part of the x86_64 baseline; bounds as above.
            unsafe { avx::transpose_tiles4(src.as_ptr(), lds, rows, cols, dst.as_mut_ptr(), ldd) };
            return;
        }
    }
    for r in 0..rows {
        for (c, &v) in src[r * lds..r * lds + cols].iter().enumerate() {
            dst[c * ldd + r] = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// Start offsets of `w`-wide tiles covering `0..len` (`len ≥ w`); the
    /// last tile is shifted left to end at `len`, overlapping its
    /// neighbour, and rewrites the same values.
    fn tile_starts(len: usize, w: usize) -> impl Iterator<Item = usize> {
        (0..len.div_ceil(w)).map(move |t| (t * w).min(len - w))
    }

    /// Transposes `rows × cols` (both ≥ 4) in 4×4 SSE tiles.
    ///
    /// # Safety
    /// As [`transpose_tiles`], with SSE (x86_64 baseline) instead of AVX.
    pub(super) unsafe fn transpose_tiles4(
        src: *const f32,
        lds: usize,
        rows: usize,
        cols: usize,
        dst: *mut f32,
        ldd: usize,
    ) {
        for c0 in tile_starts(cols, 4) {
            for r0 in tile_starts(rows, 4) {
                // SAFETY: the tile at (r0, c0) lies inside both matrices.
                unsafe {
                    let (s, d) = (src.add(r0 * lds + c0), dst.add(c0 * ldd + r0));
                    let r: [__m128; 4] = std::array::from_fn(|i| _mm_loadu_ps(s.add(i * lds)));
                    let t0 = _mm_unpacklo_ps(r[0], r[1]);
                    let t1 = _mm_unpacklo_ps(r[2], r[3]);
                    let t2 = _mm_unpackhi_ps(r[0], r[1]);
                    let t3 = _mm_unpackhi_ps(r[2], r[3]);
                    _mm_storeu_ps(d, _mm_movelh_ps(t0, t1));
                    _mm_storeu_ps(d.add(ldd), _mm_movehl_ps(t1, t0));
                    _mm_storeu_ps(d.add(2 * ldd), _mm_movelh_ps(t2, t3));
                    _mm_storeu_ps(d.add(3 * ldd), _mm_movehl_ps(t3, t2));
                }
            }
        }
    }

    /// Transposes `rows × cols` (both ≥ 8) in 8×8 tiles.
    ///
    /// # Safety
    /// AVX must be available; `src` must hold `rows` rows of `cols` values
    /// `lds` apart and `dst` `cols` rows of `rows` values `ldd` apart.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn transpose_tiles(
        src: *const f32,
        lds: usize,
        rows: usize,
        cols: usize,
        dst: *mut f32,
        ldd: usize,
    ) {
        for c0 in tile_starts(cols, 8) {
            for r0 in tile_starts(rows, 8) {
                // SAFETY: the tile at (r0, c0) lies inside both matrices.
                unsafe { tile8(src.add(r0 * lds + c0), lds, dst.add(c0 * ldd + r0), ldd) };
            }
        }
    }

    /// One 8×8 transpose: unpack pairs, shuffle quads, swap 128-bit halves.
    #[target_feature(enable = "avx")]
    unsafe fn tile8(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
        // SAFETY: caller guarantees 8 readable rows of 8 values.
        let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * lds)) });
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ];
        for (i, v) in out.iter().enumerate() {
            // SAFETY: caller guarantees 8 writable rows of 8 values.
            unsafe { _mm256_storeu_ps(dst.add(i * ldd), *v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_definition() {
        for &(rows, cols, lds, ldd) in &[
            (1usize, 1usize, 1usize, 1usize),
            (3, 5, 7, 4),
            (8, 8, 8, 8),
            (14, 256, 300, 14),
            (9, 17, 20, 32),
            (32, 13, 13, 32),
            (7, 40, 40, 7),
            (6, 37, 40, 14),
            (4, 4, 5, 4),
            (5, 9, 9, 6),
        ] {
            let src: Vec<f32> = (0..rows * lds).map(|v| v as f32).collect();
            let mut dst = vec![-1.0f32; cols * ldd];
            transpose(&src, lds, rows, cols, &mut dst, ldd);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * ldd + r],
                        src[r * lds + c],
                        "{rows}x{cols} at ({r},{c})"
                    );
                }
                for c in 0..cols {
                    for pad in rows..ldd {
                        assert_eq!(dst[c * ldd + pad], -1.0, "{rows}x{cols}: padding touched");
                    }
                }
            }
        }
    }
}
