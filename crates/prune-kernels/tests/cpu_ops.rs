//! Independent checks of the CPU references of the new kernels: gradients against central
//! finite differences, the KL gradient against differences of the KL closed form, and
//! dropout's rate.

mod common;

use common::Rng;
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::cpu_ref::{batchnorm, reduce, sbp_closed};

fn fd<F: Fn(&[f64]) -> f64>(f: F, x: &[f64], h: f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let (mut a, mut b) = (x.to_vec(), x.to_vec());
            a[i] += h;
            b[i] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

#[test]
fn sbp_kl_gradient_matches_finite_differences() {
    let mut rng = Rng::fresh("sbp_kl_gradient_matches_finite_differences");
    let mut pts: Vec<(f64, f64)> = (0..200)
        .map(|_| (rng.range(-8.0, 3.0), rng.range(-5.0, 2.5)))
        .collect();
    pts.extend([
        (-30.0, 0.5),
        (-22.0, -1.0),
        (4.0, -2.0),
        (-10.0, 3.0),
        (0.0, -4.0),
        (-1.0, 1.0),
        (2.93, -5.27), // beta ~ -570: the stable Q form
        (-23.0, -5.0), // alpha ~ 450: mirrored
        (4.9, -12.0),  // beta ~ -8e5: the asymptotic series
    ]);
    for (m, l) in pts {
        let (kl, dmu, dls) = kl_grad(m, l);
        if kl < 1e-6 {
            continue; // at the clamp KL = 0 the derivative is one-sided
        }
        let h = 1e-5;
        let k = |m: f64, l: f64| sbp_closed::stats(m, l).kl;
        let fm = (k(m + h, l) - k(m - h, l)) / (2.0 * h);
        let fl = (k(m, l + h) - k(m, l - h)) / (2.0 * h);
        let tol = |a: f64| 1e-5 * (1.0 + a.abs());
        assert!(
            (dmu - fm).abs() <= tol(fm),
            "dmu at ({m}, {l}): {dmu} vs fd {fm}"
        );
        assert!(
            (dls - fl).abs() <= tol(fl),
            "dls at ({m}, {l}): {dls} vs fd {fl}"
        );
    }
    // clamped log_sigma: no gradient through it
    assert_eq!(kl_grad(-1.0, 25.0).2, 0.0);
}

#[test]
fn batchnorm_backward_matches_finite_differences() {
    let mut rng = Rng::fresh("batchnorm_backward_matches_finite_differences");
    let (n, c, hw) = (3usize, 2usize, 4usize);
    let x: Vec<f64> = (0..n * c * hw).map(|_| rng.range(-1.0, 1.0)).collect();
    let dy: Vec<f64> = (0..x.len()).map(|_| rng.range(-1.0, 1.0)).collect();
    let gamma = [1.3f32, 0.7];
    let loss = |x: &[f64]| {
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let (m, inv, _) = batchnorm::stats(&xf, n, c, hw, 1e-5);
        let y = batchnorm::apply(&xf, &m, &inv, &gamma, &[0.0, 0.0], c, hw);
        y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b).sum()
    };
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let dyf: Vec<f32> = dy.iter().map(|&v| v as f32).collect();
    let (m, inv, _) = batchnorm::stats(&xf, n, c, hw, 1e-5);
    let (dx, _, _) = batchnorm::backward(&dyf, &xf, &m, &inv, &gamma, n, c, hw);
    let want = fd(loss, &x, 1e-2);
    for (i, (a, b)) in dx.iter().zip(&want).enumerate() {
        assert!((a - b).abs() < 2e-3, "dx[{i}] {a} vs fd {b}");
    }
}

#[test]
fn log_softmax_backward_matches_finite_differences() {
    let mut rng = Rng::fresh("log_softmax_backward_matches_finite_differences");
    let (rows, cols) = (2usize, 5usize);
    let x: Vec<f64> = (0..rows * cols).map(|_| rng.range(-2.0, 2.0)).collect();
    let dy: Vec<f64> = (0..x.len()).map(|_| rng.range(-1.0, 1.0)).collect();
    let loss = |x: &[f64]| {
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let y = reduce::log_softmax(&xf, rows, cols);
        y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b).sum()
    };
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let y = reduce::log_softmax(&xf, rows, cols);
    let dyf: Vec<f32> = dy.iter().map(|&v| v as f32).collect();
    let dx = reduce::log_softmax_backward(&dyf, &y, rows, cols);
    for (i, (a, b)) in dx.iter().zip(fd(loss, &x, 1e-2)).enumerate() {
        assert!((*a as f64 - b).abs() < 1e-3, "dx[{i}] {a} vs fd {b}");
    }
}

#[test]
fn pooling_backward_is_the_adjoint_of_forward() {
    let mut rng = Rng::fresh("pooling_backward_is_the_adjoint_of_forward");
    let p = Pool {
        planes: 2,
        h: 7,
        w: 6,
        kernel: (3, 3),
        stride: (2, 1),
        padding: (1, 1),
    };
    let (ho, wo) = p.out_hw();
    let x = rng.vec(2 * 7 * 6, -1.0, 1.0);
    let dy = rng.vec(2 * ho * wo, -1.0, 1.0);
    // <avg(x), dy> = <x, avg_backward(dy)>
    let lhs: f64 = p
        .avg_forward(&x)
        .iter()
        .zip(&dy)
        .map(|(a, &b)| a * b as f64)
        .sum();
    let rhs: f64 = p
        .avg_backward(&dy)
        .iter()
        .zip(&x)
        .map(|(a, &b)| a * b as f64)
        .sum();
    assert!((lhs - rhs).abs() < 1e-9, "{lhs} vs {rhs}");
    // max pooling is linear in x on a neighbourhood where the argmax does not change
    let (y, arg) = p.max_forward(&x);
    let lhs: f64 = y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b as f64).sum();
    let rhs: f64 = p
        .max_backward(&dy, &arg)
        .iter()
        .zip(&x)
        .map(|(a, &b)| a * b as f64)
        .sum();
    assert!((lhs - rhs).abs() < 1e-6, "{lhs} vs {rhs}");
}

/// KL and its gradient from the single SBP math: `(kl, d/dmu, d/dlog_sigma)`.
fn kl_grad(mu: f64, log_sigma: f64) -> (f64, f64, f64) {
    let (kl, (dmu, dls)) = prune_kernels::cpu_ref::sbp_closed::kl_value_and_grad(mu, log_sigma);
    (kl, dmu, dls)
}
