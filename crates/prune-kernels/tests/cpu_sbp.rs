//! CPU reference of the SBP noise: closed forms against quadrature and Monte Carlo,
//! derivatives against finite differences, stability at extreme parameters.

mod common;

use common::Rng;
use prune_kernels::cpu_ref::sbp::{
    backward, forward, noise_eps, sample, samples, stats, A, B, SNR_MAX,
};
use prune_kernels::{NoiseMode, SbpShape};

/// Moments of theta = exp(l), l ~ N(mu, sigma^2) truncated to [A, B], by composite Simpson
/// quadrature of the density over the region where it is above e^-92 of its peak.
/// Returns (E[theta], E[theta^2], KL to log-uniform), all independent of the closed forms.
fn quadrature(mu: f64, log_sigma: f64) -> (f64, f64, f64) {
    let sigma = log_sigma.exp();
    let peak = mu.clamp(A, B);
    let reach = ((peak - mu).powi(2) + 184.0 * sigma * sigma).sqrt();
    let (lo, hi) = ((mu - reach).max(A), (mu + reach).min(B));
    let n = 200_000usize;
    let h = (hi - lo) / n as f64;
    // log of the density relative to its peak, in product form to avoid cancellation.
    let logw = |l: f64| -((l - peak) * (l + peak - 2.0 * mu)) / (2.0 * sigma * sigma);
    let (mut z, mut m1, mut m2, mut ent) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..=n {
        let l = lo + h * i as f64;
        let c = if i == 0 || i == n {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let lw = logw(l);
        let w = lw.exp();
        z += c * w;
        m1 += c * w * l.exp();
        m2 += c * w * (2.0 * l).exp();
        ent += c * w * lw;
    }
    let (z, m1, m2, ent) = (z * h / 3.0, m1 * h / 3.0, m2 * h / 3.0, ent * h / 3.0);
    // q = w / z: integral of q log q = ent / z - log z.
    let kl = (B - A).ln() + ent / z - z.ln();
    (m1 / z, m2 / z, kl)
}

#[test]
fn closed_forms_match_quadrature() {
    for &mu in &[-15.0, -5.0, -1.0, -0.1, 0.0, 0.5, 3.0] {
        for &ls in &[-4.0, -1.0, 0.0, 1.0, 2.0] {
            let st = stats(mu, ls);
            let (m1, m2, kl) = quadrature(mu, ls);
            assert!(
                ((st.mean - m1) / m1).abs() < 1e-8,
                "mu={mu} ls={ls}: mean {} vs quadrature {m1}",
                st.mean
            );
            let var = m2 - m1 * m1;
            let snr_q = m1 / var.sqrt();
            if snr_q < 1e4 {
                assert!(
                    ((st.snr - snr_q) / snr_q).abs() < 1e-5,
                    "mu={mu} ls={ls}: snr {} vs quadrature {snr_q}",
                    st.snr
                );
            }
            assert!(
                (st.kl - kl).abs() < 1e-7 * kl.abs().max(1.0),
                "mu={mu} ls={ls}: kl {} vs quadrature {kl}",
                st.kl
            );
        }
    }
    // Far tails and edges of the interval; parameters outside [-20, 5] are clamped first.
    for &(mu, ls) in &[
        (-25.0, 0.5),
        (-19.9, -6.0),
        (10.0, -2.0),
        (-100.0, -10.0),
        (2.0, 3.0),
        (-10.0, 6.0),
    ] {
        let st = stats(mu, ls);
        let (m1, m2, kl) = quadrature(mu.clamp(-20.0, 5.0), ls.clamp(-20.0, 5.0));
        assert!(
            ((st.mean - m1) / m1).abs() < 1e-7,
            "mu={mu} ls={ls}: mean {} vs {m1}",
            st.mean
        );
        let snr_q = m1 / (m2 - m1 * m1).sqrt();
        if snr_q < 1e4 {
            assert!(
                ((st.snr - snr_q) / snr_q).abs() < 1e-5,
                "mu={mu} ls={ls}: snr {} vs {snr_q}",
                st.snr
            );
        }
        assert!(
            (st.kl - kl).abs() < 1e-6 * kl.abs().max(1.0),
            "mu={mu} ls={ls}: kl {} vs {kl}",
            st.kl
        );
    }
}

#[test]
fn closed_forms_stay_finite_at_extreme_parameters() {
    for &mu in &[-1e6, -100.0, -20.5, -20.0, -1e-3, 0.0, 1e-3, 50.0, 1e6] {
        for &ls in &[-30.0, -20.0, -10.0, -3.0, 0.0, 5.0, 10.0, 20.0, 30.0] {
            let st = stats(mu, ls);
            assert!(
                st.mean.is_finite() && st.mean >= A.exp() * (1.0 - 1e-12) && st.mean <= 1.0 + 1e-12,
                "mu={mu} ls={ls}: mean {}",
                st.mean
            );
            assert!(
                st.snr.is_finite() && st.snr > 0.0 && st.snr <= SNR_MAX,
                "mu={mu} ls={ls}: snr {}",
                st.snr
            );
            // KL to the maximum-entropy distribution on [A, B] is nonnegative.
            assert!(
                st.kl.is_finite() && st.kl >= 0.0,
                "mu={mu} ls={ls}: kl {}",
                st.kl
            );
        }
    }
}

#[test]
fn closed_forms_follow_their_limits() {
    // Narrow noise inside the interval: almost an untruncated log-normal.
    let (mu, ls): (f64, f64) = (-3.0, -6.0);
    let s = f64::exp(ls);
    let st = stats(mu, ls);
    assert!((st.mean / (mu + 0.5 * s * s).exp() - 1.0).abs() < 1e-12);
    let kl_free = (B - A).ln() - ls - 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E).ln();
    assert!((st.kl - kl_free).abs() < 1e-10, "kl {} vs {kl_free}", st.kl);
    let snr_free = 1.0 / (s * s).exp_m1().sqrt();
    assert!((st.snr / snr_free - 1.0).abs() < 1e-6);
    // Very wide noise (log sigma at its clamp, 5): theta is close to log-uniform on
    // [A, B], KL -> 0 like (B - A)^2 / (24 sigma^2) relative terms.
    let st = stats(-10.0, 19.0);
    assert_eq!(st, stats(-10.0, 5.0));
    let mean_lu = (B.exp() - A.exp()) / (B - A);
    assert!(st.kl.abs() < 1e-6, "kl {}", st.kl);
    assert!((st.mean / mean_lu - 1.0).abs() < 1e-2);
    assert!((st.mean / quadrature(-10.0, 5.0).0 - 1.0).abs() < 1e-8);
    // Mean far above B with small sigma: an exponential tail of rate |beta| at B, whose
    // entropy in log theta is 1 + log(sigma / |beta|).
    let (mu, ls): (f64, f64) = (5.0, -4.0);
    let sigma = f64::exp(ls);
    let beta = (B - mu) / sigma;
    let kl_tail = (B - A).ln() - (1.0 + (sigma / beta.abs()).ln());
    assert!((stats(mu, ls).kl - kl_tail).abs() < 1e-4 * kl_tail.abs());
}

