//! GEMM micro-kernels: one `MR × NR` tile of `C` per call.
//!
//! A micro-kernel computes, for a tile of `rows ≤ MR` rows and `cols ≤ NR`
//! columns,
//!
//! ```text
//! acc[i][j] = Σ_{p < kc} a[p·MR + i] · b[p·ldb + j]
//! C[i·ldc + j] = alpha · acc[i][j] + beta · C[i·ldc + j]   (C not read when beta == 0)
//! ```
//!
//! `a` is a packed micro-panel of `A` (column `p` of the panel is `MR`
//! contiguous values), and `b` points at `kc` rows of `NR` contiguous values
//! `ldb` apart (a packed micro-panel has `ldb == NR`). The accumulators live
//! in registers for the whole `kc` loop: per step the kernel loads one row
//! of `b` into vector registers, broadcasts each `a[p·MR + i]`, and issues
//! `rows · NR / lanes` fused multiply-adds.
//!
//! Three implementations are selected at run time:
//! * AVX-512F: `14 × 32` (28 zmm accumulators + 2 `b` registers + 1 broadcast);
//! * AVX2 + FMA: `6 × 16` (12 ymm accumulators);
//! * portable scalar: `4 × 8`.
//!
//! The row count is a const generic, so a tile with fewer rows than `MR`
//! (the bottom edge of `C`) runs a kernel specialised for exactly that many
//! rows instead of computing padding. Columns beyond `cols` are computed on
//! zero padding and masked out on store.

use std::sync::OnceLock;

/// Signature shared by every micro-kernel; see the module documentation.
///
/// # Safety
/// `a` must be readable for `kc · MR` values, `b` for `(kc - 1) · ldb + NR`
/// values, `C` writable (and readable when `beta != 0`) for `rows` rows of
/// `cols` values `ldc` apart, with `1 ≤ rows ≤ MR`, `cols ≤ NR`, and the
/// kernel's CPU features present.
pub(crate) type KernelFn = unsafe fn(
    rows: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
    cols: usize,
);

/// A micro-kernel and its tile shape.
#[derive(Debug)]
pub struct Kernel {
    /// Rows of `C` per tile (height of a packed `A` micro-panel).
    pub mr: usize,
    /// Columns of `C` per tile (width of a packed `B` micro-panel).
    pub nr: usize,
    /// Instruction set, for reports and benchmarks.
    pub name: &'static str,
    pub(crate) run: KernelFn,
}

static SCALAR: Kernel = Kernel {
    mr: scalar::MR,
    nr: scalar::NR,
    name: "scalar",
    run: scalar::run,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernel = Kernel {
    mr: avx2::MR,
    nr: avx2::NR,
    name: "avx2+fma",
    run: avx2::run,
};

#[cfg(target_arch = "x86_64")]
static AVX512: Kernel = Kernel {
    mr: avx512::MR,
    nr: avx512::NR,
    name: "avx512f",
    run: avx512::run,
};

/// Every kernel this CPU can run, fastest first.
pub fn available_kernels() -> Vec<&'static Kernel> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma")
        {
            out.push(&AVX512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            out.push(&AVX2);
        }
    }
    out.push(&SCALAR);
    out
}

/// The kernel used by [`sgemm`](super::sgemm): the fastest available one,
/// unless the environment variable `PRUNE_CPU_KERNEL` names another
/// available kernel (`avx512f`, `avx2+fma` or `scalar`; other values are
/// ignored).
pub fn active_kernel() -> &'static Kernel {
    static ACTIVE: OnceLock<&'static Kernel> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        let avail = available_kernels();
        let wanted = std::env::var("PRUNE_CPU_KERNEL").ok();
        wanted
            .and_then(|w| avail.iter().copied().find(|k| k.name == w))
            .unwrap_or(avail[0])
    })
}

/// Portable fallback: a `4 × 8` tile of plain `f32` arithmetic.
mod scalar {
    pub const MR: usize = 4;
    pub const NR: usize = 8;

    /// # Safety
    /// See [`super::KernelFn`].
    pub unsafe fn run(
        rows: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        cols: usize,
    ) {
        let mut acc = [[0.0f32; NR]; MR];
        for p in 0..kc {
            // SAFETY: the caller guarantees `a` holds `kc·MR` and `b` holds
            // `(kc-1)·ldb + NR` readable values.
            let (ap, bp) = unsafe { (a.add(p * MR), b.add(p * ldb)) };
            for i in 0..rows {
                let ai = unsafe { *ap.add(i) };
                for j in 0..NR {
                    acc[i][j] += ai * unsafe { *bp.add(j) };
                }
            }
        }
        for (i, acc_row) in acc.iter().enumerate().take(rows) {
            for (j, &v) in acc_row.iter().enumerate().take(cols) {
                // SAFETY: `C` is valid for `rows × cols` values `ldc` apart.
                let cij = unsafe { &mut *c.add(i * ldc + j) };
                *cij = if beta == 0.0 {
                    alpha * v
                } else {
                    alpha * v + beta * *cij
                };
            }
        }
    }
}

