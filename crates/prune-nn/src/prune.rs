//! The end-to-end pruning pipeline (`prune-nn prune`).
//!
//! ```text
//! dense model ─► add gates ─► sparse training (regularizer) ─► rule → masks
//!   ─► compile (groups → surgery → verify) ─► fine-tune ─► evaluate ─► report
//! ```
//! Every step writes into the output directory: `sparse/` (the gated model
//! and its checkpoints), `masks.json`, histograms of γ or SNR, the compiled
//! and fine-tuned model (`model.json`, `weights.safetensors`), `report.json`
//! and `report.md`.

use crate::error::{Error, Result};
use crate::report::{render_markdown, PruneReport};
use crate::run::write_json;
use prune_compiler::{compile, measure_speed, CompileOptions};
use prune_data::Dataset;
use prune_graph::Model;
use prune_reg::method::{
    insert_sbp_gates, insert_scale_gates, polarization_rule, sbp_masks, slimming_rule,
    to_channel_masks, PolarizationMethod, SbpMethod, SlimmingMethod,
};
use prune_reg::polarization::Polarization;
use prune_reg::threshold::ThresholdMode;
use prune_reg::Masks;
use prune_train::{evaluate, fit, OptimizerKind, Regularizer, RunFiles, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The pruning method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Sbp,
    Polarization,
    Slimming,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sbp" => Ok(Method::Sbp),
            "polarization" => Ok(Method::Polarization),
            "slimming" => Ok(Method::Slimming),
            other => Err(Error::Usage(format!(
                "unknown method '{other}': expected sbp, polarization or slimming"
            ))),
        }
    }
}

/// Settings of a pruning run; defaults follow the papers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruneConfig {
    pub method: Method,
    /// Sparse-training epochs.
    pub epochs: usize,
    /// Fine-tuning epochs of the compiled model.
    pub finetune_epochs: usize,
    pub batch_size: usize,
    /// Learning rate of sparse training.
    pub lr: f32,
    /// Learning rate of fine-tuning.
    pub finetune_lr: f32,
    /// Optimizer of sparse training and fine-tuning.
    pub optimizer: OptimizerKind,
    pub seed: u64,
    /// SBP: learning-rate multiplier of μ and log σ (10 for deep nets).
    pub sbp_lr_mult: f32,
    /// Polarization: λ, t and the upper bound a of γ.
    pub lambda: f64,
    pub t: f64,
    pub upper: f32,
    /// Polarization: one histogram for all layers instead of one per layer.
    pub global_threshold: bool,
    /// Slimming: λ of the L1 term and the global prune percentage.
    pub slim_lambda: f64,
    pub percent: f64,
    /// Target FLOPs reduction (dense / pruned); searched for when set.
    pub target_flops: Option<f64>,
    /// Batches per epoch cap (short budgets).
    pub max_batches: Option<usize>,
    pub progress: bool,
    /// Timing repeats of the speed measurement (0 skips it).
    pub speed_repeats: usize,
    /// Learning-rate schedule of sparse training and of fine-tuning.
    #[serde(default)]
    pub schedule: prune_core::optim::LrSchedule,
    #[serde(default)]
    pub finetune_schedule: prune_core::optim::LrSchedule,
    /// SBP: draw the noise per example instead of once per minibatch.
    #[serde(default)]
    pub sbp_per_example: bool,
    /// SBP: KL weight per gate in graph order (empty: all 1).
    #[serde(default)]
    pub sbp_kl_weights: Vec<f32>,
    /// Continue sparse training from `sparse/checkpoint`.
    #[serde(default)]
    pub resume: bool,
}

