//! SBP closed forms against independent numerical integration and Monte Carlo.

mod common;

use prune_core::sbp::{expected_theta, kl, sample, snr};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn grid() -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for i in 0..=18 {
        let mu = -15.0 + i as f64; // -15 .. 3
        for j in 0..=14 {
            let ls = -5.0 + 0.5 * j as f64; // -5 .. 2
            pts.push((mu, ls));
        }
    }
    pts
}

#[test]
fn quadrature_nodes_are_exact_for_polynomials() {
    // 20-point Gauss–Legendre integrates x^38 exactly: ∫_{-1}^{1} x^38 = 2/39.
    let gl = common::gauss_legendre(20);
    let s: f64 = gl.iter().map(|&(x, w)| w * x.powi(38)).sum();
    assert!((s - 2.0 / 39.0).abs() < 1e-15);
    let wsum: f64 = gl.iter().map(|&(_, w)| w).sum();
    assert!((wsum - 2.0).abs() < 1e-14);
}

#[test]
fn kl_matches_numerical_integration() {
    let mut worst = 0.0f64;
    for (mu, ls) in grid() {
        let (_, _, _, kl_ref) = common::sbp_reference(mu, ls);
        let got = kl(mu, ls);
        let err = (got - kl_ref).abs() / kl_ref.abs().max(1.0);
        worst = worst.max(err);
        assert!(err < 1e-10, "KL({mu}, {ls}) = {got}, quadrature {kl_ref}");
    }
    println!("KL vs quadrature: max error {worst:e}");
}

#[test]
fn expected_theta_and_snr_match_numerical_integration() {
    let (mut worst_e, mut worst_s) = (0.0f64, 0.0f64);
    for (mu, ls) in grid() {
        let (_, e_ref, var_ref, _) = common::sbp_reference(mu, ls);
        let snr_ref = e_ref / var_ref.sqrt();
        let e = expected_theta(mu, ls);
        let s = snr(mu, ls);
        let ee = ((e - e_ref) / e_ref).abs();
        let es = ((s - snr_ref) / snr_ref).abs();
        worst_e = worst_e.max(ee);
        worst_s = worst_s.max(es);
        assert!(ee < 1e-11, "E[θ]({mu}, {ls}) = {e}, quadrature {e_ref}");
        assert!(es < 1e-8, "SNR({mu}, {ls}) = {s}, quadrature {snr_ref}");
    }
    println!("E[θ] vs quadrature: {worst_e:e}; SNR vs quadrature: {worst_s:e}");
}

#[test]
fn kl_matches_monte_carlo_of_the_sampler() {
    // KL = E_q[log q(log θ)] + log(b - a), estimated with samples of the sampler.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let n = 100_000;
    for &(mu, ls) in &[
        (0.0, -5.0),
        (-3.0, -1.0),
        (-10.0, 1.0),
        (-1.0, 0.5),
        (2.0, 0.0),
    ] {
        let (z, _, _, _) = common::sbp_reference(mu, ls);
        let sigma: f64 = f64::exp(ls);
        let log_q = |x: f64| {
            let t = (x - mu) / sigma;
            -0.5 * t * t - 0.5 * (2.0 * std::f64::consts::PI).ln() - sigma.ln() - z.ln()
        };
        let mut sum = 0.0;
        let mut sum_sq = 0.0;
        for _ in 0..n {
            let x = sample(mu, ls, rng.random::<f64>()).theta.ln();
            let v = log_q(x) + 20f64.ln();
            sum += v;
            sum_sq += v * v;
        }
        let mean = sum / n as f64;
        let se = ((sum_sq / n as f64 - mean * mean) / n as f64).sqrt();
        let k = kl(mu, ls);
        println!("KL({mu}, {ls}) = {k:.5}, Monte Carlo {mean:.5} ± {se:.5}");
        assert!(
            (k - mean).abs() < 5.0 * se + 2e-4,
            "KL({mu}, {ls}) = {k} vs MC {mean} ± {se}"
        );
    }
}
