//! Tests of the direct stride-1 kernel (`conv_flat.rs`) against the
//! im2col + GEMM path, against finite differences, across thread counts and
//! between its scalar and vector micro-kernels.

use super::conv::{forward_gemm, geometry, input_grad_direct, Conv2dParams, ConvGeom};
use super::conv_backward::backward_gemm;
use super::conv_flat::{self, FlatGeom, Kernel};
use super::conv_flat_grad::weight_grad;
use super::test_util::{assert_close, assert_grad_close, dot_loss, fd_grad, rand_tensor, rng};
use crate::tensor::Tensor;

/// `(n, cin, h, w, cout, kh, kw, ph, pw)`: ResNet shapes (16–64 channels,
/// 28×28 → 7×7), pruned counts (17, 26, 45, 9), batch 1, 5×5 and
/// rectangular kernels, and padding smaller than "same".
const CASES: &[[usize; 9]] = &[
    [2, 16, 28, 28, 16, 3, 3, 1, 1],
    [1, 32, 14, 14, 32, 3, 3, 1, 1],
    [3, 64, 7, 7, 64, 3, 3, 1, 1],
    [2, 17, 14, 14, 26, 3, 3, 1, 1],
    [1, 45, 7, 7, 9, 3, 3, 1, 1],
    [2, 26, 9, 11, 45, 3, 3, 1, 1],
    [1, 3, 12, 12, 5, 5, 5, 0, 0],
    [2, 5, 8, 6, 7, 3, 2, 0, 1],
    [1, 1, 5, 5, 3, 2, 2, 1, 1],
    [2, 9, 14, 14, 17, 3, 3, 1, 1],
    [1, 17, 7, 7, 33, 3, 3, 1, 1],
];

#[test]
fn pruned_channel_counts_start_with_wide_blocks_instead_of_ending_in_narrow_ones() {
    let widths = |c: usize| -> Vec<usize> {
        conv_flat::channel_blocks(c)
            .iter()
            .map(|&(a, b)| b - a)
            .collect()
    };
    assert_eq!(widths(9), [5, 4]);
    assert_eq!(widths(17), [5, 4, 4, 4]);
    assert_eq!(widths(10), [5, 5]);
    assert_eq!(widths(14), [5, 5, 4]);
    assert_eq!(widths(16), [4, 4, 4, 4]);
    assert_eq!(widths(7), [4, 3]);
    assert_eq!(widths(6), [3, 3]);
    assert_eq!(widths(5), [5]);
    assert_eq!(widths(1), [1]);
    assert_eq!(widths(2), [2]);
    assert!(widths(0).is_empty());
    let blocks = conv_flat::channel_blocks(33);
    assert_eq!((blocks[0].0, blocks.last().unwrap().1), (0, 33));
    assert!(blocks.windows(2).all(|p| p[0].1 == p[1].0));
}

/// The geometry and random input, weights and bias of a case
/// `(n, cin, h, w, cout, kh, kw, ph, pw)` with `stride` both ways and one
/// group.
pub(super) fn inputs(c: &[usize; 9], stride: usize, seed: u64) -> (ConvGeom, [Tensor; 3]) {
    let [n, cin, h, w, cout, kh, kw, ph, pw] = *c;
    let mut r = rng(seed);
    let x = rand_tensor(&[n, cin, h, w], &mut r);
    let wt = rand_tensor(&[cout, cin, kh, kw], &mut r);
    let b = rand_tensor(&[cout], &mut r);
    let p = Conv2dParams {
        stride: (stride, stride),
        padding: (ph, pw),
        groups: 1,
    };
    (geometry("test", &x, &wt, &p).unwrap(), [x, wt, b])
}

/// The geometries and random input, weights and bias of a case
/// `(n, cin, h, w, cout, kh, kw, ph, pw)` (stride 1, one group).
pub(super) fn setup(c: &[usize; 9], seed: u64) -> (ConvGeom, FlatGeom, Tensor, Tensor, Tensor) {
    let [_, cin, h, w, cout, kh, kw, ph, pw] = *c;
    let (g, [x, wt, b]) = inputs(c, 1, seed);
    let fg = FlatGeom {
        cin,
        cout,
        h,
        w,
        kh,
        kw,
        ph,
        pw,
    };
    (g, fg, x, wt, b)
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| v as f64).collect()
}