#[test]
fn sampler_matches_closed_form_mean_by_monte_carlo() {
    let mut rng = Rng::fresh("sampler_matches_closed_form_mean_by_monte_carlo");
    let seed = rng.next_u64();
    for &(mu, ls) in &[
        (-1.0, 0.0),
        (-0.2, -1.0),
        (0.3, -2.0),
        (-8.0, 1.5),
        (-21.0, 0.0),
    ] {
        let n = 200_000;
        let (mut s1, mut s2) = (0.0, 0.0);
        for k in 0..n {
            let t = sample(mu, ls, noise_eps(k, 0, NoiseMode::PerChannel, seed)).theta;
            s1 += t;
            s2 += t * t;
        }
        let mean = s1 / n as f64;
        let sd = (s2 / n as f64 - mean * mean).max(0.0).sqrt();
        let st = stats(mu, ls);
        // The u-clip at 1e-5 moves the mean by far less than the standard error.
        assert!(
            (mean - st.mean).abs() < 5.0 * sd / (n as f64).sqrt() + 1e-6,
            "mu={mu} ls={ls}: Monte Carlo {mean} vs closed form {}",
            st.mean
        );
    }
}

#[test]
fn uniform_variates_are_uniform() {
    let n = 100_000u32;
    let (mut s1, mut s2) = (0.0, 0.0);
    let mut bins = [0u32; 10];
    for k in 0..n {
        let u = noise_eps(k, 7, NoiseMode::PerExample, 0xdead_beef_0123);
        assert!(u > 0.0 && u < 1.0);
        s1 += u;
        s2 += u * u;
        bins[(u * 10.0) as usize] += 1;
    }
    let mean = s1 / n as f64;
    let var = s2 / n as f64 - mean * mean;
    assert!((mean - 0.5).abs() < 4.0 * (1.0f64 / 12.0 / n as f64).sqrt());
    assert!((var - 1.0 / 12.0).abs() < 2e-3);
    let expect = n as f64 / 10.0;
    let chi2: f64 = bins
        .iter()
        .map(|&b| (b as f64 - expect).powi(2) / expect)
        .sum();
    assert!(chi2 < 40.0, "chi2 {chi2} over 9 degrees of freedom");
}

