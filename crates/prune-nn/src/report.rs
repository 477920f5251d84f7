//! The pruning report: `report.json` (machine-readable) and `report.md`.

use crate::error::Result;
use crate::prune::{Method, PruneConfig};
use prune_compiler::{CompileReport, SpeedReport};
use prune_graph::Model;
use serde::{Deserialize, Serialize};

/// Channels of one prunable layer before and after.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LayerChange {
    pub name: String,
    pub channels_before: usize,
    pub channels_after: usize,
}

/// Everything a pruning run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruneReport {
    pub method: Method,
    pub model: String,
    /// Test accuracy of the dense model.
    pub test_accuracy_before: f64,
    /// Test accuracy after sparse training (gated model, eval mode).
    pub test_accuracy_sparse: f64,
    /// Test accuracy of the masked model (pruned units zeroed, with the masks
    /// as the compiler resolved them: the model the compiled one reproduces).
    pub test_accuracy_masked: f64,
    /// Test accuracy of the compiled model before fine-tuning.
    pub test_accuracy_compiled: f64,
    /// Test accuracy of the compiled, fine-tuned model.
    pub test_accuracy_after: f64,
    pub flops_before: u64,
    pub flops_after: u64,
    /// Dense FLOPs / pruned FLOPs.
    pub flops_reduction: f64,
    pub params_before: u64,
    pub params_after: u64,
    /// Kept units per prunable layer, e.g. `3-18-284-283`.
    pub architecture_before: String,
    pub architecture_after: String,
    pub layers: Vec<LayerChange>,
    pub dense_images_per_sec: Option<f64>,
    pub pruned_images_per_sec: Option<f64>,
    /// Pruned / dense throughput at batch 100.
    pub speedup: Option<f64>,
    pub verify_max_rel_error: f64,
    /// With a FLOPs target: whether the reduction reached it (within the
    /// polarization search's δ of 5 points of FLOPs reduction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_flops_met: Option<bool>,
    pub compile: CompileReport,
    pub speed: Option<SpeedReport>,
    pub config: PruneConfig,
}

/// The widths of the conv and linear layers that feed each prunable layer, as
/// the papers write architectures: conv output channels, then fc input
/// features (`20-50-800-500`).
pub fn architecture(model: &Model) -> Result<String> {
    use prune_graph::Layer;
    let mut parts = Vec::new();
    let convs: Vec<usize> = model
        .graph
        .nodes
        .iter()
        .filter_map(|n| match n.layer {
            Layer::Conv2d { out_channels, .. } => Some(out_channels),
            _ => None,
        })
        .collect();
    parts.extend(convs);
    for n in &model.graph.nodes {
        if let Layer::Linear { in_features, .. } = n.layer {
            parts.push(in_features);
        }
    }
    Ok(parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("-"))
}

/// Test accuracies measured along a pruning run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accuracies {
    /// The dense model.
    pub dense: f64,
    /// After sparse training (gated model, eval mode).
    pub sparse: f64,
    /// The masked model (pruned units zeroed).
    pub masked: f64,
    /// The compiled model before fine-tuning.
    pub compiled: f64,
    /// The compiled, fine-tuned model.
    pub finetuned: f64,
}

impl PruneReport {
    /// Assembles the report.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &PruneConfig,
        dense: &Model,
        pruned: &Model,
        compile: &CompileReport,
        speed: Option<SpeedReport>,
        acc: &Accuracies,
        flops_before: u64,
        flops_after: u64,
    ) -> Result<Self> {
        // Rows for the layers that own channels (conv, linear, batch norm);
        // activations, pooling and gates only pass their producer's on.
        let flops_reduction = flops_before as f64 / flops_after.max(1) as f64;
        let target_flops_met = cfg.target_flops.map(|t| target_met(t, flops_reduction));
        let layers = compile
            .layers
            .iter()
            .filter(|l| {
                l.channels_before > 0
                    && matches!(l.kind.as_str(), "conv2d" | "linear" | "batch_norm")
            })
            .map(|l| LayerChange {
                name: l.name.clone(),
                channels_before: l.channels_before,
                channels_after: l.channels_after,
            })
            .collect();
        Ok(Self {
            method: cfg.method,
            model: dense.graph.name.clone(),
            test_accuracy_before: acc.dense,
            test_accuracy_sparse: acc.sparse,
            test_accuracy_masked: acc.masked,
            test_accuracy_compiled: acc.compiled,
            test_accuracy_after: acc.finetuned,
            flops_before,
            flops_after,
            flops_reduction,
            params_before: dense.cost()?.params,
            params_after: pruned.cost()?.params,
            architecture_before: architecture(dense)?,
            architecture_after: architecture(pruned)?,
            layers,
            dense_images_per_sec: speed.as_ref().map(|s| s.dense_images_per_sec),
            pruned_images_per_sec: speed.as_ref().map(|s| s.pruned_images_per_sec),
            speedup: speed
                .as_ref()
                .map(|s| s.pruned_images_per_sec / s.dense_images_per_sec.max(1e-9)),
            verify_max_rel_error: compile.verify_max_rel_error.unwrap_or(f64::NAN),
            target_flops_met,
            compile: compile.clone(),
            speed,
            config: cfg.clone(),
        })
    }
}

