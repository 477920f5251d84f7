//! Surgery: a smaller IR with sliced parameters.
//!
//! Every node keeps its name and its place in the graph; only hyperparameters
//! (channel counts) and tensors change:
//!
//! * conv/linear weights: output rows by the node's kept channels, input
//!   columns by the kept channels of its input (for a linear layer after a
//!   flatten these are the kept features: channel blocks intersected with
//!   any gate on the flattened space); biases by kept rows;
//! * depthwise convolutions: rows only; groups, in and out shrink together;
//! * batch norm γ, β, running statistics; scale γ: by the node's kept
//!   channels; masked units that stay in the tensor (see [`crate::masks`])
//!   get γ = β = 0;
//! * SBP gates become scale layers holding their eval-mode factor
//!   `E[θ]·1[SNR > 1]`, which [`crate::fold`] then folds away.
//!
//! Removing nodes (folding) is done by `remove_node`, which rewires the
//! consumers of a node to its input.

use crate::error::{CompileError, Result};
use crate::groups::Analysis;
use crate::layers::{describe, Kept};
use crate::masks::Plan;
use crate::slice::gather;
use prune_graph::params::param_specs;
use prune_graph::{Model, ParamStore};

/// Slices `model` according to `plan`.
pub(crate) fn slice_model(model: &Model, an: &Analysis, plan: &Plan) -> Result<Model> {
    let graph = &model.graph;
    let mut out_graph = graph.clone();
    let mut params = ParamStore::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let desc = describe(&node.layer);
        let kept_in = an.inputs[i].first().map(|&j| plan.kept[j].as_slice());
        let kept = Kept {
            out: &plan.kept[i],
            out_total: an.unit_of[i].len(),
            input: kept_in,
            input_full: an.inputs[i]
                .first()
                .is_some_and(|&j| plan.kept[j].len() == an.unit_of[j].len()),
        };
        out_graph.nodes[i].layer = desc.resize(&node.layer, &node.name, &kept)?;
        let slice_inputs = desc.slices_input(&node.layer);
        let zeroed = &plan.zeroed[i];
        for spec in param_specs(graph)
            .into_iter()
            .filter(|s| s.node == node.name)
        {
            let t = model.params.get(&spec.name)?;
            let mut sliced = gather(&spec.name, t, 0, kept.out)?;
            if slice_inputs && spec.shape.len() >= 2 {
                if let Some(k) = kept_in {
                    sliced = gather(&spec.name, &sliced, 1, k)?;
                }
            }
            // Masked units that stay in the tensor: e.g. γ = 0 (and β = 0).
            if desc.zeroes_masked(spec.kind) {
                for (v, &z) in sliced.data_mut().iter_mut().zip(zeroed) {
                    if z {
                        *v = 0.0;
                    }
                }
            }
            params.insert(spec.name, sliced);
        }
        if let Some(lowered) = desc.lower(&node.name, &mut params, zeroed)? {
            out_graph.nodes[i].layer = lowered;
        }
    }
    let m = Model {
        graph: out_graph,
        params,
    };
    m.validate()?;
    Ok(m)
}

/// Removes node `name` (which has exactly one input) and its tensors,
/// pointing its consumers at its input.
pub(crate) fn remove_node(model: &mut Model, name: &str) -> Result<()> {
    let idx = model
        .graph
        .index_of(name)
        .ok_or_else(|| CompileError::Unsupported {
            node: name.into(),
            reason: "no such node".into(),
        })?;
    let input = match model.graph.nodes[idx].inputs.as_slice() {
        [one] => one.clone(),
        _ => {
            return Err(CompileError::Unsupported {
                node: name.into(),
                reason: "only single-input nodes can be removed".into(),
            })
        }
    };
    if idx + 1 == model.graph.nodes.len() {
        return Err(CompileError::Unsupported {
            node: name.into(),
            reason: "the output node cannot be removed".into(),
        });
    }
    for spec in param_specs(&model.graph)
        .into_iter()
        .filter(|s| s.node == name)
    {
        model.params.remove(&spec.name);
    }
    model.graph.nodes.remove(idx);
    for n in &mut model.graph.nodes {
        for inp in &mut n.inputs {
            if inp == name {
                inp.clone_from(&input);
            }
        }
    }
    Ok(())
}
