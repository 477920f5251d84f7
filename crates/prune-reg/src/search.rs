//! Search of the polarization hyper-parameters (λ, t) for a FLOPs-reduction
//! target F* (Algorithm 1 of Zhuang et al. 2020).
//!
//! Each trial trains (or fine-tunes) with `(λ, t)` and reports the FLOPs
//! reduction F in percent through a callback; F is assumed to increase with
//! both λ and t.
//!
//! 1. Binary search of λ in `[λ_lo, λ_hi]` at `t = t_init` until
//!    `|F - F*| < 2δ` (if the bracket shrinks below `lambda_resolution` of its
//!    width first, the trial closest to F* is taken instead). The bracket
//!    starts as the paper's; while no trial has reached F*, a midpoint that
//!    falls short is followed by a trial at λ_hi itself, and when even λ_hi
//!    falls short the bracket is widened — `[λ_lo, λ_hi] ← [λ_hi, 2·λ_hi]`,
//!    trying the new end — at most `max_widenings` times, and only while F
//!    still grows with λ (a λ that no longer moves F hands over to step 2).
//! 2. With λ fixed, `t ← t ± t_step` (up when F < F*, down otherwise) until
//!    `|F - F*| < δ`. It stops without convergence when t would leave
//!    `[t_min, t_max]` or return to a value already tried (an oscillation).
//!
//! The total number of trials never exceeds `max_trials`. The outcome carries
//! the full trail of `(λ, t, F)`.

use crate::error::{RegError, Result};

/// Settings of the search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Target FLOPs reduction F*, percent.
    pub target: f64,
    /// Tolerance δ, percentage points.
    pub delta: f64,
    /// Lower end of the λ bracket.
    pub lambda_lo: f64,
    /// Upper end of the λ bracket.
    pub lambda_hi: f64,
    /// t during the λ phase.
    pub t_init: f64,
    /// Step of t in the second phase.
    pub t_step: f64,
    /// Smallest t tried.
    pub t_min: f64,
    /// Largest t tried.
    pub t_max: f64,
    /// Relative bracket width at which the λ phase gives up bisecting.
    pub lambda_resolution: f64,
    /// Upper bound on the number of trials (callback invocations).
    pub max_trials: usize,
    /// How many times λ_hi may be doubled when it falls short of F*.
    pub max_widenings: usize,
}

impl SearchConfig {
    /// The paper's settings for a given target: λ ∈ [0, 2e-4], t from 1.2 in
    /// steps of 0.1 within [0.1, 1.9], δ = 5 points.
    pub fn paper(target: f64, max_trials: usize) -> Self {
        SearchConfig {
            target,
            delta: 5.0,
            lambda_lo: 0.0,
            lambda_hi: 2e-4,
            t_init: 1.2,
            t_step: 0.1,
            t_min: 0.1,
            t_max: 1.9,
            lambda_resolution: 1e-4,
            max_trials,
            max_widenings: 10,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, value, reason| {
            Err(RegError::InvalidParameter {
                name,
                value,
                reason,
            })
        };
        if !self.target.is_finite() {
            return bad("target", self.target, "must be finite");
        }
        if !(self.delta.is_finite() && self.delta > 0.0) {
            return bad("delta", self.delta, "must be finite and > 0");
        }
        if !(self.lambda_lo.is_finite() && self.lambda_lo >= 0.0) {
            return bad("lambda_lo", self.lambda_lo, "must be finite and >= 0");
        }
        if !(self.lambda_hi.is_finite() && self.lambda_hi > self.lambda_lo) {
            return bad(
                "lambda_hi",
                self.lambda_hi,
                "must be finite and > lambda_lo",
            );
        }
        if !(self.t_step.is_finite() && self.t_step > 0.0) {
            return bad("t_step", self.t_step, "must be finite and > 0");
        }
        if !(self.t_min.is_finite() && self.t_min > 0.0) {
            return bad("t_min", self.t_min, "must be finite and > 0");
        }
        if !(self.t_max.is_finite() && self.t_max >= self.t_min) {
            return bad("t_max", self.t_max, "must be finite and >= t_min");
        }
        if !(self.t_min..=self.t_max).contains(&self.t_init) {
            return bad("t_init", self.t_init, "must lie in [t_min, t_max]");
        }
        if !(self.lambda_resolution > 0.0 && self.lambda_resolution < 1.0) {
            return bad(
                "lambda_resolution",
                self.lambda_resolution,
                "must lie in (0, 1)",
            );
        }
        if self.max_trials == 0 {
            return bad("max_trials", 0.0, "must be >= 1");
        }
        Ok(())
    }
}

/// Which phase produced a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPhase {
    /// Binary search of λ.
    Lambda,
    /// A trial at the upper end of the λ bracket (the paper's, or widened).
    Widen,
    /// Stepping of t.
    T,
}

