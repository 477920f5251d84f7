//! Analytic derivatives of the SBP sample and KL against central differences,
//! the clip conventions, and the per-layer helpers.

use prune_core::sbp::special::norm_cdf;
use prune_core::sbp::{
    expected_theta, keep, kl, kl_grad, kl_layer_sum_and_grad, layer_stats, mirrored, sample,
    sample_layer, snr, test_time_scale, U_CLIP,
};
use prune_reg::method::sbp_layer_mask;

const P_CLIP_LO: f64 = U_CLIP;
const P_CLIP_HI: f64 = 1.0 - U_CLIP;

/// Central difference of `f` at `x` with step `h`.
fn central(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}

/// True if the p-clip, x-clip or branch state of the sampler differs within ±h of a point.
fn near_kink(mu: f64, ls: f64, eps: f64, h: f64) -> bool {
    let state = |m: f64, l: f64| {
        let sigma = l.exp();
        let (a, b) = ((-20.0 - m) / sigma, (0.0 - m) / sigma);
        let mirror = mirrored(m, l);
        let p = if mirror {
            1.0 - ((1.0 - eps) * norm_cdf(-a) + eps * norm_cdf(-b))
        } else {
            (1.0 - eps) * norm_cdf(a) + eps * norm_cdf(b)
        };
        let pc = p.clamp(P_CLIP_LO, P_CLIP_HI);
        let x = m + sigma * prune_core::sbp::special::norm_ppf(pc);
        (
            (P_CLIP_LO..=P_CLIP_HI).contains(&p),
            (-20.0..=0.0).contains(&x),
            mirror,
        )
    };
    let s0 = state(mu, ls);
    [(h, 0.0), (-h, 0.0), (0.0, h), (0.0, -h)]
        .iter()
        .any(|&(dm, dl)| state(mu + dm, ls + dl) != s0)
}

#[test]
fn sample_derivatives_match_finite_differences() {
    let h = 1e-6;
    let mut checked = 0;
    let mut worst = 0.0f64;
    for &mu in &[-15.0, -6.0, -1.5, -0.3, 0.0, 0.4, 2.0, 4.5] {
        for &ls in &[-6.0, -3.0, -1.0, 0.0, 1.0, 2.5, 4.0] {
            for &eps in &[0.03, 0.2, 0.5, 0.77, 0.97] {
                if near_kink(mu, ls, eps, 2.0 * h) {
                    continue;
                }
                let s = sample(mu, ls, eps);
                let fd_mu = central(|m| sample(m, ls, eps).theta, mu, h);
                let fd_ls = central(|l| sample(mu, l, eps).theta, ls, h);
                let scale = s.theta.max(1e-12);
                let e1 = (s.dtheta_dmu - fd_mu).abs() / (fd_mu.abs() + scale);
                let e2 = (s.dtheta_dlog_sigma - fd_ls).abs() / (fd_ls.abs() + scale);
                worst = worst.max(e1).max(e2);
                assert!(
                    e1 < 1e-6,
                    "dθ/dμ at ({mu},{ls},{eps}): {} vs {fd_mu}",
                    s.dtheta_dmu
                );
                assert!(
                    e2 < 1e-6,
                    "dθ/dlogσ at ({mu},{ls},{eps}): {} vs {fd_ls}",
                    s.dtheta_dlog_sigma
                );
                checked += 1;
            }
        }
    }
    println!("sample derivatives: {checked} points, max rel error {worst:e}");
    assert!(checked > 150);
}

#[test]
fn clipped_samples_have_the_documented_derivatives() {
    // p below 1e-5: the p-clip is active, x = μ + σ·Φ⁻¹(1e-5) still moves with μ, σ.
    let (mu, ls) = (-1.0, -2.0); // α ≈ -140, β ≈ 7.4: Φ(α) = 0
    let s = sample(mu, ls, 1e-9);
    let t = prune_core::sbp::special::norm_ppf(P_CLIP_LO);
    let sigma = f64::exp(ls);
    assert!((s.theta - (mu + sigma * t).exp()).abs() < 1e-15);
    assert!((s.dtheta_dmu - s.theta).abs() < 1e-15);
    assert!((s.dtheta_dlog_sigma - s.theta * sigma * t).abs() < 1e-15);
    // x above b: θ = 1 and both derivatives are zero (μ = 5 ≫ b, σ small).
    let s = sample(5.0, -3.0, 0.5);
    assert_eq!(s.theta, 1.0);
    assert_eq!((s.dtheta_dmu, s.dtheta_dlog_sigma), (0.0, 0.0));
    // Parameters outside [-20, 5] are clipped and pass no gradient.
    let inside = sample(-2.0, 5.0, 0.4);
    let outside = sample(-2.0, 7.0, 0.4);
    assert_eq!(inside.theta, outside.theta);
    assert_eq!(outside.dtheta_dlog_sigma, 0.0);
    assert_eq!(inside.dtheta_dmu, outside.dtheta_dmu);
    let (gm, gl) = kl_grad(9.0, -1.0);
    assert_eq!(gm, 0.0);
    assert_eq!(gl, kl_grad(5.0, -1.0).1);
    assert_eq!(kl(9.0, -1.0), kl(5.0, -1.0));
}