/// Whether a FLOPs reduction `got` meets the target `target` (both
/// dense/pruned ratios): the FLOPs removed, `100·(1 − 1/x)` percent, may
/// fall short of the target's by at most 5 points (the δ of Zhuang et al.'s
/// search).
pub fn target_met(target: f64, got: f64) -> bool {
    let pct = |x: f64| 100.0 * (1.0 - 1.0 / x.max(1e-12));
    pct(got) >= pct(target) - 5.0
}

/// A warning when a FLOPs target was set and missed.
pub fn target_warning(r: &PruneReport) -> Option<String> {
    match (r.config.target_flops, r.target_flops_met) {
        (Some(t), Some(false)) => Some(format!(
            "the FLOPs target of {t}x was missed: the pruned model has {:.2}x fewer FLOPs",
            r.flops_reduction
        )),
        _ => None,
    }
}

/// The method as the papers name it.
pub fn method_name(m: Method) -> &'static str {
    match m {
        Method::Sbp => "SBP",
        Method::Polarization => "polarization",
        Method::Slimming => "network slimming",
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// The before/after table as Markdown.
pub fn render_markdown(r: &PruneReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "# Pruning report: {} with {}\n\n",
        r.model,
        method_name(r.method)
    ));
    s.push_str("| | dense | pruned |\n|---|---:|---:|\n");
    s.push_str(&format!(
        "| architecture | {} | {} |\n",
        r.architecture_before, r.architecture_after
    ));
    s.push_str(&format!(
        "| test accuracy | {} | {} |\n",
        pct(r.test_accuracy_before),
        pct(r.test_accuracy_after)
    ));
    s.push_str(&format!(
        "| test error | {} | {} |\n",
        pct(1.0 - r.test_accuracy_before),
        pct(1.0 - r.test_accuracy_after)
    ));
    s.push_str(&format!(
        "| FLOPs (MACs) | {} | {} |\n",
        r.flops_before, r.flops_after
    ));
    s.push_str(&format!(
        "| parameters | {} | {} |\n",
        r.params_before, r.params_after
    ));
    if let (Some(d), Some(p)) = (r.dense_images_per_sec, r.pruned_images_per_sec) {
        s.push_str(&format!("| CPU images/s (batch 100) | {d:.0} | {p:.0} |\n"));
    }
    s.push_str(&format!("\nFLOPs reduction: {:.2}x", r.flops_reduction));
    if let Some(w) = target_warning(r) {
        s.push_str(&format!(" ({w})"));
    }
    if let Some(x) = r.speedup {
        s.push_str(&format!(", measured CPU speedup: {x:.2}x"));
    }
    s.push_str(&format!(
        ".\n\nAccuracy along the way: sparse training {}, masked {}, compiled {}, fine-tuned {}.\n",
        pct(r.test_accuracy_sparse),
        pct(r.test_accuracy_masked),
        pct(r.test_accuracy_compiled),
        pct(r.test_accuracy_after)
    ));
    s.push_str(&format!(
        "Compiled model verified against the masked model: max relative error {:.2e}.\n\n",
        r.verify_max_rel_error
    ));
    s.push_str("| layer | channels before | channels after |\n|---|---:|---:|\n");
    for l in &r.layers {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            l.name, l.channels_before, l.channels_after
        ));
    }
    s
}
