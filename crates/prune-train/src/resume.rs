//! What `--resume` may change: nothing but a larger epoch count.
//!
//! A checkpoint records the model, the training settings and the training
//! set it was made with. Resuming with anything else would silently mix two
//! runs (weights of one model under the name of another, a learning rate
//! that changes mid-run), so every difference is an error naming the
//! setting, except `epochs`, which may grow to train further.

use crate::checkpoint::Checkpoint;
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use prune_graph::Model;
use std::path::Path;

/// The training set a run saw, as recorded in its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainSet<'a> {
    /// Dataset name (`mnist`, ...).
    pub name: &'a str,
    /// Number of training examples (a `--subset` changes it).
    pub examples: usize,
}

/// Checks that `model`, `cfg` and `train` match the checkpoint `ck` of `dir`.
pub fn check_resume(
    dir: &Path,
    ck: &Checkpoint,
    model: &Model,
    cfg: &TrainConfig,
    train: &TrainSet<'_>,
) -> Result<()> {
    let err = |field: &str, reason: String| TrainError::Resume {
        dir: dir.to_path_buf(),
        field: field.to_string(),
        reason,
    };
    let differs = |field: &str, now: String, then: String| {
        err(
            field,
            format!(
                "is {now} on the command line but {then} in the checkpoint; pass the \
                 checkpoint's value or start a new run directory"
            ),
        )
    };
    if ck.model.graph.name != model.graph.name {
        return Err(differs(
            "--model",
            format!("'{}'", model.graph.name),
            format!("'{}'", ck.model.graph.name),
        ));
    }
    if ck.model.graph != model.graph {
        return Err(err(
            "--model",
            format!(
                "'{}' has another architecture than the checkpoint's (another dataset's \
                 input shape or classes?)",
                model.graph.name
            ),
        ));
    }
    if let Some(name) = &ck.state.dataset {
        if name != train.name {
            return Err(differs("--dataset", train.name.into(), name.clone()));
        }
    }
    if let Some(n) = ck.state.train_examples {
        if n != train.examples {
            return Err(differs(
                "the number of training examples (--subset)",
                train.examples.to_string(),
                n.to_string(),
            ));
        }
    }
    let old = &ck.state.config;
    if cfg.epochs < old.epochs {
        return Err(err(
            "--epochs",
            format!(
                "is {} but the checkpoint's run was for {}: epochs may only grow on resume",
                cfg.epochs, old.epochs
            ),
        ));
    }
    let pairs: [(&str, String, String); 7] = [
        (
            "--batch-size",
            cfg.batch_size.to_string(),
            old.batch_size.to_string(),
        ),
        ("--lr", cfg.lr.to_string(), old.lr.to_string()),
        (
            "the optimizer (--optimizer, --momentum, --weight-decay, betas)",
            format!("{:?}", cfg.optimizer),
            format!("{:?}", old.optimizer),
        ),
        (
            "the schedule (--milestones)",
            format!("{:?}", cfg.schedule),
            format!("{:?}", old.schedule),
        ),
        ("--seed", cfg.seed.to_string(), old.seed.to_string()),
        (
            "--augment",
            cfg.augment.to_string(),
            old.augment.to_string(),
        ),
        (
            "--max-batches",
            format!("{:?}", cfg.max_batches),
            format!("{:?}", old.max_batches),
        ),
    ];
    for (field, now, then) in pairs {
        if now != then {
            return Err(differs(field, now, then));
        }
    }
    Ok(())
}