/// Generates the dispatch from a run-time row count to the const-generic tile.
macro_rules! dispatch_rows {
    ($rows:expr, $tile:ident, $args:tt, [$($m:literal),*]) => {
        match $rows {
            $($m => dispatch_rows!(@call $tile, $m, $args),)*
            _ => {}
        }
    };
    (@call $tile:ident, $m:literal, ($($arg:expr),*)) => {
        $tile::<$m>($($arg),*)
    };
}

/// AVX2 + FMA: a `6 × 16` tile in 12 ymm accumulators.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    pub const MR: usize = 6;
    pub const NR: usize = 16;

    /// # Safety
    /// See [`super::KernelFn`]; the CPU must support AVX2 and FMA.
    pub unsafe fn run(
        rows: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        cols: usize,
    ) {
        // SAFETY: forwarded caller contract.
        unsafe {
            dispatch_rows!(
                rows,
                tile,
                (kc, a, b, ldb, c, ldc, alpha, beta, cols),
                [1, 2, 3, 4, 5, 6]
            );
        }
    }

    /// Lane mask selecting the first `n` of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn lane_mask(n: usize) -> __m256i {
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), idx)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const M: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        cols: usize,
    ) {
        let mut lo = [_mm256_setzero_ps(); M];
        let mut hi = [_mm256_setzero_ps(); M];
        let (mut pa, mut pb) = (a, b);
        for _ in 0..kc {
            // SAFETY: caller contract (see `KernelFn`).
            unsafe {
                let b0 = _mm256_loadu_ps(pb);
                let b1 = _mm256_loadu_ps(pb.add(8));
                for i in 0..M {
                    let ai = _mm256_broadcast_ss(&*pa.add(i));
                    lo[i] = _mm256_fmadd_ps(ai, b0, lo[i]);
                    hi[i] = _mm256_fmadd_ps(ai, b1, hi[i]);
                }
                pa = pa.add(MR);
                pb = pb.add(ldb);
            }
        }
        let va = _mm256_set1_ps(alpha);
        let vb = _mm256_set1_ps(beta);
        let (m0, m1) = (lane_mask(cols), lane_mask(cols.saturating_sub(8)));
        for i in 0..M {
            let row = c.wrapping_add(i * ldc);
            let row_hi = row.wrapping_add(8);
            let mut r0 = _mm256_mul_ps(va, lo[i]);
            let mut r1 = _mm256_mul_ps(va, hi[i]);
            // SAFETY: masked lanes cover exactly the `cols` valid columns.
            unsafe {
                if cols == NR {
                    if beta != 0.0 {
                        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), r0);
                        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row_hi), r1);
                    }
                    _mm256_storeu_ps(row, r0);
                    _mm256_storeu_ps(row_hi, r1);
                } else {
                    if beta != 0.0 {
                        r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row, m0), r0);
                        r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row_hi, m1), r1);
                    }
                    _mm256_maskstore_ps(row, m0, r0);
                    _mm256_maskstore_ps(row_hi, m1, r1);
                }
            }
        }
    }
}

/// AVX-512F: a `14 × 32` tile in 28 zmm accumulators.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    pub const MR: usize = 14;
    pub const NR: usize = 32;

    /// # Safety
    /// See [`super::KernelFn`]; the CPU must support AVX-512F and FMA.
    pub unsafe fn run(
        rows: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        cols: usize,
    ) {
        // SAFETY: forwarded caller contract.
        unsafe {
            dispatch_rows!(
                rows,
                tile,
                (kc, a, b, ldb, c, ldc, alpha, beta, cols),
                [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
            );
        }
    }

    /// Bit mask selecting the first `n` of 16 lanes.
    fn lane_mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn tile<const M: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        cols: usize,
    ) {
        // Start fetching the C tile now; it is read after the k loop.
        for i in 0..M {
            let row = c.wrapping_add(i * ldc) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
        }
        let mut lo = [_mm512_setzero_ps(); M];
        let mut hi = [_mm512_setzero_ps(); M];
        let (mut pa, mut pb) = (a, b);
        for _ in 0..kc {
            // SAFETY: caller contract (see `KernelFn`).
            unsafe {
                let b0 = _mm512_loadu_ps(pb);
                let b1 = _mm512_loadu_ps(pb.add(16));
                for i in 0..M {
                    let ai = _mm512_set1_ps(*pa.add(i));
                    lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
                    hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
                }
                pa = pa.add(MR);
                pb = pb.add(ldb);
            }
        }
        let va = _mm512_set1_ps(alpha);
        let vb = _mm512_set1_ps(beta);
        let (m0, m1) = (lane_mask(cols), lane_mask(cols.saturating_sub(16)));
        for i in 0..M {
            let row = c.wrapping_add(i * ldc);
            let row_hi = row.wrapping_add(16);
            let mut r0 = _mm512_mul_ps(va, lo[i]);
            let mut r1 = _mm512_mul_ps(va, hi[i]);
            // SAFETY: masked lanes cover exactly the `cols` valid columns;
            // masked-off lanes are neither read nor written.
            unsafe {
                if beta != 0.0 {
                    r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), r0);
                    r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row_hi), r1);
                }
                _mm512_mask_storeu_ps(row, m0, r0);
                _mm512_mask_storeu_ps(row_hi, m1, r1);
            }
        }
    }
}
