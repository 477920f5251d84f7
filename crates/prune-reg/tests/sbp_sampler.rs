//! The sampler's empirical distribution against the truncated log-normal CDF.

use prune_core::sbp::special::norm_cdf;
use prune_core::sbp::{noise_eps, sample, samples, NoiseMode, NoiseStream, SbpShape};

/// `n` noise variates of one stream (one per channel index).
fn draw_eps(stream: NoiseStream, n: usize) -> Vec<f64> {
    (0..n as u32)
        .map(|c| noise_eps(c, 0, NoiseMode::PerChannel, stream))
        .collect()
}

/// CDF of θ = exp(x), x ~ N(μ, σ²) truncated to [-20, 0], evaluated at θ.
fn truncated_lognormal_cdf(theta: f64, mu: f64, sigma: f64) -> f64 {
    let (a, b) = ((-20.0 - mu) / sigma, (0.0 - mu) / sigma);
    let t = ((theta.ln() - mu) / sigma).clamp(a, b);
    (norm_cdf(t) - norm_cdf(a)) / (norm_cdf(b) - norm_cdf(a))
}

/// Kolmogorov–Smirnov statistic of `samples` against `cdf`.
fn ks_statistic(mut samples: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len() as f64;
    let mut d = 0.0f64;
    for (i, &x) in samples.iter().enumerate() {
        let f = cdf(x);
        d = d.max((i as f64 + 1.0) / n - f).max(f - i as f64 / n);
    }
    d
}

#[test]
fn sampler_passes_kolmogorov_smirnov() {
    let n = 10_000;
    // Critical value of the one-sample KS test at level 0.01: 1.628/√n.
    let critical = 1.628 / (n as f64).sqrt();
    for (layer, &(mu, ls)) in [
        (0.0, -5.0),
        (0.0, 0.0),
        (-3.0, -1.0),
        (-10.0, 1.5),
        (1.0, 0.0),
        (-19.0, 0.5),
        (-15.0, -1.0),
        (-12.0, 1.0),
    ]
    .iter()
    .enumerate()
    {
        let eps = draw_eps(NoiseStream::new(2017, layer as u32, 0), n);
        let samples: Vec<f64> = eps.iter().map(|&e| sample(mu, ls, e).theta).collect();
        let sigma = f64::exp(ls);
        let d = ks_statistic(samples, |th| truncated_lognormal_cdf(th, mu, sigma));
        println!("KS(μ = {mu}, log σ = {ls}) = {d:.5} (critical {critical:.5})");
        assert!(d < critical, "KS statistic {d} at ({mu}, {ls})");
    }
}

#[test]
fn sampler_detects_a_wrong_distribution() {
    // The same statistic separates a shifted law: the test has power.
    let n = 10_000;
    let eps = draw_eps(NoiseStream::new(3, 0, 0), n);
    let samples: Vec<f64> = eps.iter().map(|&e| sample(-3.0, -1.0, e).theta).collect();
    let d = ks_statistic(samples, |th| {
        truncated_lognormal_cdf(th, -3.0 + 0.1, f64::exp(-1.0))
    });
    assert!(
        d > 1.628 / (n as f64).sqrt(),
        "shifted law not detected: {d}"
    );
}

#[test]
fn layer_sampling_is_reproducible_and_in_range() {
    let mu = vec![0.0f32; 64];
    let ls = vec![-5.0f32; 64];
    let shape = SbpShape::features(1, 64);
    let one = NoiseStream::new(1, 0, 0);
    let a = samples(&shape, &mu, &ls, one, NoiseMode::PerChannel).unwrap();
    let b = samples(&shape, &mu, &ls, one, NoiseMode::PerChannel).unwrap();
    assert_eq!(a, b);
    let theta: Vec<f32> = a.iter().map(|s| s.theta as f32).collect();
    for &t in &theta {
        assert!((2.0e-9..=1.0).contains(&t), "θ = {t}");
    }
    // At initialization (μ = 0, log σ = -5) θ sits just below 1.
    let mean: f32 = theta.iter().sum::<f32>() / 64.0;
    assert!(mean > 0.99 && mean < 1.0, "mean θ = {mean}");
}
