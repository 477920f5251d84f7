//! Per-shape choice between im2col + GEMM, the direct kernel of
//! `conv_flat.rs` and its Winograd form (`conv_wino.rs`).
//!
//! The algorithms differ in rounding, so the choice decides the exact
//! numbers a run produces. By default it is a fixed rule — the direct
//! kernel wherever it applies (stride 1, one group, a kernel larger than
//! 1×1, at most 128 channels each way), by the row-wise Winograd transform
//! where that applies too (3-wide kernels, outputs at least 8 wide), except
//! for the backward pass of layers whose output planes have fewer than
//! [`DIRECT_BACKWARD_MIN`] positions (8×8, 7×7), where im2col + GEMM
//! measured about twice as fast (docs/performance.md) — so a seed gives the
//! same run in every process, resumed or not, on any machine and thread
//! count. In the direct backward pass the input gradient (a forward
//! correlation) and the weight gradient take the transform under the same
//! condition as the forward pass (`conv_wino_grad.rs`).
//!
//! `PRUNE_CONV_ALGO=tune` measures instead: a layer is run every applicable
//! way the first time its shape is seen (each three times, alternating, the
//! fastest run of each counting) and the winner is recorded in a
//! process-wide table keyed by the pass, the batch size and the geometry;
//! later calls reuse it, so results agree within the process but may differ
//! in rounding between processes that measured differently.
//! `PRUNE_CONV_ALGO=gemm`, `=direct` or `=winograd` forces an algorithm
//! wherever it applies (for comparisons with one binary; `direct` also
//! keeps the input gradient off the transform).

use super::conv_flat::FlatGeom;
use super::conv_wino::WinoGeom;
use super::conv_wino2::Wino2;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// A convolution algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algo {
    /// im2col + GEMM (`conv.rs`, `conv_backward.rs`).
    Gemm,
    /// Direct correlation over flattened padded planes (`conv_flat.rs`).
    Direct,
    /// The direct correlation by the row-wise Winograd transform
    /// (`conv_wino.rs`); forward pass only.
    Winograd,
}

/// Which computation a choice is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Pass {
    /// The output of the layer.
    Forward,
    /// The weight and bias gradients, and the input gradient when asked
    /// for. One choice covers both cases (measured on the first call), so
    /// the weight gradient does not depend on whether the input gradient
    /// is computed.
    Backward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    pass: Pass,
    n: usize,
    geom: FlatGeom,
}

fn table() -> &'static Mutex<HashMap<Key, Algo>> {
    static TABLE: OnceLock<Mutex<HashMap<Key, Algo>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How `PRUNE_CONV_ALGO` says to choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The default: [`rule`].
    Rule,
    /// Always this algorithm (`gemm` or `direct`).
    Fixed(Algo),
    /// Measure once per shape.
    Tune,
}

/// False when `PRUNE_CONV_ALGO=gemm` forces im2col + GEMM for every layer
/// (the stride-2 phase forms of `conv_phase.rs` and `conv_phase_grad.rs`
/// are direct kernels too).
pub(crate) fn direct_allowed() -> bool {
    mode() != Mode::Fixed(Algo::Gemm)
}

fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("PRUNE_CONV_ALGO").ok().as_deref() {
        Some("gemm") => Mode::Fixed(Algo::Gemm),
        Some("direct") => Mode::Fixed(Algo::Direct),
        Some("winograd") => Mode::Fixed(Algo::Winograd),
        Some("tune") => Mode::Tune,
        _ => Mode::Rule,
    })
}

/// Output positions per plane below which the backward pass runs on
/// im2col + GEMM by default: the direct weight gradient reduces 9 taps of
/// vector accumulators per channel pair over planes of only 49–64
/// positions, and measured 1.7–2.6x slower than the GEMM backward on
/// ResNet's 64-channel 7×7 and 8×8 layers at batch 128.
pub(crate) const DIRECT_BACKWARD_MIN: usize = 128;

/// The default choice: the direct kernel (by the transform in the forward
/// pass where it applies), except for the backward pass on small output
/// planes.
fn rule(pass: Pass, n: usize, geom: &FlatGeom) -> Algo {
    let (oh, ow) = geom.out_hw();
    match pass {
        Pass::Backward if oh * ow < DIRECT_BACKWARD_MIN && !tiles_weight_grad(geom, n) => {
            Algo::Gemm
        }
        Pass::Backward => Algo::Direct,
        Pass::Forward => forward_form(geom, n),
    }
}

