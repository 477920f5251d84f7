//! The interpreter's batch norm + (residual add +) ReLU fusion gives the
//! values and gradients of the unfused chain, bit for bit; inference without
//! gradients, where convolutions also fold into the batch norms after them,
//! gives its values to rounding. An all-true channel mask on a node keeps it
//! unfused without changing any value (`x·1 = x`), so one model runs both
//! ways.

use prune_core::sbp::GateNoise;
use prune_core::{Tape, Tensor};
use prune_graph::{forward, zoo, ChannelMasks, Graph, Layer, Model, RunOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Masks of ones on every batch norm, convolution and add: nothing fuses.
fn unfusing_masks(model: &Model) -> ChannelMasks {
    let shapes = prune_graph::infer_shapes(&model.graph).expect("shapes");
    model
        .graph
        .nodes
        .iter()
        .zip(&shapes)
        .filter(|(n, _)| {
            matches!(
                n.layer,
                Layer::BatchNorm { .. } | Layer::Add | Layer::Conv2d { .. }
            )
        })
        .map(|(n, s)| (n.name.clone(), vec![true; s[0]]))
        .collect()
}

/// Output, batch statistics and parameter gradients of one train-mode
/// step, and the eval-mode output; with the number of fused nodes.
struct Run {
    train_out: Tensor,
    stats: Vec<(String, Tensor, Tensor)>,
    grads: BTreeMap<String, Tensor>,
    eval_out: Tensor,
    fused: usize,
}

fn run(model: &Model, x: &Tensor, masks: Option<&ChannelMasks>) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let labels: Vec<usize> = (0..x.shape()[0]).map(|i| i % 10).collect();
    let mut tape = Tape::new();
    let input = tape.constant(x.clone());
    let opts = RunOptions::train(GateNoise::new(0, 0)).with_masks(masks);
    let f = forward(model, &mut tape, input, &opts, &mut rng).expect("forward");
    let loss = tape.cross_entropy(f.output, &labels).expect("loss");
    let mut g = tape.backward(loss).expect("backward");
    let grads = f
        .params
        .iter()
        .filter_map(|(n, v)| g.take(*v).map(|t| (n.clone(), t)))
        .collect();
    let stats = f
        .bn_updates
        .iter()
        .map(|u| (u.node.clone(), (u.mean.clone(), u.var.clone())))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(n, (m, v))| (n, m, v))
        .collect();
    let train_out = tape.value(f.output).expect("value").clone();
    let mut tape = Tape::no_grad();
    let input = tape.constant(x.clone());
    let opts = RunOptions::eval().with_masks(masks);
    let e = forward(model, &mut tape, input, &opts, &mut rng).expect("eval");
    Run {
        train_out,
        stats,
        grads,
        eval_out: tape.value(e.output).expect("value").clone(),
        fused: f.fused.len(),
    }
}

/// Equal to rounding: `|a − b| ≤ tol · max |b|` element by element.
fn close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    let scale = b.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (u, v)) in a.data().iter().zip(b.data()).enumerate() {
        assert!(
            (u - v).abs() <= tol * scale,
            "{what}: element {i}: folded {u:e}, unfused {v:e} (largest {scale:e})"
        );
    }
}

fn same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (i, (u, v)) in a.data().iter().zip(b.data()).enumerate() {
        assert!(
            u.to_bits() == v.to_bits() || (*u == 0.0 && *v == 0.0),
            "{what}: element {i}: fused {u:e}, unfused {v:e}"
        );
    }
}

/// A ResNet block as compilation leaves it (batch norms folded into the
/// convolutions' biases): conv → relu, conv + shortcut → relu.
fn compiled_block() -> Graph {
    let mut g = Graph::new("block", &[4, 8, 8]);
    let conv = |stride| Layer::Conv2d {
        in_channels: 4,
        out_channels: 4,
        kernel: [3, 3],
        stride: [stride, stride],
        padding: [1, 1],
        groups: 1,
        bias: true,
    };
    let steps: [(&str, Layer, &[&str]); 9] = [
        ("c1", conv(1), &["input"]),
        ("r1", Layer::Relu, &["c1"]),
        ("c2", conv(1), &["r1"]),
        ("add", Layer::Add, &["c2", "r1"]),
        ("r2", Layer::Relu, &["add"]),
        ("c3", conv(2), &["r2"]),
        ("r3", Layer::Relu, &["c3"]),
        ("pool", Layer::GlobalAvgPool, &["r3"]),
        (
            "fc",
            Layer::Linear {
                in_features: 4,
                out_features: 10,
                bias: true,
            },
            &["pool"],
        ),
    ];
    for (name, layer, inputs) in steps {
        g.push(name, layer, inputs).expect("push");
    }
    g
}

