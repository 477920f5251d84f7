//! The 2-D transform with images in the vector lanes: the forward pass,
//! and the transformed input and output gradient of the weight gradient
//! (`grad.rs`, which takes [`Task::transform`] for both: `Bᵀ·d·B` of the
//! input's 6×6 patches, `A·dy·Aᵀ` of the gradient's 4×4 tiles).
//!
//! Sixteen images form a *lane set*: lane `l` of every vector holds image
//! `16s + l` at one position. The 6×6 patch of a tile is then 36 vectors
//! (one tile position of 16 images), its transform `Bᵀ·d·B` plain vector
//! arithmetic, and the products' 16 consecutive tiles one tile position of
//! the set. Values enter the lanes by 16 × 16 transposes and leave them
//! the same way: the rows a band reads (or writes) of one channel lie end
//! to end in each image's plane, so 16 consecutive values of 16 images
//! become 16 column vectors whatever the row width (a 7×7 plane takes 4
//! transposes, not one per row), and every load and store of the
//! transforms is a whole vector: no permutation packs tiles, no scatter
//! writes the output, and no lane holds a tile outside the plane. Row by
//! row, 7-wide planes took 2–6 % longer forward and 3–5 % backward.
//!
//! ## One task
//!
//! A task is a band of tile rows `tr0..tr1` of one lane set, or whole
//! planes of several lane sets (small planes), sized so that its
//! transformed input (`36·Cin` values per tile) stays near
//! [`TASK_BYTES`] and its products run over at least [`MIN_TILES`] tiles.
//! Per input channel, the image rows the band reads (`4·band + 2` padded
//! rows) are transposed into column vectors, zeros around the image, and
//! each padded row transformed
//! along the row per tile column (`H[row][tc][η] = (d[row][4tc ..][..6]·B)[η]`);
//! each tile's six rows of `H` are transformed along the column
//! (`V[ξη] = Bᵀ·H[4tr ..][tc][η]`). The products `M[ξη] = U[ξη]·V[ξη]` are
//! `conv_flat.rs`'s micro-kernel with a single tap, as in the weight
//! gradient; per output channel `Aᵀ·M·A` (over ξ, then η) plus the bias
//! gives 16 vectors per tile position, written into the band's outputs in
//! the lanes' layout and transposed back into each image's plane, where
//! `post` runs on the band's rows.
//!
//! Every output is one fixed sequence of operations whatever the task
//! boundaries and thread count: results are identical across threads and
//! batch sizes (an image alone gives the values it gets in a batch).

use super::super::conv::{assume_written, PostFn};
use super::super::conv_flat::{self, Kernel, OutPtr};
use super::super::scratch::{with_scratch, Slot};
use super::avx512::{gradient_points, input_points, output_points};
use super::{SyncPtr, Wino2, LANES, MIN_TILES, PLANE_TASK, PTS, ROW_PAD, XI};
use rayon::prelude::*;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Transformed input per task the tiling aims at (bytes): the products
/// read it once per point and chunk of channels from the level-2 cache.
const TASK_BYTES: usize = 1 << 20;

/// Micro-kernel blocks (of up to four channels) whose products are held at
/// once, `36·16·npos` values beside the transformed input in the level-2
/// cache, where the transformed input fits in [`TASK_BYTES`]. A larger one
/// (many input channels on small planes) is read once for all channels:
/// read per chunk it would come from memory each time (VGG-like's
/// 512-channel 4×4 layers took 1.2–1.4x as long).
const CHUNK_BLOCKS: usize = 4;

/// Lane sets and tile rows of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tiling {
    /// Lane sets per task (more than one only with whole planes).
    pub(crate) sets: usize,
    /// Tile rows per task.
    pub(crate) band: usize,
}

