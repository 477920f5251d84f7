//! Where gates go: graph rewrites that add SBP noise gates or per-channel
//! scale gates to a model, and the list of scale factors a γ-based method
//! regularizes. Rewrites return a new model; the input is never mutated.
//!
//! * SBP (Neklyudov et al. 2017): a gate after each convolution — after its
//!   batch norm when one follows directly, always before the nonlinearity —
//!   and a gate on the input of every fully connected layer, so that input
//!   pixels and hidden neurons can be pruned too.
//! * Polarization and slimming act on batch-norm γ. A convolution or hidden
//!   linear layer without a batch norm gets a [`Layer::Scale`] gate instead,
//!   initialized to γ₀ with the producer's weights divided by γ₀, so the
//!   network computes exactly the same function as before.

use crate::error::{RegError, Result};
use prune_graph::ir::{Graph, Layer, Node};
use prune_graph::params::{init_tensor, param_specs};
use prune_graph::Model;
use rand::SeedableRng;
use std::collections::HashMap;

/// The node a gate for `node` should follow: its batch norm when the node's
/// only consumer is one, else the node itself.
fn gate_anchor<'g>(graph: &'g Graph, node: &'g Node) -> &'g Node {
    let consumers = graph.consumers(&node.name);
    match consumers.as_slice() {
        [c] if matches!(c.layer, Layer::BatchNorm { .. }) => c,
        _ => node,
    }
}

fn out_channels(layer: &Layer) -> Option<usize> {
    match layer {
        Layer::Conv2d { out_channels, .. } => Some(*out_channels),
        Layer::Linear { out_features, .. } => Some(*out_features),
        Layer::BatchNorm { features, .. } => Some(*features),
        _ => None,
    }
}

/// Rebuilds `model` with gate nodes inserted. `after[name]` adds a gate
/// after that node; `before[name]` adds one on that node's (single) input.
fn rewrite(
    model: &Model,
    after: &HashMap<String, (String, Layer)>,
    before: &HashMap<String, (String, Layer)>,
) -> Result<Model> {
    let g = &model.graph;
    let mut out = Graph {
        name: g.name.clone(),
        nodes: Vec::with_capacity(g.nodes.len() * 2),
    };
    let mut rename: HashMap<String, String> = HashMap::new();
    for node in &g.nodes {
        let mut inputs: Vec<String> = node
            .inputs
            .iter()
            .map(|i| rename.get(i).cloned().unwrap_or_else(|| i.clone()))
            .collect();
        if let Some((gate, layer)) = before.get(&node.name) {
            out.nodes.push(Node {
                name: gate.clone(),
                layer: layer.clone(),
                inputs: inputs.clone(),
            });
            inputs = vec![gate.clone()];
        }
        out.nodes.push(Node {
            name: node.name.clone(),
            layer: node.layer.clone(),
            inputs,
        });
        if let Some((gate, layer)) = after.get(&node.name) {
            out.nodes.push(Node {
                name: gate.clone(),
                layer: layer.clone(),
                inputs: vec![node.name.clone()],
            });
            rename.insert(node.name.clone(), gate.clone());
        }
    }
    let mut params = model.params.clone();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for spec in param_specs(&out) {
        if !params.contains(&spec.name) {
            params.insert(spec.name.clone(), init_tensor(&spec, &mut rng));
        }
    }
    let m = Model { graph: out, params };
    m.validate()?;
    Ok(m)
}

/// Adds SBP gates (named `<node>.sbp`, `<linear>.in_sbp`) to `model`.
pub fn insert_sbp_gates(model: &Model) -> Result<Model> {
    let g = &model.graph;
    let shapes = prune_graph::infer_shapes(g)?;
    let mut after = HashMap::new();
    let mut before = HashMap::new();
    for node in &g.nodes {
        match &node.layer {
            Layer::Conv2d { out_channels, .. } => {
                let anchor = gate_anchor(g, node);
                after.insert(
                    anchor.name.clone(),
                    (
                        format!("{}.sbp", anchor.name),
                        Layer::SbpGate {
                            units: *out_channels,
                        },
                    ),
                );
            }
            Layer::Linear { in_features, .. } => {
                let src = node.inputs.first().and_then(|i| g.index_of(i));
                let already =
                    src.is_some_and(|s| matches!(g.nodes[s].layer, Layer::SbpGate { .. }));
                if !already && src.is_some_and(|s| shapes[s].len() == 1) {
                    before.insert(
                        node.name.clone(),
                        (
                            format!("{}.in_sbp", node.name),
                            Layer::SbpGate {
                                units: *in_features,
                            },
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    rewrite(model, &after, &before)
}

/// Adds a scale gate (`<node>.scale`, γ = `gamma0`) after every convolution
/// and hidden linear layer not directly followed by batch norm, dividing the
/// producer's weights and bias by `gamma0` so the function is unchanged.
pub fn insert_scale_gates(model: &Model, gamma0: f32) -> Result<Model> {
    if !(gamma0.is_finite() && gamma0 > 0.0) {
        return Err(RegError::InvalidParameter {
            name: "gamma0",
            value: f64::from(gamma0),
            reason: "must be finite and > 0",
        });
    }
    let g = &model.graph;
    let output = g.output()?.to_string();
    let mut after = HashMap::new();
    let mut producers = Vec::new();
    for node in &g.nodes {
        if !matches!(node.layer, Layer::Conv2d { .. } | Layer::Linear { .. }) || node.name == output
        {
            continue;
        }
        if gate_anchor(g, node).name != node.name {
            continue; // has its own batch norm
        }
        if let Some(c) = out_channels(&node.layer) {
            after.insert(
                node.name.clone(),
                (format!("{}.scale", node.name), Layer::Scale { units: c }),
            );
            producers.push(node.name.clone());
        }
    }
    let mut m = rewrite(model, &after, &HashMap::new())?;
    for p in producers {
        for field in ["weight", "bias"] {
            if let Ok(t) = m.params.get_mut(&format!("{p}.{field}")) {
                t.data_mut().iter_mut().for_each(|v| *v /= gamma0);
            }
        }
        let gamma = m.params.get_mut(&format!("{p}.scale.weight"))?;
        gamma.data_mut().iter_mut().for_each(|v| *v = gamma0);
    }
    Ok(m)
}

/// The gate nodes whose `weight` (γ) a γ-based method regularizes: every
/// batch norm and scale gate, in graph order.
pub fn gamma_gates(graph: &Graph) -> Vec<String> {
    graph
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::BatchNorm { .. } | Layer::Scale { .. }))
        .map(|n| n.name.clone())
        .collect()
}

/// The SBP gate nodes of a graph, in order.
pub fn sbp_gates(graph: &Graph) -> Vec<String> {
    graph
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::SbpGate { .. }))
        .map(|n| n.name.clone())
        .collect()
}
