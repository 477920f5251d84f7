//! ONNX in and out of run directories (`prune-nn import`, `prune-nn export`).
//!
//! An imported model is an ordinary run directory (`model.json`,
//! `weights.safetensors`, `report.json`), so `graph`, `eval`, `prune` and
//! `compile` accept it; [`check_fits`] tells a user early when the
//! dataset does not fit the imported network's input or classes.

use crate::error::{Error, Result};
use crate::run::{write_json, REPORT_FILE};
use prune_data::Dataset;
use prune_graph::{infer_shapes, Model};
pub use prune_onnx::{
    export_bytes, export_file, fold_batch_norms, import_bytes, import_file, ExportOptions,
    OnnxError, DEFAULT_OPSET, SUPPORTED_OPS,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What `prune-nn import` writes to `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportReport {
    pub model: String,
    /// The ONNX file it came from.
    pub source: String,
    /// Per-example input shape.
    pub input_shape: Vec<usize>,
    /// Width of the output (the class count).
    pub classes: usize,
    pub nodes: usize,
    pub params: u64,
    pub flops: u64,
}

/// Imports `onnx` and writes a run directory into `out`.
pub fn import_run(onnx: &Path, out: &Path) -> Result<ImportReport> {
    if out.join(prune_graph::io::MODEL_FILE).exists() {
        return Err(Error::Usage(format!(
            "{} already holds a model; choose an empty --out directory",
            out.display()
        )));
    }
    let model = import_file(onnx)?;
    let shapes = infer_shapes(&model.graph)?;
    let cost = model.cost()?;
    let report = ImportReport {
        model: model.graph.name.clone(),
        source: onnx.display().to_string(),
        input_shape: model.graph.input_shape()?.to_vec(),
        classes: shapes.last().map(|s| s.iter().product()).unwrap_or(0),
        nodes: model.graph.nodes.len(),
        params: cost.params,
        flops: cost.flops,
    };
    model.save(out)?;
    write_json(&out.join(REPORT_FILE), &report)?;
    Ok(report)
}

/// What `prune-nn export` did.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    pub nodes: usize,
    pub params: u64,
    pub flops: u64,
    pub bytes: usize,
}

/// Exports the model of run directory `model_dir` to `onnx`. SBP gates are
/// written as their test-time scale (prune-reg's runtime computes it).
pub fn export_run(model_dir: &Path, onnx: &Path, opts: &ExportOptions) -> Result<ExportSummary> {
    let run_file = [
        prune_graph::io::MODEL_FILE,
        prune_graph::io::WEIGHTS_FILE,
        REPORT_FILE,
    ]
    .iter()
    .any(|f| onnx == model_dir.join(f));
    if run_file {
        return Err(Error::Usage(format!(
            "{}: refusing to overwrite a file of the run directory; name an .onnx file",
            onnx.display()
        )));
    }
    let model = Model::load(model_dir)?;
    let bytes = export_bytes(&model, opts)?;
    prune_graph::io::atomic_write(onnx, &bytes)?;
    let cost = model.cost()?;
    Ok(ExportSummary {
        nodes: model.graph.nodes.len(),
        params: cost.params,
        flops: cost.flops,
        bytes: bytes.len(),
    })
}

/// Checks that `dataset`'s examples are the model's input and that the
/// model has one output per class.
pub fn check_fits(model: &Model, dataset: &Dataset) -> Result<()> {
    let input = model.graph.input_shape()?;
    let want: Vec<usize> = dataset.kind.image_shape().to_vec();
    let fits = input == want.as_slice();
    let shapes = infer_shapes(&model.graph)?;
    let out = shapes.last().cloned().unwrap_or_default();
    let classes = dataset.kind.classes();
    if !fits {
        return Err(Error::Usage(format!(
            "model '{}' takes inputs of shape {input:?}, but {} images are {want:?}",
            model.graph.name,
            dataset.kind.name()
        )));
    }
    if out != [classes] {
        return Err(Error::Usage(format!(
            "model '{}' outputs {out:?} per example, but {} has {classes} classes",
            model.graph.name,
            dataset.kind.name()
        )));
    }
    Ok(())
}
