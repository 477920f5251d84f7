//! Direct convolution for stride-1, single-group layers with few channels,
//! over flattened zero-padded planes.
//!
//! Each input channel of one image is copied into a zero-padded plane
//! `P[c]` of `Hp × Wp` values (`Hp = H + 2·ph`, `Wp = W + 2·pw`), stored
//! row after row. With stride 1 the output row `oh` of a `kh × kw` kernel
//! reads padded rows `oh … oh + kh − 1`, so indexing the output on the
//! same row pitch `Wp` turns the 2-D correlation into a 1-D one over the
//! flattened plane:
//!
//! ```text
//! Y'[co][p] = Σ_{c<Cin} Σ_{ki<kh} Σ_{kj<kw} w[co][c][ki][kj] · P[c][p + ki·Wp + kj]
//! y[co][oh][ow] = Y'[co][oh·Wp + ow] + b[co]      for ow < OW = Wp − kw + 1
//! ```
//!
//! (positions `p = oh·Wp + ow` with `ow ≥ OW` read across the row edge and
//! are discarded). Every output vector is then a contiguous load per tap:
//! no im2col matrix is built, and the lanes are filled for any image width
//! (`OH·Wp` positions in vectors of 16, e.g. 88 % for 7×7 outputs, where a
//! row-vectorised kernel would fill 44 %). The micro-kernel keeps
//! `CO × PV` vectors of outputs in registers (4 or 5 channels × 5 vectors
//! of 16 positions with AVX-512) and, per input channel and tap, loads `PV`
//! input vectors and broadcasts `CO` weights: `CO·PV` FMAs per
//! `CO + PV` loads.
//!
//! The input gradient of a stride-1 convolution is again such a
//! correlation: with `w'[c][co][ki][kj] = w[co][c][kh−1−ki][kw−1−kj]`,
//!
//! ```text
//! dx[c][ih][iw] = Σ_{co,ki,kj} w'[c][co][ki][kj] · dy[co][ih − (kh−1−ph) + ki][iw − (kw−1−pw) + kj]
//! ```
//!
//! i.e. the forward kernel applied to `dy` with padding `(kh−1−ph, kw−1−pw)`
//! (valid when `ph < kh` and `pw < kw`).
//!
//! Every output value is one sum in a fixed order (channel, then tap), and
//! work is split only across images and output channels, so results do not
//! depend on the thread count.

use super::conv::{assume_written, PostFn};
pub(crate) use super::conv_flat_kernel::{vectorised, Kernel};
use super::pad::Padding;
use super::scratch::{with_scratch, Slot};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output channels per micro-kernel call.
const CO_BLK: usize = 4;
/// The widest block: `CO_WIDE × PV` = 25 accumulators, the most that fit
/// the 32 vector registers beside `PV` input vectors and a weight.
pub(crate) const CO_WIDE: usize = CO_BLK + 1;
/// Vectors of 16 positions per micro-kernel call.
pub(crate) const PV: usize = 5;
/// Lanes per vector.
pub(crate) const LANES: usize = 16;

/// Shape of one direct correlation: `cin` padded input planes of
/// `hp × wp` give `cout` output planes of `oh × ow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlatGeom {
    pub cin: usize,
    pub cout: usize,
    /// Unpadded input size.
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub ph: usize,
    pub pw: usize,
}

