//! Tests of the row-wise Winograd convolution (`conv_wino.rs`): against a
//! double-precision direct sum (bounded by the sum of absolute terms), the
//! input gradient against im2col + GEMM and finite differences, thread
//! counts and single images against the batch, and the vector transforms
//! against their scalar form. Skipped (with a message) where the vector
//! kernel does not run, since the transform is used only there.

use super::conv::{input_grad_direct, ConvGeom};
use super::conv_backward::backward_gemm;
use super::conv_flat::{self, FlatGeom};
pub(super) use super::conv_flat_tests::setup;
use super::conv_wino::{self, WinoGeom};
use super::conv_wino_grad;
use super::pad::Padding;
use super::test_util::{
    assert_close, assert_grad_close, dot_loss, fd_grad, rand_tensor, rand_vec, rng,
};
use crate::tensor::Tensor;

/// `(n, cin, h, w, cout, kh, kw, ph, pw)`: ResNet's 16/32 channels on 28×28
/// and 14×14, VGG-like's 32×32 to 8×8, pruned counts (9, 17, 26, 45),
/// outputs whose rows are not a multiple of four wide, no padding, kernels
/// of 1, 2 and 5 rows, and a padding of 2 columns.
const CASES: &[[usize; 9]] = &[
    [2, 16, 28, 28, 16, 3, 3, 1, 1],
    [3, 32, 14, 14, 32, 3, 3, 1, 1],
    [2, 17, 14, 14, 26, 3, 3, 1, 1],
    [2, 9, 28, 28, 17, 3, 3, 1, 1],
    [2, 64, 8, 8, 45, 3, 3, 1, 1],
    [2, 3, 32, 32, 8, 3, 3, 1, 1],
    [1, 5, 9, 13, 7, 3, 3, 0, 0],
    [2, 4, 10, 11, 6, 5, 3, 2, 1],
    [2, 3, 6, 9, 5, 1, 3, 0, 1],
    [2, 2, 7, 12, 3, 2, 3, 1, 2],
];

/// The transform's geometry, or `None` (after saying so) where the vector
/// kernel does not run on this CPU.
fn wino(fg: &FlatGeom) -> Option<WinoGeom> {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the Winograd path is not used here");
        return None;
    }
    Some(WinoGeom::new(fg).expect("every case has a 3-wide kernel and outputs at least 8 wide"))
}

/// The correlation in double precision (any stride, one group), and per
/// output the sum of the absolute values of its terms (the scale of its
/// rounding error).
pub(super) fn reference(g: &ConvGeom, x: &[f32], w: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let c = &g.col;
    let (n, cin, cout) = (g.n, g.cin, g.cout);
    let (mut y, mut mag) = (Vec::new(), Vec::new());
    for ni in 0..n {
        for co in 0..cout {
            for oh in 0..c.oh {
                for ow in 0..c.ow {
                    let (mut s, mut a) = (b[co] as f64, (b[co] as f64).abs());
                    for ci in 0..cin {
                        for ki in 0..c.kh {
                            for kj in 0..c.kw {
                                let (ih, iw) = (oh * c.sh + ki, ow * c.sw + kj);
                                if ih < c.ph || iw < c.pw || ih - c.ph >= c.h || iw - c.pw >= c.w {
                                    continue;
                                }
                                let xv =
                                    x[((ni * cin + ci) * c.h + ih - c.ph) * c.w + iw - c.pw] as f64;
                                let wv = w[((co * cin + ci) * c.kh + ki) * c.kw + kj] as f64;
                                s += xv * wv;
                                a += (xv * wv).abs();
                            }
                        }
                    }
                    y.push(s);
                    mag.push(a);
                }
            }
        }
    }
    (y, mag)
}

