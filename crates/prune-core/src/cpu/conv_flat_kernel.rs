//! The direct convolution's micro-kernel (`conv_flat.rs`): `C × PV`
//! vectors of outputs in registers over flattened planes, for every block
//! width up to [`CO_WIDE`], in AVX-512 and as portable loops with the same
//! summation order.

use super::conv_flat::{FlatGeom, CO_WIDE, LANES, PV};

/// True when the vector micro-kernel runs on this CPU (the scalar one is
/// kept for correctness elsewhere, never for speed).
pub(crate) fn vectorised() -> bool {
    !matches!(Kernel::detect(), Kernel::Scalar)
}

/// The micro-kernel variant for this CPU.
#[derive(Clone, Copy)]
pub(crate) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// AVX-512 when the GEMM runs its AVX-512 kernel (so forcing a slower
    /// GEMM kernel with `PRUNE_CPU_KERNEL` also forces this one), else scalar.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if super::gemm_kernels::active_kernel().name == "avx512f" {
                return Kernel::Avx512;
            }
        }
        Kernel::Scalar
    }

    /// `out[c][p] = Σ_{ci,tap} w[c][ci][tap] · P[ci][p + taps[tap]]` for
    /// `c < nco` and every position `p < npos` (`out` rows `npos` apart).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        self,
        g: &FlatGeom,
        p: &[f32],
        w: &[f32],
        taps: &[usize],
        nco: usize,
        out: &mut [f32],
        npos: usize,
    ) {
        self.run_planes(g.cin, g.hp_wp(), p, w, taps, nco, out, npos);
    }

    /// [`Kernel::run`] over `cin` planes `plane` values apart (the
    /// transformed planes of `conv_wino.rs`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_planes(
        self,
        cin: usize,
        plane: usize,
        p: &[f32],
        w: &[f32],
        taps: &[usize],
        nco: usize,
        out: &mut [f32],
        npos: usize,
    ) {
        let kk = taps.len();
        let wstride = cin * kk;
        assert!(cin > 0 && kk > 0 && nco > 0 && npos.is_multiple_of(LANES));
        assert!(w.len() >= nco * wstride);
        assert!(out.len() >= nco * npos);
        let last_tap = taps.iter().copied().max().unwrap_or(0);
        let last_read = (cin - 1) * plane + last_tap + npos;
        assert!(p.len() >= last_read);
        match self {
            Kernel::Scalar => scalar(cin, plane, p, w, wstride, taps, nco, out, npos),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX-512F was detected; every load and store is in
            // bounds by the assertions above (see `avx512::block`).
            Kernel::Avx512 => unsafe {
                avx512::all(cin, plane, p, w, wstride, taps, nco, out, npos)
            },
        }
    }
}

/// Portable loops with the same summation order as the vector kernel.
#[allow(clippy::too_many_arguments)]
fn scalar(
    cin: usize,
    plane: usize,
    p: &[f32],
    w: &[f32],
    wstride: usize,
    taps: &[usize],
    nco: usize,
    out: &mut [f32],
    npos: usize,
) {
    let kk = taps.len();
    for c in 0..nco {
        let o = &mut out[c * npos..(c + 1) * npos];
        o.fill(0.0);
        for ci in 0..cin {
            for (t, &off) in taps.iter().enumerate() {
                let wv = w[c * wstride + ci * kk + t];
                let src = &p[ci * plane + off..ci * plane + off + npos];
                for (d, s) in o.iter_mut().zip(src) {
                    *d = s.mul_add(wv, *d);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{CO_WIDE, LANES, PV};
    use std::arch::x86_64::*;

    /// All positions of `nco` output channels, in blocks of `PV` vectors.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn all(
        cin: usize,
        plane: usize,
        p: &[f32],
        w: &[f32],
        wstride: usize,
        taps: &[usize],
        nco: usize,
        out: &mut [f32],
        npos: usize,
    ) {
        // SAFETY: the caller upholds this function's contract.
        unsafe {
            let nvec = npos / LANES;
            let mut v = 0;
            while v < nvec {
                let nv = (nvec - v).min(PV);
                let a = Args {
                    cin,
                    plane,
                    p: p.as_ptr().add(v * LANES),
                    w: w.as_ptr(),
                    wstride,
                    taps,
                    out: out.as_mut_ptr().add(v * LANES),
                    npos,
                };
                match (nco, nv) {
                    (4, 5) => block::<4, 5>(&a),
                    (c, nv) => dispatch(c, nv, &a),
                }
                v += nv;
            }
            debug_assert!(nco <= CO_WIDE);
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch(nco: usize, nv: usize, a: &Args<'_>) {
        // SAFETY: the caller upholds this function's contract.
        unsafe {
            macro_rules! rows {
                ($c:literal) => {
                    match nv {
                        1 => block::<$c, 1>(a),
                        2 => block::<$c, 2>(a),
                        3 => block::<$c, 3>(a),
                        4 => block::<$c, 4>(a),
                        _ => block::<$c, 5>(a),
                    }
                };
            }
            match nco {
                1 => rows!(1),
                2 => rows!(2),
                3 => rows!(3),
                4 => rows!(4),
                _ => rows!(5),
            }
        }
    }

    struct Args<'a> {
        cin: usize,
        plane: usize,
        /// Padded planes, offset to the first position of the block.
        p: *const f32,
        /// Weights of the first output channel of the block.
        w: *const f32,
        wstride: usize,
        taps: &'a [usize],
        /// Output of the first channel, offset to the block.
        out: *mut f32,
        npos: usize,
    }

    /// `C` channels × `V` vectors of accumulators in registers; the sum runs
    /// over input channels, then taps, as in the scalar kernel.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const C: usize, const V: usize>(a: &Args<'_>) {
        // SAFETY: the caller upholds this function's contract.
        unsafe {
            let kk = a.taps.len();
            let mut acc = [[_mm512_setzero_ps(); V]; C];
            for ci in 0..a.cin {
                let pc = a.p.add(ci * a.plane);
                let wc = a.w.add(ci * kk);
                for (t, &off) in a.taps.iter().enumerate() {
                    let src = pc.add(off);
                    let mut xv = [_mm512_setzero_ps(); V];
                    for (v, x) in xv.iter_mut().enumerate() {
                        *x = _mm512_loadu_ps(src.add(v * LANES));
                    }
                    for (c, row) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*wc.add(c * a.wstride + t));
                        for (r, x) in row.iter_mut().zip(&xv) {
                            *r = _mm512_fmadd_ps(*x, wv, *r);
                        }
                    }
                }
            }
            for (c, row) in acc.iter().enumerate() {
                for (v, r) in row.iter().enumerate() {
                    _mm512_storeu_ps(a.out.add(c * a.npos + v * LANES), *r);
                }
            }
        }
    }
}
