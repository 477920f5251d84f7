//! Which nodes the interpreter runs as one fused tape op.
//!
//! A ReLU whose input is a batch norm or a convolution (the head), or an
//! add of exactly two values one of which is such a head (the residual add
//! of a ResNet block), runs as one tape node —
//! [`Tape::batch_norm_relu_train`](prune_core::Tape::batch_norm_relu_train)
//! (or `_eval`), or [`Tape::conv2d_relu`](prune_core::Tape::conv2d_relu) —
//! when nothing else reads the head's output, nor the add's: no other node,
//! no channel mask, and neither is the graph's output. A batch norm is
//! preferred as the head (convolutions before a batch norm stay unfused;
//! after compilation folds the batch norms, the convolutions fuse). The
//! fused node computes the same values as the chain, bit for bit, without
//! writing the values in between.
//!
//! With `absorb_convs` (inference without gradients, and training), a batch
//! norm whose input is a convolution that nothing else reads (nor masks)
//! also absorbs that convolution. In training the two run together as two
//! tape nodes, the batch statistics formed while the convolution writes its
//! output (same values, bit for bit). In evaluation mode the batch norm is
//! the per-channel map
//! `y = a·z + c` with `a = γ/√(σ²_run + ε)` and `c = β − a·μ_run`, so
//! `bn(conv(x; w, b)) = conv(x; a·w, a·b + c)` — one convolution with
//! scaled weights and a bias instead of a convolution and a pass over its
//! output (the compiler folds the same way, permanently). This one is
//! equal to the chain up to rounding, not bit for bit.

use crate::interp::ChannelMasks;
use crate::ir::{Graph, Layer};
use std::collections::BTreeMap;

/// What a fusing ReLU computes: `relu(head + residual)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fusion {
    /// The batch-norm or convolution node.
    pub head: usize,
    /// The add node and the other value it adds, when there is one.
    pub add: Option<(usize, usize)>,
}

/// The fusions of a graph: by the index of the ReLU that computes them,
/// and which nodes they absorb (computed by that ReLU, not on their own);
/// and the convolutions absorbed by the batch norm after them, by the
/// batch norm's index.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub at: BTreeMap<usize, Fusion>,
    pub absorbed: Vec<bool>,
    pub folded: BTreeMap<usize, usize>,
}

