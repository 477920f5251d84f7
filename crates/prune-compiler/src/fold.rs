//! Folding per-channel factors into neighbouring linear maps.
//!
//! **Gates.** In eval mode an SBP gate multiplies channel `c` by
//! `s_c = E[θ_c]·1[SNR_c > 1]` (prune-reg's `test_time_scale`), a scale gate
//! by `γ_c`. The factor moves into a neighbour and the gate disappears:
//!
//! * *backward*: walking from the gate's input through single-consumer
//!   ReLU / max pooling (only when every `s_c ≥ 0`, since
//!   `relu(s·x) = s·relu(x)` needs `s ≥ 0`), average pooling, global average
//!   pooling and dropout (linear per channel), the first node is a
//!   convolution or linear layer read only by that chain: its output rows
//!   `w[c,·]` and bias `b_c` are multiplied by `s_c`; or a batch norm:
//!   `γ_c ← s_c·γ_c`, `β_c ← s_c·β_c` (since `s·(γx̂ + β) = (sγ)x̂ + sβ`);
//! * *forward*: every path from the gate through the same commuting layers
//!   (and `Flatten`, which repeats `s_c` over channel `c`'s block of
//!   features) ends in a convolution or linear layer: the weights reading
//!   channel `c` are multiplied by `s_c` (`conv(s·x) = conv_{w·s}(x)`,
//!   zero padding stays zero).
//!
//! Surgery has already turned SBP gates into scale layers holding `s`, so
//! only scale layers are folded here. When neither direction applies (e.g. a
//! gate feeding a residual sum) the scale layer stays; the report notes it.
//!
//! **Batch norm** (`fold_bn`): a batch norm whose input is a convolution or
//! linear layer read only by it folds into that layer,
//! `a_c = γ_c/√(var_c + ε)`, `w'[c,·] = a_c·w[c,·]`,
//! `b'_c = (b_c − mean_c)·a_c + β_c` (`b_c = 0` when there was no bias).

use crate::error::{CompileError, Result};
use crate::groups::block;
use crate::layers::{describe, Commute, Role};
use crate::slice::{scale_input_columns, scale_rows};
use crate::surgery::remove_node;
use prune_core::Tensor;
use prune_graph::ir::{Graph, Layer};
use prune_graph::{infer_shapes, Model};

/// What folding did.
#[derive(Clone, Debug, Default)]
pub(crate) struct FoldLog {
    /// `(removed node, node it was folded into)`; forward folds name the
    /// first consumer.
    pub folded: Vec<(String, String)>,
    /// Nodes that could not be folded, and why.
    pub notes: Vec<String>,
}

/// Indices of the nodes that read node `idx` ([`Graph::consumers`]).
fn consumers(graph: &Graph, idx: usize) -> Vec<usize> {
    graph
        .consumers(&graph.nodes[idx].name)
        .iter()
        .filter_map(|n| graph.index_of(&n.name))
        .collect()
}

fn input_of(graph: &Graph, idx: usize) -> Result<usize> {
    let node = &graph.nodes[idx];
    let name = node
        .inputs
        .first()
        .ok_or_else(|| CompileError::Unsupported {
            node: node.name.clone(),
            reason: "has no input".into(),
        })?;
    graph
        .index_of(name)
        .ok_or_else(|| CompileError::Unsupported {
            node: node.name.clone(),
            reason: format!("reads unknown node '{name}'"),
        })
}

fn param<'m>(model: &'m Model, node: &str, field: &str) -> Result<&'m Tensor> {
    Ok(model.params.get(&format!("{node}.{field}"))?)
}

/// The factor of a gate that folds away (a scale; SBP gates are scale
/// layers after surgery); `None` for other nodes.
pub(crate) fn gate_factor(model: &Model, idx: usize) -> Result<Option<Vec<f32>>> {
    let node = &model.graph.nodes[idx];
    describe(&node.layer).fold_factor(&node.name, &model.params)
}

/// Whether a factor `s` passes through `layer` unchanged per channel
/// (`f(s·x) = s·f(x)`), given whether every `s_c ≥ 0`.
fn commutes(layer: &Layer, nonneg: bool) -> bool {
    match describe(layer).commute(layer) {
        Commute::Always => true,
        Commute::NonNegative => nonneg,
        Commute::No | Commute::Repeat => false,
    }
}

