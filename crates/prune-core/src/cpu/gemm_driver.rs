//! The blocked GEMM loop nest: packing, cache blocking and the parallel
//! task grid around the micro-kernels.
//!
//! `C[m×n] = alpha · op(A) · op(B) + beta · C`, row-major, vectors along the
//! rows of `B` and `C` (the BLIS design transposed for row-major storage):
//!
//! ```text
//! pack op(B) into NR-column micro-panels, every k-block     (shared, parallel)
//! parallel over tasks = (range of MR-row panels) × (range of NR-column panels):
//!     for each k-block p0..p0+kc                             (kc ≤ KC = 384)
//!         pack the task's rows of op(A)[:, p0..] into MR-row micro-panels
//!         for each column chunk of ≤ NC = 256 columns
//!             for each A micro-panel ip                      (MR·kc, in L1)
//!                 for each B micro-panel jp in the chunk     (kc·NR, chunk in L2)
//!                     C[ip, jp] = alpha · A(ip) · B(jp) + beta' · C[ip, jp]
//! ```
//!
//! with `beta' = beta` for the first k-block and `1` afterwards. There are
//! only two parallel regions per call (packing `B`, then the tasks), and the
//! tasks are small enough for rayon to balance them across busy cores.
//! Every element of `C` is accumulated by exactly one task, k-blocks in
//! sequence and `p` ascending inside a block, so the result does not depend
//! on the number of threads or on scheduling.
//!
//! An untransposed `B` that is small (`k·n ≤ 64 Ki` values) or multiplied
//! by few rows (`m ≤ 256`) is read in place rather than packed; only a
//! partial last column panel is copied. A caller that builds `B` itself
//! (the unrolled weights of `conv_plane.rs`) can write it straight into
//! the packed layout ([`packed_b_len`], [`packed_b_row`] + [`packed_b_col`])
//! and skip the packing.

use super::gemm_kernels::Kernel;
use super::gemm_pack::{pack_a_panel, pack_b_panel, Operand};
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Depth of a k-block (rows of a `B` micro-panel, columns of an `A` one).
const KC: usize = 384;
/// Columns of `C` swept per `A` micro-panel (the `B` block kept in L2).
const NC: usize = 256;
/// `m·n·k` from which a call is split across the rayon pool (about 40 µs
/// on one core; below it, waking the pool costs more than it saves).
const PAR_MIN_WORK: usize = 1 << 21;
/// Values of `B` to pack from which the packing itself runs in parallel.
const PAR_MIN_PACK: usize = 1 << 17;
/// Largest `k·n` for which an untransposed `B` is always used in place.
const DIRECT_B_MAX: usize = 1 << 16;
/// Largest `m` for which an untransposed `B` of any size is used in place:
/// with few rows of `A` a packed `B` panel is reused too little to repay
/// the copy.
const DIRECT_B_MAX_M: usize = 256;
/// Tasks per rayon thread in the parallel grid.
const TASKS_PER_THREAD: usize = 8;