/// The fusions `graph` allows under `masks` (`inputs` from
/// [`Graph::input_indices`]); with `absorb_convs` also the convolutions
/// absorbed by the batch norms after them.
pub(crate) fn plan(
    graph: &Graph,
    inputs: &[Vec<usize>],
    masks: Option<&ChannelMasks>,
    absorb_convs: bool,
) -> Plan {
    let n = graph.nodes.len();
    let mut readers = vec![0usize; n];
    for ins in inputs {
        for &j in ins {
            readers[j] += 1;
        }
    }
    // read once, by the node about to absorb it, and by nothing else
    let private = |j: usize| {
        readers[j] == 1 && j + 1 < n && !masks.is_some_and(|m| m.contains_key(&graph.nodes[j].name))
    };
    let is_head = |j: usize, bn: bool| {
        let layer_ok = match graph.nodes[j].layer {
            Layer::BatchNorm { .. } => bn,
            Layer::Conv2d { .. } => !bn,
            _ => false,
        };
        layer_ok && inputs[j].len() == 1 && private(j)
    };
    let mut out = Plan {
        at: BTreeMap::new(),
        absorbed: vec![false; n],
        folded: BTreeMap::new(),
    };
    if absorb_convs {
        for (j, node) in graph.nodes.iter().enumerate() {
            if !matches!(node.layer, Layer::BatchNorm { .. }) || inputs[j].len() != 1 {
                continue;
            }
            let c = inputs[j][0];
            let conv = matches!(graph.nodes[c].layer, Layer::Conv2d { .. });
            if conv && inputs[c].len() == 1 && private(c) {
                out.folded.insert(j, c);
                out.absorbed[c] = true;
            }
        }
    }
    for (k, node) in graph.nodes.iter().enumerate() {
        if !matches!(node.layer, Layer::Relu) || inputs[k].len() != 1 {
            continue;
        }
        let j = inputs[k][0];
        let fusion = [true, false].into_iter().find_map(|bn| {
            if is_head(j, bn) {
                return Some(Fusion { head: j, add: None });
            }
            if !(matches!(graph.nodes[j].layer, Layer::Add) && private(j) && inputs[j].len() == 2) {
                return None;
            }
            let (a, b) = (inputs[j][0], inputs[j][1]);
            if a == b {
                None
            } else if is_head(a, bn) {
                Some(Fusion {
                    head: a,
                    add: Some((j, b)),
                })
            } else if is_head(b, bn) {
                Some(Fusion {
                    head: b,
                    add: Some((j, a)),
                })
            } else {
                None
            }
        });
        if let Some(f) = fusion {
            out.absorbed[f.head] = true;
            if let Some((add, _)) = f.add {
                out.absorbed[add] = true;
            }
            out.at.insert(k, f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    fn plan_of(name: &str, masks: Option<&ChannelMasks>) -> (Graph, Plan) {
        let g = zoo::build(name, &[3, 32, 32], 10).expect("zoo");
        let inputs = g.input_indices().expect("inputs");
        let p = plan(&g, &inputs, masks, false);
        (g, p)
    }

    fn name(g: &Graph, i: usize) -> &str {
        &g.nodes[i].name
    }

    #[test]
    fn resnet_blocks_fuse_both_batch_norms_and_the_residual_add() {
        let (g, p) = plan_of("resnet20", None);
        // the stem and 9 blocks × (bn1 → relu1, bn2 + shortcut → relu2)
        assert_eq!(p.at.len(), 19);
        let b = g.index_of("layer2.0.relu2").expect("node");
        let f = p.at[&b];
        assert_eq!(name(&g, f.head), "layer2.0.bn2");
        let (add, other) = f.add.expect("residual");
        assert_eq!(name(&g, add), "layer2.0.add");
        assert_eq!(name(&g, other), "layer2.0.down.bn");
        let b = g.index_of("layer1.1.relu2").expect("node");
        assert_eq!(
            name(&g, p.at[&b].add.expect("residual").1),
            "layer1.0.relu2"
        );
        // the downsampling batch norm is read by the add only, but the add
        // fuses with bn2: the shortcut stays a node of its own
        assert!(!p.absorbed[g.index_of("layer2.0.down.bn").expect("node")]);
        assert!(p.absorbed[g.index_of("layer2.0.add").expect("node")]);
    }

    #[test]
    fn masks_and_other_readers_keep_nodes_unfused() {
        let mut masks = ChannelMasks::new();
        masks.insert("layer1.0.bn1".into(), vec![true; 16]);
        masks.insert("layer1.0.add".into(), vec![true; 16]);
        let (g, p) = plan_of("resnet20", Some(&masks));
        assert_eq!(p.at.len(), 17);
        assert!(!p.absorbed[g.index_of("layer1.0.bn1").expect("node")]);
        assert!(!p.absorbed[g.index_of("layer1.0.bn2").expect("node")]);
        // VGG-like: conv → bn → relu everywhere, and bn_fc1 → relu_fc1
        let (g, p) = plan_of("vgg-like", None);
        assert!(p.at.values().all(|f| f.add.is_none()));
        assert!(p.absorbed[g.index_of("bn_fc1").expect("node")]);
        assert!(!p.absorbed[g.index_of("conv1").expect("node")]);
        // LeNet5: conv → relu twice; fc1 → relu3 stays unfused
        let (g, p) = plan_of("lenet5", None);
        let heads: Vec<&str> = p.at.values().map(|f| name(&g, f.head)).collect();
        assert_eq!(heads, ["conv1", "conv2"]);
    }

    #[test]
    fn inference_folds_convolutions_into_the_batch_norms_after_them() {
        let g = zoo::build("resnet20", &[3, 32, 32], 10).expect("zoo");
        let inputs = g.input_indices().expect("inputs");
        let p = plan(&g, &inputs, None, true);
        // the stem, two per block, two downsampling shortcuts
        assert_eq!(p.folded.len(), 1 + 2 * 9 + 2);
        for (&bn, &conv) in &p.folded {
            assert!(matches!(g.nodes[bn].layer, Layer::BatchNorm { .. }));
            assert!(matches!(g.nodes[conv].layer, Layer::Conv2d { .. }));
            assert_eq!(inputs[bn], [conv]);
            assert!(p.absorbed[conv]);
        }
        // the ReLU fusions are those of training
        assert_eq!(p.at, plan(&g, &inputs, None, false).at);
        // a masked convolution keeps its output: not folded
        let mut masks = ChannelMasks::new();
        masks.insert("layer1.0.conv1".into(), vec![true; 16]);
        let p = plan(&g, &inputs, Some(&masks), true);
        assert_eq!(p.folded.len(), 1 + 2 * 9 + 2 - 1);
        assert!(!p.absorbed[g.index_of("layer1.0.conv1").expect("node")]);
        // no folding unless asked
        assert!(plan(&g, &inputs, None, false).folded.is_empty());
    }

    #[test]
    fn convolutions_fuse_where_batch_norms_were_folded() {
        // a compiled block: conv (with bias) → relu, conv + shortcut → relu
        let mut g = Graph::new("block", &[4, 8, 8]);
        let conv = |bias| Layer::Conv2d {
            in_channels: 4,
            out_channels: 4,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: 1,
            bias,
        };
        g.push("c1", conv(true), &["input"]).expect("push");
        g.push("r1", Layer::Relu, &["c1"]).expect("push");
        g.push("c2", conv(true), &["r1"]).expect("push");
        g.push("add", Layer::Add, &["r1", "c2"]).expect("push");
        g.push("r2", Layer::Relu, &["add"]).expect("push");
        g.push("out", Layer::GlobalAvgPool, &["r2"]).expect("push");
        let inputs = g.input_indices().expect("inputs");
        let p = plan(&g, &inputs, None, false);
        // node 0 is the input
        assert_eq!(p.at[&2], Fusion { head: 1, add: None });
        assert_eq!(
            p.at[&5],
            Fusion {
                head: 3,
                add: Some((4, 2))
            }
        );
        assert_eq!(p.absorbed, [false, true, false, true, true, false, false]);
    }
}
