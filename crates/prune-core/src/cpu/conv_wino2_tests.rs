//! Tests of the 2-D Winograd convolution (`conv_wino2.rs`): the forward
//! pass and the weight gradient against double-precision sums (bounded by
//! the sum of absolute terms), finite differences, thread counts, and
//! single images against the batch. Skipped (with a message) where the
//! vector kernel does not run, since the transform is used only there.

use super::conv_flat::{self, FlatGeom};
use super::conv_wino2::{self, Wino2};
use super::conv_wino_tests::{check_forward, check_weight_grad, setup};
use super::test_util::{assert_grad_close, dot_loss, fd_grad, rand_tensor, rng};

/// `(n, cin, h, w, cout, 3, 3, ph, pw)`: ResNet's 16/32/64 channels on
/// 28×28, 14×14 and 7×7, VGG-like's 32×32 to 4×4 and 2×2, pruned counts,
/// planes whose sides are not multiples of four, no padding, a padding of
/// 2, more than 64 output columns (several vectors of tiles per row), and
/// enough images for several groups; in the forward pass, bands of tile
/// rows of several lane sets of 16 images, whole planes of several sets,
/// and partial last sets.
const CASES: &[[usize; 9]] = &[
    [2, 16, 28, 28, 16, 3, 3, 1, 1],
    [3, 32, 14, 14, 32, 3, 3, 1, 1],
    [5, 64, 7, 7, 64, 3, 3, 1, 1],
    [2, 17, 14, 14, 26, 3, 3, 1, 1],
    [3, 9, 7, 7, 33, 3, 3, 1, 1],
    [2, 3, 32, 32, 8, 3, 3, 1, 1],
    [4, 12, 4, 4, 10, 3, 3, 1, 1],
    [6, 8, 2, 2, 7, 3, 3, 1, 1],
    [1, 5, 9, 13, 7, 3, 3, 0, 0],
    [2, 4, 10, 11, 6, 3, 3, 2, 2],
    [1, 2, 5, 70, 3, 3, 3, 1, 1],
    [37, 3, 5, 6, 4, 3, 3, 1, 1],
    [40, 32, 14, 14, 17, 3, 3, 1, 1],
    [35, 33, 7, 7, 20, 3, 3, 1, 1],
    [18, 16, 32, 32, 9, 3, 3, 1, 1],
];

fn wino(fg: &FlatGeom) -> Option<Wino2> {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the Winograd path is not used here");
        return None;
    }
    Some(Wino2::new(fg).expect("every case has a 3×3 kernel"))
}

#[test]
fn forward_matches_a_double_precision_sum() {
    let mut worst = 0.0f64;
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 700 + i as u64);
        let Some(wg) = wino(&fg) else { return };
        let mut got = vec![f32::NAN; g.n * g.img_out()];
        conv_wino2::forward(&wg, g.n, x.data(), w.data(), Some(b.data()), &mut got);
        let what = format!("case {c:?}");
        worst = worst.max(check_forward(&what, &g, [&x, &w, &b], &got, 1e-5));
    }
    eprintln!("largest error relative to the sum of absolute terms: {worst:e}");
}

