//! Dropping individual features: a post-pass after surgery and folding.
//!
//! Channel groups remove whole channels, but some gates mask single
//! features: SBP's gate on the flattened input of a fully connected layer,
//! or on the network input (pixels of LeNet-500-300). Those features stay in
//! the tensor with all-zero weight columns in the linear layer that reads
//! them. This pass finds such columns and inserts a [`Layer::Select`] that
//! gathers only the live features, so the linear layer shrinks to them:
//! `W·x = W[:, keep]·x[keep]` exactly, since the dropped columns are zero.

use crate::error::Result;
use prune_core::Tensor;
use prune_graph::{Layer, Model, Node};

/// Inserts a `<linear>.select` node before every linear layer that has
/// all-zero weight columns, and slices those columns away. Returns the
/// names of the linear layers that shrank.
pub(crate) fn drop_zero_columns(model: &mut Model) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    let mut i = 0;
    while i < model.graph.nodes.len() {
        let node = model.graph.nodes[i].clone();
        let Layer::Linear {
            in_features,
            out_features,
            bias,
        } = node.layer
        else {
            i += 1;
            continue;
        };
        let wname = format!("{}.weight", node.name);
        let w = model.params.get(&wname)?;
        let keep: Vec<usize> = (0..in_features)
            .filter(|&j| (0..out_features).any(|o| w.data()[o * in_features + j] != 0.0))
            .collect();
        if keep.len() == in_features || keep.is_empty() {
            i += 1;
            continue;
        }
        let mut sliced = Vec::with_capacity(out_features * keep.len());
        for o in 0..out_features {
            let row = &w.data()[o * in_features..(o + 1) * in_features];
            sliced.extend(keep.iter().map(|&j| row[j]));
        }
        let sliced = Tensor::from_vec([out_features, keep.len()], sliced)?;
        model.params.insert(wname, sliced);
        let select = format!("{}.select", node.name);
        model.graph.nodes.insert(
            i,
            Node {
                name: select.clone(),
                layer: Layer::Select {
                    indices: keep.clone(),
                },
                inputs: node.inputs.clone(),
            },
        );
        let lin = &mut model.graph.nodes[i + 1];
        lin.inputs = vec![select];
        lin.layer = Layer::Linear {
            in_features: keep.len(),
            out_features,
            bias,
        };
        changed.push(node.name.clone());
        i += 2;
    }
    Ok(changed)
}