impl FlatGeom {
    fn hp(&self) -> usize {
        self.h + 2 * self.ph
    }
    fn wp(&self) -> usize {
        self.w + 2 * self.pw
    }
    /// Output size `(Hp − kh + 1, Wp − kw + 1)`.
    pub(crate) fn out_hw(&self) -> (usize, usize) {
        (self.hp() + 1 - self.kh, self.wp() + 1 - self.kw)
    }
    /// Flattened positions computed per output plane, rounded up to whole vectors.
    pub(crate) fn positions(&self) -> usize {
        (self.out_hw().0 * self.wp()).next_multiple_of(LANES)
    }
    fn plane(&self) -> usize {
        self.hp() * self.wp()
    }
    /// Multiply-adds of one image, `Cout·Cin·kh·kw·OH·OW`.
    pub(crate) fn macs(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.cout * self.cin * self.kh * self.kw * oh * ow
    }
    /// Values per padded plane.
    pub(crate) fn hp_wp(&self) -> usize {
        self.plane()
    }
    /// Length of the padded-input buffer: every plane, plus slack so the
    /// last vectors of the last channel stay inside it.
    pub(crate) fn padded_len(&self) -> usize {
        self.cin * self.plane() + LANES + self.kw + self.wp()
    }
    /// Tap offsets `ki·Wp + kj` in weight order.
    pub(crate) fn taps(&self) -> Vec<usize> {
        let wp = self.wp();
        (0..self.kh)
            .flat_map(|ki| (0..self.kw).map(move |kj| ki * wp + kj))
            .collect()
    }
}

/// Copies one image `x [cin, h, w]` into padded planes `p` (whatever it
/// held before): the image rows, and zeros in the padding around them and
/// in the slack after the last plane, each value written once.
pub(crate) fn pad_image(g: &FlatGeom, x: &[f32], p: &mut [f32]) {
    Padding::of(g, g.hp(), g.wp()).apply(x, p);
}

/// Channels of the micro-kernel block starting with `rest` channels left:
/// blocks of [`CO_BLK`], except that a count leaving one or two over (pruned
/// counts such as 9, 17, 33 or 10) starts with one or two blocks of
/// [`CO_WIDE`], and six are split 3 + 3. A block of one or two channels has
/// only `PV` or `2·PV` accumulators, too few chains to keep the FMA units
/// busy, and every block is one more pass over the input planes; 9 as
/// 5 + 4 instead of 4 + 3 + 2 measured 7 % faster on 28×28 planes, 10 as
/// 5 + 5 instead of 4 + 4 + 2 5 % (docs/performance.md). Each channel's sum
/// is the same whatever its block.
pub(crate) fn block_width(rest: usize) -> usize {
    match (rest, rest % CO_BLK) {
        (6, _) => 3,
        (5.., 1 | 2) => CO_WIDE,
        _ => rest.min(CO_BLK),
    }
}

/// The channel blocks `co0..co1` of `cout` channels, by [`block_width`].
pub(crate) fn channel_blocks(cout: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut co = 0;
    while co < cout {
        let end = co + block_width(cout - co);
        out.push((co, end));
        co = end;
    }
    out
}

/// Output channels `co0..co1` of one image into `y` (`[co1−co0, OH, OW]`)
/// from its padded planes `p`, adding `bias[co]`; every value of `y` is
/// written (none read).
fn channels(
    g: &FlatGeom,
    p: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    co0: usize,
    co1: usize,
    y: &mut [MaybeUninit<f32>],
) {
    let (oh, ow) = g.out_hw();
    let (wp, npos) = (g.wp(), g.positions());
    let taps = g.taps();
    let kern = Kernel::detect();
    with_scratch(Slot::Col2, (co1 - co0) * npos, |out| {
        let mut co = co0;
        while co < co1 {
            let nco = block_width(co1 - co);
            let ob = &mut out[(co - co0) * npos..(co - co0 + nco) * npos];
            kern.run(g, p, &w[co * g.cin * taps.len()..], &taps, nco, ob, npos);
            co += nco;
        }
        let planes = &mut y[..(co1 - co0) * oh * ow];
        store_planes(out, npos, wp, (oh, ow), planes, bias.map(|b| &b[co0..co1]));
    });
}

/// Output planes `y [k, OH, OW]` from the micro-kernel's flattened
/// positions: `y[k][r][c] = src[k·npos + r·pitch + c] + bias[k]` (positions
/// past `OW` in each row are dropped); every value of `y` is written.
pub(crate) fn store_planes(
    src: &[f32],
    npos: usize,
    pitch: usize,
    (oh, ow): (usize, usize),
    y: &mut [MaybeUninit<f32>],
    bias: Option<&[f32]>,
) {
    for (k, yp) in y.chunks_mut((oh * ow).max(1)).enumerate() {
        let b = bias.map_or(0.0, |b| b[k]);
        let s = &src[k * npos..];
        for (r, row) in yp.chunks_mut(ow.max(1)).enumerate() {
            for (d, v) in row.iter_mut().zip(&s[r * pitch..r * pitch + ow]) {
                d.write(v + b);
            }
        }
    }
}