/// Any thread count, and each image alone (on one thread, or split by
/// channel blocks when large), give the values of the batch to the bit;
/// so does a batch of fewer groups than threads, split by channel blocks
/// (wide channels on a 4×4 map: one tile per image).
#[test]
fn thread_counts_and_single_images_give_identical_results() {
    let mut cases = CASES.to_vec();
    cases.push([2, 32, 28, 28, 40, 3, 3, 1, 1]);
    cases.push([4, 136, 4, 4, 132, 3, 3, 1, 1]);
    for (i, c) in cases.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 720 + i as u64);
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
                .install(|| conv_wino2::forward(&wg, n, x, w.data(), Some(b.data()), &mut y));
            y
        };
        let y1 = run(1, g.n, x.data());
        assert_eq!(y1, run(2, g.n, x.data()), "case {c:?}: 1 vs 2 threads");
        assert_eq!(y1, run(3, g.n, x.data()), "case {c:?}: 1 vs 3 threads");
        for ni in 0..g.n.min(3) {
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

/// The AVX-512 runs of 16 channel pairs give the transformed weights of the
/// portable formulas to the bit (a layer with a partial last run, and one
/// spread over several parallel tasks).
#[test]
fn weight_transform_runs_agree_with_the_portable_formulas() {
    for (cout, cin, seed) in [(7, 17, 790), (64, 33, 791)] {
        let c = [1, cin, 4, 4, cout, 3, 3, 1, 1];
        let (_, fg, _, w, _) = setup(&c, seed);
        if wino(&fg).is_none() {
            return;
        }
        let got = conv_wino2::transform_weights(&fg, w.data());
        let want = conv_wino2::transform_weights_portable(cout * cin, w.data());
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{cout}×{cin}: value {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn weight_gradient_matches_a_double_precision_sum_for_any_thread_count() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the Winograd path is not used here");
        return;
    }
    let worst = check_weight_grad(CASES, 740, 4e-6, &|fg, n, x, dy, dw, sums| {
        let wg = Wino2::new(fg).expect("a 3×3 kernel");
        conv_wino2::weight_grad(&wg, n, x, dy, dw, sums)
    });
    eprintln!("largest weight-gradient error relative to the sum of absolute terms: {worst:e}");
}

/// Layers of at least 64 × 64 channel pairs sum the whole batch into one
/// transformed gradient: in one group, and in groups of one and two images.
#[test]
fn wide_weight_gradient_matches_a_double_precision_sum_in_any_grouping() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the Winograd path is not used here");
        return;
    }
    let cases = [
        [5, 136, 4, 4, 132, 3, 3, 1, 1],
        [3, 130, 6, 5, 129, 3, 3, 1, 1],
    ];
    // Transformed bytes per image of the first case: 4·36·(cin + cout)·tiles.
    let per_image = 4 * 36 * (136 + 132);
    for (budget, seed) in [(usize::MAX, 760), (per_image, 770), (2 * per_image, 780)] {
        let worst = check_weight_grad(&cases, seed, 4e-6, &|fg, n, x, dy, dw, sums| {
            let wg = Wino2::new(fg).expect("a 3×3 kernel");
            conv_wino2::weight_grad_in(&wg, n, x, dy, dw, sums, budget)
        });
        eprintln!("groups of {budget} bytes: largest error {worst:e} of Σ|terms|");
    }
}

#[test]
fn gradients_match_finite_differences() {
    let c = [2, 2, 6, 9, 3, 3, 3, 1, 1];
    let (g, fg, x, w, _) = setup(&c, 780);
    let Some(wg) = wino(&fg) else { return };
    let r = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(781));
    let mut dw = vec![0.0f32; g.weight_len()];
    let mut sums = vec![0.0f64; g.n * g.cout];
    conv_wino2::weight_grad(&wg, g.n, x.data(), r.data(), &mut dw, &mut sums);
    let loss = |xv: &[f32], wv: &[f32]| {
        let mut y = vec![0.0f32; g.n * g.img_out()];
        conv_wino2::forward(&wg, g.n, xv, wv, None, &mut y);
        dot_loss(&y, r.data())
    };
    let fd = fd_grad(w.data(), 1e-2, |wv| loss(x.data(), wv));
    assert_grad_close(&dw, &fd, 1e-2, 1e-3, &format!("case {c:?}: weights"));
}