impl Tiling {
    /// The tiling of a batch of `n` images: bands of tile rows holding
    /// about [`TASK_BYTES`] of transformed input, or whole planes of up to
    /// as many lane sets as that size holds (at least one), with the
    /// number of tasks a multiple of the thread count (all threads busy
    /// to the end when the sets are few: 8 sets of 7×7 planes in tasks of
    /// 3, 3 and 2 left one thread idle for a third of the layer) unless
    /// that leaves a task fewer than [`MIN_TILES`] tiles; a single task
    /// then splits its channels across threads.
    pub(crate) fn new(wg: &Wino2, n: usize) -> Self {
        let per_row = wg.tw * LANES;
        let whole = wg.th * per_row;
        let target = (TASK_BYTES / (PTS * wg.g.cin.max(1) * 4)).max(MIN_TILES);
        if whole >= target {
            Self {
                sets: 1,
                band: wg.band((target / per_row).max(1)),
            }
        } else {
            let nsets = n.div_ceil(LANES).max(1);
            let mut tasks = nsets.div_ceil((target / whole).max(1));
            let balanced = tasks.next_multiple_of(rayon::current_num_threads().max(1));
            if nsets.div_ceil(balanced) * whole >= MIN_TILES {
                tasks = balanced;
            }
            Self {
                sets: nsets.div_ceil(tasks).max(1),
                band: wg.th,
            }
        }
    }
}

/// See `conv_wino2::forward_post`; `u` holds the transformed weights.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_post(
    wg: &Wino2,
    n: usize,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
) {
    let g = &wg.g;
    assert!(x.len() >= n * g.cin * g.h * g.w && y.len() >= n * g.cout * wg.oh * wg.ow);
    assert!(u.len() >= PTS * g.cout * g.cin);
    let t = Tiling::new(wg, n);
    let nsets = n.div_ceil(LANES);
    let tasks: Vec<(usize, usize, usize, usize)> = (0..nsets)
        .step_by(t.sets)
        .flat_map(|s0| {
            (0..wg.th)
                .step_by(t.band)
                .map(move |r0| (s0, (s0 + t.sets).min(nsets), r0, (r0 + t.band).min(wg.th)))
        })
        .collect();
    // Fewer tasks than threads (a large layer on few images): each task
    // splits its channels across threads instead.
    let split = tasks.len() < rayon::current_num_threads();
    let out = OutPtr(y.as_mut_ptr());
    let run = |&(s0, s1, r0, r1): &(usize, usize, usize, usize)| {
        let task = Task {
            wg,
            n,
            sets: (s0, s1),
            rows: (r0, r1),
        };
        // SAFETY: the tasks cover disjoint output rows (their own lane
        // sets' images, their own tile rows), inside `y` (asserted).
        unsafe { task.run(x, u, bias, out, post, split) };
    };
    if tasks.len() > 1 {
        tasks.par_iter().for_each(run);
    } else {
        tasks.iter().for_each(run);
    }
}

/// Lane sets `sets.0..sets.1` and tile rows `rows.0..rows.1` of a batch of
/// `n` images.
pub(super) struct Task<'a> {
    pub(super) wg: &'a Wino2,
    pub(super) n: usize,
    pub(super) sets: (usize, usize),
    pub(super) rows: (usize, usize),
}