#[test]
fn sample_derivatives_match_finite_differences() {
    let mut rng = Rng::fresh("sample_derivatives_match_finite_differences");
    let mut checked = 0;
    for _ in 0..2000 {
        let mu = rng.range(-6.0, 1.0);
        let ls = rng.range(-3.0, 1.5);
        let eps = rng.range(0.01, 0.99);
        let s = sample(mu, ls, eps);
        let h = 1e-6;
        let fd_mu = (sample(mu + h, ls, eps).theta - sample(mu - h, ls, eps).theta) / (2.0 * h);
        let fd_ls = (sample(mu, ls + h, eps).theta - sample(mu, ls - h, eps).theta) / (2.0 * h);
        // Skip points where a clip switches inside the stencil (a kink).
        let kink = |d: f64| d == 0.0;
        let sp = sample(mu + h, ls, eps);
        let sm = sample(mu - h, ls, eps);
        if kink(s.dtheta_dmu) != kink(sp.dtheta_dmu) || kink(s.dtheta_dmu) != kink(sm.dtheta_dmu) {
            continue;
        }
        let tol = 1e-5 * (s.dtheta_dmu.abs() + s.dtheta_dlog_sigma.abs()).max(1e-3);
        assert!(
            (fd_mu - s.dtheta_dmu).abs() < tol,
            "mu={mu} ls={ls} eps={eps}: dtheta/dmu {} vs fd {fd_mu}",
            s.dtheta_dmu
        );
        assert!(
            (fd_ls - s.dtheta_dlog_sigma).abs() < tol,
            "mu={mu} ls={ls} eps={eps}: dtheta/dlog_sigma {} vs fd {fd_ls}",
            s.dtheta_dlog_sigma
        );
        checked += 1;
    }
    assert!(checked > 1500, "only {checked} points away from kinks");
}