/// One trial of the search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchTrial {
    /// λ used.
    pub lambda: f64,
    /// t used.
    pub t: f64,
    /// FLOPs reduction reported, percent.
    pub flops_reduction: f64,
    /// The phase that ran it.
    pub phase: SearchPhase,
}

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `|F - F*| < δ`.
    Converged,
    /// `max_trials` were used.
    MaxTrials,
    /// The next t would leave `[t_min, t_max]`.
    TOutOfRange,
    /// The next t was already tried (F oscillates around F* by more than δ).
    TOscillates,
}

/// Result of the search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    /// The chosen trial: the converged one, else the one closest to F*.
    pub best: SearchTrial,
    /// Index of `best` in `trail`.
    pub best_index: usize,
    /// Whether `|F - F*| < δ` was reached.
    pub converged: bool,
    /// Why the search stopped.
    pub stop: StopReason,
    /// Every trial, in order.
    pub trail: Vec<SearchTrial>,
    /// The upper end of the λ bracket when the search ended.
    pub lambda_hi: f64,
    /// How many times the λ bracket was doubled.
    pub widenings: usize,
    /// The target F*, percent.
    pub target: f64,
}

impl SearchOutcome {
    /// Says in plain words whether the target was met, with the FLOPs
    /// reduction as a factor (dense / pruned) and in percent.
    pub fn verdict(&self, delta: f64) -> String {
        let factor = |pct: f64| 100.0 / (100.0 - pct).max(1e-9);
        let (got, trials) = (self.best.flops_reduction, self.trail.len());
        let target = self.target;
        if self.converged {
            format!(
                "FLOPs target met: {:.2}x fewer FLOPs ({got:.1}% reduction) for a target of {:.2}x ({target:.1}% ± {delta} points), λ = {:.3e}, t = {:.2}, after {trials} trials",
                factor(got),
                factor(target),
                self.best.lambda,
                self.best.t,
            )
        } else {
            format!(
                "FLOPs target NOT met: the closest of {trials} trials reached {:.2}x fewer FLOPs ({got:.1}% reduction) against a target of {:.2}x ({target:.1}% ± {delta} points); search stopped: {:?}",
                factor(got),
                factor(target),
                self.stop,
            )
        }
    }
}

/// Index of the first trial closest to `target`.
fn closest(trail: &[SearchTrial], target: f64) -> usize {
    let mut best = 0;
    for (i, t) in trail.iter().enumerate() {
        if (t.flops_reduction - target).abs() < (trail[best].flops_reduction - target).abs() {
            best = i;
        }
    }
    best
}

