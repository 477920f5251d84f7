//! The (λ, t) search for a FLOPs target on cheap synthetic stand-ins for training.

use prune_reg::search::{search_lambda_t, SearchConfig, SearchPhase, StopReason};
use prune_reg::RegError;
use std::convert::Infallible;

/// A monotone synthetic FLOPs reduction, saturating at 95 %.
fn synthetic(lambda: f64, t: f64) -> f64 {
    95.0 * (1.0 - (-lambda / 6e-5 * (t / 1.2).powf(1.5)).exp())
}

#[test]
fn converges_on_a_monotone_function() {
    for target in [20.0, 45.0, 70.0, 85.0] {
        let cfg = SearchConfig::paper(target, 30);
        let out = search_lambda_t(&cfg, |l, t| Ok::<_, Infallible>(synthetic(l, t))).unwrap();
        assert!(out.converged, "target {target}: {:?}", out.stop);
        assert_eq!(out.stop, StopReason::Converged);
        assert!((out.best.flops_reduction - target).abs() < cfg.delta);
        assert_eq!(out.best, *out.trail.last().unwrap());
        assert_eq!(out.best_index, out.trail.len() - 1);
        for tr in &out.trail {
            assert_eq!(tr.flops_reduction, synthetic(tr.lambda, tr.t));
            assert!((0.0..=2e-4).contains(&tr.lambda));
        }
        assert!(out
            .trail
            .iter()
            .filter(|t| t.phase == SearchPhase::Lambda)
            .all(|t| t.t == 1.2));
        println!(
            "target {target}: {} trials, best {:?}",
            out.trail.len(),
            out.best
        );
    }
}

#[test]
fn the_t_phase_refines_after_the_lambda_phase() {
    // F = 80·λ/2e-4 + 50·(t - 1.2): at λ = 1e-4, F = 40 is within 2δ of 47, then
    // t = 1.3 gives 45, within δ.
    let f = |l: f64, t: f64| 80.0 * l / 2e-4 + 50.0 * (t - 1.2);
    let out = search_lambda_t(&SearchConfig::paper(47.0, 10), |l, t| {
        Ok::<_, Infallible>(f(l, t))
    })
    .unwrap();
    assert!(out.converged);
    assert_eq!(out.trail.len(), 2);
    assert_eq!(out.trail[0].phase, SearchPhase::Lambda);
    assert_eq!((out.trail[0].lambda, out.trail[0].t), (1e-4, 1.2));
    assert_eq!(out.trail[1].phase, SearchPhase::T);
    assert!((out.trail[1].t - 1.3).abs() < 1e-12 && out.trail[1].lambda == 1e-4);
    assert!((out.best.flops_reduction - 45.0).abs() < 1e-9);
}

#[test]
fn respects_the_trial_budget() {
    // F rises so slowly with λ that the target is out of reach.
    let mut calls = 0;
    let out = search_lambda_t(&SearchConfig::paper(90.0, 5), |l, _t| {
        calls += 1;
        Ok::<_, Infallible>(l * 1e4)
    })
    .unwrap();
    assert_eq!(calls, 5);
    assert_eq!(out.trail.len(), 5);
    assert_eq!(out.stop, StopReason::MaxTrials);
    assert!(!out.converged);
    // The best of an unconverged search is the trial closest to the target.
    let closest = out
        .trail
        .iter()
        .map(|t| (t.flops_reduction - 90.0).abs())
        .fold(f64::INFINITY, f64::min);
    assert_eq!((out.best.flops_reduction - 90.0).abs(), closest);
    assert_eq!(out.trail[out.best_index], out.best);
}

#[test]
fn the_best_index_names_a_trial_before_the_last() {
    // λ barely moves F and t overshoots: the search stops with an earlier
    // trial as the closest one, and names it by index.
    let f = |l: f64, t: f64| 30.0 + l * 1e4 + 300.0 * (t - 1.2);
    let out = search_lambda_t(&SearchConfig::paper(45.0, 8), |l, t| {
        Ok::<_, Infallible>(f(l, t))
    })
    .unwrap();
    assert!(!out.converged, "{:?}", out.trail);
    assert_eq!(out.trail[out.best_index], out.best);
    assert!(out.best_index + 1 < out.trail.len(), "{:?}", out.trail);
    for t in &out.trail {
        assert!((t.flops_reduction - 45.0).abs() >= (out.best.flops_reduction - 45.0).abs());
    }
}