/// Output columns up to which a 3×3 layer takes the 2-D transform whatever
/// its channel counts: planes of at most four tiles across (16 columns),
/// where the row-wise transform's rows are short and the 2-D one's tiles
/// of several images fill its vectors. Wider planes take it when the
/// channels are many enough for its 4x fewer products to outweigh its
/// larger transforms, whose cost grows with `Cin + Cout` while the
/// products grow with `Cin·Cout` ([`tiles_pay`]; docs/performance.md).
pub(crate) const TILES_MAX_WIDTH: usize = 16;

/// Input channels up to which a layer with outputs [`NARROW_MIN_WIDTH`]
/// to [`TILES_MAX_WIDTH`] wide takes the row-wise transform instead of the
/// 2-D one. On 14×14 outputs the 2-D tiles cover 16×16 (a third more
/// positions than the plane) and its transforms cost several times the
/// row-wise ones per channel, which the products of a few input channels
/// do not repay: the row-wise form measured 0.54–0.88 of the 2-D one's
/// time forward and 0.51–0.92 backward for 4–12 input and 9–64 output
/// channels at batch 128, and 0.6–1.0 on 16×16 outputs; from 16 input
/// channels the gain shrinks and turns into a loss (16 → 32: 1.1x). On
/// 10×10 and 12×12 outputs it was as often slower as faster, on 8×8 (rows
/// of 8 at a pitch of 12) up to 2x slower (docs/performance.md). Pruning
/// leaves such layers: the second convolution of a residual block reads
/// only the channels its first one kept.
pub(crate) const NARROW_MAX_CIN: usize = 12;

/// Output columns from which [`NARROW_MAX_CIN`] applies.
pub(crate) const NARROW_MIN_WIDTH: usize = 14;

/// True when a layer with outputs at most [`TILES_MAX_WIDTH`] wide takes
/// the row-wise transform for its few input channels ([`NARROW_MAX_CIN`]).
fn rows_for_narrow_input(geom: &FlatGeom) -> bool {
    let (_, ow) = geom.out_hw();
    geom.cin <= NARROW_MAX_CIN && ow >= NARROW_MIN_WIDTH
}

/// True when the 2-D transform's products outweigh its transforms on a
/// wide plane: `Cin·Cout ≥ 16·(Cin + Cout)` (32 channels each way). On
/// ResNet's 16-channel 28×28 layers it measured 0.7x the row-wise form, on
/// VGG-like's 64-channel 32×32 layers 1.3x forward and 2x backward.
fn tiles_pay(geom: &FlatGeom) -> bool {
    geom.cin * geom.cout >= 16 * (geom.cin + geom.cout)
}

/// A Winograd form of a forward correlation.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Transform {
    /// Row-wise F(4, 3) (`conv_wino.rs`).
    Rows(WinoGeom),
    /// 2-D F(4×4, 3×3) (`conv_wino2.rs`).
    Tiles(Wino2),
}

/// Images per call from which the transforms are used: each call
/// transforms the weights (`Cout·Cin` 3×3 kernels into 36 or 6 values each,
/// in double precision), which costs about as much as the transforms save
/// on 10–20 images; ResNet-20's batch-1 latency was 2.8x longer with them.
pub(crate) const TRANSFORM_MIN_BATCH: usize = 32;

/// The transform for a forward correlation with geometry `geom` on a batch
/// of `n` images, if any (none below [`TRANSFORM_MIN_BATCH`]):
/// 2-D for 3×3 kernels with outputs at most [`TILES_MAX_WIDTH`] wide (but
/// [`rows_for_narrow_input`]) or enough channels, row-wise for other
/// 3-wide kernels with outputs at least 8 wide.
pub(crate) fn transform(geom: &FlatGeom, n: usize) -> Option<Transform> {
    let (_, ow) = geom.out_hw();
    if n < TRANSFORM_MIN_BATCH {
        return None;
    }
    match Wino2::new(geom) {
        Some(t) if (ow <= TILES_MAX_WIDTH && !rows_for_narrow_input(geom)) || tiles_pay(geom) => {
            Some(Transform::Tiles(t))
        }
        _ => WinoGeom::new(geom).map(Transform::Rows),
    }
}

