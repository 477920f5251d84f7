//! The one SBP math (prune-kernels' CPU reference, re-exported by prune-core)
//! against independent references: the sampler and its derivatives against
//! mpmath values computed from the definition (`data/gen_sample_reference.py`),
//! on points that reach the mirrored upper-tail branch, the w and log θ clips
//! and the parameter clamps; and the closed forms at the clamps.

#[path = "data/sample_reference.rs"]
mod sample_reference;

use prune_core::sbp::{expected_theta, kl, mirrored, sample, snr, PARAM_MAX, PARAM_MIN};
use sample_reference::SAMPLE_TABLE;

#[test]
fn sampler_matches_mpmath_including_mirrored_branch_and_clamps() {
    let (mut mirrored_rows, mut clamped_rows) = (0, 0);
    let mut worst = [0.0f64; 3];
    for &(mu, ls, eps, th, dm, dl) in SAMPLE_TABLE {
        mirrored_rows += usize::from(mirrored(mu, ls));
        clamped_rows += usize::from(!(PARAM_MIN..=PARAM_MAX).contains(&mu))
            + usize::from(!(PARAM_MIN..=PARAM_MAX).contains(&ls));
        let s = sample(mu, ls, eps);
        let errs = [
            ((s.theta - th) / th).abs(),
            (s.dtheta_dmu - dm).abs() / th,
            (s.dtheta_dlog_sigma - dl).abs() / th,
        ];
        for (w, e) in worst.iter_mut().zip(errs) {
            *w = w.max(e);
        }
        assert!(
            errs[0] < 1e-12,
            "theta({mu}, {ls}, {eps}) = {} vs {th}",
            s.theta
        );
        assert!(
            errs[1] < 1e-8 && errs[2] < 1e-8,
            "derivatives at ({mu}, {ls}, {eps}): ({}, {}) vs ({dm}, {dl})",
            s.dtheta_dmu,
            s.dtheta_dlog_sigma
        );
        // A clamped parameter passes no gradient.
        if !(PARAM_MIN..=PARAM_MAX).contains(&mu) {
            assert_eq!(s.dtheta_dmu, 0.0);
        }
        if !(PARAM_MIN..=PARAM_MAX).contains(&ls) {
            assert_eq!(s.dtheta_dlog_sigma, 0.0);
        }
    }
    println!("worst relative errors (theta, dmu, dls): {worst:?}");
    assert!(
        mirrored_rows >= 80,
        "mirrored branch reached {mirrored_rows} times"
    );
    assert!(clamped_rows >= 5, "clamps reached {clamped_rows} times");
}

#[test]
fn closed_forms_clamp_mu_and_log_sigma_to_the_paper_box() {
    for &(mu, ls, mu_c, ls_c) in &[
        (-25.0, 0.0, -20.0, 0.0),
        (8.0, -1.0, 5.0, -1.0),
        (-5.0, 7.0, -5.0, 5.0),
        (-3.0, -30.0, -3.0, -20.0),
    ] {
        assert_eq!(kl(mu, ls), kl(mu_c, ls_c));
        assert_eq!(expected_theta(mu, ls), expected_theta(mu_c, ls_c));
        assert_eq!(snr(mu, ls), snr(mu_c, ls_c));
    }
}
