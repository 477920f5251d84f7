//! Small jobs behind the CLI's `eval`, `graph` and `compile` commands.

use crate::error::{Error, Result};
use crate::run::{write_json, REPORT_FILE};
use prune_compiler::{analyze, compile, measure_speed, CompileOptions, CompileReport};
use prune_data::Dataset;
use prune_graph::{infer_shapes, Model};
use prune_reg::method::to_channel_masks;
use prune_reg::Masks;
use prune_train::EvalResult;
use std::fmt::Write;
use std::path::Path;

/// Test-set accuracy and loss of any saved model (gated or not).
pub fn evaluate(model: &Model, test: &Dataset) -> Result<EvalResult> {
    crate::onnx::check_fits(model, test)?;
    Ok(prune_train::evaluate(model, test, None, 500)?)
}

/// A printable summary: each node with its output shape, parameters and
/// FLOPs, then the channel groups the compiler prunes together.
pub fn describe(model: &Model) -> Result<String> {
    let shapes = infer_shapes(&model.graph)?;
    let cost = model.cost()?;
    let mut s = String::new();
    let w = |e: std::fmt::Error| Error::Usage(e.to_string());
    writeln!(
        s,
        "model {}: {} params, {} FLOPs (MACs)",
        model.graph.name, cost.params, cost.flops
    )
    .map_err(w)?;
    writeln!(
        s,
        "{:<28} {:<16} {:<16} {:>10} {:>12}",
        "node", "op", "shape", "params", "FLOPs"
    )
    .map_err(w)?;
    for ((n, shape), c) in model.graph.nodes.iter().zip(&shapes).zip(&cost.layers) {
        writeln!(
            s,
            "{:<28} {:<16} {:<16} {:>10} {:>12}",
            n.name,
            n.layer.kind(),
            format!("{shape:?}"),
            c.params,
            c.flops
        )
        .map_err(w)?;
    }
    writeln!(s, "\nchannel groups:").map_err(w)?;
    for g in analyze(&model.graph)? {
        writeln!(s, "{g}").map_err(w)?;
    }
    Ok(s)
}

/// Compiles `model` with `masks` (on the host), writes the result and
/// `report.json` into `out`; the speed is measured on `device`.
///
/// The speed baseline is `model` compiled with every channel kept: the same
/// network without its gates (SBP's `E[θ]` folded into the weights, scale
/// gates folded), so the reported speedup is what pruning buys, not what
/// removing the gates' own cost buys.
pub fn compile_masks(
    model: &Model,
    masks: &Masks,
    fold_bn: bool,
    out: &Path,
    device: prune_core::Device,
) -> Result<CompileReport> {
    let opts = CompileOptions {
        fold_bn,
        ..Default::default()
    };
    let compiled = compile(model, &to_channel_masks(masks), &opts)?;
    let keep_all = to_channel_masks(masks)
        .into_iter()
        .map(|(name, keep)| (name, vec![true; keep.len()]))
        .collect();
    let baseline_opts = CompileOptions {
        verify: false,
        ..opts
    };
    let baseline = compile(model, &keep_all, &baseline_opts)?;
    let (mut base_dev, mut compiled_dev) = (baseline.model, compiled.model.clone());
    prune_train::model_to(&mut base_dev, device)?;
    prune_train::model_to(&mut compiled_dev, device)?;
    let speed = measure_speed(&base_dev, &compiled_dev, 5)?;
    let mut report = compiled.report;
    report.set_speed(&speed);
    compiled.model.save(out)?;
    write_json(&out.join(REPORT_FILE), &report)?;
    Ok(report)
}
