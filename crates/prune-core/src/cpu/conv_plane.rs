//! Convolutions over planes with fewer pixels than the kernel has taps — the
//! 2×2 and 1×1 maps of the last stages of VGG-like nets under a 3×3 kernel —
//! as one matrix product of the whole batch with the weights unrolled over
//! the plane.
//!
//! With `q = (qy, qx)` an input pixel and `p = (py, px)` an output pixel, the
//! kernel tap that joins them is
//!
//! ```text
//! t(q, p) = (qy − py·sh + ph, qx − px·sw + pw)      when it lies in kh × kw
//! ```
//!
//! (one group, so every input channel meets every output channel). With the
//! unrolled weights `U[(c, q), (co, p)] = w[co][c][t(q, p)]` (0 where no tap
//! joins `q` and `p`), and each image's `x[n]` read as the row `(c, q)` and
//! `y[n]` as the row `(co, p)` — exactly their NCHW order, so there is no
//! im2col —
//!
//! ```text
//! y  = x · U  (+ b[co] on every (co, p))
//! dx = dy · Uᵀ
//! dU = xᵀ · dy,    dw[co][c][t] = Σ_{(q, p): t(q, p) = t} dU[(c, q), (co, p)]
//! ```
//!
//! The product makes `H·W · Cin · Cout · OH·OW` multiply-adds per image
//! against `kh·kw · Cin · Cout · OH·OW` for the convolution as written (whose
//! im2col feeds the padded taps to the GEMM as zeros): fewer exactly when
//! `H·W < kh·kw`, 4 against 9 on a 2×2 map with a 3×3 kernel, and as a
//! single GEMM with the batch as its rows. `U` has `Cin·H·W × Cout·OH·OW`
//! values (16 MB for 512 channels on 2×2 maps), written once per call into a
//! per-thread scratch buffer (zeroed first only when some pixel pairs are
//! joined by no tap), straight in the layout the GEMM packs its right
//! operand into (`U` forward, `Uᵀ` for the input gradient), as is `dU`.

use super::conv::ConvGeom;
use super::conv_backward::plane_sums;
use super::gemm::{gemm_packed_b, sgemm, Operand, PackedBLayout};
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;

/// True when the layer runs as one product here: one group, fewer input
/// pixels than kernel taps, and a batch that pays for writing `U`.
///
/// Writing `U` costs about as much as 16 of the multiply-adds it saves per
/// value (a store to memory against vector FMAs on cached data), and the
/// product saves `N·(kh·kw − H·W)` multiply-adds per value of `U`, so the
/// batch must satisfy `N·(kh·kw − H·W) ≥ 16·H·W`: 13 images on a 2×2 map under
/// 3×3, 2 on a 1×1 map. (At batch 1 the 2×2 layers of VGG-like ran 1.3x
/// slower this way than through im2col.)
pub(crate) fn applies(g: &ConvGeom) -> bool {
    let c = &g.col;
    let (hw, taps) = (c.h * c.w, c.kh * c.kw);
    g.groups == 1 && hw < taps && g.n * (taps - hw) >= 16 * hw
}

/// Channels per block of the unrolling and of the fold.
const BLOCK: usize = 16;

/// Calls `f(q, p, tap)` for every input pixel `q`, output pixel `p` and the
/// kernel tap (flat, `ki·kw + kj`) joining them, in a fixed order.
fn pairs(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
    let c = &g.col;
    for py in 0..c.oh {
        for px in 0..c.ow {
            let p = py * c.ow + px;
            for ki in 0..c.kh {
                // qy = py·sh + ki − ph, when inside the plane
                let Some(qy) = (py * c.sh + ki).checked_sub(c.ph).filter(|&v| v < c.h) else {
                    continue;
                };
                for kj in 0..c.kw {
                    let Some(qx) = (px * c.sw + kj).checked_sub(c.pw).filter(|&v| v < c.w) else {
                        continue;
                    };
                    f(qy * c.w + qx, p, ki * c.kw + kj);
                }
            }
        }
    }
}