impl PruneConfig {
    /// The papers' defaults for `method`.
    pub fn paper_defaults(method: Method) -> Self {
        let optimizer = match method {
            // SBP: Adam with β1 = 0.95, lr 1e-3 (Neklyudov et al. 2017)
            Method::Sbp => OptimizerKind::Adam {
                beta1: 0.95,
                beta2: 0.999,
                weight_decay: 0.0,
            },
            _ => OptimizerKind::adam(),
        };
        Self {
            method,
            epochs: 10,
            finetune_epochs: 2,
            batch_size: 100,
            lr: 1e-3,
            finetune_lr: 1e-4,
            optimizer,
            seed: 0,
            sbp_lr_mult: 1.0,
            lambda: 1e-4,
            t: 1.2,
            upper: 1.0,
            global_threshold: false,
            slim_lambda: 1e-4,
            percent: 50.0,
            target_flops: None,
            max_batches: None,
            progress: false,
            speed_repeats: 5,
            schedule: Default::default(),
            finetune_schedule: Default::default(),
            sbp_per_example: false,
            sbp_kl_weights: Vec::new(),
            resume: false,
        }
    }

    fn train_config(
        &self,
        epochs: usize,
        lr: f32,
        schedule: &prune_core::optim::LrSchedule,
    ) -> TrainConfig {
        TrainConfig {
            epochs,
            batch_size: self.batch_size,
            lr,
            optimizer: self.optimizer.clone(),
            schedule: schedule.clone(),
            seed: self.seed,
            augment: false,
            max_batches: self.max_batches,
            progress: self.progress,
        }
    }
}

/// The result of [`prune`]: the fine-tuned compiled model and its report.
pub struct Pruned {
    pub model: Model,
    pub report: PruneReport,
    pub masks: Masks,
}

fn dense_flops(model: &Model) -> Result<u64> {
    Ok(model.cost()?.flops)
}

/// Runs the whole pipeline on a trained dense `model`.
pub fn prune(
    dense: &Model,
    train: &Dataset,
    test: &Dataset,
    cfg: &PruneConfig,
    out: &Path,
) -> Result<Pruned> {
    cfg.validate()?;
    crate::onnx::check_fits(dense, train)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let acc_before = evaluate(dense, test, None, 500)?.accuracy;
    let flops_before = dense_flops(dense)?;
    let mut verdict = None;
    let (sparse, acc_sparse, masks) = match (cfg.method, cfg.target_flops) {
        (Method::Polarization, Some(target)) => {
            let (m, acc, masks, v) =
                polarization_search(dense, train, test, cfg, out, flops_before, target)?;
            verdict = Some(v);
            (m, acc, masks)
        }
        _ => {
            let dir = out.join("sparse");
            let (m, acc) = sparse_train(dense, train, test, cfg, cfg.lambda, cfg.t, &dir)?;
            let masks = choose_masks(&m, cfg, flops_before)?;
            (m, acc, masks)
        }
    };
    masks.save_json(out.join("masks.json"))?;
    crate::plots::write_histograms(&sparse, cfg.method, out)?;

    let channel_masks = to_channel_masks(&masks);
    let masked_acc = evaluate(&sparse, test, Some(&channel_masks), 500)?.accuracy;
    let compiled = compile(&sparse, &channel_masks, &CompileOptions::default())?;
    let mut model = compiled.model;
    let pruned_acc = evaluate(&model, test, None, 500)?.accuracy;
    if cfg.finetune_epochs > 0 {
        let ft = out.join("finetune");
        fit(
            &mut model,
            train,
            test,
            &cfg.train_config(cfg.finetune_epochs, cfg.finetune_lr, &cfg.finetune_schedule),
            None,
            RunFiles {
                dir: Some(&ft),
                resume: false,
            },
        )?;
    }
    let acc_after = evaluate(&model, test, None, 500)?.accuracy;
    model.save(out)?;
    let speed = if cfg.speed_repeats > 0 {
        Some(measure_speed(dense, &model, cfg.speed_repeats)?)
    } else {
        None
    };
    let flops_after = dense_flops(&model)?;
    let report = PruneReport::new(
        cfg,
        dense,
        &model,
        &compiled.report,
        speed,
        [acc_before, acc_sparse, masked_acc, pruned_acc, acc_after],
        flops_before,
        flops_after,
    )?;
    write_json(&out.join(crate::run::REPORT_FILE), &report)?;
    let mut md = render_markdown(&report);
    if let Some(v) = &verdict {
        md.push_str(&format!("\n{v}\n"));
    }
    std::fs::write(out.join("report.md"), md).map_err(|e| Error::io(out, e))?;
    Ok(Pruned {
        model,
        report,
        masks,
    })
}