#[test]
fn forward_matches_im2col_gemm() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 10 + i as u64);
        let len = g.n * g.img_out();
        assert_eq!(fg.out_hw(), (g.col.oh, g.col.ow));
        let mut want = vec![0.0f32; len];
        forward_gemm(&g, x.data(), w.data(), Some(b.data()), &mut want).unwrap();
        let mut got = vec![f32::NAN; len];
        conv_flat::forward(&fg, g.n, x.data(), w.data(), Some(b.data()), &mut got);
        assert_close(&got, &widen(&want), 1e-5, 2e-5, &format!("case {c:?}"));
    }
}

#[test]
fn input_gradient_matches_im2col_gemm() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, _, x, w, _) = setup(c, 30 + i as u64);
        let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(50 + i as u64));
        let mut dw = vec![0.0f32; g.weight_len()];
        let mut sums = vec![0.0f64; g.n * g.cout];
        let mut want = vec![0.0f32; g.n * g.img_in()];
        backward_gemm(
            &g,
            x.data(),
            w.data(),
            dy.data(),
            &mut dw,
            Some(&mut want),
            &mut sums,
        )
        .unwrap();
        let mut got = vec![f32::NAN; want.len()];
        input_grad_direct(&g, w.data(), dy.data(), &mut got);
        assert_close(&got, &widen(&want), 1e-5, 2e-5, &format!("case {c:?}"));
    }
}

#[test]
fn input_gradient_matches_finite_differences() {
    for (i, c) in [[2, 3, 5, 6, 4, 3, 3, 1, 1], [1, 2, 6, 5, 3, 3, 2, 0, 1]]
        .iter()
        .enumerate()
    {
        let (g, fg, x, w, _) = setup(c, 70 + i as u64);
        let r = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(80 + i as u64));
        let mut dx = vec![0.0f32; g.n * g.img_in()];
        input_grad_direct(&g, w.data(), r.data(), &mut dx);
        let loss = |xv: &[f32]| {
            let mut y = vec![0.0f32; g.n * g.img_out()];
            conv_flat::forward(&fg, g.n, xv, w.data(), None, &mut y);
            dot_loss(&y, r.data())
        };
        let fd = fd_grad(x.data(), 1e-2, loss);
        assert_grad_close(&dx, &fd, 1e-2, 1e-3, &format!("case {c:?}"));
    }
}

#[test]
fn single_images_and_thread_counts_give_identical_results() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 90 + i as u64);
        let len = g.n * g.img_out();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut y = vec![0.0f32; len];
            pool.install(|| {
                conv_flat::forward(&fg, g.n, x.data(), w.data(), Some(b.data()), &mut y)
            });
            y
        };
        let y1 = run(1);
        assert_eq!(y1, run(2), "case {c:?}: 1 vs 2 threads");
        assert_eq!(y1, run(3), "case {c:?}: 1 vs 3 threads");
        // Each image alone (the channel-block split) equals its slice of the batch.
        let (img_in, img_out) = (g.img_in(), g.img_out());
        for ni in 0..g.n {
            let mut yi = vec![0.0f32; img_out];
            let xi = &x.data()[ni * img_in..(ni + 1) * img_in];
            conv_flat::forward(&fg, 1, xi, w.data(), Some(b.data()), &mut yi);
            assert_eq!(
                yi,
                y1[ni * img_out..(ni + 1) * img_out],
                "case {c:?}: image {ni}"
            );
        }
    }
}

/// A single image under [`conv_flat::SPLIT_MIN_MACS`] runs on one thread;
/// over it, split by rows (28×28) or by channel blocks (7×7). Each way gives
/// the values of the same image inside a batch, for any thread count.
#[test]
fn single_images_over_and_under_the_split_bound_match_the_batch() {
    let cases: &[[usize; 9]] = &[
        [2, 16, 28, 28, 16, 3, 3, 1, 1],
        [2, 16, 28, 28, 24, 3, 3, 1, 1],
        [2, 64, 7, 7, 96, 3, 3, 1, 1],
    ];
    let over: Vec<bool> = cases
        .iter()
        .map(|c| setup(c, 0).1.macs() >= conv_flat::SPLIT_MIN_MACS)
        .collect();
    assert_eq!(over, [false, true, true]);
    for (i, c) in cases.iter().enumerate() {
        let (g, fg, x, w, b) = setup(c, 300 + i as u64);
        let (img_in, img_out) = (g.img_in(), g.img_out());
        let mut batch = vec![f32::NAN; g.n * img_out];
        conv_flat::forward(&fg, g.n, x.data(), w.data(), Some(b.data()), &mut batch);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for ni in 0..g.n {
                let mut yi = vec![f32::NAN; img_out];
                let xi = &x.data()[ni * img_in..(ni + 1) * img_in];
                pool.install(|| conv_flat::forward(&fg, 1, xi, w.data(), Some(b.data()), &mut yi));
                assert_eq!(
                    yi,
                    batch[ni * img_out..(ni + 1) * img_out],
                    "case {c:?}, image {ni}, {threads} threads"
                );
            }
        }
    }
}

