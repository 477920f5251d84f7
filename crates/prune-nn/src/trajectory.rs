//! Kept units per layer, epoch by epoch, during sparse training.
//!
//! [`Tracked`] wraps a method's [`Regularizer`] and, after the last
//! optimizer step of every epoch, applies the method's pruning rule to the
//! current model and appends one line to `kept.jsonl` in the run directory:
//!
//! ```text
//! {"epoch": 12, "kept": {"conv1.sbp": 20, "conv2.sbp": 44, ...}}
//! ```
//!
//! The rule reads the model only (`Masks = rule(model)`), so tracking does
//! not change training. The epoch boundary is the step count: an epoch has
//! `min(⌈N / batch⌉, max_batches)` steps, exactly as the training loop runs.

use crate::error::{Error, Result};
use prune_core::{Tape, Var};
use prune_graph::{Model, ParamKind};
use prune_reg::Masks;
use prune_train::Regularizer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// File name of the trajectory inside a sparse-training run directory.
pub const KEPT_FILE: &str = "kept.jsonl";

/// One line of `kept.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeptRecord {
    /// Epochs completed (1-based).
    pub epoch: usize,
    /// Units kept by the method's rule, per gate layer.
    pub kept: BTreeMap<String, usize>,
    /// Median of the rule's per-unit score (SBP: SNR; γ methods: γ), per layer.
    #[serde(default)]
    pub median_score: BTreeMap<String, f32>,
}

/// The pruning rule applied at the end of each epoch.
pub type Rule<'r> = Box<dyn Fn(&Model) -> prune_reg::Result<Masks> + Sync + 'r>;

/// A regularizer that records the kept units of each epoch.
pub struct Tracked<'a> {
    inner: &'a dyn Regularizer,
    rule: Rule<'a>,
    steps_per_epoch: usize,
    steps: AtomicUsize,
    first_epoch: usize,
    path: PathBuf,
}

impl<'a> Tracked<'a> {
    /// Wraps `inner`. `steps_per_epoch` must be the number of optimizer
    /// steps of one epoch; `epochs_done` the epochs a resumed run has
    /// already completed (0 for a fresh run): the file is cut to them.
    pub fn new(
        inner: &'a dyn Regularizer,
        rule: Rule<'a>,
        steps_per_epoch: usize,
        dir: &Path,
        epochs_done: usize,
    ) -> Result<Self> {
        if steps_per_epoch == 0 {
            return Err(Error::Usage("an epoch needs at least one step".into()));
        }
        let path = dir.join(KEPT_FILE);
        let kept: Vec<KeptRecord> = read_kept(&path)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.epoch <= epochs_done)
            .collect();
        let mut text = String::new();
        for r in &kept {
            text.push_str(&serde_json::to_string(r).map_err(|e| Error::io(&path, e))?);
            text.push('\n');
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        prune_graph::io::atomic_write(&path, text.as_bytes())?;
        Ok(Self {
            inner,
            rule,
            steps_per_epoch,
            steps: AtomicUsize::new(0),
            first_epoch: epochs_done,
            path,
        })
    }

    fn record(&self, model: &Model, epoch: usize) -> Result<()> {
        // The rule reads host values: a model on a device is copied over once per epoch.
        let host;
        let model = if prune_train::model_device(model) == prune_core::Device::Cpu {
            model
        } else {
            host = prune_train::host_model(model)?;
            &host
        };
        let masks = (self.rule)(model)?;
        let kept = masks
            .layers
            .iter()
            .map(|l| (l.name.clone(), l.keep.iter().filter(|&&k| k).count()))
            .collect();
        let median_score = masks
            .layers
            .iter()
            .map(|l| {
                let mut v = l.scores.clone();
                v.sort_by(f32::total_cmp);
                (
                    l.name.clone(),
                    v.get(v.len() / 2).copied().unwrap_or(f32::NAN),
                )
            })
            .collect();
        let rec = KeptRecord {
            epoch,
            kept,
            median_score,
        };
        let mut line = serde_json::to_string(&rec).map_err(|e| Error::io(&self.path, e))?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads a `kept.jsonl` file.
pub fn read_kept(path: &Path) -> Result<Vec<KeptRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| Error::io(path, e)))
        .collect()
}

/// Steps of one epoch of the training loop.
pub fn steps_per_epoch(n_train: usize, batch_size: usize, max_batches: Option<usize>) -> usize {
    let full = n_train.div_ceil(batch_size.max(1));
    max_batches.map_or(full, |m| m.min(full))
}

impl Regularizer for Tracked<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        model: &Model,
        params: &BTreeMap<String, Var>,
        n_train: usize,
    ) -> prune_core::Result<Option<Var>> {
        self.inner.penalty(tape, model, params, n_train)
    }

    fn lr_mult(&self, name: &str, kind: ParamKind) -> f32 {
        self.inner.lr_mult(name, kind)
    }

    fn after_step(&self, model: &mut Model) -> prune_graph::Result<()> {
        self.inner.after_step(model)?;
        let done = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        if done.is_multiple_of(self.steps_per_epoch) {
            let epoch = self.first_epoch + done / self.steps_per_epoch;
            self.record(model, epoch)
                .map_err(|e| prune_graph::GraphError::Regularizer(e.to_string()))?;
        }
        Ok(())
    }

    fn noise_mode(&self) -> prune_core::sbp::NoiseMode {
        self.inner.noise_mode()
    }
}

/// Wraps the regularizer of a `prune` run so that `dir/kept.jsonl` records
/// the method's `rule` after every epoch (SBP: SNR > 1; polarization: the
/// histogram threshold; slimming: the configured global percentile).
pub(crate) fn tracked<'a>(
    reg: &'a dyn Regularizer,
    rule: Rule<'a>,
    cfg: &crate::prune::PruneConfig,
    n_train: usize,
    dir: &Path,
) -> Result<Tracked<'a>> {
    let done = if cfg.resume {
        prune_train::checkpoint::load(dir)?.map_or(0, |c| c.state.epochs_done)
    } else {
        0
    };
    let steps = steps_per_epoch(n_train, cfg.batch_size, cfg.max_batches);
    Tracked::new(reg, rule, steps, dir, done)
}
