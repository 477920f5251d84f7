//! erf, erfc, erfcx, Φ, log Φ and Φ⁻¹ against 120-digit references and against
//! their own identities.

#[rustfmt::skip]
#[path = "data/reference.rs"]
mod reference;

use prune_core::sbp::special::{
    cdf_over_pdf, erf, erfc, erfcx, laplace_cf, log_norm_cdf, lower_tail, norm_cdf, norm_pdf,
    norm_ppf, norm_sf,
};
use reference::{CDF_TABLE, ERF_TABLE, PPF_TABLE};

/// Relative error, with an absolute floor for values near zero.
fn rel(got: f64, want: f64) -> f64 {
    if got == want {
        0.0
    } else if want == 0.0 {
        got.abs()
    } else {
        ((got - want) / want).abs()
    }
}

#[test]
fn erf_family_matches_reference() {
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for &(x, e, ec, ecx) in ERF_TABLE {
        let (a, b, c) = (rel(erf(x), e), rel(erfc(x), ec), rel(erfcx(x), ecx));
        assert!(a < 4e-16, "erf({x}) = {} want {e} (rel {a:e})", erf(x));
        assert!(b < 2e-14, "erfc({x}) = {} want {ec} (rel {b:e})", erfc(x));
        assert!(
            c < 2e-14,
            "erfcx({x}) = {} want {ecx} (rel {c:e})",
            erfcx(x)
        );
        worst = (worst.0.max(a), worst.1.max(b), worst.2.max(c));
    }
    println!(
        "max rel error: erf {:e}, erfc {:e}, erfcx {:e}",
        worst.0, worst.1, worst.2
    );
}

#[test]
fn normal_cdf_matches_reference() {
    let mut worst = (0.0f64, 0.0f64);
    for &(x, p, lp) in CDF_TABLE {
        let (a, b) = (rel(norm_cdf(x), p), rel(log_norm_cdf(x), lp));
        if p > 1e-300 {
            assert!(a < 2e-14, "Φ({x}) = {} want {p} (rel {a:e})", norm_cdf(x));
            worst.0 = worst.0.max(a);
        }
        assert!(
            b < 1e-14,
            "log Φ({x}) = {} want {lp} (rel {b:e})",
            log_norm_cdf(x)
        );
        worst.1 = worst.1.max(b);
        assert!((norm_sf(-x) - norm_cdf(x)).abs() <= 1e-16 * norm_cdf(x).max(1e-300));
    }
    println!("max rel error: Φ {:e}, log Φ {:e}", worst.0, worst.1);
}

#[test]
fn normal_ppf_matches_reference() {
    let mut worst = 0.0f64;
    for &(p, x) in PPF_TABLE {
        let e = rel(norm_ppf(p), x);
        assert!(e < 1e-14, "Φ⁻¹({p}) = {} want {x} (rel {e:e})", norm_ppf(p));
        worst = worst.max(e);
    }
    println!("max rel error: Φ⁻¹ {worst:e}");
}

#[test]
fn ppf_inverts_cdf() {
    // Φ(Φ⁻¹(p)) = p over 1e-300 .. 1 - 1e-12, log-spaced in both tails.
    let mut worst = 0.0f64;
    for i in 0..=3000 {
        let lp = -690.0 * (i as f64 / 3000.0);
        for p in [lp.exp(), 1.0 - lp.exp().min(0.5)] {
            if p <= 0.0 || p >= 1.0 || 1.0 - p < 1e-12 {
                continue;
            }
            let back = norm_cdf(norm_ppf(p));
            let e = ((back - p) / p).abs();
            worst = worst.max(e);
            assert!(e < 1e-12, "Φ(Φ⁻¹({p})) = {back}");
        }
    }
    assert_eq!(norm_ppf(0.5), 0.0);
    assert_eq!(norm_ppf(0.0), f64::NEG_INFINITY);
    assert_eq!(norm_ppf(1.0), f64::INFINITY);
    assert!(norm_ppf(-0.1).is_nan() && norm_ppf(1.5).is_nan());
    println!("max rel error of Φ(Φ⁻¹(p)): {worst:e}");
}

#[test]
fn infinities_and_nan() {
    let (inf, ninf) = (f64::INFINITY, f64::NEG_INFINITY);
    assert_eq!((erf(inf), erf(ninf)), (1.0, -1.0));
    assert_eq!((erfc(inf), erfc(ninf)), (0.0, 2.0));
    assert_eq!((erfcx(inf), erfcx(ninf)), (0.0, inf));
    assert_eq!((norm_cdf(inf), norm_cdf(ninf)), (1.0, 0.0));
    assert_eq!((norm_pdf(inf), norm_pdf(ninf)), (0.0, 0.0));
    assert_eq!(log_norm_cdf(ninf), ninf);
    assert_eq!(log_norm_cdf(inf), 0.0);
    for f in [erf, erfc, erfcx, norm_cdf, norm_pdf, log_norm_cdf, norm_ppf] {
        assert!(f(f64::NAN).is_nan());
    }
}

#[test]
fn identities_hold() {
    for i in -400..=400 {
        let x = i as f64 * 0.02;
        let s = erf(x) + erfc(x);
        assert!((s - 1.0).abs() < 3e-16, "erf + erfc at {x}: {s}");
        assert!((erf(-x) + erf(x)).abs() == 0.0);
        let cx = erfcx(x) * (-x * x).exp();
        assert!(
            rel(cx, erfc(x)) < 1e-14 || erfc(x) < 1e-290,
            "erfcx vs erfc at {x}"
        );
        let m = cdf_over_pdf(x);
        assert!(
            rel(m * norm_pdf(x), norm_cdf(x)) < 1e-14,
            "Mills ratio at {x}"
        );
    }
}

#[test]
fn continued_fraction_matches_erfcx() {
    for i in 0..200 {
        let z = 4.0 + i as f64 * 0.37;
        let (t1, t2) = laplace_cf(z);
        let sqrt_pi = std::f64::consts::PI.sqrt();
        let from_cf = 1.0 / (sqrt_pi * (z + t1));
        assert!(
            rel(from_cf, erfcx(z)) < 2e-15,
            "erfcx({z}) from CF {from_cf}"
        );
        // T₁ = ½/(z + T₂)
        assert!(rel(t1, 0.5 / (z + t2)) < 1e-15);
        // Lower-tail quantities at y = -√2 z against their direct definitions,
        // where the cancellation in the direct forms is still mild.
        let y = -std::f64::consts::SQRT_2 * z;
        let lt = lower_tail(y);
        assert!(rel(lt.m, cdf_over_pdf(y)) < 2e-15);
        if z < 6.0 {
            let q_direct = 1.0 + y * cdf_over_pdf(y);
            assert!(
                rel(lt.q, q_direct) < 1e-12,
                "q at {y}: {} vs {q_direct}",
                lt.q
            );
            let p_direct = lt.m + y * lt.q;
            assert!(
                rel(lt.p, p_direct) < 1e-10,
                "p at {y}: {} vs {p_direct}",
                lt.p
            );
        }
        // Asymptotics: q ≈ 1/y², p ≈ 2/|y|³.
        if z > 100.0 {
            assert!(rel(lt.q * y * y, 1.0) < 1e-3);
            assert!(rel(lt.p * y.abs().powi(3), 2.0) < 1e-3);
        }
    }
}