impl Task<'_> {
    /// Tile positions per lane set.
    fn per_set(&self) -> usize {
        (self.rows.1 - self.rows.0) * self.wg.tw
    }

    /// Tiles of the task: its products' positions, `V`'s row length.
    pub(super) fn npos(&self) -> usize {
        (self.sets.1 - self.sets.0) * self.per_set() * LANES
    }

    /// Images of lane set `s`.
    fn images(&self, s: usize) -> usize {
        (self.n - s * LANES).min(LANES)
    }

    /// Transformed input, products and outputs of the task.
    ///
    /// # Safety
    /// AVX-512F; `y` holds the batch's output and no other thread touches
    /// this task's rows.
    #[allow(clippy::too_many_arguments)]
    unsafe fn run(
        &self,
        x: &[f32],
        u: &[f32],
        bias: Option<&[f32]>,
        y: OutPtr,
        post: &PostFn,
        split: bool,
    ) {
        let g = &self.wg.g;
        let cs = self.npos() + ROW_PAD;
        with_scratch(Slot::Transform, PTS * g.cin * cs, |v| {
            let vp = SyncPtr(v.as_mut_ptr());
            // SAFETY: `v` holds every channel's rows; each block writes its
            // own channels' rows only.
            let block =
                |c0: usize, c1: usize| unsafe { self.transform::<false>(x, c0, c1, cs, vp) };
            if split && g.cin >= 2 * PLANE_TASK {
                (0..g.cin.div_ceil(PLANE_TASK))
                    .into_par_iter()
                    .for_each(|b| block(b * PLANE_TASK, ((b + 1) * PLANE_TASK).min(g.cin)));
            } else {
                block(0, g.cin);
            }
            let v = &*v;
            // SAFETY: each range writes its own channels' rows of the task.
            let range = |&(co0, co1): &(usize, usize)| unsafe {
                self.outputs(u, v, co0, co1, bias, y, post)
            };
            if split {
                let blocks = conv_flat::channel_blocks(g.cout);
                let per = blocks.len().div_ceil(rayon::current_num_threads());
                let ranges: Vec<(usize, usize)> = blocks
                    .chunks(per)
                    .map(|b| (b[0].0, b[b.len() - 1].1))
                    .collect();
                ranges.par_iter().for_each(range);
            } else {
                range(&(0, g.cout));
            }
        });
    }

    /// Channels `c0..c1` of the planes `src` (the batch's input `x`, or with
    /// `GRAD` its output gradient `dy`) into `out[(ξη·ch + c)·cs + t]`,
    /// `ch` the planes' channel count and tile `t` of lane set `s`, tile
    /// row `tr`, column `tc` at `16·(((s − s0)·band + tr − tr0)·TW + tc)`
    /// plus the lane. The input's 6×6 patches of the zero-padded plane
    /// take `Bᵀ·d·B`; the gradient's 4×4 tiles (zeros beyond the plane)
    /// take `A·dy·Aᵀ`; along the rows first, then the columns, as
    /// `conv_wino.rs` and `conv_wino_grad.rs` apply them.
    ///
    /// # Safety
    /// AVX-512F; `out` holds `36·ch·cs` values (`cs ≥ npos`) and no other
    /// thread writes channels `c0..c1` of it.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transform<const GRAD: bool>(
        &self,
        src: &[f32],
        c0: usize,
        c1: usize,
        cs: usize,
        out: SyncPtr,
    ) {
        let wg = self.wg;
        let g = &wg.g;
        // Rows and columns a tile reads: 6 of the padded input, 4 of dy.
        let (ch, h, w, ph, pw, span) = if GRAD {
            (g.cout, wg.oh, wg.ow, 0, 0, 4)
        } else {
            (g.cin, g.h, g.w, g.ph, g.pw, XI)
        };
        let tw = wg.tw;
        let (img, plane) = (ch * h * w, h * w);
        let (r0, r1) = self.rows;
        let (tcols, trows) = (4 * tw + span - 4, 4 * (r1 - r0) + span - 4);
        let per_set = self.per_set();
        assert!(src.len() >= self.n * img);
        // Locals, so that the loops below keep them in registers (stores
        // through raw pointers could otherwise alias `g`).
        let (pstride, hrow) = (ch * cs, tw * XI * LANES);
        let points = |d: [__m512; 6]| {
            if GRAD {
                gradient_points([d[0], d[1], d[2], d[3]])
            } else {
                input_points(d)
            }
        };
        // Image rows `a..b` feed the band (the padded rows `4·r0 ..` less
        // the zero rows above and below the image); for one image and
        // channel they lie end to end in `src`, so they enter the lanes 16
        // values at a time whatever the row width (a 7-wide plane takes 4
        // transposes instead of 7), each value to its place in the padded
        // rows `lp` (`tcols` vectors per row, zeros left and right).
        let a = (4 * r0).max(ph) - ph;
        let b = (4 * r0 + trows).min(ph + h).max(ph) - ph;
        let flat = b.saturating_sub(a) * w;
        let lrows = b.saturating_sub(a).max(1);
        with_scratch(
            Slot::Col,
            (lrows * tcols + trows * tw * XI) * LANES,
            |buf| {
                let (lanes, hbuf) = buf.split_at_mut(lrows * tcols * LANES);
                // Zero columns left and right of the image, never overwritten.
                lanes.fill(0.0);
                let (lp, hp) = (lanes.as_mut_ptr(), hbuf.as_mut_ptr());
                // SAFETY: every access below is inside `src` (rows `a..b` of
                // channel `c` of the set's images, asserted), `lanes` (rows
                // below `lrows`, columns below `pw + w ≤ tcols`), `hbuf` or channel `c`'s rows
                // of `out` (the caller's contract).
                unsafe {
                    for s in self.sets.0..self.sets.1 {
                        let nimg = self.images(s);
                        let xs = src.as_ptr().add(s * LANES * img);
                        for c in c0..c1 {
                            let base = xs.add(c * plane + a * w);
                            // Value `q` of the band goes to row `q / w`,
                            // column `pw + q % w` of `lanes`.
                            let (mut row, mut col) = (0, 0);
                            for q0 in (0..flat).step_by(LANES) {
                                let cnt = (flat - q0).min(LANES);
                                let cols = load_rows(base.add(q0), img, nimg, cnt);
                                for v in cols.iter().take(cnt) {
                                    let at = (row * tcols + pw + col) * LANES;
                                    _mm512_storeu_ps(lp.add(at), *v);
                                    col += 1;
                                    if col == w {
                                        (row, col) = (row + 1, 0);
                                    }
                                }
                            }
                            for k in 0..trows {
                                let hk = hp.add(k * hrow);
                                let pr = 4 * r0 + k;
                                if pr < ph || pr - ph >= h {
                                    std::ptr::write_bytes(hk, 0, hrow);
                                    continue;
                                }
                                let rp = lp.add((pr - ph - a) * tcols * LANES);
                                for tc in 0..tw {
                                    let d: [__m512; 6] = std::array::from_fn(|i| {
                                        if i < span {
                                            _mm512_loadu_ps(rp.add((4 * tc + i) * LANES))
                                        } else {
                                            _mm512_setzero_ps()
                                        }
                                    });
                                    for (eta, hv) in points(d).into_iter().enumerate() {
                                        _mm512_storeu_ps(hk.add((tc * XI + eta) * LANES), hv);
                                    }
                                }
                            }
                            let oc = out.get().add(c * cs + (s - self.sets.0) * per_set * LANES);
                            for tr in 0..r1 - r0 {
                                for tc in 0..tw {
                                    let at = (tr * tw + tc) * LANES;
                                    for eta in 0..XI {
                                        let d: [__m512; 6] = std::array::from_fn(|i| {
                                            if i < span {
                                                _mm512_loadu_ps(hp.add(
                                                    (4 * tr + i) * hrow + (tc * XI + eta) * LANES,
                                                ))
                                            } else {
                                                _mm512_setzero_ps()
                                            }
                                        });
                                        for (xi, pv) in points(d).into_iter().enumerate() {
                                            let p = xi * XI + eta;
                                            _mm512_storeu_ps(oc.add(p * pstride + at), pv);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        );
    }

    /// Output channels `co0..co1` by chunks of [`CHUNK_BLOCKS`] micro-kernel
    /// blocks (all at once when the transformed input exceeds
    /// [`TASK_BYTES`]): the chunk's 36 products, then its planes.
    ///
    /// # Safety
    /// AVX-512F; `y` holds the batch's output and no other thread touches
    /// channels `co0..co1` of the task's rows.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn outputs(
        &self,
        u: &[f32],
        v: &[f32],
        co0: usize,
        co1: usize,
        bias: Option<&[f32]>,
        y: OutPtr,
        post: &PostFn,
    ) {
        let g = &self.wg.g;
        let (cin, cout, nco, npos) = (g.cin, g.cout, co1 - co0, self.npos());
        let kern = Kernel::detect();
        let olen = 4 * (self.rows.1 - self.rows.0) * 4 * self.wg.tw * LANES;
        let blocks = conv_flat::channel_blocks(nco);
        let per = if PTS * cin * npos * 4 > TASK_BYTES {
            blocks.len().max(1)
        } else {
            CHUNK_BLOCKS
        };
        let most = blocks
            .chunks(per)
            .map(|b| b[b.len() - 1].1 - b[0].0)
            .max()
            .unwrap_or(0);
        // Products of one point per chunk, then the next point's after
        // `ROW_PAD` values of slack; input channel rows `cs` apart.
        let cs = npos + ROW_PAD;
        with_scratch(Slot::Col2, PTS * (most * npos + ROW_PAD) + olen, |buf| {
            let (m, obuf) = buf.split_at_mut(PTS * (most * npos + ROW_PAD));
            for chunk in blocks.chunks(per) {
                let (k0, k1) = (chunk[0].0, chunk[chunk.len() - 1].1);
                // Point by point, every block of the chunk, so that the
                // point's transformed input stays in the level-1 cache.
                let nk = k1 - k0;
                let ms = nk * npos + ROW_PAD;
                for p in 0..PTS {
                    let vp = &v[p * cin * cs..(p + 1) * cin * cs];
                    for &(b0, b1) in chunk {
                        let up = &u[p * cout * cin + (co0 + b0) * cin..];
                        let mp = &mut m[p * ms + (b0 - k0) * npos..p * ms + (b1 - k0) * npos];
                        kern.run_planes(cin, cs, vp, up, &[0], b1 - b0, mp, npos);
                    }
                }
                // SAFETY: as for `planes`.
                unsafe { self.planes(m, nk, ms, co0 + k0, bias, obuf, y, post) };
            }
        });
    }

    /// Output channels `co0..co0 + nk` from their products `m` (36 rows
    /// `mstride` apart per channel, the channels `npos` apart): per lane
    /// set `Aᵀ·M·A` plus the bias into the band's outputs in the lanes'
    /// layout, end to end (`obuf`: row `r`, column `q` at `(r·OW + q)·16`),
    /// transposed 16 values at a time into each image's plane (where the
    /// band's rows lie end to end too), then `post` on the band.
    ///
    /// # Safety
    /// AVX-512F; `y` holds the batch's output and no other thread touches
    /// these channels of the task's rows.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn planes(
        &self,
        m: &[f32],
        nk: usize,
        mstride: usize,
        co0: usize,
        bias: Option<&[f32]>,
        obuf: &mut [f32],
        y: OutPtr,
        post: &PostFn,
    ) {
        let wg = self.wg;
        let (cout, tw) = (wg.g.cout, wg.tw);
        let (npos, per_set, plane) = (self.npos(), self.per_set(), wg.oh * wg.ow);
        let (r0, r1) = (4 * self.rows.0, (4 * self.rows.1).min(wg.oh));
        let (band, ow) = (self.rows.1 - self.rows.0, wg.ow);
        let (nrows, flat) = (r1 - r0, (r1 - r0) * wg.ow);
        assert!(
            nk * npos <= mstride
                && m.len() >= (PTS - 1) * mstride + nk * npos
                && obuf.len() >= flat * LANES
        );
        let (mp, op) = (m.as_ptr(), obuf.as_mut_ptr());
        // SAFETY: `m` holds 36 rows `mstride` apart per channel and `obuf`
        // the band's outputs (asserted); the stores to `y` are the rows
        // `r0..r1` of channel `co` of the set's images (the caller's
        // contract).
        unsafe {
            for k in 0..nk {
                let co = co0 + k;
                let bv = _mm512_set1_ps(bias.map_or(0.0, |b| b[co]));
                for s in self.sets.0..self.sets.1 {
                    let ms = mp.add(k * npos + (s - self.sets.0) * per_set * LANES);
                    for tr in 0..band {
                        for tc in 0..tw {
                            let at = (tr * tw + tc) * LANES;
                            let mut rows = [[_mm512_setzero_ps(); XI]; 4];
                            for eta in 0..XI {
                                let col: [__m512; 6] = std::array::from_fn(|xi| {
                                    _mm512_loadu_ps(ms.add((xi * XI + eta) * mstride + at))
                                });
                                for (i, o) in output_points(col).into_iter().enumerate() {
                                    rows[i][eta] = o;
                                }
                            }
                            for (i, ri) in rows.iter().enumerate() {
                                let rr = 4 * tr + i;
                                if rr >= nrows {
                                    break;
                                }
                                let o = op.add((rr * ow + 4 * tc) * LANES);
                                let vals = output_points(*ri);
                                for (j, val) in vals.into_iter().enumerate().take(ow - 4 * tc) {
                                    _mm512_storeu_ps(o.add(j * LANES), _mm512_add_ps(val, bv));
                                }
                            }
                        }
                    }
                    let nimg = self.images(s);
                    let ys = y.get().add((s * LANES * cout + co) * plane);
                    for q0 in (0..flat).step_by(LANES) {
                        let cnt = (flat - q0).min(LANES);
                        let src = op.add(q0 * LANES);
                        store_rows(src, cnt, ys.add(r0 * ow + q0), cout * plane, nimg);
                    }
                    for l in 0..nimg {
                        let yp = ys.add(l * cout * plane + r0 * ow);
                        let vals = std::slice::from_raw_parts_mut(yp, (r1 - r0) * ow);
                        let at = ((s * LANES + l) * cout + co) * plane + r0 * ow;
                        post(at, assume_written(vals));
                    }
                }
            }
        }
    }
}

/// The first `cnt` values of `nimg` rows `stride` apart from `src` (zeros
/// for the other lanes), transposed: vector `j` holds value `j` of every
/// row.
///
/// # Safety
/// AVX-512F; `cnt` values readable at `src + l·stride` for `l < nimg`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_rows(src: *const f32, stride: usize, nimg: usize, cnt: usize) -> [__m512; 16] {
    let mask: __mmask16 = if cnt >= LANES {
        0xFFFF
    } else {
        (1u16 << cnt) - 1
    };
    // SAFETY: masked to `cnt` values of each of the `nimg` rows.
    let rows: [__m512; 16] = std::array::from_fn(|l| unsafe {
        if l < nimg {
            _mm512_maskz_loadu_ps(mask, src.add(l * stride))
        } else {
            _mm512_setzero_ps()
        }
    });
    transpose(rows)
}

/// The inverse of [`load_rows`]: `cnt` column vectors at `src` (16 values
/// apart) transposed, and row `l` stored as `cnt` values at
/// `dst + l·stride` for `l < nimg`.
///
/// # Safety
/// AVX-512F; `cnt` vectors readable at `src`, `cnt` values writable at each
/// row of `dst`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_rows(
    src: *const f32,
    cnt: usize,
    dst: *mut MaybeUninit<f32>,
    stride: usize,
    nimg: usize,
) {
    let mask: __mmask16 = if cnt >= LANES {
        0xFFFF
    } else {
        (1u16 << cnt) - 1
    };
    // SAFETY: `cnt` vectors at `src`; masked stores of `cnt` values.
    unsafe {
        let cols: [__m512; 16] = std::array::from_fn(|j| {
            if j < cnt {
                _mm512_loadu_ps(src.add(j * LANES))
            } else {
                _mm512_setzero_ps()
            }
        });
        for (l, row) in transpose(cols).iter().enumerate().take(nimg) {
            _mm512_mask_storeu_ps(dst.add(l * stride).cast(), mask, *row);
        }
    }
}

/// The 16 × 16 transpose: `out[j][i] = r[i][j]`. Pairs of rows are
/// interleaved by 32-bit, then 64-bit elements (each 128-bit lane `q` of
/// the result holds column `4q + k` of four consecutive rows), then the
/// 128-bit lanes are gathered by two rounds of lane shuffles.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn transpose(r: [__m512; 16]) -> [__m512; 16] {
    let mut a = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut b = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let pd = |v: __m512| _mm512_castps_pd(v);
        let (a0, a1, a2, a3) = (
            pd(a[4 * i]),
            pd(a[4 * i + 1]),
            pd(a[4 * i + 2]),
            pd(a[4 * i + 3]),
        );
        b[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    // b[4i + k], 128-bit lane q: column 4q + k of rows 4i .. 4i + 3.
    let mut out = [_mm512_setzero_ps(); 16];
    for k in 0..4 {
        let c0 = _mm512_shuffle_f32x4::<0x44>(b[k], b[4 + k]);
        let c1 = _mm512_shuffle_f32x4::<0xEE>(b[k], b[4 + k]);
        let c2 = _mm512_shuffle_f32x4::<0x44>(b[8 + k], b[12 + k]);
        let c3 = _mm512_shuffle_f32x4::<0xEE>(b[8 + k], b[12 + k]);
        out[k] = _mm512_shuffle_f32x4::<0x88>(c0, c2);
        out[4 + k] = _mm512_shuffle_f32x4::<0xDD>(c0, c2);
        out[8 + k] = _mm512_shuffle_f32x4::<0x88>(c1, c3);
        out[12 + k] = _mm512_shuffle_f32x4::<0xDD>(c1, c3);
    }
    out
}
