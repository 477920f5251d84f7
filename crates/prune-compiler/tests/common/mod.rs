//! Shared helpers of the integration tests: random parameters, random masks and small graph builders.
#![allow(dead_code)]

use prune_core::Tensor;
use prune_graph::ir::{Graph, Layer};
use prune_graph::params::{param_specs, ParamKind};
use prune_graph::{ChannelMasks, Model};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fills every tensor of `model` with random values of the right kind:
/// weights `N(0, 1/fan_in)`, biases `N(0, 0.3)`, BN γ ∈ [0.5, 1.5],
/// β ~ N(0, 0.3), mean ~ N(0, 0.3), var ∈ [0.5, 2], scale γ ∈ [0.5, 1.5] with
/// random sign, SBP μ ∈ [-2, 0], log σ ∈ [-4, 1] (some units have SNR ≤ 1).
pub fn randomize(model: &mut Model, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for spec in param_specs(&model.graph) {
        let n: usize = spec.shape.iter().product();
        let fan_in: usize = spec.shape.iter().skip(1).product::<usize>().max(1);
        let data: Vec<f32> = (0..n)
            .map(|_| match spec.kind {
                ParamKind::Weight => normal(&mut rng) / (fan_in as f32).sqrt(),
                ParamKind::Bias | ParamKind::BnBeta | ParamKind::RunningMean => {
                    0.3 * normal(&mut rng)
                }
                ParamKind::BnGamma => rng.random_range(0.5..1.5),
                ParamKind::RunningVar => rng.random_range(0.5..2.0),
                ParamKind::ScaleGamma => {
                    let sign = if rng.random_bool(0.2) { -1.0 } else { 1.0 };
                    sign * rng.random_range(0.5..1.5)
                }
                ParamKind::SbpMu => rng.random_range(-2.0..0.0),
                ParamKind::SbpLogSigma => rng.random_range(-4.0..1.0),
            })
            .collect();
        model.params.insert(
            spec.name.clone(),
            Tensor::from_vec(spec.shape.clone(), data).unwrap(),
        );
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    prune_core::tensor::standard_normal(rng)
}

/// A random keep mask for every gate node (SBP, scale, batch norm): each
/// channel kept with probability `p`, channel 0 always kept.
pub fn random_masks(graph: &Graph, p: f64, seed: u64) -> ChannelMasks {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shapes = prune_graph::infer_shapes(graph).unwrap();
    let mut masks = ChannelMasks::new();
    for (node, shape) in graph.nodes.iter().zip(&shapes) {
        if node.layer.is_gate() {
            let mut keep: Vec<bool> = (0..shape[0]).map(|_| rng.random_bool(p)).collect();
            keep[0] = true;
            masks.insert(node.name.clone(), keep);
        }
    }
    masks
}

/// A keep mask of length `n` keeping exactly the listed indices.
pub fn keep_only(n: usize, kept: &[usize]) -> Vec<bool> {
    (0..n).map(|i| kept.contains(&i)).collect()
}

pub fn conv(cin: usize, cout: usize, k: usize, pad: usize, bias: bool) -> Layer {
    Layer::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [1, 1],
        padding: [pad, pad],
        groups: 1,
        bias,
    }
}

pub fn linear(i: usize, o: usize) -> Layer {
    Layer::Linear {
        in_features: i,
        out_features: o,
        bias: true,
    }
}

pub fn bn(c: usize) -> Layer {
    Layer::BatchNorm {
        features: c,
        eps: 1e-5,
        momentum: 0.1,
    }
}

pub fn pool2() -> Layer {
    Layer::MaxPool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    }
}

/// LeNet5-Caffe with SBP gates where prune-reg places them: after each
/// convolution (before its ReLU) and on the input of each linear layer.
pub fn lenet5_sbp() -> Graph {
    let mut g = Graph::new("lenet5", &[1, 28, 28]);
    g.push("conv1", conv(1, 20, 5, 0, true), &["input"])
        .unwrap();
    g.push("conv1.sbp", Layer::SbpGate { units: 20 }, &["conv1"])
        .unwrap();
    g.push("relu1", Layer::Relu, &["conv1.sbp"]).unwrap();
    g.push("pool1", pool2(), &["relu1"]).unwrap();
    g.push("conv2", conv(20, 50, 5, 0, true), &["pool1"])
        .unwrap();
    g.push("conv2.sbp", Layer::SbpGate { units: 50 }, &["conv2"])
        .unwrap();
    g.push("relu2", Layer::Relu, &["conv2.sbp"]).unwrap();
    g.push("pool2", pool2(), &["relu2"]).unwrap();
    g.push("flatten", Layer::Flatten, &["pool2"]).unwrap();
    g.push("fc1.in_sbp", Layer::SbpGate { units: 800 }, &["flatten"])
        .unwrap();
    g.push("fc1", linear(800, 500), &["fc1.in_sbp"]).unwrap();
    g.push("relu3", Layer::Relu, &["fc1"]).unwrap();
    g.push("fc2.in_sbp", Layer::SbpGate { units: 500 }, &["relu3"])
        .unwrap();
    g.push("fc2", linear(500, 10), &["fc2.in_sbp"]).unwrap();
    g
}

/// Masks pruning [`lenet5_sbp`] to the SBP paper's 3-18-284-283: conv1 keeps
/// 3 channels, conv2 18, fc1 reads 284 of the 288 features of those 18
/// channels, fc1 keeps 283 outputs.
pub fn lenet5_paper_masks() -> ChannelMasks {
    let c1: Vec<usize> = vec![1, 7, 13];
    let c2: Vec<usize> = (0..18).map(|i| i * 2 + 3).collect();
    let mut feats: Vec<usize> = c2
        .iter()
        .flat_map(|&c| (0..16).map(move |k| c * 16 + k))
        .collect();
    // Drop 4 of the 288 features of kept channels.
    for drop in [5, 77, 150, 260] {
        feats.retain(|&f| f != c2[drop / 16] * 16 + drop % 16);
    }
    assert_eq!(feats.len(), 284);
    let h: Vec<usize> = (0..500)
        .filter(|i| i % 29 != 0 || *i == 0)
        .take(283)
        .collect();
    assert_eq!(h.len(), 283);
    let mut m = ChannelMasks::new();
    m.insert("conv1.sbp".into(), keep_only(20, &c1));
    m.insert("conv2.sbp".into(), keep_only(50, &c2));
    // Features of dropped channels stay "kept" here: the channel mask removes them.
    let mut f = keep_only(800, &feats);
    for c in 0..50 {
        if !c2.contains(&c) {
            for k in 0..16 {
                f[c * 16 + k] = true;
            }
        }
    }
    m.insert("fc1.in_sbp".into(), f);
    m.insert("fc2.in_sbp".into(), keep_only(500, &h));
    m
}

/// Names of nodes of a given kind.
pub fn nodes_of_kind(graph: &Graph, kind: &str) -> Vec<String> {
    graph
        .nodes
        .iter()
        .filter(|n| n.layer.kind() == kind)
        .map(|n| n.name.clone())
        .collect()
}