#[test]
fn kl_grad_matches_finite_differences() {
    let mut worst = 0.0f64;
    let mut n = 0;
    for i in 0..=24 {
        let mu = -19.5 + i as f64 * 1.0; // -19.5 .. 4.5
        for j in 0..=24 {
            let ls = -19.5 + j as f64 * 1.0;
            let (gm, gl) = kl_grad(mu, ls);
            let sigma = f64::exp(ls);
            // The KL changes on the scale σ in μ: scale the step accordingly.
            let hm = 1e-5 * sigma.min(1.0);
            let fd_mu = central(|m| kl(m, ls), mu, hm);
            let fd_ls = central(|l| kl(mu, l), ls, 1e-5);
            let em = (gm - fd_mu).abs() / (fd_mu.abs() + 1e-3 / sigma.min(1.0));
            let el = (gl - fd_ls).abs() / (fd_ls.abs() + 1e-3);
            worst = worst.max(em).max(el);
            assert!(em < 1e-5, "dKL/dμ at ({mu},{ls}): {gm} vs {fd_mu}");
            assert!(el < 1e-5, "dKL/dlogσ at ({mu},{ls}): {gl} vs {fd_ls}");
            n += 1;
        }
    }
    println!("kl_grad: {n} points, max rel error {worst:e}");
}

#[test]
fn layer_helpers_agree_with_scalar_functions() {
    let mu = [-8.0f32, -1.0, 0.0, 0.5, 3.0];
    let ls = [2.0f32, 0.0, -5.0, -1.0, -8.0];
    let eps = [0.1f64, 0.4, 0.5, 0.9, 0.7];
    let s = sample_layer(&mu, &ls, &eps).unwrap();
    let k = kl_layer_sum_and_grad(&mu, &ls).unwrap();
    let st = layer_stats(&mu, &ls).unwrap();
    let mut sum = 0.0;
    for i in 0..mu.len() {
        let (m, l) = (f64::from(mu[i]), f64::from(ls[i]));
        let one = sample(m, l, eps[i]);
        assert_eq!(s.theta[i], one.theta as f32);
        assert_eq!(s.dtheta_dmu[i], one.dtheta_dmu as f32);
        assert_eq!(s.dtheta_dlog_sigma[i], one.dtheta_dlog_sigma as f32);
        let (gm, gl) = kl_grad(m, l);
        assert_eq!(k.d_mu[i], gm as f32);
        assert_eq!(k.d_log_sigma[i], gl as f32);
        sum += kl(m, l);
        assert_eq!(st.expected_theta[i], expected_theta(m, l) as f32);
        assert_eq!(st.snr[i], snr(m, l) as f32);
        assert_eq!(st.keep[i], keep(m, l));
        assert_eq!(st.scale[i], test_time_scale(m, l) as f32);
        assert_eq!(st.keep[i], snr(m, l) > 1.0);
    }
    assert!((k.sum - sum).abs() < 1e-12);
    // Unit 0 (μ = -8, σ = e²) is noise-dominated, unit 2 (μ = 0, σ = e⁻⁵) is kept.
    assert!(!st.keep[0] && st.scale[0] == 0.0);
    assert!(st.keep[2] && st.scale[2] > 0.99);
    let err = sample_layer(&mu, &ls[..3], &eps).unwrap_err();
    assert!(err.to_string().contains("log_sigma has 3"), "{err}");
    assert!(kl_layer_sum_and_grad(&mu, &ls[..4]).is_err());
}

#[test]
fn sbp_mask_never_empties_a_layer() {
    // Every unit noise-dominated: the best SNR is kept and the layer is forced.
    let mu = [-10.0f32, -12.0, -9.0];
    let ls = [3.0f32, 3.0, 2.0];
    let m = sbp_layer_mask("conv1", &mu, &ls).unwrap();
    assert!(m.forced);
    assert_eq!(m.kept(), 1);
    let best = (0..3)
        .max_by(|&i, &j| m.scores[i].total_cmp(&m.scores[j]))
        .unwrap();
    assert!(m.keep[best]);
    let m = sbp_layer_mask("conv2", &[0.0, -10.0], &[-5.0, 3.0]).unwrap();
    assert!(!m.forced);
    assert_eq!(m.keep, vec![true, false]);
}
