//! Checkpoints: everything needed to continue a run exactly.
//!
//! A checkpoint is a directory holding the model (`model.json`,
//! `weights.safetensors`), the optimizer state (`optimizer.safetensors`) and
//! `state.json` (epochs done, optimizer step, the config and the metrics so
//! far). It is written to `checkpoint.tmp/` and swapped in by renames, so a
//! crash at any point leaves either the previous or the new checkpoint whole.
//! The RNG state needs no saving: every epoch reseeds its generators from
//! the run seed and the epoch number.

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::metrics::EpochRecord;
use prune_core::optim::OptimState;
use prune_graph::io::{atomic_write, tensors_from_safetensors, tensors_to_safetensors};
use prune_graph::Model;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The small part of a checkpoint, as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Number of completed epochs.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub optimizer_step: u64,
    pub config: TrainConfig,
    pub history: Vec<EpochRecord>,
    /// The training set's name and size (absent in older checkpoints).
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub train_examples: Option<usize>,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub model: Model,
    pub optimizer: OptimState,
    pub state: CheckpointState,
}

fn dir(run: &Path) -> PathBuf {
    run.join("checkpoint")
}

/// Writes a checkpoint into `run/checkpoint/` atomically.
pub fn save(run: &Path, model: &Model, opt: &OptimState, state: &CheckpointState) -> Result<()> {
    let tmp = run.join("checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    model.save(&tmp)?;
    let bytes = tensors_to_safetensors(opt.buffers.iter(), prune_graph::io::StorageDtype::F32)?;
    atomic_write(&tmp.join("optimizer.safetensors"), &bytes)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::io(&tmp, e))?;
    atomic_write(&tmp.join("state.json"), &json)?;
    let (cur, old) = (dir(run), run.join("checkpoint.old"));
    let _ = std::fs::remove_dir_all(&old);
    if cur.exists() {
        std::fs::rename(&cur, &old).map_err(|e| TrainError::io(&cur, e))?;
    }
    std::fs::rename(&tmp, &cur).map_err(|e| TrainError::io(&cur, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Loads `run/checkpoint/` (or the previous one if a swap was interrupted).
pub fn load(run: &Path) -> Result<Option<Checkpoint>> {
    let mut d = dir(run);
    if !d.exists() {
        d = run.join("checkpoint.old");
        if !d.exists() {
            return Ok(None);
        }
    }
    let model = Model::load(&d)?;
    let opath = d.join("optimizer.safetensors");
    let bytes = std::fs::read(&opath).map_err(|e| TrainError::io(&opath, e))?;
    let buffers = tensors_from_safetensors(&bytes, &opath)?
        .into_iter()
        .collect();
    let spath = d.join("state.json");
    let text = std::fs::read(&spath).map_err(|e| TrainError::io(&spath, e))?;
    let state: CheckpointState =
        serde_json::from_slice(&text).map_err(|e| TrainError::io(&spath, e))?;
    Ok(Some(Checkpoint {
        model,
        optimizer: OptimState {
            step: state.optimizer_step,
            buffers,
        },
        state,
    }))
}