/// A freshly initialised model with running statistics away from the
/// initial 0/1, so that evaluation differs from training.
fn model_with_stats(graph: Graph) -> Model {
    let mut model = Model::init(graph, 5).expect("init");
    for (k, (pname, t)) in model.params.iter_mut().enumerate() {
        if pname.ends_with("running_mean") || pname.ends_with("running_var") {
            let shift = if pname.ends_with("var") { 1.0 } else { 0.0 };
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                *v = shift + 0.1 * (((i + k) % 7) as f32 - 3.0);
            }
        }
    }
    model
}

/// Evaluation-mode logits and the number of fused nodes, on a tape that
/// records gradients or not.
fn eval(model: &Model, x: &Tensor, masks: Option<&ChannelMasks>, grad: bool) -> (Tensor, usize) {
    let mut tape = if grad { Tape::new() } else { Tape::no_grad() };
    let input = tape.constant(x.clone());
    let opts = RunOptions::eval().with_masks(masks);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let e = forward(model, &mut tape, input, &opts, &mut rng).expect("eval");
    (tape.value(e.output).expect("value").clone(), e.fused.len())
}

#[test]
fn one_folded_layer_equals_convolution_then_batch_norm() {
    // conv (with a bias) → bn → relu and conv → bn, 64 images of 16x16
    // with 16 channels: 2^18 output values, enough to fold
    let mut g = Graph::new("layer", &[8, 16, 16]);
    let conv = |cin, bias| Layer::Conv2d {
        in_channels: cin,
        out_channels: 16,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        groups: 1,
        bias,
    };
    let bn = Layer::BatchNorm {
        features: 16,
        eps: 1e-5,
        momentum: 0.1,
    };
    let steps: [(&str, Layer, &[&str]); 7] = [
        ("c1", conv(8, true), &["input"]),
        ("b1", bn.clone(), &["c1"]),
        ("r1", Layer::Relu, &["b1"]),
        ("c2", conv(16, false), &["r1"]),
        ("b2", bn, &["c2"]),
        ("pool", Layer::GlobalAvgPool, &["b2"]),
        (
            "fc",
            Layer::Linear {
                in_features: 16,
                out_features: 10,
                bias: true,
            },
            &["pool"],
        ),
    ];
    for (name, layer, inputs) in steps {
        g.push(name, layer, inputs).expect("push");
    }
    let mut model = model_with_stats(g);
    // a conv bias away from 0 and γ, β away from 1, 0
    for (k, (pname, t)) in model.params.iter_mut().enumerate() {
        if pname == "c1.bias" || pname.starts_with('b') {
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                *v += 0.05 * (((i + k) % 5) as f32 - 2.0);
            }
        }
    }
    let x = Tensor::randn(
        vec![64, 8, 16, 16],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(6),
    );
    let (folded, n_folded) = eval(&model, &x, None, false);
    let (plain, _) = eval(&model, &x, Some(&unfusing_masks(&model)), false);
    let (_, n_recorded) = eval(&model, &x, None, true);
    assert_eq!((n_recorded, n_folded), (1, 3));
    close("folded layer", &folded, &plain, 1e-6);
}