/// The `(q, p, tap)` triples of [`pairs`].
fn joins(g: &ConvGeom) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    pairs(g, |q, p, t| v.push((q, p, t)));
    v
}

/// Runs `f` on `U [Cin·H·W × Cout·OH·OW]` from `w [Cout, Cin, kh, kw]`
/// (or on `Uᵀ` with `transposed`), written straight into the GEMM's packed
/// layout for the right operand ([`PackedBLayout`]), so the product reads
/// it panel by panel instead of packing 16 MB per call (read in place, its
/// rows 8 KB apart, it ran at 115–140 GFLOP/s).
fn with_unrolled<R>(g: &ConvGeom, w: &[f32], transposed: bool, f: impl FnOnce(&[f32]) -> R) -> R {
    let c = &g.col;
    let (hw, ohw, taps) = (c.h * c.w, c.oh * c.ow, c.kh * c.kw);
    let (rows, cols) = (g.cin * hw, g.cout * ohw);
    let layout = if transposed {
        PackedBLayout::new(cols, rows)
    } else {
        PackedBLayout::new(rows, cols)
    };
    let joins = joins(g);
    with_scratch(Slot::Col, layout.len(), |u| {
        #[cfg(target_arch = "x86_64")]
        if let Some(lanes) = Lanes::new(g, &joins, transposed, &layout) {
            // SAFETY: AVX-512F was detected (`Lanes::new`).
            unsafe { lanes.fill(g, w, &layout, u) };
            return f(u);
        }
        // Offsets of the input side `(c, q)` and the output side `(co, p)`.
        let (inner, outer): (Vec<usize>, Vec<usize>) = if transposed {
            (
                (0..rows).map(|j| layout.col(j)).collect(),
                (0..cols).map(|p| layout.row(p)).collect(),
            )
        } else {
            (
                (0..rows).map(|p| layout.row(p)).collect(),
                (0..cols).map(|j| layout.col(j)).collect(),
            )
        };
        if joins.len() < hw * ohw || layout.padded() {
            u.par_iter_mut().for_each(|v| *v = 0.0);
        }
        let out = UPtr(u.as_mut_ptr());
        let last = inner.iter().max().unwrap_or(&0) + outer.iter().max().unwrap_or(&0);
        assert!(
            joins.is_empty() || last < u.len(),
            "unrolled weights past the buffer"
        );
        // Blocks of BLOCK input channels per task, BLOCK output channels at
        // a time: the block's weights (BLOCK² runs of `taps` values) stay in
        // cache while its values of `U` are written.
        (0..g.cin.div_ceil(BLOCK)).into_par_iter().for_each(|cb| {
            let ci0 = cb * BLOCK;
            for co0 in (0..g.cout).step_by(BLOCK) {
                for ci in ci0..(ci0 + BLOCK).min(g.cin) {
                    for co in co0..(co0 + BLOCK).min(g.cout) {
                        let wk = &w[(co * g.cin + ci) * taps..][..taps];
                        for &(q, p, t) in &joins {
                            let at = inner[ci * hw + q] + outer[co * ohw + p];
                            // SAFETY: inside `u` (asserted); the task owns
                            // input channels `ci0..ci0 + BLOCK`, whose
                            // values no other task writes.
                            unsafe { *out.get().add(at) = wk[t] };
                        }
                    }
                }
            }
        });
        f(u)
    })
}

/// Rows of the packed `U` per task of [`Lanes::fill`].
#[cfg(target_arch = "x86_64")]
const FILL_ROWS: usize = 32;

/// The packed `U` (or `Uᵀ`) written a panel row at a time by two 16-lane
/// gathers from `w`, for the AVX-512 micro-kernel's 32-column panels: a
/// panel row holds `32 / OH·OW` output channels' pixels for one input pixel
/// of one input channel (`Uᵀ`: `32 / H·W` input channels for one output
/// pixel), so its 32 indices into `w` are a per-pixel table plus a base for
/// the row and one for the panel; lanes joined by no tap, or past the last
/// channel, are zeros. Every value of every row is written, in contiguous
/// runs of 32, where the scalar loop wrote them one by one.
#[cfg(target_arch = "x86_64")]
struct Lanes {
    /// Per pixel of the row side: the 32 lanes' offsets and their mask.
    tables: Vec<([i32; 32], u32)>,
    /// Row-side pixels per channel and the stride of that channel in `w`.
    rdiv: usize,
    rstride: usize,
    /// Column-side pixels per channel and the stride of that channel.
    cdiv: usize,
    cstride: usize,
}

