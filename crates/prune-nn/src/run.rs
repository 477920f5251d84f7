//! Run directories and the dense training job (`prune-nn train`).
//!
//! A run directory holds `model.json`, `weights.safetensors`,
//! `report.json`, `metrics.jsonl` and `checkpoint/`.

use crate::error::{Error, Result};
use prune_core::Device;
use prune_data::{Dataset, DatasetKind};
use prune_graph::io::atomic_write;
use prune_graph::{zoo, Model};
use prune_train::{fit, RunFiles, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// File name of a run's report.
pub const REPORT_FILE: &str = "report.json";

/// Loads the train and test splits of `dataset`, from `data` or by discovery.
pub fn load_data(dataset: &str, data: Option<&Path>) -> Result<(Dataset, Dataset, PathBuf)> {
    let kind = DatasetKind::from_str(dataset)?;
    Ok(prune_data::load_or_download(kind, data)?)
}

/// What `prune-nn train` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainReport {
    pub model: String,
    pub dataset: String,
    pub test_accuracy: f64,
    pub epochs: usize,
    pub train_images_per_sec: f64,
    pub params: u64,
    pub flops: u64,
    pub config: TrainConfig,
}

/// Writes any serializable report as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::io(path, e))?;
    atomic_write(path, &bytes)?;
    Ok(())
}

/// Reads a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|e| Error::io(path, e))
}

/// The dataset a run was trained on, from its `report.json`.
pub fn run_dataset(dir: &Path) -> Option<String> {
    let v: serde_json::Value = read_json(&dir.join(REPORT_FILE)).ok()?;
    v.get("dataset")?.as_str().map(str::to_string)
}

/// Trains a zoo model from scratch (or resumes) and writes the run directory.
pub fn train_dense(
    model_name: &str,
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
) -> Result<(Model, TrainReport)> {
    train_dense_on(Device::Cpu, model_name, train, test, cfg, out, resume)
}

/// [`train_dense`] on `device`: the model is initialised on the host (the same
/// weights for a seed on every device), trained there, and returned on the host.
pub fn train_dense_on(
    device: Device,
    model_name: &str,
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    out: &Path,
    resume: bool,
) -> Result<(Model, TrainReport)> {
    let kind = train.kind;
    let graph = zoo::build(model_name, &kind.image_shape(), kind.classes())?;
    let mut model = Model::init(graph, cfg.seed)?;
    prune_train::model_to(&mut model, device)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let summary = fit(
        &mut model,
        train,
        test,
        cfg,
        None,
        RunFiles {
            dir: Some(out),
            resume,
        },
    )?;
    prune_train::model_to(&mut model, Device::Cpu)?;
    model.save(out)?;
    let cost = model.cost()?;
    let report = TrainReport {
        model: model_name.to_string(),
        dataset: kind.name().to_string(),
        test_accuracy: summary.test_accuracy,
        epochs: cfg.epochs,
        train_images_per_sec: summary.train_images_per_sec,
        params: cost.params,
        flops: cost.flops,
        config: cfg.clone(),
    };
    write_json(&out.join(REPORT_FILE), &report)?;
    Ok((model, report))
}