/// Adds the method's gates to `dense` and trains with its regularizer
/// (λ and t apply to polarization). Returns the sparse model and its test
/// accuracy.
fn sparse_train(
    dense: &Model,
    train: &Dataset,
    test: &Dataset,
    cfg: &PruneConfig,
    lambda: f64,
    t: f64,
    dir: &Path,
) -> Result<(Model, f64)> {
    let sbp = SbpMethod {
        param_lr_mult: cfg.sbp_lr_mult,
        noise: if cfg.sbp_per_example {
            prune_core::sbp::NoiseMode::PerExample
        } else {
            prune_core::sbp::NoiseMode::PerChannel
        },
    };
    let weighted = crate::sbp_weights::WeightedSbp {
        inner: sbp.clone(),
        weights: cfg.sbp_kl_weights.clone(),
    };
    let pol = PolarizationMethod {
        reg: Polarization::new(lambda, t)?,
        upper: cfg.upper,
    };
    let slim = SlimmingMethod {
        lambda: cfg.slim_lambda,
    };
    let (mut sparse, reg): (Model, &dyn Regularizer) = match cfg.method {
        Method::Sbp if !cfg.sbp_kl_weights.is_empty() => (insert_sbp_gates(dense)?, &weighted),
        Method::Sbp => (insert_sbp_gates(dense)?, &sbp),
        Method::Polarization => {
            let mut m = insert_scale_gates(dense, prune_reg::polarization::GAMMA_INIT)?;
            clamp_all_gammas(&mut m, cfg.upper)?;
            (m, &pol)
        }
        Method::Slimming => (insert_scale_gates(dense, 1.0)?, &slim),
    };
    let tracked = crate::trajectory::tracked(reg, cfg, train.len(), dir)?;
    let summary = fit(
        &mut sparse,
        train,
        test,
        &cfg.train_config(cfg.epochs, cfg.lr, &cfg.schedule),
        Some(&tracked),
        RunFiles {
            dir: Some(dir),
            resume: cfg.resume,
        },
    )?;
    sparse.save(dir)?;
    Ok((sparse, summary.test_accuracy))
}

/// One trial of the polarization search, as recorded in `search.json`.
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

