//! SBP closed forms against 120-digit evaluations of the textbook formulas,
//! over the whole parameter box including its corners and clipped values.

#[rustfmt::skip]
#[path = "data/reference.rs"]
mod reference;

use prune_core::sbp::{expected_theta, expected_theta_sq, kl, kl_grad, snr};
use reference::SBP_TABLE;

fn rel(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else {
        ((got - want) / want.abs().max(1e-300)).abs()
    }
}

#[test]
fn sbp_closed_forms_match_reference() {
    let mut worst = [0.0f64; 6];
    for &(mu, ls, k, dm, dl, e1, e2, s) in SBP_TABLE {
        let (gm, gl) = kl_grad(mu, ls);
        let errs = [
            // KL is compared in absolute terms relative to max(1, |KL|).
            (kl(mu, ls) - k).abs() / k.abs().max(1.0),
            (gm - dm).abs() / dm.abs().max(1e-3),
            (gl - dl).abs() / dl.abs().max(1e-3),
            rel(expected_theta(mu, ls), e1),
            rel(expected_theta_sq(mu, ls), e2),
            rel(snr(mu, ls), s),
        ];
        println!(
            "mu {mu:>6} ls {ls:>6}: kl {:.1e} dmu {:.1e} dls {:.1e} E {:.1e} E2 {:.1e} snr {:.1e}",
            errs[0], errs[1], errs[2], errs[3], errs[4], errs[5]
        );
        for (w, e) in worst.iter_mut().zip(errs) {
            *w = w.max(e);
        }
    }
    println!("worst: {worst:?}");
    assert!(worst[0] < 1e-14, "KL");
    assert!(worst[1] < 1e-11, "dKL/dmu");
    assert!(worst[2] < 1e-11, "dKL/dlog sigma");
    assert!(worst[3] < 1e-14, "E[theta]");
    assert!(worst[4] < 1e-14, "E[theta^2]");
    assert!(worst[5] < 1e-13, "SNR");
}