/// Flattened positions of one output plane from which a single image is
/// split across threads by rows of every plane rather than by blocks of
/// channels: the rows balance whatever the channel count (a pruned 9 is
/// blocks of 4, 3 and 2), while a small plane cut in two would round each
/// half up to whole vectors (7×7: 4 vectors whole, 5 in halves).
const ROW_SPLIT_MIN: usize = 192;

/// Multiply-adds of one image below which a single image runs on the
/// calling thread: waking the other threads and joining them costs more
/// than a layer this small saves (ResNet-20's layers have at most 1.8
/// million at batch 1; with them unsplit its batch-1 inference ran 1.5–1.6x
/// faster under `pruned_resnet`), the same bound as the GEMM's. Either way
/// every value is the same sum.
pub(crate) const SPLIT_MIN_MACS: usize = 1 << 21;

/// An output as a raw pointer shared by tasks that write disjoint parts of
/// it (rows of one image here, channel planes of a group of images in
/// `conv_wino2.rs`).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut MaybeUninit<f32>);
// SAFETY: tasks write disjoint ranges; the pointer outlives the parallel
// region (it borrows a `&mut [MaybeUninit<f32>]` held by the caller).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    pub(crate) fn get(self) -> *mut MaybeUninit<f32> {
        self.0
    }
}

/// Output rows `r0..r1` of every channel of one image, written through
/// `y` (the image's `[cout, OH, OW]` output), plus the bias, then `post`
/// on each channel's rows (`base` is the image's offset in the whole
/// output). The positions of rows `r0..` are those of the whole plane
/// shifted by `r0·Wp`, so every value is the same sum as unsplit.
///
/// # Safety
/// `y` must hold `cout·OH·OW` values, and no other thread may access rows
/// `r0..r1` of its planes during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn rows(
    g: &FlatGeom,
    p: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    r0: usize,
    r1: usize,
    y: OutPtr,
    post: &PostFn,
    base: usize,
) {
    let (oh, ow) = g.out_hw();
    let wp = g.wp();
    let npos = ((r1 - r0) * wp).next_multiple_of(LANES);
    let taps = g.taps();
    let kern = Kernel::detect();
    let ps = &p[r0 * wp..];
    with_scratch(Slot::Col2, CO_WIDE * npos, |out| {
        let mut co = 0;
        while co < g.cout {
            let nco = block_width(g.cout - co);
            let ob = &mut out[..nco * npos];
            kern.run(g, ps, &w[co * g.cin * taps.len()..], &taps, nco, ob, npos);
            for k in 0..nco {
                let b = bias.map_or(0.0, |b| b[co + k]);
                let at = (co + k) * oh * ow + r0 * ow;
                // SAFETY: rows r0..r1 of this plane lie inside `y` and
                // belong to this call only (the caller's contract).
                let yp = unsafe { std::slice::from_raw_parts_mut(y.get().add(at), (r1 - r0) * ow) };
                let src = &ob[k * npos..];
                for (r, row) in yp.chunks_mut(ow).enumerate() {
                    for (d, s) in row.iter_mut().zip(&src[r * wp..r * wp + ow]) {
                        d.write(s + b);
                    }
                }
                // SAFETY: the loop above wrote every value of `yp`.
                post(base + at, unsafe { assume_written(yp) });
            }
            co += nco;
        }
    });
}

#[cfg(test)]
/// Direct correlation of a batch: `x [n, cin, h, w]`, `w [cout, cin, kh, kw]`,
/// into `y [n, cout, OH, OW]` (overwritten), plus `bias[co]`. Images run in
/// parallel; a single image of at least [`SPLIT_MIN_MACS`] multiply-adds
/// is split into blocks of rows (large planes) or of output channels.
pub(crate) fn forward(
    g: &FlatGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    // SAFETY: the forward pass writes only finished values into `y`.
    forward_post(
        g,
        n,
        x,
        w,
        bias,
        unsafe { super::conv::as_uninit(y) },
        &|_, _| {},
    );
}