/// True when the 2-D transform's weight gradient serves a layer with small
/// output planes: wherever the 2-D transform applies (ResNet's 64-channel
/// 7×7 layers: 1.4x the GEMM's backward; VGG-like's 256- and 512-channel
/// 8×8 and 4×4 layers, summed over the whole batch by
/// `conv_wino2/grad.rs`: 1.6–2.5x). Otherwise the GEMM takes the weight
/// gradient and the transform the input gradient.
fn tiles_weight_grad(geom: &FlatGeom, n: usize) -> bool {
    matches!(transform(geom, n), Some(Transform::Tiles(_)))
}

/// The direct kernel's form for a forward correlation: by a transform
/// where one applies.
fn forward_form(geom: &FlatGeom, n: usize) -> Algo {
    if transform(geom, n).is_some() {
        Algo::Winograd
    } else {
        Algo::Direct
    }
}

/// How the direct backward pass computes a correlation with geometry
/// `geom` (the input gradient's, a forward correlation, or the layer's own
/// for the weight gradient): by the transform where it applies, unless
/// `PRUNE_CONV_ALGO` forces the plain direct kernel (or the GEMM, whose
/// backward does not come here).
pub(crate) fn backward_form(geom: &FlatGeom, n: usize) -> Algo {
    match mode() {
        Mode::Fixed(Algo::Direct) | Mode::Fixed(Algo::Gemm) => Algo::Direct,
        _ => forward_form(geom, n),
    }
}

/// The algorithm for `pass` on a batch of `n` with geometry `geom`: the
/// default [`rule`], a forced one, or (with `PRUNE_CONV_ALGO=tune`) the
/// recorded one or the one measured now by calling `trial` with each
/// algorithm (its results are discarded by the caller).
pub(crate) fn choose(pass: Pass, n: usize, geom: FlatGeom, trial: impl FnMut(Algo)) -> Algo {
    match mode() {
        Mode::Rule => rule(pass, n, &geom),
        Mode::Fixed(Algo::Winograd) if pass == Pass::Forward => forward_form(&geom, n),
        Mode::Fixed(Algo::Winograd) => Algo::Direct,
        Mode::Fixed(a) => a,
        Mode::Tune => measure(pass, n, geom, trial),
    }
}