#[test]
fn oscillation_and_range_limits_stop_the_t_phase() {
    // F ignores λ and jumps 20 points per t step: t = 1.2 → 40, 1.3 → 60, back to 1.2.
    let out = search_lambda_t(&SearchConfig::paper(50.0, 100), |_l, t| {
        Ok::<_, Infallible>(40.0 + 200.0 * (t - 1.2))
    })
    .unwrap();
    assert_eq!(out.stop, StopReason::TOscillates);
    assert!(out.trail.len() < 100);
    // F = 10 whatever (λ, t): t climbs to 1.9 and stops.
    let out = search_lambda_t(&SearchConfig::paper(90.0, 100), |_l, _t| {
        Ok::<_, Infallible>(10.0)
    })
    .unwrap();
    assert_eq!(out.stop, StopReason::TOutOfRange);
    let last = out.trail.last().unwrap();
    assert!((last.t - 1.9).abs() < 1e-9, "{}", last.t);
}

#[test]
fn callback_failures_and_bad_configs_are_errors() {
    let err = search_lambda_t(&SearchConfig::paper(50.0, 10), |_l, _t| {
        Err::<f64, _>(std::io::Error::other("training diverged"))
    })
    .unwrap_err();
    match err {
        RegError::SearchCallback {
            step, lambda, t, ..
        } => {
            assert_eq!((step, lambda, t), (0, 1e-4, 1.2));
        }
        other => panic!("unexpected {other}"),
    }
    let err = search_lambda_t(&SearchConfig::paper(50.0, 10), |_l, _t| {
        Ok::<_, Infallible>(f64::NAN)
    })
    .unwrap_err();
    assert!(matches!(err, RegError::NonFinite { .. }));
    let mut cfg = SearchConfig::paper(50.0, 10);
    cfg.max_trials = 0;
    assert!(search_lambda_t(&cfg, |_l, _t| Ok::<_, Infallible>(0.0)).is_err());
    let mut cfg = SearchConfig::paper(50.0, 10);
    cfg.t_init = 2.5;
    assert!(search_lambda_t(&cfg, |_l, _t| Ok::<_, Infallible>(0.0)).is_err());
}

#[test]
fn widens_the_bracket_when_lambda_hi_falls_short() {
    // F(λ = 2e-4) ≈ 17 < 60: the paper's bracket cannot reach the target.
    let f = |l: f64, t: f64| 95.0 * (1.0 - (-l / 1e-3 * (t / 1.2).powf(1.5)).exp());
    let out = search_lambda_t(&SearchConfig::paper(60.0, 20), |l, t| {
        Ok::<_, Infallible>(f(l, t))
    })
    .unwrap();
    assert!(out.converged, "{out:?}");
    let phases: Vec<SearchPhase> = out.trail.iter().map(|t| t.phase).collect();
    assert_eq!(
        phases,
        [
            SearchPhase::Lambda,
            SearchPhase::Widen,
            SearchPhase::Widen,
            SearchPhase::Widen,
            SearchPhase::T
        ]
    );
    let lambdas: Vec<f64> = out.trail.iter().map(|t| t.lambda).collect();
    assert_eq!(lambdas, [1e-4, 2e-4, 4e-4, 8e-4, 8e-4]);
    assert_eq!((out.widenings, out.lambda_hi), (2, 8e-4));
    assert!((out.best.flops_reduction - 60.0).abs() < 5.0);
}

#[test]
fn widening_stops_when_lambda_no_longer_moves_flops() {
    // F saturates at 30 whatever λ: the first probe of λ_hi shows no gain.
    let out = search_lambda_t(&SearchConfig::paper(80.0, 6), |l, _t| {
        Ok::<_, Infallible>(30.0_f64.min(l * 1e6))
    })
    .unwrap();
    assert!(!out.converged);
    assert_eq!(out.widenings, 0);
    assert_eq!(out.trail[1].phase, SearchPhase::Widen);
    assert!(out.trail[2..].iter().all(|t| t.phase == SearchPhase::T));
}