#[test]
fn vector_and_scalar_micro_kernels_agree() {
    let kern = Kernel::detect();
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, _) = setup(c, 110 + i as u64);
        let mut p = vec![0.0f32; fg.padded_len()];
        conv_flat::pad_image(&fg, &x.data()[..g.img_in()], &mut p);
        let (taps, npos) = (fg.taps(), fg.positions());
        for nco in 1..=g.cout.min(4) {
            let mut a = vec![0.0f32; nco * npos];
            let mut s = vec![1.0f32; nco * npos];
            kern.run(&fg, &p, w.data(), &taps, nco, &mut a, npos);
            Kernel::Scalar.run(&fg, &p, w.data(), &taps, nco, &mut s, npos);
            // Same products, same order, fused multiply-adds in both.
            assert_eq!(a, s, "case {c:?}, {nco} channels");
        }
    }
}

#[test]
fn weight_gradient_matches_im2col_gemm_for_any_thread_count() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, w, _) = setup(c, 130 + i as u64);
        let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(150 + i as u64));
        let mut want = vec![0.0f32; g.weight_len()];
        let mut want_sums = vec![0.0f64; g.n * g.cout];
        backward_gemm(
            &g,
            x.data(),
            w.data(),
            dy.data(),
            &mut want,
            None,
            &mut want_sums,
        )
        .unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut dw = vec![f32::NAN; g.weight_len()];
            let mut sums = vec![f64::NAN; g.n * g.cout];
            pool.install(|| weight_grad(&fg, g.n, x.data(), dy.data(), &mut dw, &mut sums));
            (dw, sums)
        };
        let (dw, sums) = run(1);
        // Sums of up to 3·28·30 products of values in [-1, 1).
        assert_close(&dw, &widen(&want), 1e-4, 1e-4, &format!("case {c:?}: dw"));
        assert_eq!(sums, want_sums, "case {c:?}: bias sums");
        assert_eq!((dw, sums), run(3), "case {c:?}: 1 vs 3 threads");
    }
}

#[test]
fn weight_gradient_matches_finite_differences() {
    let c = [2, 3, 5, 6, 4, 3, 3, 1, 1];
    let (g, fg, x, w, _) = setup(&c, 170);
    let r = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(171));
    let mut dw = vec![0.0f32; g.weight_len()];
    let mut sums = vec![0.0f64; g.n * g.cout];
    weight_grad(&fg, g.n, x.data(), r.data(), &mut dw, &mut sums);
    let loss = |wv: &[f32]| {
        let mut y = vec![0.0f32; g.n * g.img_out()];
        conv_flat::forward(&fg, g.n, x.data(), wv, None, &mut y);
        dot_loss(&y, r.data())
    };
    let fd = fd_grad(w.data(), 1e-2, loss);
    assert_grad_close(&dw, &fd, 1e-2, 1e-3, "weight gradient");
}

#[test]
fn padding_overwrites_whatever_the_buffer_held() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, fg, x, _, _) = setup(c, 150 + i as u64);
        let xi = &x.data()[..g.img_in()];
        let mut got = vec![f32::NAN; fg.padded_len()];
        conv_flat::pad_image(&fg, xi, &mut got);
        // the padded planes built from zeros, value by value
        let [_, cin, h, w, _, _, _, ph, pw] = *c;
        let (hp, wp) = (h + 2 * ph, w + 2 * pw);
        let mut want = vec![0.0f32; fg.padded_len()];
        for ch in 0..cin {
            for r in 0..h {
                for col in 0..w {
                    want[ch * hp * wp + (r + ph) * wp + col + pw] = xi[(ch * h + r) * w + col];
                }
            }
        }
        assert_eq!(got, want, "case {c:?}");
    }
}