/// [`forward`], then `post(offset, values)` on each image's output (each
/// block of channels, or each channel's block of rows, for a single image)
/// while it is in cache; `offset` is the position of `values` in `y`.
/// Every value of `y` is written, none read before.
pub(crate) fn forward_post(
    g: &FlatGeom,
    n: usize,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [MaybeUninit<f32>],
    post: &PostFn,
) {
    let (oh, ow) = g.out_hw();
    let (img_in, img_out) = (g.cin * g.h * g.w, g.cout * oh * ow);
    if img_out == 0 {
        return;
    }
    if n >= 2 {
        y.par_chunks_mut(img_out).enumerate().for_each(|(ni, yn)| {
            with_scratch(Slot::Col, g.padded_len(), |p| {
                pad_image(g, &x[ni * img_in..(ni + 1) * img_in], p);
                channels(g, p, w, bias, 0, g.cout, yn);
                // SAFETY: `channels` wrote every value of `yn`.
                post(ni * img_out, unsafe { assume_written(yn) });
            })
        });
    } else {
        with_scratch(Slot::Col, g.padded_len(), |p| {
            for (ni, yn) in y.chunks_mut(img_out).enumerate() {
                pad_image(g, &x[ni * img_in..(ni + 1) * img_in], p);
                let p = &*p;
                let threads = rayon::current_num_threads();
                if threads < 2 || g.macs() < SPLIT_MIN_MACS {
                    channels(g, p, w, bias, 0, g.cout, yn);
                    // SAFETY: `channels` wrote every value of `yn`.
                    post(ni * img_out, unsafe { assume_written(yn) });
                    continue;
                }
                if oh * g.wp() >= ROW_SPLIT_MIN {
                    let per = oh.div_ceil(threads.min(oh));
                    let yp = OutPtr(yn.as_mut_ptr());
                    (0..oh.div_ceil(per)).into_par_iter().for_each(|bi| {
                        let (r0, r1) = (bi * per, ((bi + 1) * per).min(oh));
                        // SAFETY: each task writes rows r0..r1 of every
                        // plane of `yn`, disjoint from the other tasks'.
                        unsafe { rows(g, p, w, bias, r0, r1, yp, post, ni * img_out) };
                    });
                    continue;
                }
                let mut tasks = Vec::new();
                let mut rest = &mut yn[..];
                for (co0, co1) in channel_blocks(g.cout) {
                    let (yb, tail) = rest.split_at_mut((co1 - co0) * oh * ow);
                    tasks.push((co0, co1, yb));
                    rest = tail;
                }
                tasks.into_par_iter().for_each(|(co0, co1, yb)| {
                    channels(g, p, w, bias, co0, co1, yb);
                    // SAFETY: `channels` wrote every value of `yb`.
                    post(ni * img_out + co0 * oh * ow, unsafe { assume_written(yb) });
                });
            }
        })
    }
}

/// The weights of the input-gradient correlation,
/// `w'[c][co][ki][kj] = w[co][c][kh−1−ki][kw−1−kj]`: each input channel's
/// block written in order (in parallel across blocks), reading `w` at a
/// stride that walks the same cache lines for neighbouring channels.
pub(crate) fn flipped_weights(
    cout: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    w: &[f32],
) -> Vec<f32> {
    let kk = kh * kw;
    let len = cout * cin * kk;
    let mut out = Vec::<f32>::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut((cout * kk).max(1))
        .enumerate()
        .for_each(|(c, block)| {
            for (co, dst) in block.chunks_exact_mut(kk).enumerate() {
                let src = &w[(co * cin + c) * kk..][..kk];
                for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                    d.write(v);
                }
            }
        });
    // SAFETY: the blocks cover all `len` values and each wrote all of its.
    unsafe { out.set_len(len) };
    out
}
