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
pub use crate::method::Method;
use crate::method::{Sparse, SparseRun};
use crate::report::{render_markdown, Accuracies, PruneReport};
use crate::run::write_json;
use prune_compiler::{compile, measure_speed, CompileOptions};
use prune_data::Dataset;
use prune_graph::Model;
use prune_reg::method::to_channel_masks;
use prune_reg::Masks;
use prune_train::{evaluate, fit, OptimizerKind, RunFiles, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
        let optimizer = method.paper_optimizer();
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

    pub(crate) fn train_config(
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

/// `m` with every tensor on `device` (a clone when it is already there).
fn on(m: &Model, device: prune_core::Device) -> Result<Model> {
    let mut copy = m.clone();
    prune_train::model_to(&mut copy, device)?;
    Ok(copy)
}

fn dense_flops(model: &Model) -> Result<u64> {
    Ok(model.cost()?.flops)
}

/// Runs the whole pipeline on a trained dense `model`, on the device of its
/// parameters: sparse training, evaluation, fine-tuning and the speed
/// measurement run there; the rule, the histograms and the compiler read host
/// copies made at the stage boundaries (never per batch).
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
    let method = cfg.method.build(cfg)?;
    let Sparse {
        model: sparse,
        accuracy: acc_sparse,
        masks,
        verdict,
    } = method.sparsify(&SparseRun {
        dense,
        train,
        test,
        cfg,
        out,
        flops_before,
    })?;
    masks.save_json(out.join("masks.json"))?;
    crate::plots::write_histograms(&sparse, &masks, method.as_ref(), out)?;

    // The sparse stage returns the gated model on the host: masks, histograms and the
    // compiler work there; evaluation and fine-tuning run on the dense model's device.
    let device = prune_train::model_device(dense);
    let channel_masks = to_channel_masks(&masks);
    let compiled = compile(&sparse, &channel_masks, &CompileOptions::default())?;
    // The masked model is the one the compiled model reproduces: the rule's
    // masks as the compiler resolved them (a channel of a residual stream
    // stays when any gate on the stream keeps it), not the rule's raw masks.
    let masked_acc = evaluate(
        &on(&sparse, device)?,
        test,
        Some(&compiled.effective_masks),
        500,
    )?
    .accuracy;
    let mut model = on(&compiled.model, device)?;
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
    // Speed on the device the run trained on; files and the report from host copies.
    let speed = if cfg.speed_repeats > 0 {
        Some(measure_speed(dense, &model, cfg.speed_repeats)?)
    } else {
        None
    };
    let model = prune_train::host_model(&model)?;
    let dense = &prune_train::host_model(dense)?;
    model.save(out)?;
    let flops_after = dense_flops(&model)?;
    let report = PruneReport::new(
        cfg,
        dense,
        &model,
        &compiled.report,
        speed,
        &Accuracies {
            dense: acc_before,
            sparse: acc_sparse,
            masked: masked_acc,
            compiled: pruned_acc,
            finetuned: acc_after,
        },
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
