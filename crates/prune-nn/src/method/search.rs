//! Polarization's FLOPs search (`search.json`): the paper's Algorithm 1
//! (see [`prune_reg::search`]) — binary search of λ at t = 1.2 in the
//! paper's bracket, widened while λ_hi falls short, then steps of t, until
//! the FLOPs reduction is within δ = 5 points of the target.
//!
//! Each trial is a full sparse training run saved in `search/trial-<k>/`;
//! only the trials' masks and accuracies stay in memory, and the chosen
//! trial's model is read back from its directory (the saved weights are the
//! trained ones, bit for bit).

use super::polarization::Polarization;
use super::{compiled_flops, train_sparse, PruningMethod, Sparse, SparseRun};
use crate::error::{Error, Result};
use crate::run::write_json;
use prune_graph::Model;
use prune_reg::search::{search_lambda_t, SearchConfig, SearchPhase};
use prune_reg::Masks;
use serde::Serialize;

/// One trial, as recorded in `search.json`.
#[derive(Clone, Debug, Serialize)]
struct Trial {
    lambda: f64,
    t: f64,
    /// `lambda` (bisection), `widen` (the bracket's upper end) or `t`.
    phase: &'static str,
    flops_reduction_percent: f64,
    test_accuracy: f64,
}

/// `search.json`: the target, whether it was met, and every trial.
#[derive(Clone, Debug, Serialize)]
struct SearchRecord {
    target_flops_reduction: f64,
    target_percent: f64,
    delta_points: f64,
    target_met: bool,
    stop: String,
    chosen_trial: usize,
    lambda_hi: f64,
    widenings: usize,
    verdict: String,
    trials: Vec<Trial>,
}

/// Directory of trial `k` under the run's output.
fn trial_dir(run: &SparseRun<'_>, k: usize) -> std::path::PathBuf {
    run.out.join(format!("search/trial-{k}"))
}

/// Runs the search for a reduction of `target` (dense / pruned FLOPs);
/// writes `search.json` and says on stderr whether the target was met.
pub(super) fn search(method: &Polarization, run: &SparseRun<'_>, target: f64) -> Result<Sparse> {
    if target <= 1.0 {
        return Err(Error::Usage(format!(
            "--target-flops must exceed 1, got {target}"
        )));
    }
    let target_pct = 100.0 * (1.0 - 1.0 / target);
    let search_cfg = SearchConfig::paper(target_pct, 8);
    let mut trials: Vec<Trial> = Vec::new();
    let mut masks: Vec<Masks> = Vec::new();
    let outcome = search_lambda_t(&search_cfg, |lambda, t| -> Result<f64> {
        let trial = method.with_strength(lambda, t)?;
        let (m, acc) = train_sparse(&trial, run, &trial_dir(run, trials.len()))?;
        let chosen = trial.choose_masks(&m, run)?;
        let f = compiled_flops(&m, &chosen)?;
        let pct = 100.0 * (1.0 - f as f64 / run.flops_before.max(1) as f64);
        trials.push(Trial {
            lambda,
            t,
            phase: "",
            flops_reduction_percent: pct,
            test_accuracy: acc,
        });
        masks.push(chosen);
        Ok(pct)
    })?;
    for (tr, st) in trials.iter_mut().zip(&outcome.trail) {
        tr.phase = match st.phase {
            SearchPhase::Lambda => "lambda",
            SearchPhase::Widen => "widen",
            SearchPhase::T => "t",
        };
    }
    let chosen = outcome.best_index;
    let (Some(best), Some(best_masks)) = (trials.get(chosen), masks.into_iter().nth(chosen)) else {
        return Err(Error::Usage("the search ran no trial".into()));
    };
    let accuracy = best.test_accuracy;
    let verdict = outcome.verdict(search_cfg.delta);
    let record = SearchRecord {
        target_flops_reduction: target,
        target_percent: target_pct,
        delta_points: search_cfg.delta,
        target_met: outcome.converged,
        stop: format!("{:?}", outcome.stop),
        chosen_trial: chosen,
        lambda_hi: outcome.lambda_hi,
        widenings: outcome.widenings,
        verdict: verdict.clone(),
        trials,
    };
    write_json(&run.out.join("search.json"), &record)?;
    eprintln!("{verdict}");
    let model = Model::load(&trial_dir(run, chosen))?;
    Ok(Sparse {
        model,
        accuracy,
        masks: best_masks,
        verdict: Some(verdict),
    })
}