/// The layer a per-channel factor at the output of `gate` can be folded
/// into backwards, if any.
fn backward_target(graph: &Graph, gate: usize, s: &[f32]) -> Result<Option<usize>> {
    let nonneg = s.iter().all(|&v| v >= 0.0);
    let (mut prev, mut cur) = (gate, input_of(graph, gate)?);
    loop {
        if consumers(graph, cur) != [prev] {
            return Ok(None);
        }
        let layer = &graph.nodes[cur].layer;
        if describe(layer).absorbs_output_factor(layer) {
            return Ok(Some(cur));
        }
        if !commutes(layer, nonneg) {
            return Ok(None);
        }
        prev = cur;
        cur = input_of(graph, cur)?;
    }
}

/// The conv/linear layers (with the factor over their input channels) that
/// absorb a factor `s` on the output of `from`, if every path ends in one.
fn forward_targets(
    graph: &Graph,
    shapes: &[Vec<usize>],
    from: usize,
    s: &[f32],
    out: &mut Vec<(usize, Vec<f32>)>,
) -> bool {
    let last = graph.nodes.len() - 1;
    let nonneg = s.iter().all(|&v| v >= 0.0);
    for c in consumers(graph, from) {
        let layer = &graph.nodes[c].layer;
        let desc = describe(layer);
        if desc.linear_map_groups(layer).is_some() {
            out.push((c, s.to_vec()));
            continue;
        }
        let passed: Vec<f32> = match desc.commute(layer) {
            Commute::Repeat => {
                let b = block(&shapes[from]);
                s.iter().flat_map(|&v| std::iter::repeat_n(v, b)).collect()
            }
            _ if commutes(layer, nonneg) => s.to_vec(),
            _ => return false,
        };
        if c == last || !forward_targets(graph, shapes, c, &passed, out) {
            return false;
        }
    }
    true
}

/// Multiplies output channel `c` of node `t` (conv, linear or batch norm) by `s[c]`.
fn scale_outputs(model: &mut Model, t: usize, s: &[f32]) -> Result<()> {
    // Conv/linear: weight rows and bias; batch norm: γ and β.
    let node = model.graph.nodes[t].clone();
    for f in ["weight", "bias"] {
        let name = format!("{}.{f}", node.name);
        if let Ok(w) = model.params.get_mut(&name) {
            scale_rows(&name, w, s)?;
        }
    }
    Ok(())
}

/// Multiplies the weights of conv/linear `t` that read input channel `c` by `s[c]`.
fn scale_inputs(model: &mut Model, t: usize, s: &[f32]) -> Result<()> {
    let node = model.graph.nodes[t].clone();
    let Some(groups) = describe(&node.layer).linear_map_groups(&node.layer) else {
        return Err(CompileError::Unsupported {
            node: node.name,
            reason: "a factor on its input cannot fold into it".into(),
        });
    };
    let name = format!("{}.weight", node.name);
    let w = model.params.get_mut(&name)?;
    scale_input_columns(&name, w, groups, s)
}

/// Folds every scale gate of `model` (see the module docs).
pub(crate) fn fold_gates(model: &mut Model, log: &mut FoldLog) -> Result<()> {
    let gates: Vec<String> = model
        .graph
        .nodes
        .iter()
        .filter(|n| describe(&n.layer).role(&n.layer) == Role::Gate)
        .map(|n| n.name.clone())
        .collect();
    for name in gates {
        let idx = model
            .graph
            .index_of(&name)
            .ok_or_else(|| CompileError::Unsupported {
                node: name.clone(),
                reason: "disappeared during folding".into(),
            })?;
        let Some(s) = gate_factor(model, idx)? else {
            continue;
        };
        let is_output = idx + 1 == model.graph.nodes.len();
        if !is_output {
            if let Some(t) = backward_target(&model.graph, idx, &s)? {
                scale_outputs(model, t, &s)?;
                let into = model.graph.nodes[t].name.clone();
                remove_node(model, &name)?;
                log.folded.push((name, into));
                continue;
            }
            let shapes = infer_shapes(&model.graph)?;
            let mut targets = Vec::new();
            if forward_targets(&model.graph, &shapes, idx, &s, &mut targets) {
                for (t, f) in &targets {
                    scale_inputs(model, *t, f)?;
                }
                let into = targets
                    .iter()
                    .map(|(t, _)| model.graph.nodes[*t].name.clone())
                    .collect::<Vec<_>>()
                    .join(", ");
                remove_node(model, &name)?;
                log.folded.push((name, into));
                continue;
            }
        }
        log.notes.push(format!(
            "gate '{name}' has no linear neighbour to fold into; kept as a scale layer"
        ));
    }
    Ok(())
}