/// The `C` operand of [`drive`].
pub(crate) enum COut<'a> {
    /// `C ← alpha · op(A) · op(B) + beta · C`.
    Update(&'a mut [f32], f32),
    /// `C ← alpha · op(A) · op(B)` into memory of any prior content, none
    /// of it read (β = 0, where the micro-kernels only store): every
    /// element of the `m × n` block (rows `ldc` apart) is written.
    Overwrite(&'a mut [MaybeUninit<f32>]),
}

/// The `B` operand of [`drive`].
#[derive(Clone, Copy)]
pub(crate) enum BSource<'a> {
    /// `op(B)` in place, packed per call (or read in place, see the module
    /// doc).
    Raw(Operand<'a>),
    /// `op(B)` already packed for the micro-kernel's width: value `(p, j)`
    /// at `packed_b_row(p) + packed_b_col(j)`, zeros in the columns of the
    /// last panel past `n`.
    Packed(&'a [f32]),
}

/// Values of `op(B)` (`k × n`) packed for micro-kernel width `nr`: every
/// k-block holds `kcn` rows of every `nr`-column panel.
pub(crate) fn packed_b_len(nr: usize, k: usize, n: usize) -> usize {
    let (nb, kcn) = k_blocks(k);
    nb * n.div_ceil(nr) * kcn * nr
}

/// The part of a packed `B` offset given by row `p` (k-block `p / kcn`,
/// panel row `p % kcn`); the column adds [`packed_b_col`].
pub(crate) fn packed_b_row(nr: usize, k: usize, n: usize, p: usize) -> usize {
    let (_, kcn) = k_blocks(k);
    (p / kcn * n.div_ceil(nr) * kcn + p % kcn) * nr
}

/// The part of a packed `B` offset given by column `j` (panel `j / nr`,
/// lane `j % nr`).
pub(crate) fn packed_b_col(nr: usize, k: usize, j: usize) -> usize {
    let (_, kcn) = k_blocks(k);
    j / nr * kcn * nr + j % nr
}

/// `C` as a raw pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of `C`; the pointer outlives the
// parallel region (it borrows the caller's `C` slice).
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

impl CPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Splits `k` into `nb` blocks of at most `KC`, as equal as possible;
/// returns `(nb, nominal block depth)`.
pub(crate) fn k_blocks(k: usize) -> (usize, usize) {
    let nb = k.div_ceil(KC).max(1);
    (nb, k.div_ceil(nb))
}

/// Runs `f(t)` for `t in 0..n`, on the rayon pool when `parallel`.
fn for_each_task(n: usize, parallel: bool, f: impl Fn(usize) + Sync + Send) {
    if parallel && n > 1 {
        (0..n).into_par_iter().for_each(f);
    } else {
        (0..n).for_each(f);
    }
}

/// Values needed to pack an `m × k` left operand for a kernel with `mr` rows.
pub(crate) fn packed_a_len(mr: usize, m: usize, k: usize) -> usize {
    let (nb, kcn) = k_blocks(k);
    nb * m.div_ceil(mr) * mr * kcn
}

/// Packs `op(A)` (`m × k`) for every k-block into `dst`
/// (`packed_a_len` values): block `blk` starts at `blk·mpanels·mr·kcn` and
/// holds `mpanels` micro-panels of `mr·kc` values.
pub(crate) fn pack_a_all(mr: usize, a: Operand, m: usize, k: usize, dst: &mut [f32]) {
    let mpanels = m.div_ceil(mr);
    let (nb, kcn) = k_blocks(k);
    for blk in 0..nb {
        let p0 = blk * kcn;
        let kc = kcn.min(k - p0);
        let block = &mut dst[blk * mpanels * mr * kcn..][..mpanels * mr * kc];
        for (ip, panel) in block.chunks_mut(mr * kc).enumerate() {
            pack_a_panel(a, mr, ip * mr, mr.min(m - ip * mr), p0, kc, panel);
        }
    }
}

/// Where a task gets its `A` micro-panels.
#[derive(Clone, Copy)]
pub(crate) enum ASource<'a> {
    /// Packed per task and k-block from this operand.
    Raw(Operand<'a>),
    /// Already packed for every k-block by [`pack_a_all`].
    Packed(&'a [f32]),
}

/// The shape of one product.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// `C ← beta · C` (with `beta == 0` writing exact zeros, as BLAS does).
pub(crate) fn scale_c(m: usize, n: usize, beta: f32, c: &mut [f32], ldc: usize) {
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if beta == 0.0 {
            row.fill(0.0);
        } else if beta != 1.0 {
            row.iter_mut().for_each(|v| *v *= beta);
        }
    }
}

/// Task grid `(row tasks, column tasks)` over `mpanels × npanels` tiles.
fn grid(mpanels: usize, npanels: usize, threads: usize) -> (usize, usize) {
    if threads <= 1 {
        return (1, 1);
    }
    let target = TASKS_PER_THREAD * threads;
    let mt = mpanels.min(target);
    let nt = (target / mt).clamp(1, npanels);
    (mt, nt)
}

/// `C = alpha · op(A) · op(B) [+ beta · C]` (`C` rows `ldc` apart, see
/// [`COut`]) with the micro-kernel `kern`; multithreaded when `parallel`.
/// Dimensions must already agree with the slices.
pub(crate) fn drive(
    kern: &'static Kernel,
    d: Dims,
    alpha: f32,
    a: ASource,
    b: BSource,
    c: COut,
    ldc: usize,
    parallel: bool,
) {
    let Dims { m, n, k } = d;
    let (b, prepacked) = match b {
        BSource::Raw(op) => (op, None),
        BSource::Packed(p) => {
            assert!(
                p.len() >= packed_b_len(kern.nr, k, n),
                "gemm: packed B too short"
            );
            let none = Operand {
                data: &[],
                ld: 0,
                trans: false,
            };
            (none, Some(p))
        }
    };
    if m == 0 || n == 0 {
        return;
    }
    let (beta, c_len, c_ptr) = match c {
        COut::Update(c, beta) => {
            if k == 0 || alpha == 0.0 {
                scale_c(m, n, beta, c, ldc);
                return;
            }
            (beta, c.len(), c.as_mut_ptr())
        }
        COut::Overwrite(c) => {
            if k == 0 || alpha == 0.0 {
                for i in 0..m {
                    c[i * ldc..i * ldc + n].fill(MaybeUninit::new(0.0));
                }
                return;
            }
            // β = 0: the micro-kernels store into `C` without reading it.
            (0.0, c.len(), c.as_mut_ptr().cast::<f32>())
        }
    };
    assert!(c_len >= (m - 1) * ldc + n, "gemm: C too short");
    let parallel = parallel && rayon::current_num_threads() > 1 && m * n * k >= PAR_MIN_WORK;
    let (mr, nr) = (kern.mr, kern.nr);
    let (mpanels, npanels) = (m.div_ceil(mr), n.div_ceil(nr));
    let (nb, kcn) = k_blocks(k);
    // Full column panels of a small untransposed B are read in place.
    let full_direct =
        if prepacked.is_none() && !b.trans && (k * n <= DIRECT_B_MAX || m <= DIRECT_B_MAX_M) {
            n / nr
        } else {
            0
        };
    if full_direct > 0 {
        // The kernel reads in-place panels through raw pointers.
        assert!(
            b.data.len() >= (k - 1) * b.ld + full_direct * nr,
            "gemm: B too short"
        );
    }
    let packed_per_blk = npanels - full_direct;
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let cptr = CPtr(c_ptr);

    let pack_len = if prepacked.is_some() {
        0
    } else {
        nb * kcn * packed_per_blk * nr
    };
    with_scratch(Slot::PackB, pack_len, |bbuf| {
        // Packed B: k-block `blk` at `blk·kcn·packed_per_blk·nr`, panel q
        // (column panel full_direct + q) at `q·kc·nr` inside it.
        let pack = |(t, dst): (usize, &mut [f32])| {
            let (blk, q) = (t / packed_per_blk, t % packed_per_blk);
            let p0 = blk * kcn;
            let kc = kcn.min(k - p0);
            let jp = full_direct + q;
            pack_b_panel(
                b,
                nr,
                p0,
                kc,
                jp * nr,
                nr.min(n - jp * nr),
                &mut dst[..kc * nr],
            );
        };
        if prepacked.is_some() {
            // Written by the caller in this layout.
        } else if parallel && nb * packed_per_blk * kcn * nr >= PAR_MIN_PACK {
            bbuf.par_chunks_mut(kcn * nr)
                .take(nb * packed_per_blk)
                .enumerate()
                .with_min_len(2)
                .for_each(pack);
        } else {
            bbuf.chunks_mut(kcn * nr)
                .take(nb * packed_per_blk)
                .enumerate()
                .for_each(pack);
        }
        let bpack: &[f32] = prepacked.unwrap_or(bbuf);
        // The B micro-panel `jp` of k-block `blk`: pointer and row stride.
        let b_panel = |blk: usize, jp: usize| -> (*const f32, usize) {
            if jp < full_direct {
                (b.data[blk * kcn * b.ld + jp * nr..].as_ptr(), b.ld)
            } else {
                let off = (blk * packed_per_blk + jp - full_direct) * kcn * nr;
                (bpack[off..].as_ptr(), nr)
            }
        };

        let (mt, nt) = grid(mpanels, npanels, threads);
        let task = |t: usize| {
            let (ti, tj) = (t / nt, t % nt);
            let (ip0, ip1) = (ti * mpanels / mt, (ti + 1) * mpanels / mt);
            let (jp0, jp1) = (tj * npanels / nt, (tj + 1) * npanels / nt);
            let run_block = |blk: usize, apack: &[f32]| {
                let kc = kcn.min(k - blk * kcn);
                let beta_blk = if blk == 0 { beta } else { 1.0 };
                for jc in (jp0..jp1).step_by(NC / nr) {
                    for ip in ip0..ip1 {
                        let tile_rows = mr.min(m - ip * mr);
                        let ap = apack[(ip - ip0) * mr * kc..].as_ptr();
                        for jp in jc..(jc + NC / nr).min(jp1) {
                            let cols = nr.min(n - jp * nr);
                            let (bp, ldb) = b_panel(blk, jp);
                            let cp = cptr.get().wrapping_add(ip * mr * ldc + jp * nr);
                            // SAFETY: the A panel holds `kc·mr` values, the B
                            // panel `kc` rows of `nr` values `ldb` apart (an
                            // in-place panel lies inside `b`), and the C tile
                            // of `tile_rows × cols` lies inside `c`; tiles of
                            // different tasks are disjoint. The kernel's CPU
                            // features were detected when it was selected.
                            unsafe {
                                (kern.run)(
                                    tile_rows, kc, ap, bp, ldb, cp, ldc, alpha, beta_blk, cols,
                                );
                            }
                        }
                    }
                }
            };
            for blk in 0..nb {
                let p0 = blk * kcn;
                let kc = kcn.min(k - p0);
                match a {
                    ASource::Packed(pa) => {
                        let block = &pa[blk * mpanels * mr * kcn..];
                        run_block(blk, &block[ip0 * mr * kc..(ip1 * mr) * kc]);
                    }
                    ASource::Raw(op) => with_scratch(Slot::PackA, (ip1 - ip0) * mr * kc, |abuf| {
                        for (q, panel) in abuf.chunks_mut(mr * kc).enumerate() {
                            let i0 = (ip0 + q) * mr;
                            pack_a_panel(op, mr, i0, mr.min(m - i0), p0, kc, panel);
                        }
                        run_block(blk, abuf);
                    }),
                }
            }
        };
        for_each_task(mt * nt, threads > 1, task);
    });
}