/// Asserts that every output in `got` is within `bound` of the
/// double-precision correlation of `[x, w, b]`, relative to the sum of the
/// absolute values of its terms; returns the largest such error.
pub(super) fn check_forward(
    what: &str,
    g: &ConvGeom,
    [x, w, b]: [&Tensor; 3],
    got: &[f32],
    bound: f64,
) -> f64 {
    let (want, mag) = reference(g, x.data(), w.data(), b.data());
    assert_eq!(got.len(), want.len(), "{what}: output length");
    let mut worst = 0.0f64;
    for (k, ((&y, &r), &m)) in got.iter().zip(&want).zip(&mag).enumerate() {
        let err = (y as f64 - r).abs() / m.max(f64::MIN_POSITIVE);
        assert!(
            err <= bound,
            "{what}, output {k}: {y} vs {r} (error {err:e} of Σ|terms| {m})"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn forward_matches_a_double_precision_sum() {
    let mut worst = 0.0f64;
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 500 + i as u64);
        let Some(wg) = wino(&fg) else { return };
        let mut got = vec![f32::NAN; g.n * g.img_out()];
        conv_wino::forward(&wg, g.n, x.data(), w.data(), Some(b.data()), &mut got);
        let what = format!("case {c:?}");
        worst = worst.max(check_forward(&what, &g, [&x, &w, &b], &got, 2e-6));
    }
    eprintln!("largest error relative to the sum of absolute terms: {worst:e}");
}

#[test]
fn input_gradient_matches_im2col_gemm_and_finite_differences() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, _) = setup(c, 520 + i as u64);
        if wino(&fg).is_none() {
            return;
        }
        // The input gradient's correlation (outputs as wide as the input)
        // takes the transform too.
        let back = FlatGeom {
            cin: g.cout,
            cout: g.cin,
            h: g.col.oh,
            w: g.col.ow,
            kh: fg.kh,
            kw: fg.kw,
            ph: fg.kh - 1 - fg.ph,
            pw: fg.kw - 1 - fg.pw,
        };
        assert!(fg.w >= conv_wino::MIN_OUT_WIDTH, "case {c:?}");
        let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(540 + i as u64));
        let mut dw = vec![0.0f32; g.weight_len()];
        let mut sums = vec![0.0f64; g.n * g.cout];
        let mut want = vec![0.0f32; g.n * g.img_in()];
        let (xd, wd) = (x.data(), w.data());
        backward_gemm(&g, xd, wd, dy.data(), &mut dw, Some(&mut want), &mut sums).unwrap();
        // The input gradient by the transform: the forward correlation of
        // `dy` with the flipped weights (what the backward pass runs at
        // batches that take the transforms).
        let mut got = vec![f32::NAN; want.len()];
        let wf = conv_flat::flipped_weights(g.cout, g.cin, fg.kh, fg.kw, wd);
        let bg = WinoGeom::new(&back).expect("outputs at least 8 wide");
        conv_wino::forward(&bg, g.n, dy.data(), &wf, None, &mut got);
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        assert_close(&got, &want, 1e-4, 1e-4, &format!("case {c:?}"));
    }
    // Finite differences of the transformed forward pass on a small case
    // against the (direct) input gradient.
    let c = [1, 2, 5, 10, 3, 3, 3, 1, 1];
    let (g, fg, x, w, _) = setup(&c, 560);
    let Some(wg) = wino(&fg) else { return };
    let r = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(561));
    let mut dx = vec![0.0f32; g.n * g.img_in()];
    input_grad_direct(&g, w.data(), r.data(), &mut dx);
    let loss = |xv: &[f32]| {
        let mut y = vec![0.0f32; g.n * g.img_out()];
        conv_wino::forward(&wg, g.n, xv, w.data(), None, &mut y);
        dot_loss(&y, r.data())
    };
    let fd = fd_grad(x.data(), 1e-2, loss);
    assert_grad_close(&dx, &fd, 1e-2, 1e-3, &format!("case {c:?}"));
}