#[cfg(target_arch = "x86_64")]
impl Lanes {
    /// The tables for the AVX-512 kernel (32-column panels, a whole number
    /// of channels per panel, offsets that fit 32 bits); `None` otherwise.
    fn new(
        g: &ConvGeom,
        joins: &[(usize, usize, usize)],
        transposed: bool,
        layout: &PackedBLayout,
    ) -> Option<Self> {
        const NR: usize = 32;
        let c = &g.col;
        let (hw, ohw, taps) = (c.h * c.w, c.oh * c.ow, c.kh * c.kw);
        let (rdiv, rstride, cdiv, cstride) = if transposed {
            (ohw, g.cin * taps, hw, taps)
        } else {
            (hw, taps, ohw, g.cin * taps)
        };
        let avx512 = super::gemm_kernels::active_kernel().name == "avx512f";
        if !avx512
            || layout.nr() != NR
            || !NR.is_multiple_of(cdiv)
            || g.cout * g.cin * taps >= i32::MAX as usize
        {
            return None;
        }
        let mut tap = vec![None; hw * ohw];
        for &(q, p, t) in joins {
            tap[q * ohw + p] = Some(t);
        }
        let tables = (0..rdiv)
            .map(|b| {
                let mut idx = [0i32; 32];
                let mut mask = 0u32;
                for (jj, v) in idx.iter_mut().enumerate() {
                    let d = jj % cdiv;
                    let (q, p) = if transposed { (d, b) } else { (b, d) };
                    if let Some(t) = tap[q * ohw + p] {
                        *v = ((jj / cdiv) * cstride + t) as i32;
                        mask |= 1 << jj;
                    }
                }
                (idx, mask)
            })
            .collect();
        Some(Self {
            tables,
            rdiv,
            rstride,
            cdiv,
            cstride,
        })
    }

    /// Every row of the packed operand into `u`.
    ///
    /// # Safety
    /// AVX-512F (checked by [`Lanes::new`]).
    #[target_feature(enable = "avx512f")]
    unsafe fn fill(&self, g: &ConvGeom, w: &[f32], layout: &PackedBLayout, u: &mut [f32]) {
        use std::arch::x86_64::*;
        let (k, n) = (layout.k(), layout.n());
        let npanels = n.div_ceil(32);
        assert!(k == 0 || layout.row(k - 1) + layout.col(npanels * 32 - 1) < u.len());
        assert!(w.len() >= g.cout * g.cin * g.col.kh * g.col.kw);
        let out = UPtr(u.as_mut_ptr());
        let per_panel = 32 / self.cdiv;
        (0..k.div_ceil(FILL_ROWS)).into_par_iter().for_each(|task| {
            // SAFETY: AVX-512F (the caller's contract); each gather reads
            // `w` at offsets below `Cout·Cin·taps` (lanes past the last
            // channel are masked off); each store is a panel row of row
            // `r`, inside `u` (asserted), written by this task only.
            unsafe {
                for r in task * FILL_ROWS..((task + 1) * FILL_ROWS).min(k) {
                    let (a, b) = (r / self.rdiv, r % self.rdiv);
                    let (tbl, tmask) = &self.tables[b];
                    let lo = _mm512_loadu_si512(tbl.as_ptr().cast());
                    let hi = _mm512_loadu_si512(tbl[16..].as_ptr().cast());
                    let row = out.get().add(layout.row(r));
                    for jp in 0..npanels {
                        let base = (a * self.rstride + jp * per_panel * self.cstride) as i32;
                        let bv = _mm512_set1_epi32(base);
                        let valid = if (jp + 1) * 32 <= n {
                            u32::MAX
                        } else {
                            (1u32 << (n - jp * 32)) - 1
                        };
                        let m = tmask & valid;
                        let zero = _mm512_setzero_ps();
                        let v0 = _mm512_mask_i32gather_ps::<4>(
                            zero,
                            m as u16,
                            _mm512_add_epi32(lo, bv),
                            w.as_ptr().cast(),
                        );
                        let v1 = _mm512_mask_i32gather_ps::<4>(
                            zero,
                            (m >> 16) as u16,
                            _mm512_add_epi32(hi, bv),
                            w.as_ptr().cast(),
                        );
                        let dst = row.add(layout.col(jp * 32));
                        _mm512_storeu_ps(dst, v0);
                        _mm512_storeu_ps(dst.add(16), v1);
                    }
                }
            }
        });
    }
}

