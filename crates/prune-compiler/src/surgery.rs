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
use crate::groups::{Analysis, Role};
use crate::masks::Plan;
use crate::slice::gather;
use prune_core::Tensor;
use prune_graph::ir::Layer;
use prune_graph::params::{param_specs, ParamKind};
use prune_graph::{Model, ParamStore};

/// The eval-mode factor of SBP units, `E[θ]·1[SNR > 1]` (prune-reg's
/// `test_time_scale`), zero where `zeroed`.
pub(crate) fn sbp_eval_factor(mu: &[f32], log_sigma: &[f32], zeroed: &[bool]) -> Vec<f32> {
    mu.iter()
        .zip(log_sigma)
        .zip(zeroed)
        .map(|((&m, &l), &z)| {
            if z {
                0.0
            } else {
                prune_core::sbp::test_time_scale(f64::from(m), f64::from(l)) as f32
            }
        })
        .collect()
}

/// Slices `model` according to `plan`.
pub(crate) fn slice_model(model: &Model, an: &Analysis, plan: &Plan) -> Result<Model> {
    let graph = &model.graph;
    let mut out_graph = graph.clone();
    let mut params = ParamStore::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let kept_out = &plan.kept[i];
        let kept_in = an.inputs[i].first().map(|&j| &plan.kept[j]);
        let full_in = an.inputs[i]
            .first()
            .map(|&j| plan.kept[j].len() == an.unit_of[j].len());
        let new_layer = match (&node.layer, an.roles[i]) {
            (Layer::Linear { bias, .. }, _) => Layer::Linear {
                in_features: kept_in.map_or(0, |k| k.len()),
                out_features: kept_out.len(),
                bias: *bias,
            },
            (Layer::Conv2d { .. }, Role::Grouped) => {
                if kept_out.len() != an.unit_of[i].len() || full_in != Some(true) {
                    return Err(CompileError::Unsupported {
                        node: node.name.clone(),
                        reason: "channels of a grouped convolution cannot be removed".into(),
                    });
                }
                node.layer.clone()
            }
            (
                Layer::Conv2d {
                    kernel,
                    stride,
                    padding,
                    bias,
                    ..
                },
                role,
            ) => {
                let (cin, groups) = if role == Role::Depthwise {
                    (kept_out.len(), kept_out.len())
                } else {
                    (kept_in.map_or(0, |k| k.len()), 1)
                };
                Layer::Conv2d {
                    in_channels: cin,
                    out_channels: kept_out.len(),
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                    groups,
                    bias: *bias,
                }
            }
            (Layer::BatchNorm { eps, momentum, .. }, _) => Layer::BatchNorm {
                features: kept_out.len(),
                eps: *eps,
                momentum: *momentum,
            },
            (Layer::SbpGate { .. }, _) => Layer::SbpGate {
                units: kept_out.len(),
            },
            (Layer::Scale { .. }, _) => Layer::Scale {
                units: kept_out.len(),
            },
            (other, _) => other.clone(),
        };
        out_graph.nodes[i].layer = new_layer;
        let slice_inputs = matches!(node.layer, Layer::Linear { .. })
            || (matches!(node.layer, Layer::Conv2d { .. }) && an.roles[i] == Role::Producer);
        let zeroed = &plan.zeroed[i];
        for spec in param_specs(graph)
            .into_iter()
            .filter(|s| s.node == node.name)
        {
            let t = model.params.get(&spec.name)?;
            let mut sliced = gather(&spec.name, t, 0, kept_out)?;
            if slice_inputs && spec.shape.len() >= 2 {
                if let Some(k) = kept_in {
                    sliced = gather(&spec.name, &sliced, 1, k)?;
                }
            }
            // Masked units that stay in the tensor: γ = 0 (and β = 0).
            if matches!(
                spec.kind,
                ParamKind::ScaleGamma | ParamKind::BnGamma | ParamKind::BnBeta
            ) {
                for (v, &z) in sliced.data_mut().iter_mut().zip(zeroed) {
                    if z {
                        *v = 0.0;
                    }
                }
            }
            params.insert(spec.name, sliced);
        }
        if let Layer::SbpGate { .. } = node.layer {
            // Eval mode multiplies by E[θ]·1[SNR > 1]: the gate becomes a scale.
            let mu = params.remove(&format!("{}.mu", node.name));
            let ls = params.remove(&format!("{}.log_sigma", node.name));
            let (Some(mu), Some(ls)) = (mu, ls) else {
                return Err(CompileError::Param {
                    name: format!("{}.mu", node.name),
                    reason: "missing".into(),
                });
            };
            let s = sbp_eval_factor(mu.data(), ls.data(), zeroed);
            params.insert(
                format!("{}.weight", node.name),
                Tensor::from_vec([s.len()], s)?,
            );
            out_graph.nodes[i].layer = Layer::Scale {
                units: kept_out.len(),
            };
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
