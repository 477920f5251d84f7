//! Tests of the stride-2 input gradient on phase planes
//! (`conv_phase_grad.rs`): against a double-precision sum over the taps
//! that reach each input value, against finite differences of the phase
//! forward pass, across thread counts and between single images and the
//! batch, the row interleave against its scalar form, and the public
//! backward pass taking it. Skipped (with a message) where the vector
//! micro-kernel does not run, since the form is used only there.

use super::conv::{conv2d_backward, ConvGeom};
use super::conv_backward::backward_gemm;
use super::conv_phase_grad::{input_grad_f32, interleave_reference, interleave_rows};
use super::conv_phase_tests::{forward, phase, setup, CASES};
use super::test_util::{assert_grad_close, dot_loss, fd_grad, rand_tensor, rng};
use crate::tensor::Tensor;

/// `(dx, Σ|terms|)` in double precision: `dx[n][c][i][j]` sums
/// `w[co][c][ki][kj]·dy[n][co][oh][ow]` over `2·oh + ki = i + ph`,
/// `2·ow + kj = j + pw`.
fn reference(g: &ConvGeom, w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let c = &g.col;
    let (h, wd, oh, ow) = (c.h, c.w, c.oh, c.ow);
    let len = g.n * g.img_in();
    let (mut dx, mut mag) = (vec![0.0f64; len], vec![0.0f64; len]);
    for n in 0..g.n {
        for co in 0..g.cout {
            for ci in 0..g.cin {
                for ki in 0..c.kh {
                    for kj in 0..c.kw {
                        let wv = w[((co * g.cin + ci) * c.kh + ki) * c.kw + kj] as f64;
                        for r in 0..oh {
                            let Some(i) = (2 * r + ki).checked_sub(c.ph).filter(|&i| i < h) else {
                                continue;
                            };
                            for s in 0..ow {
                                let Some(j) = (2 * s + kj).checked_sub(c.pw).filter(|&j| j < wd)
                                else {
                                    continue;
                                };
                                let t = wv * dy[((n * g.cout + co) * oh + r) * ow + s] as f64;
                                let at = ((n * g.cin + ci) * h + i) * wd + j;
                                dx[at] += t;
                                mag[at] += t.abs();
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, mag)
}

#[test]
fn input_gradient_matches_a_double_precision_sum() {
    let mut worst = 0.0f64;
    for (i, c) in CASES.iter().enumerate() {
        let (g, _, w, _) = setup(c, 800 + i as u64);
        let Some(pg) = phase(&g) else { return };
        let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(820 + i as u64));
        let mut got = vec![f32::NAN; g.n * g.img_in()];
        input_grad_f32(&pg, g.n, w.data(), dy.data(), &mut got);
        let (want, mag) = reference(&g, w.data(), dy.data());
        for (k, ((&v, &r), &m)) in got.iter().zip(&want).zip(&mag).enumerate() {
            // values no tap reaches are exact zeros
            let err = if m == 0.0 {
                v.abs() as f64
            } else {
                (v as f64 - r).abs() / m
            };
            assert!(
                err <= 1e-6,
                "case {c:?}, value {k}: {v} vs {r} (error {err:e})"
            );
            worst = worst.max(err);
        }
    }
    eprintln!("largest error relative to the sum of absolute terms: {worst:e}");
}

#[test]
fn input_gradient_matches_finite_differences_of_the_forward_pass() {
    let c = [1, 3, 9, 8, 4, 3, 3, 1, 1];
    let (g, x, w, b) = setup(&c, 840);
    let Some(pg) = phase(&g) else { return };
    let r = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(841));
    let mut dx = vec![0.0f32; g.n * g.img_in()];
    input_grad_f32(&pg, g.n, w.data(), r.data(), &mut dx);
    let loss = |xv: &[f32]| dot_loss(&forward(&pg, g.n, xv, w.data(), b.data()), r.data());
    let fd = fd_grad(x.data(), 1e-2, loss);
    assert_grad_close(&dx, &fd, 1e-2, 1e-3, &format!("case {c:?}"));
}

#[test]
fn thread_counts_and_single_images_give_identical_input_gradients() {
    for (i, c) in CASES.iter().enumerate() {
        let (g, _, w, _) = setup(c, 860 + i as u64);
        let Some(pg) = phase(&g) else { return };
        let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(880 + i as u64));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut dx = vec![f32::NAN; g.n * g.img_in()];
            pool.install(|| input_grad_f32(&pg, g.n, w.data(), dy.data(), &mut dx));
            dx
        };
        let d1 = run(1);
        assert_eq!(d1, run(2), "case {c:?}: 1 vs 2 threads");
        assert_eq!(d1, run(3), "case {c:?}: 1 vs 3 threads");
        let (img_in, img_out) = (g.img_in(), g.img_out());
        for ni in 0..g.n {
            let mut di = vec![f32::NAN; img_in];
            let dyi = &dy.data()[ni * img_out..(ni + 1) * img_out];
            input_grad_f32(&pg, 1, w.data(), dyi, &mut di);
            assert_eq!(
                di,
                d1[ni * img_in..(ni + 1) * img_in],
                "case {c:?}: image {ni}"
            );
        }
    }
}

#[test]
fn rows_interleave_like_the_scalar_form() {
    let even: Vec<f32> = (0..64).map(|v| v as f32).collect();
    let odd: Vec<f32> = (0..64).map(|v| -(v as f32) - 0.5).collect();
    for len in 1..=40 {
        for pw in 0..4 {
            let (mut got, mut want) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            interleave_rows(&even, &odd, pw, &mut got);
            interleave_reference(&even, &odd, pw, &mut want);
            assert_eq!(got, want, "length {len}, padding {pw}");
        }
    }
}

/// The public backward pass of a stride-2 layer gives the phase form's
/// input gradient, to the bit, and the GEMM's weight and bias gradients.
#[test]
fn the_backward_pass_takes_the_phase_input_gradient() {
    let c = CASES[0];
    let (g, x, w, _) = setup(&c, 900);
    let Some(pg) = phase(&g) else { return };
    let dy = rand_tensor(&[g.n, g.cout, g.col.oh, g.col.ow], &mut rng(901));
    let p = super::conv::Conv2dParams {
        stride: (2, 2),
        padding: (c[7], c[8]),
        groups: 1,
    };
    let got = conv2d_backward(&x, &w, &dy, &p, true).unwrap();
    let mut dx = vec![f32::NAN; g.n * g.img_in()];
    input_grad_f32(&pg, g.n, w.data(), dy.data(), &mut dx);
    assert_eq!(got.x.as_ref().map(Tensor::data), Some(&dx[..]));
    let (mut dw, mut sums) = (vec![0.0f32; g.weight_len()], vec![0.0f64; g.n * g.cout]);
    backward_gemm(&g, x.data(), w.data(), dy.data(), &mut dw, None, &mut sums).unwrap();
    assert_eq!(got.w.data(), &dw[..]);
}