#[test]
fn backward_matches_finite_differences_of_the_loss() {
    let mut rng = Rng::fresh("backward_matches_finite_differences_of_the_loss");
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        let shape = SbpShape::nchw(3, 5, 2, 3);
        let n = shape.numel().unwrap();
        let x = rng.vec(n, -1.0, 1.0);
        let w = rng.vec(n, -1.0, 1.0);
        let mu = rng.vec(5, -3.0, -0.2);
        let ls = rng.vec(5, -2.0, 0.0);
        let seed = rng.next_u64();
        let g = backward(&w, &x, &shape, &mu, &ls, seed, mode).unwrap();
        // loss(mu, ls) = sum w * x * theta, evaluated in f64 from the sampler.
        let loss = |mu: &[f64], ls: &[f64]| -> f64 {
            let mut total = 0.0;
            for k in 0..n {
                let rc = k / shape.inner;
                let (r, c) = (rc / shape.channels, rc % shape.channels);
                let eps = noise_eps(c as u32, r as u32, mode, seed);
                total += w[k] as f64 * x[k] as f64 * sample(mu[c], ls[c], eps).theta;
            }
            total
        };
        let mu64: Vec<f64> = mu.iter().map(|&v| v as f64).collect();
        let ls64: Vec<f64> = ls.iter().map(|&v| v as f64).collect();
        let h = 1e-6;
        for c in 0..5 {
            let mut p = mu64.clone();
            p[c] += h;
            let mut m = mu64.clone();
            m[c] -= h;
            let fd = (loss(&p, &ls64) - loss(&m, &ls64)) / (2.0 * h);
            assert!(
                (fd - g.dmu[c]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{mode:?} dmu[{c}] {} vs fd {fd}",
                g.dmu[c]
            );
            let mut p = ls64.clone();
            p[c] += h;
            let mut m = ls64.clone();
            m[c] -= h;
            let fd = (loss(&mu64, &p) - loss(&mu64, &m)) / (2.0 * h);
            assert!(
                (fd - g.dlog_sigma[c]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{mode:?} dlog_sigma[{c}] {} vs fd {fd}",
                g.dlog_sigma[c]
            );
        }
        // dx = w * theta and dtheta = sum w * x per theta entry.
        let (_, theta) = forward(&x, &shape, &mu, &ls, seed, mode).unwrap();
        for k in 0..n {
            let rc = k / shape.inner;
            let (r, c) = (rc / shape.channels, rc % shape.channels);
            let t = if mode == NoiseMode::PerChannel {
                c
            } else {
                r * 5 + c
            };
            assert_eq!(g.dx[k], w[k] * theta[t]);
        }
        let mut dtheta = vec![0.0f64; theta.len()];
        for k in 0..n {
            let rc = k / shape.inner;
            let (r, c) = (rc / shape.channels, rc % shape.channels);
            let t = if mode == NoiseMode::PerChannel {
                c
            } else {
                r * 5 + c
            };
            dtheta[t] += w[k] as f64 * x[k] as f64;
        }
        for (a, b) in dtheta.iter().zip(&g.dtheta) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}

#[test]
fn forward_is_reproducible_and_mode_dependent() {
    let shape = SbpShape::features(4, 6);
    let x = vec![1.0f32; 24];
    let mu = vec![-1.0f32; 6];
    let ls = vec![0.0f32; 6];
    let (y1, t1) = forward(&x, &shape, &mu, &ls, 11, NoiseMode::PerChannel).unwrap();
    let (y2, _) = forward(&x, &shape, &mu, &ls, 11, NoiseMode::PerChannel).unwrap();
    let (y3, _) = forward(&x, &shape, &mu, &ls, 12, NoiseMode::PerChannel).unwrap();
    assert_eq!(y1, y2);
    assert_ne!(y1, y3);
    assert_eq!(t1.len(), 6);
    // Per-channel: every row sees the same theta.
    assert_eq!(y1[0..6], y1[6..12]);
    let (yp, tp) = forward(&x, &shape, &mu, &ls, 11, NoiseMode::PerExample).unwrap();
    assert_eq!(tp.len(), 24);
    assert_ne!(yp[0..6], yp[6..12]);
    assert!(tp.iter().all(|&t| t > 0.0 && t <= 1.0));
}

#[test]
fn shape_errors_are_reported() {
    let shape = SbpShape::nchw(2, 3, 2, 2);
    let err = forward(
        &[0.0; 5],
        &shape,
        &[0.0; 3],
        &[0.0; 3],
        1,
        NoiseMode::PerChannel,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("x has 5 elements"), "{err}");
    let err = samples(&shape, &[0.0; 2], &[0.0; 3], 1, NoiseMode::PerChannel)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mu has 2"), "{err}");
}
