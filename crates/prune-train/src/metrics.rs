//! Per-epoch metrics, appended as JSON lines to `metrics.jsonl`.

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// What one epoch measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f32,
    pub train_loss: f64,
    /// The regularizer's mean penalty (0 without one).
    pub penalty: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub images_per_sec: f64,
    pub seconds: f64,
}

/// Appends one record to `run/metrics.jsonl`.
pub fn append(run: &Path, rec: &EpochRecord) -> Result<()> {
    let path = run.join("metrics.jsonl");
    let mut line = serde_json::to_string(rec).map_err(|e| TrainError::io(&path, e))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TrainError::io(&path, e))?;
    f.write_all(line.as_bytes())
        .map_err(|e| TrainError::io(&path, e))
}
