//! Invariants over random inputs.

use proptest::prelude::*;
use prune_core::sbp::special::{norm_cdf, norm_sf};
use prune_core::sbp::truncated::{log_mass, truncated_variance};
use prune_core::sbp::{expected_theta, expected_theta_sq, kl, kl_grad, sample, snr, LOG_THETA_MIN};
use prune_reg::slimming::{prune_count, slimming_masks};
use prune_reg::threshold::{histogram_threshold, DEFAULT_BINS};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn sbp_quantities_are_finite_and_in_range(mu in -25.0f64..8.0, ls in -25.0f64..8.0, eps in 0.0f64..=1.0) {
        let k = kl(mu, ls);
        prop_assert!(k.is_finite() && k >= -1e-12, "KL({mu},{ls}) = {k}");
        let (gm, gl) = kl_grad(mu, ls);
        prop_assert!(gm.is_finite() && gl.is_finite());
        let e = expected_theta(mu, ls);
        let e2 = expected_theta_sq(mu, ls);
        let lo = LOG_THETA_MIN.exp();
        prop_assert!(e >= lo * (1.0 - 1e-12) && e <= 1.0 + 1e-15, "E = {e}");
        prop_assert!(e2 >= e * e * (1.0 - 1e-12) && e2 <= 1.0 + 1e-15);
        let s = snr(mu, ls);
        prop_assert!(s.is_finite() && s > 0.0 && s <= 1e30);
        let smp = sample(mu, ls, eps);
        prop_assert!(smp.theta >= lo && smp.theta <= 1.0);
        prop_assert!(smp.dtheta_dmu.is_finite() && smp.dtheta_dlog_sigma.is_finite());
    }

    #[test]
    fn log_mass_matches_the_plain_difference(l in -30.0f64..30.0, w in 1e-9f64..40.0) {
        let u = l + w;
        let plain = if u <= 0.0 { norm_cdf(u) - norm_cdf(l) } else { norm_sf(l) - norm_sf(u) };
        let got = log_mass(l, u).log_z().exp();
        // The plain difference is only trustworthy when it does not cancel.
        let big = if u <= 0.0 { norm_cdf(u) } else { norm_sf(l) };
        if plain > 1e-200 && plain > 1e-6 * big {
            prop_assert!(((got - plain) / plain).abs() < 1e-9, "[{l}, {u}]: {got} vs {plain}");
        }
        let v = truncated_variance(l, u);
        prop_assert!((0.0..=1.0 + 1e-12).contains(&v));
        prop_assert!(v <= w * w / 4.0 * (1.0 + 1e-9) + 1e-300);
    }

    #[test]
    fn slimming_never_empties_a_layer(
        layers in prop::collection::vec(prop::collection::vec(-2.0f32..2.0, 1..20), 1..6),
        percent in 0.0f64..=100.0,
    ) {
        let named: Vec<(String, &[f32])> = layers.iter().enumerate().map(|(i, l)| (format!("l{i}"), l.as_slice())).collect();
        let refs: Vec<(&str, &[f32])> = named.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let m = slimming_masks(&refs, percent).unwrap();
        let n: usize = layers.iter().map(Vec::len).sum();
        let removed = prune_count(n, percent).unwrap();
        let forced = m.layers.iter().filter(|l| l.forced).count();
        prop_assert_eq!(m.kept(), n - removed + forced);
        for l in &m.layers {
            prop_assert!(l.kept() >= 1);
        }
    }

    #[test]
    fn histogram_threshold_lies_in_range(values in prop::collection::vec(0.0f32..=1.0, 1..300)) {
        let th = histogram_threshold(&values, DEFAULT_BINS, 1.0).unwrap();
        prop_assert!((0.0..=1.0).contains(&th.threshold));
        prop_assert_eq!(th.counts.iter().sum::<usize>(), values.len());
    }
}

#[test]
fn log_mass_of_infinite_intervals() {
    assert_eq!(log_mass(f64::NEG_INFINITY, f64::INFINITY).log_z(), 0.0);
    assert!((log_mass(f64::NEG_INFINITY, 0.0).log_z() - 0.5f64.ln()).abs() < 1e-15);
    assert!((log_mass(0.0, f64::INFINITY).log_z() - 0.5f64.ln()).abs() < 1e-15);
    assert!((truncated_variance(f64::NEG_INFINITY, f64::INFINITY) - 1.0).abs() < 1e-15);
}

/// Narrow intervals, far in a tail included: the variance of a nearly flat
/// density on an interval of width `w` is `w²/12` (the direct form
/// `1 + l·r_l - u·r_u - (r_l - r_u)²` cancels to noise there).
#[test]
fn narrow_intervals_have_the_flat_variance() {
    for (l, w) in [
        (-24.361760157949174, 1e-9),
        (-24.36, 1e-6),
        (3.0, 1e-6),
        (-1.0, 1e-5),
        (0.0, 1e-4),
        (31.5, 1e-8),
    ] {
        let v = truncated_variance(l, l + w);
        let flat = w * w / 12.0;
        assert!(
            ((v - flat) / flat).abs() < 1e-6,
            "[{l}, {}]: {v} vs {flat}",
            l + w
        );
    }
}