/// Runs the search; `trial(λ, t)` trains with the given hyper-parameters and
/// returns the FLOPs reduction in percent.
pub fn search_lambda_t<F, E>(config: &SearchConfig, mut trial: F) -> Result<SearchOutcome>
where
    F: FnMut(f64, f64) -> std::result::Result<f64, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    config.validate()?;
    let mut trail: Vec<SearchTrial> = Vec::new();
    let mut run = |lambda: f64, t: f64, phase: SearchPhase, trail: &mut Vec<SearchTrial>| {
        let step = trail.len();
        let f = trial(lambda, t).map_err(|e| RegError::SearchCallback {
            step,
            lambda,
            t,
            source: e.into(),
        })?;
        if !f.is_finite() {
            return Err(RegError::NonFinite {
                what: "FLOPs reduction reported by search trial".to_string(),
                index: step,
                value: f,
            });
        }
        let rec = SearchTrial {
            lambda,
            t,
            flops_reduction: f,
            phase,
        };
        trail.push(rec);
        Ok(rec)
    };
    let target = config.target;
    let mut bracket = (config.lambda_hi, 0usize);
    let finish =
        |trail: Vec<SearchTrial>, stop: StopReason, best: Option<usize>, bracket: (f64, usize)| {
            let best_index = best.unwrap_or_else(|| closest(&trail, target));
            SearchOutcome {
                best: trail[best_index],
                best_index,
                converged: stop == StopReason::Converged,
                stop,
                trail,
                lambda_hi: bracket.0,
                widenings: bracket.1,
                target,
            }
        };

    // Phase 1: bisection of λ at t_init, widening the bracket while even its
    // upper end falls short of the target.
    let (mut lo, mut hi) = (config.lambda_lo, config.lambda_hi);
    let mut reached = false; // some trial had F > F*
    let (mut lambda, mut phase) = (0.5 * (lo + hi), SearchPhase::Lambda);
    let mut current_index = loop {
        if trail.len() >= config.max_trials {
            return Ok(finish(trail, StopReason::MaxTrials, None, bracket));
        }
        let best_before = trail
            .iter()
            .map(|t| t.flops_reduction)
            .fold(f64::NEG_INFINITY, f64::max);
        let rec = run(lambda, config.t_init, phase, &mut trail)?;
        if (rec.flops_reduction - target).abs() < config.delta {
            let last = trail.len() - 1;
            return Ok(finish(trail, StopReason::Converged, Some(last), bracket));
        }
        if (rec.flops_reduction - target).abs() < 2.0 * config.delta {
            break trail.len() - 1;
        }
        if rec.flops_reduction < target {
            lo = lambda;
        } else {
            hi = lambda;
            reached = true;
        }
        if !reached {
            if phase == SearchPhase::Lambda {
                // The midpoint falls short: does the bracket's end reach F*?
                (lambda, phase) = (hi, SearchPhase::Widen);
                continue;
            }
            // Even λ_hi falls short: double it, unless λ stopped moving F.
            if rec.flops_reduction <= best_before || bracket.1 >= config.max_widenings {
                break closest(&trail, target);
            }
            hi *= 2.0;
            bracket = (hi, bracket.1 + 1);
            lambda = hi;
            continue;
        }
        if hi - lo < (bracket.0 - config.lambda_lo) * config.lambda_resolution {
            break closest(&trail, target);
        }
        (lambda, phase) = (0.5 * (lo + hi), SearchPhase::Lambda);
    };

    // Phase 2: steps of t with λ fixed. t is kept as t_init + k·t_step.
    let mut current = trail[current_index];
    let lambda = current.lambda;
    let mut k: i64 = ((current.t - config.t_init) / config.t_step).round() as i64;
    let mut tried = vec![k];
    loop {
        if (current.flops_reduction - target).abs() < config.delta {
            return Ok(finish(
                trail,
                StopReason::Converged,
                Some(current_index),
                bracket,
            ));
        }
        if trail.len() >= config.max_trials {
            return Ok(finish(trail, StopReason::MaxTrials, None, bracket));
        }
        let next_k = if current.flops_reduction < target {
            k + 1
        } else {
            k - 1
        };
        let t = config.t_init + next_k as f64 * config.t_step;
        if t < config.t_min - 1e-12 || t > config.t_max + 1e-12 {
            return Ok(finish(trail, StopReason::TOutOfRange, None, bracket));
        }
        if tried.contains(&next_k) {
            return Ok(finish(trail, StopReason::TOscillates, None, bracket));
        }
        tried.push(next_k);
        k = next_k;
        current = run(lambda, t, SearchPhase::T, &mut trail)?;
        current_index = trail.len() - 1;
    }
}