/// `U` as a raw pointer shared by tasks that write disjoint values.
#[derive(Clone, Copy)]
struct UPtr(*mut f32);
// SAFETY: tasks write disjoint values; the pointer outlives the parallel
// region (it borrows the scratch buffer held by the caller).
unsafe impl Send for UPtr {}
unsafe impl Sync for UPtr {}

impl UPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out = a · U` (`a` the batch's inputs `[N, Cin·H·W]`), or with
/// `transposed` `out = a · Uᵀ` (`a` the output gradients `[N, Cout·OH·OW]`).
fn unrolled_product(g: &ConvGeom, w: &[f32], transposed: bool, a: &[f32], out: &mut [f32]) {
    let (k, n) = if transposed {
        (g.img_out(), g.img_in())
    } else {
        (g.img_in(), g.img_out())
    };
    with_unrolled(g, w, transposed, |u| {
        let a = Operand {
            data: a,
            ld: k,
            trans: false,
        };
        gemm_packed_b(g.n, n, k, 1.0, a, u, out, n, true)
    });
}

/// `y [N, Cout, OH, OW] = conv(x) + b`: `x · U`, then the bias.
pub(crate) fn forward(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let cols = g.img_out();
    unrolled_product(g, w, false, x, y);
    if let Some(b) = bias {
        let ohw = g.col.cols();
        y.par_chunks_mut(cols).for_each(|yn| {
            for (plane, &bv) in yn.chunks_mut(ohw).zip(b) {
                plane.iter_mut().for_each(|v| *v += bv);
            }
        });
    }
}

/// The weight gradient into `dw`, the input gradient into `dx` when given,
/// and the per-image bias sums `[N × Cout]` into `sums`.
pub(crate) fn backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    dx: Option<&mut [f32]>,
    sums: &mut [f64],
) {
    let c = &g.col;
    let (k, cols) = (g.img_in(), g.img_out());
    let (hw, ohw, taps) = (c.h * c.w, c.oh * c.ow, c.kh * c.kw);
    if let Some(dx) = dx {
        unrolled_product(g, w, true, dy, dx);
    }
    // dU = xᵀ · dy, folded tap by tap into dw in a fixed order.
    let joins = joins(g);
    with_scratch(Slot::Col2, k * cols, |du| {
        sgemm(true, false, k, cols, g.n, 1.0, x, dy, 0.0, du);
        let du = &*du;
        // Blocks of BLOCK output channels per task: for each input channel
        // the block reads whole cache lines of its rows of `dU`. Every
        // `dw` value sums its joins in the order of [`pairs`].
        dw.par_chunks_mut(BLOCK * g.cin * taps)
            .enumerate()
            .for_each(|(cb, dwb)| {
                dwb.iter_mut().for_each(|v| *v = 0.0);
                for ci in 0..g.cin {
                    let rows = &du[ci * hw * cols..(ci + 1) * hw * cols];
                    for (i, dwo) in dwb.chunks_mut(g.cin * taps).enumerate() {
                        let co = cb * BLOCK + i;
                        let dwk = &mut dwo[ci * taps..][..taps];
                        for &(q, p, t) in &joins {
                            dwk[t] += rows[q * cols + co * ohw + p];
                        }
                    }
                }
            });
    });
    sums.par_chunks_mut(g.cout)
        .zip(dy.par_chunks(cols))
        .for_each(|(s, dyn_)| plane_sums(dyn_, s));
}