/// Folds batch norms into the convolution or linear layer before them.
pub(crate) fn fold_batch_norms(model: &mut Model, log: &mut FoldLog) -> Result<()> {
    let bns: Vec<String> = model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::BatchNorm { .. }))
        .map(|n| n.name.clone())
        .collect();
    for name in bns {
        let idx = model
            .graph
            .index_of(&name)
            .ok_or_else(|| CompileError::Unsupported {
                node: name.clone(),
                reason: "disappeared during folding".into(),
            })?;
        let Layer::BatchNorm { eps, .. } = model.graph.nodes[idx].layer else {
            continue;
        };
        let p = input_of(&model.graph, idx)?;
        let foldable = idx + 1 != model.graph.nodes.len()
            && consumers(&model.graph, p) == [idx]
            && describe(&model.graph.nodes[p].layer)
                .linear_map_groups(&model.graph.nodes[p].layer)
                .is_some();
        let pname = model.graph.nodes[p].name.clone();
        if !foldable {
            log.notes.push(format!(
                "batch norm '{name}' kept: its input '{pname}' is not a convolution or linear \
                 layer read only by it"
            ));
            continue;
        }
        let gamma = param(model, &name, "weight")?.data().to_vec();
        let beta = param(model, &name, "bias")?.data().to_vec();
        let mean = param(model, &name, "running_mean")?.data().to_vec();
        let var = param(model, &name, "running_var")?.data().to_vec();
        let a: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(&g, &v)| f64::from(g) / (f64::from(v) + f64::from(eps)).sqrt())
            .collect();
        let bias_name = format!("{pname}.bias");
        let old_bias: Vec<f32> = match model.params.get(&bias_name) {
            Ok(b) => b.data().to_vec(),
            Err(_) => vec![0.0; a.len()],
        };
        let new_bias: Vec<f32> = (0..a.len())
            .map(|c| {
                ((f64::from(old_bias[c]) - f64::from(mean[c])) * a[c] + f64::from(beta[c])) as f32
            })
            .collect();
        let wname = format!("{pname}.weight");
        let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        scale_rows(&wname, model.params.get_mut(&wname)?, &a32)?;
        model
            .params
            .insert(bias_name, Tensor::from_vec([new_bias.len()], new_bias)?);
        match &mut model.graph.nodes[p].layer {
            Layer::Linear { bias, .. } | Layer::Conv2d { bias, .. } => *bias = true,
            _ => {}
        }
        remove_node(model, &name)?;
        log.folded.push((name, pname));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(i: usize, o: usize) -> Layer {
        Layer::Linear {
            in_features: i,
            out_features: o,
            bias: true,
        }
    }

    fn graph() -> Graph {
        // fc1 → relu → g (scale) → fc2.
        let mut g = Graph::new("t", &[3]);
        g.push("fc1", linear(3, 4), &["input"]).unwrap();
        g.push("relu", Layer::Relu, &["fc1"]).unwrap();
        g.push("g", Layer::Scale { units: 4 }, &["relu"]).unwrap();
        g.push("fc2", linear(4, 2), &["g"]).unwrap();
        g
    }

    #[test]
    fn backward_walks_through_relu_only_for_nonnegative_factors() {
        let g = graph();
        let gi = g.index_of("g").unwrap();
        assert_eq!(
            backward_target(&g, gi, &[1.0, 2.0, 0.0, 3.0]).unwrap(),
            Some(1)
        );
        assert_eq!(
            backward_target(&g, gi, &[1.0, -2.0, 0.0, 3.0]).unwrap(),
            None
        );
    }

    #[test]
    fn forward_targets_stop_at_linear_layers_and_fail_at_sums() {
        let mut g = graph();
        let shapes = infer_shapes(&g).unwrap();
        let gi = g.index_of("g").unwrap();
        let mut out = Vec::new();
        assert!(forward_targets(
            &g,
            &shapes,
            gi,
            &[1.0, -1.0, 2.0, 0.5],
            &mut out
        ));
        assert_eq!(out, vec![(4, vec![1.0, -1.0, 2.0, 0.5])]);
        g.push("add", Layer::Add, &["g", "relu"]).unwrap();
        let shapes = infer_shapes(&g).unwrap();
        let mut out = Vec::new();
        assert!(!forward_targets(&g, &shapes, gi, &[1.0; 4], &mut out));
    }
}
