//! What compilation achieved: channels, parameters and FLOPs
//! (multiply-accumulates, via [`prune_graph::cost`]) per layer and in total,
//! the verification error, and — measured separately by [`measure_speed`] —
//! CPU latency and throughput of the dense and the compiled model.

use crate::error::{CompileError, Result};
use crate::verify::random_batch;
use prune_graph::{cost, predict, Model};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One node of the original model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub name: String,
    pub kind: String,
    /// Output channels (or features) before and after pruning.
    pub channels_before: usize,
    pub channels_after: usize,
    /// Channels that stay in the tensor but are masked (multiplied by zero):
    /// flattened features dropped while their channel survives.
    #[serde(default)]
    pub channels_zeroed: usize,
    pub params_before: u64,
    /// Parameters of the node in the compiled model (0 once folded away).
    pub params_after: u64,
    /// Multiply-accumulates per example.
    pub flops_before: u64,
    pub flops_after: u64,
    /// The node(s) this node was folded into, when it no longer exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded_into: Option<String>,
}

/// The compiler's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompileReport {
    pub model: String,
    pub flops_before: u64,
    pub flops_after: u64,
    pub params_before: u64,
    pub params_after: u64,
    /// `flops_before / flops_after`.
    pub flops_reduction: f64,
    /// `params_before / params_after`.
    pub params_reduction: f64,
    pub layers: Vec<LayerReport>,
    /// `max|compiled − masked| / max|masked|` on a random batch; `None` when
    /// verification was switched off.
    pub verify_max_rel_error: Option<f64>,
    /// Masked units that were kept, gates that stayed, and why.
    pub notes: Vec<String>,
    /// Median latency of one batch of 1, milliseconds.
    pub dense_latency_b1_ms: Option<f64>,
    pub pruned_latency_b1_ms: Option<f64>,
    /// Median latency of one batch of 100, milliseconds.
    pub dense_latency_b100_ms: Option<f64>,
    pub pruned_latency_b100_ms: Option<f64>,
    /// Throughput at batch 100, images per second.
    pub dense_images_per_sec: Option<f64>,
    pub pruned_images_per_sec: Option<f64>,
}

/// Measured CPU speed of the dense and the compiled model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpeedReport {
    pub repeats: usize,
    pub dense_latency_b1_ms: f64,
    pub pruned_latency_b1_ms: f64,
    pub dense_latency_b100_ms: f64,
    pub pruned_latency_b100_ms: f64,
    /// Images per second at batch 100.
    pub dense_images_per_sec: f64,
    pub pruned_images_per_sec: f64,
    /// `pruned_images_per_sec / dense_images_per_sec`.
    pub speedup_b100: f64,
    /// `dense_latency_b1_ms / pruned_latency_b1_ms`.
    pub speedup_b1: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        f64::INFINITY
    } else {
        a as f64 / b as f64
    }
}

/// Builds the size part of the report from the original and compiled models.
pub(crate) fn build_report(
    original: &Model,
    compiled: &Model,
    kept: &[Vec<usize>],
    zeroed: &[Vec<bool>],
    folded: &[(String, String)],
    verify_max_rel_error: Option<f64>,
    notes: Vec<String>,
) -> Result<CompileReport> {
    let before = cost(&original.graph)?;
    let after = cost(&compiled.graph)?;
    let layers = before
        .layers
        .iter()
        .zip(kept.iter().zip(zeroed))
        .map(|(b, (k, z))| {
            let a = after.layers.iter().find(|l| l.name == b.name);
            LayerReport {
                name: b.name.clone(),
                kind: b.kind.clone(),
                channels_before: b.channels,
                channels_after: k.len(),
                channels_zeroed: z.iter().filter(|&&v| v).count(),
                params_before: b.params,
                params_after: a.map_or(0, |l| l.params),
                flops_before: b.flops,
                flops_after: a.map_or(0, |l| l.flops),
                folded_into: folded
                    .iter()
                    .find(|(removed, _)| *removed == b.name)
                    .map(|(_, into)| into.clone()),
            }
        })
        .collect();
    Ok(CompileReport {
        model: original.graph.name.clone(),
        flops_before: before.flops,
        flops_after: after.flops,
        params_before: before.params,
        params_after: after.params,
        flops_reduction: ratio(before.flops, after.flops),
        params_reduction: ratio(before.params, after.params),
        layers,
        verify_max_rel_error,
        notes,
        dense_latency_b1_ms: None,
        pruned_latency_b1_ms: None,
        dense_latency_b100_ms: None,
        pruned_latency_b100_ms: None,
        dense_images_per_sec: None,
        pruned_images_per_sec: None,
    })
}