#[test]
fn inference_folds_convolutions_into_batch_norms_to_rounding() {
    // 64 images of 16x16: the first stage's outputs are large enough to
    // fold (interp.rs, `worth_folding`), the later ones are not.
    let model = model_with_stats(zoo::build("resnet20", &[3, 16, 16], 10).expect("zoo"));
    let x = Tensor::randn(
        vec![64, 3, 16, 16],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(4),
    );
    let (folded, n_folded) = eval(&model, &x, None, false);
    let (recorded, n_recorded) = eval(&model, &x, None, true);
    let (plain, n_plain) = eval(&model, &x, Some(&unfusing_masks(&model)), false);
    assert_eq!(n_plain, 0);
    // the ReLU fusions of a recording tape, plus the stem's and the first
    // stage's six convolutions
    assert_eq!(n_recorded, 19 + 9);
    assert_eq!(n_folded, n_recorded + 7);
    same("recorded eval output", &recorded, &plain);
    // rounding differences of seven layers, carried through twenty
    close("folded eval output", &folded, &plain, 1e-4);
    // at batch 2 nothing is worth folding: bit for bit again
    let x2 = Tensor::randn(
        vec![2, 3, 16, 16],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(5),
    );
    let (small, n_small) = eval(&model, &x2, None, false);
    assert_eq!(n_small, 19 + 9);
    same(
        "batch-2 eval output",
        &small,
        &eval(&model, &x2, Some(&unfusing_masks(&model)), false).0,
    );
}

#[test]
fn fused_models_match_the_unfused_chain_bit_for_bit() {
    let zoo_graph = |name: &str, input: &[usize]| zoo::build(name, input, 10).expect("zoo");
    for (name, input, fusions) in [
        ("resnet20", [3usize, 16, 16], 19 + 9),
        ("vgg-like", [3, 32, 32], 0),
        ("lenet5", [1, 28, 28], 2),
        ("block", [4, 8, 8], 3 + 1),
    ] {
        let graph = if name == "block" {
            compiled_block()
        } else {
            zoo_graph(name, &input)
        };
        let model = model_with_stats(graph);
        let mut shape = vec![2];
        shape.extend_from_slice(&input);
        let x = Tensor::randn(shape, 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(3));
        let fused = run(&model, &x, None);
        let masks = unfusing_masks(&model);
        let plain = run(&model, &x, Some(&masks));
        assert_eq!(plain.fused, 0, "{name}");
        if fusions > 0 {
            assert_eq!(fused.fused, fusions, "{name}: fused nodes");
        } else {
            assert!(fused.fused > 0, "{name}: nothing fused");
        }
        same(
            &format!("{name} train output"),
            &fused.train_out,
            &plain.train_out,
        );
        same(
            &format!("{name} eval output"),
            &fused.eval_out,
            &plain.eval_out,
        );
        assert_eq!(fused.stats.len(), plain.stats.len(), "{name}");
        for ((n, m, v), (_, m0, v0)) in fused.stats.iter().zip(&plain.stats) {
            same(&format!("{name} {n} mean"), m, m0);
            same(&format!("{name} {n} var"), v, v0);
        }
        assert_eq!(fused.grads.len(), plain.grads.len(), "{name}");
        for (n, g) in &fused.grads {
            same(&format!("{name} gradient of {n}"), g, &plain.grads[n]);
        }
    }
}

/// In training a convolution read only by a batch norm runs together with
/// it, and keeps its own output as its node's value: the convolution's
/// output, which the unfused run records for the same node, bit for bit.
#[test]
fn training_keeps_the_absorbed_convolutions_outputs() {
    let model = model_with_stats(zoo::build("resnet20", &[3, 16, 16], 10).expect("zoo"));
    let x = Tensor::randn(
        vec![4, 3, 16, 16],
        0.0,
        1.0,
        &mut ChaCha8Rng::seed_from_u64(6),
    );
    let conv = model.graph.index_of("layer2.1.conv1").expect("node");
    let masks = unfusing_masks(&model);
    let mut outputs = Vec::new();
    for m in [None, Some(&masks)] {
        let mut tape = Tape::new();
        let input = tape.constant(x.clone());
        let opts = RunOptions::train(GateNoise::new(0, 0)).with_masks(m);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let f = forward(&model, &mut tape, input, &opts, &mut rng).expect("forward");
        assert!(!f.fused.contains(&conv));
        outputs.push(tape.value(f.nodes[conv]).expect("value").clone());
    }
    assert_eq!(outputs[0].shape(), [4, 32, 8, 8]);
    same("layer2.1.conv1 output", &outputs[0], &outputs[1]);
}