/// Any thread count, and each image alone (on one thread, or split by
/// channel blocks when large), give the values of the batch to the bit.
#[test]
fn thread_counts_and_single_images_give_identical_results() {
    let mut cases = CASES.to_vec();
    // A single image of this layer is over the split bound.
    cases.push([2, 32, 28, 28, 40, 3, 3, 1, 1]);
    for (i, c) in cases.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 580 + i as u64);
        let Some(wg) = wino(&fg) else { return };
        let (img_in, img_out) = (g.img_in(), g.img_out());
        let pool = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        };
        let run = |threads: usize, n: usize, x: &[f32]| {
            let mut y = vec![f32::NAN; n * img_out];
            pool(threads)
                .install(|| conv_wino::forward(&wg, n, x, w.data(), Some(b.data()), &mut y));
            y
        };
        let y1 = run(1, g.n, x.data());
        assert_eq!(y1, run(2, g.n, x.data()), "case {c:?}: 1 vs 2 threads");
        assert_eq!(y1, run(3, g.n, x.data()), "case {c:?}: 1 vs 3 threads");
        for ni in 0..g.n {
            let xi = &x.data()[ni * img_in..(ni + 1) * img_in];
            for threads in [1, 2] {
                assert_eq!(
                    run(threads, 1, xi),
                    y1[ni * img_out..(ni + 1) * img_out],
                    "case {c:?}: image {ni} alone on {threads} threads"
                );
            }
        }
    }
    assert!(setup(cases.last().unwrap(), 0).1.macs() >= conv_flat::SPLIT_MIN_MACS);
}

#[test]
fn vector_and_scalar_transforms_agree() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    // The input transform from the image values against the scalar one on
    // the padded plane, for planes narrower and wider than a vector,
    // padding 0–2 and pitches with slack: every tile inside the plane.
    let mut r = rng(600);
    for (h, w, ph, pw, wp) in [
        (28, 28, 1, 1, 32),
        (14, 14, 1, 1, 16),
        (9, 11, 2, 0, 12),
        (5, 3, 0, 2, 8),
        (7, 30, 1, 2, 36),
    ] {
        let hp = h + 2 * ph;
        let x = rand_vec(h * w, &mut r);
        let tiles = (hp * wp / 4).next_multiple_of(16);
        let pad = Padding {
            cin: 1,
            h,
            w,
            ph,
            pw,
            hp,
            wp,
        };
        let mut p = vec![f32::NAN; 4 * tiles + 8];
        pad.apply_scalar(&x, &mut p);
        let (stride, at) = (tiles + 16, 5);
        let (mut a, mut s) = (vec![0.0f32; at + 6 * stride], vec![1.0f32; at + 6 * stride]);
        let planes = conv_wino::PadPlane::new(h, w, ph, pw, wp, tiles / 4 + 1);
        conv_wino::input_transform_padded(&x, &planes, tiles, &mut a, at, stride);
        conv_wino::input_transform_scalar(&p, tiles, &mut s, at, stride);
        let inside = (hp * wp - 6) / 4 + 1;
        for xi in 0..6 {
            let r = at + xi * stride..at + xi * stride + inside;
            assert_eq!(
                a[r.clone()],
                s[r],
                "input transform, {h}×{w} pad {ph},{pw} pitch {wp}, row {xi}"
            );
        }
    }
    let tiles = 48;
    let (stride, at) = (tiles + 16, 5);
    // The output transform straight into planes of every row width for
    // pitches (multiples of four) whose rows meet the vectors in every
    // way: a vector in one row, across one or two row ends.
    let m = rand_vec(at + 6 * stride, &mut rng(601));
    let mut spare = vec![0.0f32; 4 * tiles];
    for pitch in [12, 16, 20, 28, 32, 36, 64] {
        for width in [1, pitch / 2, pitch - 3, pitch - 2, pitch] {
            let rows = conv_wino::RowMasks::new(pitch, width);
            let n = (4 * tiles / pitch).min(9);
            let (mut a, mut s) = (vec![f32::NAN; n * width], vec![1.0f32; n * width]);
            // SAFETY: every value is written before it is read.
            let (ua, us) = unsafe {
                (
                    super::conv::as_uninit(&mut a),
                    super::conv::as_uninit(&mut s),
                )
            };
            conv_wino::output_plane(&m, at, stride, tiles, 0.375, &rows, ua);
            conv_wino::output_plane_scalar(&m, at, stride, tiles, 0.375, &rows, us, &mut spare);
            assert_eq!(a, s, "output transform, pitch {pitch}, width {width}");
        }
    }
}