impl CompileReport {
    /// Copies measured speed into the report.
    pub fn set_speed(&mut self, s: &SpeedReport) {
        self.dense_latency_b1_ms = Some(s.dense_latency_b1_ms);
        self.pruned_latency_b1_ms = Some(s.pruned_latency_b1_ms);
        self.dense_latency_b100_ms = Some(s.dense_latency_b100_ms);
        self.pruned_latency_b100_ms = Some(s.pruned_latency_b100_ms);
        self.dense_images_per_sec = Some(s.dense_images_per_sec);
        self.pruned_images_per_sec = Some(s.pruned_images_per_sec);
    }

    /// A human-readable table: one line per layer, then totals.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:<28} {:<16} {:>17} {:>21} {:>23}\n",
            "layer", "kind", "channels", "params", "MACs"
        );
        for l in &self.layers {
            let folded = l
                .folded_into
                .as_ref()
                .map(|t| format!("  (folded into {t})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{:<28} {:<16} {:>8} -> {:<6} {:>10} -> {:<8} {:>11} -> {:<9}{folded}\n",
                l.name,
                l.kind,
                l.channels_before,
                l.channels_after,
                l.params_before,
                l.params_after,
                l.flops_before,
                l.flops_after
            ));
        }
        out.push_str(&format!(
            "total: params {} -> {} ({:.2}x), MACs {} -> {} ({:.2}x)\n",
            self.params_before,
            self.params_after,
            self.params_reduction,
            self.flops_before,
            self.flops_after,
            self.flops_reduction
        ));
        if let Some(e) = self.verify_max_rel_error {
            out.push_str(&format!("verified: max relative error {e:.2e}\n"));
        }
        if let (Some(d), Some(p)) = (self.dense_images_per_sec, self.pruned_images_per_sec) {
            out.push_str(&format!(
                "throughput at batch 100: {d:.0} -> {p:.0} images/s ({:.2}x)\n",
                p / d
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

/// Median of `repeats` timings (after one warm-up run) of `predict` on `x`, in ms.
fn median_ms(model: &Model, x: &prune_core::Tensor, repeats: usize) -> Result<f64> {
    // On a device the input is copied over before the timing, and the copy of the
    // output back to the host (which waits for the device's work) is timed with it.
    let device = model
        .params
        .iter()
        .next()
        .map_or(prune_core::Device::Cpu, |(_, t)| t.device());
    let x = x.to_device(device)?;
    let run = |input: prune_core::Tensor| -> Result<()> {
        let y = predict(model, input, None)?;
        if y.device() != prune_core::Device::Cpu {
            y.to_device(prune_core::Device::Cpu)?;
        }
        Ok(())
    };
    run(x.clone())?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let input = x.clone();
        let t0 = Instant::now();
        run(input)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

/// Measures median latency at batch 1 and batch 100 of the dense and the
/// compiled model (eval mode, [`prune_graph::predict`]), `repeats` runs each, on
/// the device of each model's parameters (the CPU for host models).
pub fn measure_speed(dense: &Model, compiled: &Model, repeats: usize) -> Result<SpeedReport> {
    if repeats == 0 {
        return Err(CompileError::Options(
            "measure_speed needs at least one repeat".into(),
        ));
    }
    if dense.graph.input_shape()? != compiled.graph.input_shape()? {
        return Err(CompileError::Options(format!(
            "dense input {:?} and compiled input {:?} differ",
            dense.graph.input_shape()?,
            compiled.graph.input_shape()?
        )));
    }
    let x1 = random_batch(dense, 1, 1)?;
    let x100 = random_batch(dense, 100, 2)?;
    let d1 = median_ms(dense, &x1, repeats)?;
    let p1 = median_ms(compiled, &x1, repeats)?;
    let d100 = median_ms(dense, &x100, repeats)?;
    let p100 = median_ms(compiled, &x100, repeats)?;
    let ips = |ms: f64| 100.0 / (ms / 1e3);
    Ok(SpeedReport {
        repeats,
        dense_latency_b1_ms: d1,
        pruned_latency_b1_ms: p1,
        dense_latency_b100_ms: d100,
        pruned_latency_b100_ms: p100,
        dense_images_per_sec: ips(d100),
        pruned_images_per_sec: ips(p100),
        speedup_b100: d100 / p100,
        speedup_b1: d1 / p1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_graph::ir::{Graph, Layer};

    fn mlp(hidden: usize) -> Model {
        let mut g = Graph::new("mlp", &[4]);
        g.push(
            "fc1",
            Layer::Linear {
                in_features: 4,
                out_features: hidden,
                bias: true,
            },
            &["input"],
        )
        .unwrap();
        g.push(
            "fc2",
            Layer::Linear {
                in_features: hidden,
                out_features: 2,
                bias: false,
            },
            &["fc1"],
        )
        .unwrap();
        Model::init(g, 0).unwrap()
    }

    #[test]
    fn report_counts_layers_and_totals() {
        let (a, b) = (mlp(8), mlp(2));
        let kept = vec![vec![0; 4], vec![0, 1], vec![0, 1]];
        let zeroed = vec![vec![false; 4], vec![false; 2], vec![false; 2]];
        let mut r = build_report(&a, &b, &kept, &zeroed, &[], Some(1e-7), vec![]).unwrap();
        assert_eq!(
            (r.params_before, r.params_after),
            (4 * 8 + 8 + 16, 4 * 2 + 2 + 4)
        );
        assert_eq!((r.flops_before, r.flops_after), (48, 12));
        assert!((r.flops_reduction - 4.0).abs() < 1e-12);
        let fc1 = &r.layers[1];
        assert_eq!((fc1.channels_before, fc1.channels_after), (8, 2));
        assert_eq!((fc1.flops_before, fc1.flops_after), (32, 8));
        assert!(r.dense_images_per_sec.is_none());
        let s = SpeedReport {
            repeats: 3,
            dense_latency_b1_ms: 2.0,
            pruned_latency_b1_ms: 1.0,
            dense_latency_b100_ms: 10.0,
            pruned_latency_b100_ms: 2.0,
            dense_images_per_sec: 1e4,
            pruned_images_per_sec: 5e4,
            speedup_b100: 5.0,
            speedup_b1: 2.0,
        };
        r.set_speed(&s);
        assert_eq!(r.pruned_images_per_sec, Some(5e4));
        let table = r.to_table();
        assert!(table.contains("fc1"), "{table}");
        assert!(table.contains("(5.00x)"), "{table}");
    }

    #[test]
    fn measure_speed_rejects_zero_repeats_and_mismatched_inputs() {
        let a = mlp(8);
        assert!(measure_speed(&a, &a, 0).is_err());
        let mut g = Graph::new("other", &[5]);
        g.push(
            "fc",
            Layer::Linear {
                in_features: 5,
                out_features: 2,
                bias: true,
            },
            &["input"],
        )
        .unwrap();
        let other = Model::init(g, 0).unwrap();
        assert!(measure_speed(&a, &other, 1).is_err());
    }
}
