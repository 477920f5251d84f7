//! Tests of the stride-2 direct convolution on phase planes
//! (`conv_phase.rs`): against a double-precision direct sum, across thread
//! counts and between single images and the batch, the per-image pass after
//! the output, and which layers take it. Skipped (with a message) where the
//! vector micro-kernel does not run, since the form is used only there.

use super::conv::{geometry, Conv2dParams, ConvGeom};
use super::conv_flat;
use super::conv_flat_tests::inputs;
use super::conv_phase::{self, PhaseGeom};
use super::conv_wino_tests::check_forward;
use crate::tensor::Tensor;
use std::sync::Mutex;

/// `(n, cin, h, w, cout, kh, kw, ph, pw)`, stride 2: ResNet's downsampling
/// layers (3×3), their pruned counts (17, 33), padded sizes that are odd (a
/// phase one row or column short), 2×2, 4×4, 5×5 and 2×3 kernels, no
/// padding and a padding larger than the kernel's half, and maps smaller
/// than a vector.
pub(super) const CASES: &[[usize; 9]] = &[
    [2, 16, 28, 28, 32, 3, 3, 1, 1],
    [2, 16, 28, 28, 17, 3, 3, 1, 1],
    [3, 32, 14, 14, 64, 3, 3, 1, 1],
    [2, 32, 14, 14, 33, 3, 3, 1, 1],
    [2, 16, 28, 28, 32, 2, 2, 0, 0],
    [2, 6, 12, 12, 8, 4, 4, 1, 3],
    [1, 3, 9, 9, 5, 3, 3, 1, 1],
    [2, 4, 10, 7, 6, 5, 5, 2, 2],
    [2, 5, 8, 9, 7, 2, 3, 0, 1],
    [1, 1, 5, 6, 3, 3, 3, 0, 0],
    [2, 2, 3, 3, 4, 3, 3, 1, 1],
];

/// Geometries and random input, weights and bias of a stride-2 case.
pub(super) fn setup(c: &[usize; 9], seed: u64) -> (ConvGeom, Tensor, Tensor, Tensor) {
    let (g, [x, w, b]) = inputs(c, 2, seed);
    (g, x, w, b)
}

/// The phase geometry, or `None` (after saying so) where the vector kernel
/// does not run on this CPU.
pub(super) fn phase(g: &ConvGeom) -> Option<PhaseGeom> {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the phase form is not used here");
        return None;
    }
    Some(PhaseGeom::of(g).expect("every case is a stride-2, single-group layer"))
}

pub(super) fn forward(pg: &PhaseGeom, n: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let (oh, ow) = pg.out_hw();
    let len = n * pg.cout * oh * ow;
    let mut y = vec![f32::NAN; len];
    // SAFETY: the forward pass writes only finished values.
    let out = unsafe { super::conv::as_uninit(&mut y) };
    conv_phase::forward_post(pg, n, x, w, Some(b), out, &|_, _| {});
    y
}

#[test]
fn forward_matches_a_double_precision_sum() {
    let mut worst = 0.0f64;
    for (i, c) in CASES.iter().enumerate() {
        let (g, x, w, b) = setup(c, 700 + i as u64);
        let Some(pg) = phase(&g) else { return };
        assert_eq!(pg.out_hw(), (g.col.oh, g.col.ow), "case {c:?}");
        let got = forward(&pg, g.n, x.data(), w.data(), b.data());
        let what = format!("case {c:?}");
        worst = worst.max(check_forward(&what, &g, [&x, &w, &b], &got, 1e-6));
    }
    eprintln!("largest error relative to the sum of absolute terms: {worst:e}");
}

#[test]
fn thread_counts_and_single_images_give_identical_results() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, x, w, b) = setup(c, 720 + i as u64);
        let Some(pg) = phase(&g) else { return };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| forward(&pg, g.n, x.data(), w.data(), b.data()))
        };
        let y1 = run(1);
        assert_eq!(y1, run(2), "case {c:?}: 1 vs 2 threads");
        assert_eq!(y1, run(3), "case {c:?}: 1 vs 3 threads");
        let (img_in, img_out) = (g.img_in(), g.img_out());
        for ni in 0..g.n {
            let xi = &x.data()[ni * img_in..(ni + 1) * img_in];
            let yi = forward(&pg, 1, xi, w.data(), b.data());
            assert_eq!(
                yi,
                y1[ni * img_out..(ni + 1) * img_out],
                "case {c:?}: image {ni}"
            );
        }
    }
}

#[test]
fn the_pass_after_the_output_sees_each_image_once() {
    let (g, x, w, b) = setup(&CASES[1], 740);
    let Some(pg) = phase(&g) else { return };
    let plain = forward(&pg, g.n, x.data(), w.data(), b.data());
    let seen = Mutex::new(Vec::new());
    let mut y = vec![f32::NAN; plain.len()];
    // SAFETY: the forward pass writes only finished values.
    let out = unsafe { super::conv::as_uninit(&mut y) };
    conv_phase::forward_post(
        &pg,
        g.n,
        x.data(),
        w.data(),
        Some(b.data()),
        out,
        &|at, ys| {
            seen.lock().unwrap().push((at, ys.len()));
            ys.iter_mut().for_each(|v| *v = v.max(0.0));
        },
    );
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    let img = g.img_out();
    assert_eq!(seen, (0..g.n).map(|i| (i * img, img)).collect::<Vec<_>>());
    let want: Vec<f32> = plain.iter().map(|v| v.max(0.0)).collect();
    assert_eq!(y, want);
}

#[test]
fn applies_to_single_group_stride_two_layers() {
    if !conv_flat::vectorised() {
        eprintln!("SKIPPED: no AVX-512 on this CPU; the phase form is not used here");
        return;
    }
    let geom = |n: usize, cin: usize, cout: usize, hw: usize, stride: (usize, usize), groups| {
        let x = Tensor::zeros(vec![n, cin, hw, hw]);
        let w = Tensor::zeros(vec![cout, cin / groups, 3, 3]);
        let p = Conv2dParams {
            stride,
            padding: (1, 1),
            groups,
        };
        geometry("test", &x, &w, &p).unwrap()
    };
    assert!(PhaseGeom::of(&geom(128, 16, 32, 28, (2, 2), 1)).is_some());
    assert!(PhaseGeom::of(&geom(1, 16, 17, 28, (2, 2), 1)).is_some());
    assert!(PhaseGeom::of(&geom(2, 16, 32, 28, (1, 1), 1)).is_none());
    assert!(PhaseGeom::of(&geom(2, 16, 32, 28, (2, 1), 1)).is_none());
    assert!(PhaseGeom::of(&geom(2, 16, 32, 28, (2, 2), 2)).is_none());
    // A 1×1 kernel (the shortcut) reads one phase: im2col subsamples.
    let x = Tensor::zeros(vec![2, 16, 28, 28]);
    let w = Tensor::zeros(vec![32, 16, 1, 1]);
    let p = Conv2dParams {
        stride: (2, 2),
        padding: (0, 0),
        groups: 1,
    };
    assert!(PhaseGeom::of(&geometry("test", &x, &w, &p).unwrap()).is_none());
    // A single image too large for one thread stays on the parallel GEMM.
    assert!(PhaseGeom::of(&geom(1, 256, 256, 64, (2, 2), 1)).is_none());
}