/// The transform is taken by the default rule where it applies, and only
/// there: 3-wide kernels with outputs at least 8 wide.
#[test]
fn applies_to_three_wide_kernels_with_wide_enough_outputs() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    let geom = |w: usize, kw: usize, pw: usize| FlatGeom {
        cin: 4,
        cout: 4,
        h: 6,
        w,
        kh: 3,
        kw,
        ph: 1,
        pw,
    };
    assert!(WinoGeom::new(&geom(8, 3, 1)).is_some());
    assert!(WinoGeom::new(&geom(7, 3, 1)).is_none(), "7 wide");
    assert!(
        WinoGeom::new(&geom(10, 3, 0)).is_some(),
        "8 wide without padding"
    );
    assert!(
        WinoGeom::new(&geom(9, 3, 0)).is_none(),
        "7 wide without padding"
    );
    assert!(WinoGeom::new(&geom(14, 5, 2)).is_none(), "5 wide kernel");
    assert!(WinoGeom::new(&geom(14, 2, 1)).is_none(), "2 wide kernel");
}

/// The weight gradient in double precision and per weight the sum of the
/// absolute values of its terms.
pub(super) fn weight_reference(g: &ConvGeom, x: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let c = &g.col;
    let (n, cin, cout) = (g.n, g.cin, g.cout);
    let (mut dw, mut mag) = (Vec::new(), Vec::new());
    for co in 0..cout {
        for ci in 0..cin {
            for ki in 0..c.kh {
                for kj in 0..c.kw {
                    let (mut s, mut a) = (0.0f64, 0.0f64);
                    for ni in 0..n {
                        for oh in 0..c.oh {
                            for ow in 0..c.ow {
                                let (ih, iw) = (oh * c.sh + ki, ow * c.sw + kj);
                                if ih < c.ph || iw < c.pw || ih - c.ph >= c.h || iw - c.pw >= c.w {
                                    continue;
                                }
                                let xv =
                                    x[((ni * cin + ci) * c.h + ih - c.ph) * c.w + iw - c.pw] as f64;
                                let gv = dy[((ni * cout + co) * c.oh + oh) * c.ow + ow] as f64;
                                s += xv * gv;
                                a += (xv * gv).abs();
                            }
                        }
                    }
                    dw.push(s);
                    mag.push(a);
                }
            }
        }
    }
    (dw, mag)
}