/// The paper's Algorithm 1 (see [`prune_reg::search`]): binary search of λ
/// at t = 1.2 in the paper's bracket, widened while λ_hi falls short, then
/// steps of t, until the FLOPs reduction is within δ = 5 points of the
/// target. Each trial is a full sparse training run; the chosen trial's
/// model is kept. `search.json` records every trial and says whether the
/// target was met; so does the message on stderr.
fn polarization_search(
    dense: &Model,
    train: &Dataset,
    test: &Dataset,
    cfg: &PruneConfig,
    out: &Path,
    flops_before: u64,
    target: f64,
) -> Result<(Model, f64, Masks, String)> {
    if target <= 1.0 {
        return Err(Error::Usage(format!(
            "--target-flops must exceed 1, got {target}"
        )));
    }
    let target_pct = 100.0 * (1.0 - 1.0 / target);
    let search_cfg = prune_reg::search::SearchConfig::paper(target_pct, 8);
    let mut runs: Vec<(Model, f64, Masks, f64)> = Vec::new();
    let mut trials = Vec::new();
    let outcome = prune_reg::search::search_lambda_t(&search_cfg, |lambda, t| -> Result<f64> {
        let dir = out.join(format!("search/trial-{}", runs.len()));
        let (m, acc) = sparse_train(dense, train, test, cfg, lambda, t, &dir)?;
        let masks = choose_masks(&m, cfg, flops_before)?;
        let f = compiled_flops(&m, &masks)?;
        let pct = 100.0 * (1.0 - f as f64 / flops_before.max(1) as f64);
        trials.push(Trial {
            lambda,
            t,
            phase: "",
            flops_reduction_percent: pct,
            test_accuracy: acc,
        });
        runs.push((m, acc, masks, pct));
        Ok(pct)
    })?;
    for (tr, st) in trials.iter_mut().zip(&outcome.trail) {
        tr.phase = match st.phase {
            prune_reg::search::SearchPhase::Lambda => "lambda",
            prune_reg::search::SearchPhase::Widen => "widen",
            prune_reg::search::SearchPhase::T => "t",
        };
    }
    let chosen = outcome
        .trail
        .iter()
        .position(|t| *t == outcome.best)
        .ok_or_else(|| Error::Usage("the search ran no trial".into()))?;
    let record = SearchRecord {
        target_flops_reduction: target,
        target_percent: target_pct,
        delta_points: search_cfg.delta,
        target_met: outcome.converged,
        stop: format!("{:?}", outcome.stop),
        chosen_trial: chosen,
        lambda_hi: outcome.lambda_hi,
        widenings: outcome.widenings,
        verdict: outcome.verdict(search_cfg.delta),
        trials,
    };
    write_json(&out.join("search.json"), &record)?;
    let verdict = outcome.verdict(search_cfg.delta);
    eprintln!("{verdict}");
    let best = runs
        .into_iter()
        .nth(chosen)
        .ok_or_else(|| Error::Usage("the search ran no trial".into()))?;
    Ok((best.0, best.1, best.2, verdict))
}

/// FLOPs of the model compiled under `masks` (no verification).
fn compiled_flops(model: &Model, masks: &Masks) -> Result<u64> {
    let opts = CompileOptions {
        verify: false,
        ..Default::default()
    };
    let c = compile(model, &to_channel_masks(masks), &opts)?;
    Ok(c.model.cost()?.flops)
}

fn clamp_all_gammas(model: &mut Model, upper: f32) -> Result<()> {
    for g in prune_reg::method::gamma_gates(&model.graph) {
        let t = model.params.get_mut(&format!("{g}.weight"))?;
        prune_reg::polarization::clamp_gammas(t.data_mut(), upper)?;
    }
    Ok(())
}

/// Applies the method's rule; with a FLOPs target, slimming's percentage is
/// chosen by bisection on the compiled FLOPs (no retraining needed).
fn choose_masks(sparse: &Model, cfg: &PruneConfig, flops_before: u64) -> Result<Masks> {
    match cfg.method {
        Method::Sbp => Ok(sbp_masks(sparse)?),
        Method::Polarization => {
            let mode = if cfg.global_threshold {
                ThresholdMode::Global
            } else {
                ThresholdMode::PerLayer
            };
            Ok(polarization_rule(sparse, mode, cfg.upper)?.0)
        }
        Method::Slimming => match cfg.target_flops {
            None => Ok(slimming_rule(sparse, cfg.percent)?),
            Some(target) => {
                let (mut lo, mut hi) = (0.0f64, 100.0f64);
                let mut best = slimming_rule(sparse, 0.0)?;
                for _ in 0..30 {
                    let mid = 0.5 * (lo + hi);
                    let m = slimming_rule(sparse, mid)?;
                    let f = compiled_flops(sparse, &m)?;
                    let reduction = flops_before as f64 / f.max(1) as f64;
                    if reduction < target {
                        lo = mid;
                    } else {
                        hi = mid;
                        best = m;
                    }
                }
                Ok(best)
            }
        },
    }
}