/// Through the public ops at a batch that takes the transforms: each 3×3
/// layer's form by the rule (2-D on 7×7 and 14×14, and on 28×28 with 32
/// channels; row-wise on 28×28 with 16 and on 14×14 with 8 input
/// channels), output and gradients against a
/// double-precision sum and the im2col + GEMM backward.
#[test]
fn the_ops_take_the_transforms_at_large_batches() {
    use super::conv::{conv2d_backward, conv2d_forward, Conv2dParams};
    use super::conv_backward::backward_gemm;
    use super::conv_tune::{self, Transform};
    let n = conv_tune::TRANSFORM_MIN_BATCH;
    for (i, c) in [
        [n, 16, 7, 7, 16, 3, 3, 1, 1],
        [n, 16, 14, 14, 12, 3, 3, 1, 1],
        [n, 8, 14, 14, 12, 3, 3, 1, 1],
        [n, 4, 28, 28, 4, 3, 3, 1, 1],
        [n, 32, 12, 20, 32, 3, 3, 1, 1],
    ]
    .iter()
    .enumerate()
    {
        let (g, fg, x, w, b) = setup(c, 800 + i as u64);
        if !conv_flat::vectorised() {
            eprintln!("SKIPPED: no AVX-512 on this CPU; the Winograd path is not used here");
            return;
        }
        let form = conv_tune::transform(&fg, n);
        let narrow = c[1] <= conv_tune::NARROW_MAX_CIN && c[3] >= conv_tune::NARROW_MIN_WIDTH;
        let want_tiles = (c[3] <= conv_tune::TILES_MAX_WIDTH && !narrow) || c[1] >= 32;
        assert_eq!(
            matches!(form, Some(Transform::Tiles(_))),
            want_tiles,
            "case {c:?}"
        );
        assert!(form.is_some(), "case {c:?}");
        let p = Conv2dParams {
            stride: (1, 1),
            padding: (1, 1),
            groups: 1,
        };
        let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
        check_forward(&format!("case {c:?}"), &g, [&x, &w, &b], y.data(), 1e-5);
        let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(820 + i as u64));
        let grads = conv2d_backward(&x, &w, &dy, &p, true).unwrap();
        let mut dw = vec![0.0f32; g.weight_len()];
        let mut sums = vec![0.0f64; g.n * g.cout];
        let mut dx = vec![0.0f32; g.n * g.img_in()];
        backward_gemm(
            &g,
            x.data(),
            w.data(),
            dy.data(),
            &mut dw,
            Some(&mut dx),
            &mut sums,
        )
        .unwrap();
        let close = |got: &[f32], want: &[f32], what: &str| {
            let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            for (k, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * scale,
                    "case {c:?}, {what} {k}: {a} vs {b}"
                );
            }
        };
        close(grads.w.data(), &dw, "weight gradient");
        close(
            grads.x.as_ref().expect("input gradient").data(),
            &dx,
            "input gradient",
        );
    }
}

/// The 16 × 16 transpose that moves rows into and out of the lanes.
#[cfg(target_arch = "x86_64")]
#[test]
fn lane_transpose_is_exact() {
    use std::arch::x86_64::*;
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the lane transpose is not used here");
        return;
    }
    let vals: Vec<f32> = (0..256).map(|i| i as f32 * 1.5 - 7.0).collect();
    let mut out = [[0f32; 16]; 16];
    // SAFETY: AVX-512F was detected; every load and store is of 16 values
    // inside `vals` or `out`.
    unsafe {
        let rows: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(vals[16 * i..].as_ptr()));
        for (o, v) in out.iter_mut().zip(conv_wino2::lanes::transpose(rows)) {
            _mm512_storeu_ps(o.as_mut_ptr(), v);
        }
    }
    for (j, row) in out.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            assert_eq!(v, vals[16 * i + j], "out[{j}][{i}]");
        }
    }
}

/// The forward pass's tasks: bands of tile rows where a lane set's planes
/// exceed the transformed-input budget, whole planes of several sets with
/// the task count a multiple of the threads, and a single task (which
/// splits its channels) rather than tasks under `MIN_TILES` tiles.
#[cfg(target_arch = "x86_64")]
#[test]
fn forward_tasks_fit_the_budget_and_the_threads() {
    use conv_wino2::lanes::Tiling;
    let Some(_) = wino(&setup(&CASES[0], 0).1) else {
        return;
    };
    let tiling = |n: usize, cin: usize, hw: usize| {
        let (_, fg, ..) = setup(&[1, cin, hw, hw, 8, 3, 3, 1, 1], 0);
        let wg = Wino2::new(&fg).expect("3×3");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| Tiling::new(&wg, n))
    };
    // 14×14: 16 tiles per image, 256 per set; 32 channels hold ~227 tiles.
    assert_eq!(tiling(128, 32, 14), Tiling { sets: 1, band: 2 });
    // 7×7 with 33 channels: ~220 tiles, 3 sets of 64 → 3 tasks, rounded to 4.
    assert_eq!(tiling(128, 33, 7), Tiling { sets: 2, band: 2 });
    // 4×4 with 512 channels: 2 tasks of 32 tiles would be under MIN_TILES.
    assert_eq!(tiling(64, 512, 4), Tiling { sets: 4, band: 1 });
    // 32×32 with 64 channels: one tile row (128 tiles) per task.
    assert_eq!(tiling(64, 64, 32), Tiling { sets: 1, band: 1 });
}