/// A weight gradient `run(threads, fg, n, x, dy, dw, sums)` checked on
/// `cases`: the same on 1, 2 and 3 threads, within `tol` of the sum of
/// absolute terms of a double-precision sum, and the bias sums; returns the
/// largest relative error.
#[allow(clippy::type_complexity)]
pub(super) fn check_weight_grad(
    cases: &[[usize; 9]],
    seed: u64,
    tol: f64,
    run: &(dyn Fn(&FlatGeom, usize, &[f32], &[f32], &mut [f32], &mut [f64]) + Sync),
) -> f64 {
    let mut worst = 0.0f64;
    for (i, c) in cases.iter().enumerate() {
        let (g, fg, x, _, _) = setup(c, seed + i as u64);
        let dy = rand_tensor(
            &[g.n, g.cout, g.col.oh, g.col.ow],
            &mut rng(seed + 20 + i as u64),
        );
        let on = |threads: usize| {
            let mut dw = vec![f32::NAN; g.weight_len()];
            let mut sums = vec![f64::NAN; g.n * g.cout];
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run(&fg, g.n, x.data(), dy.data(), &mut dw, &mut sums));
            (dw, sums)
        };
        let (dw, sums) = on(1);
        assert_eq!(
            (dw.clone(), sums.clone()),
            on(2),
            "case {c:?}: 1 vs 2 threads"
        );
        assert_eq!(
            (dw.clone(), sums.clone()),
            on(3),
            "case {c:?}: 1 vs 3 threads"
        );
        let (want, mag) = weight_reference(&g, x.data(), dy.data());
        for (k, ((&v, &r), &m)) in dw.iter().zip(&want).zip(&mag).enumerate() {
            let err = (v as f64 - r).abs() / m.max(f64::MIN_POSITIVE);
            assert!(
                err <= tol,
                "case {c:?}, weight {k}: {v} vs {r} (error {err:e} of Σ|terms| {m})"
            );
            worst = worst.max(err);
        }
        let plane = g.col.oh * g.col.ow;
        for (k, &s) in sums.iter().enumerate() {
            let want: f64 = dy.data()[k * plane..(k + 1) * plane]
                .iter()
                .map(|&v| v as f64)
                .sum();
            assert!(
                (s - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "case {c:?}: sum {k}"
            );
        }
    }
    worst
}

#[test]
fn weight_gradient_matches_a_double_precision_sum_for_any_thread_count() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the Winograd path is not used here");
        return;
    }
    let mut cases = CASES.to_vec();
    // Nine images: chunks of two (the GEMM path's fixed chunking).
    cases.push([9, 6, 12, 12, 5, 3, 3, 1, 1]);
    let worst = check_weight_grad(&cases, 620, 2e-6, &|fg, n, x, dy, dw, sums| {
        let wg = WinoGeom::new(fg).expect("a 3-wide kernel, outputs at least 8 wide");
        conv_wino_grad::weight_grad(&wg, n, x, dy, dw, sums)
    });
    eprintln!("largest weight-gradient error relative to the sum of absolute terms: {worst:e}");
}

#[test]
fn weight_gradient_matches_finite_differences() {
    let c = [2, 2, 5, 9, 3, 3, 3, 1, 1];
    let (g, fg, x, w, _) = setup(&c, 660);
    let Some(wg) = wino(&fg) else { return };
    let r = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(661));
    let mut dw = vec![0.0f32; g.weight_len()];
    let mut sums = vec![0.0f64; g.n * g.cout];
    conv_wino_grad::weight_grad(&wg, g.n, x.data(), r.data(), &mut dw, &mut sums);
    let loss = |wv: &[f32]| {
        let mut y = vec![0.0f32; g.n * g.img_out()];
        conv_wino::forward(&wg, g.n, x.data(), wv, None, &mut y);
        dot_loss(&y, r.data())
    };
    let fd = fd_grad(w.data(), 1e-2, loss);
    assert_grad_close(&dw, &fd, 1e-2, 1e-3, &format!("case {c:?}"));
}

#[test]
fn vector_and_scalar_gradient_transforms_agree() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    let tiles = 48;
    let (stride, at) = (tiles + 16, 3);
    let d = rand_vec(4 * tiles, &mut rng(680));
    let (mut a, mut s) = (vec![0.0f32; at + 6 * stride], vec![1.0f32; at + 6 * stride]);
    conv_wino_grad::gradient_transform(&d, tiles, &mut a, at, stride);
    conv_wino_grad::gradient_transform_scalar(&d, tiles, &mut s, at, stride);
    for xi in 0..6 {
        let r = at + xi * stride..at + xi * stride + tiles;
        assert_eq!(a[r.clone()], s[r], "row {xi}");
    }
}