/// The recorded choice for the key, or a measurement recorded now.
fn measure(pass: Pass, n: usize, geom: FlatGeom, mut trial: impl FnMut(Algo)) -> Algo {
    let key = Key { pass, n, geom };
    let lock = || table().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&a) = lock().get(&key) {
        return a;
    }
    let mut candidates = vec![Algo::Gemm, Algo::Direct];
    if pass == Pass::Forward && transform(&geom, n).is_some() {
        candidates.push(Algo::Winograd);
    }
    let mut best = vec![f64::INFINITY; candidates.len()];
    for _ in 0..3 {
        for (b, &a) in best.iter_mut().zip(&candidates) {
            let t = Instant::now();
            trial(a);
            *b = b.min(t.elapsed().as_secs_f64());
        }
    }
    // The fastest; on a tie the earlier candidate.
    let mut pick = 0;
    for (i, &b) in best.iter().enumerate() {
        if b < best[pick] {
            pick = i;
        }
    }
    // A concurrent call may have recorded its own measurement first; the
    // first record wins so every call agrees.
    *lock().entry(key).or_insert(candidates[pick])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A geometry no other test uses, so the table entry is this test's
    /// (3×2 kernel: no Winograd form, so two candidates).
    fn geom(cin: usize) -> FlatGeom {
        FlatGeom {
            cin,
            cout: 3,
            h: 5,
            w: 5,
            kh: 3,
            kw: 2,
            ph: 1,
            pw: 1,
        }
    }

    fn square(c: usize, hw: usize, k: usize) -> FlatGeom {
        FlatGeom {
            cin: c,
            cout: c,
            h: hw,
            w: hw,
            kh: k,
            kw: 3,
            ph: k / 2,
            pw: 1,
        }
    }

    #[test]
    fn the_rule_keeps_small_planes_backward_on_the_gemm_without_the_2d_transform() {
        let plane = |hw: usize| FlatGeom {
            h: hw,
            w: hw,
            ..geom(64)
        };
        assert_eq!(rule(Pass::Forward, 128, &plane(7)), Algo::Direct);
        assert_eq!(rule(Pass::Backward, 128, &plane(7)), Algo::Gemm);
        assert_eq!(rule(Pass::Backward, 128, &plane(8)), Algo::Gemm);
        assert_eq!(rule(Pass::Backward, 128, &plane(14)), Algo::Direct);
        assert_eq!(rule(Pass::Backward, 128, &plane(28)), Algo::Direct);
        if !super::super::conv_flat::vectorised() {
            eprintln!("SKIPPED (the Winograd forms): no AVX-512 on this CPU");
            return;
        }
        // 3×3 layers: the transforms, and the 2-D weight gradient on small
        // planes, narrow or wide.
        assert_eq!(rule(Pass::Forward, 128, &square(64, 7, 3)), Algo::Winograd);
        assert_eq!(rule(Pass::Backward, 128, &square(64, 7, 3)), Algo::Direct);
        assert_eq!(rule(Pass::Backward, 128, &square(256, 8, 3)), Algo::Direct);
        assert_eq!(rule(Pass::Backward, 64, &square(512, 4, 3)), Algo::Direct);
        assert_eq!(rule(Pass::Backward, 128, &square(16, 28, 3)), Algo::Direct);
    }

    #[test]
    fn the_2d_transform_takes_narrow_planes_and_wide_layers() {
        if !super::super::conv_flat::vectorised() {
            eprintln!("SKIPPED: no AVX-512 on this CPU");
            return;
        }
        assert!(
            transform(&square(64, 7, 3), TRANSFORM_MIN_BATCH - 1).is_none(),
            "small batch"
        );
        let form = |g: FlatGeom| match transform(&g, TRANSFORM_MIN_BATCH) {
            Some(Transform::Tiles(_)) => "tiles",
            Some(Transform::Rows(_)) => "rows",
            None => "none",
        };
        assert_eq!(form(square(16, 28, 3)), "rows");
        assert_eq!(form(square(32, 28, 3)), "tiles");
        assert_eq!(form(square(16, 14, 3)), "tiles");
        // few input channels on 14–16 wide outputs: row-wise
        let narrow = |cin: usize, hw: usize, cout: usize| FlatGeom {
            cin,
            cout,
            ..square(cin, hw, 3)
        };
        assert_eq!(form(narrow(12, 14, 64)), "rows");
        assert_eq!(form(narrow(4, 16, 9)), "rows");
        assert_eq!(form(narrow(13, 14, 9)), "tiles");
        assert_eq!(form(narrow(12, 12, 32)), "tiles");
        assert_eq!(form(narrow(8, 8, 64)), "tiles");
        assert_eq!(form(square(64, 7, 3)), "tiles");
        assert_eq!(form(square(16, 28, 5)), "rows", "5×3 kernel");
        assert_eq!(form(square(64, 7, 5)), "none", "5×3 kernel, 7 wide");
        assert_eq!(form(geom(64)), "none", "3×2 kernel");
    }

    #[test]
    fn measures_once_per_shape_and_pass_then_reuses_the_record() {
        let slow = Duration::from_millis(50);
        let mut calls = 0;
        let a = measure(Pass::Forward, 3, geom(1001), |a| {
            calls += 1;
            if a == Algo::Gemm {
                std::thread::sleep(slow);
            }
        });
        assert_eq!((a, calls), (Algo::Direct, 6));
        let again = measure(Pass::Forward, 3, geom(1001), |_| panic!("measured twice"));
        assert_eq!(again, Algo::Direct);
        // Another pass, batch size or shape is measured on its own.
        let b = measure(Pass::Backward, 3, geom(1001), |a| {
            if a == Algo::Direct {
                std::thread::sleep(slow);
            }
        });
        assert_eq!(b, Algo::Gemm);
        let mut other = 0;
        measure(Pass::Forward, 4, geom(1001), |_| other += 1);
        measure(Pass::Forward, 3, geom(1002), |_| other += 1);
        assert_eq!(other, 12);
    }
}
