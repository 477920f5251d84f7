//! The interpreter: shape errors, masks, train/eval semantics, gradients.

use prune_core::sbp::GateNoise;
use prune_core::{Tape, Tensor};
use prune_graph::interp::apply_bn_updates;
use prune_graph::{forward, predict, ChannelMasks, Graph, Layer, Model, RunOptions};
use rand::SeedableRng;

fn small() -> Graph {
    let mut g = Graph::new("small", &[2, 6, 6]);
    let conv = Layer::Conv2d {
        in_channels: 2,
        out_channels: 3,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        groups: 1,
        bias: true,
    };
    g.push("conv", conv, &["input"]).expect("push");
    g.push(
        "bn",
        Layer::BatchNorm {
            features: 3,
            eps: 1e-5,
            momentum: 0.1,
        },
        &["conv"],
    )
    .expect("push");
    g.push("relu", Layer::Relu, &["bn"]).expect("push");
    g.push(
        "pool",
        Layer::MaxPool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        },
        &["relu"],
    )
    .expect("push");
    g.push("flat", Layer::Flatten, &["pool"]).expect("push");
    g.push(
        "fc",
        Layer::Linear {
            in_features: 27,
            out_features: 4,
            bias: true,
        },
        &["flat"],
    )
    .expect("push");
    g
}

fn rng() -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(0)
}

#[test]
fn shape_errors_name_the_nodes() {
    let mut g = small();
    g.nodes[6].layer = Layer::Linear {
        in_features: 30,
        out_features: 4,
        bias: true,
    };
    let e = prune_graph::infer_shapes(&g).unwrap_err().to_string();
    assert!(
        e.contains("'fc'") && e.contains("'flat'") && e.contains("[27]"),
        "{e}"
    );
    let e = small()
        .push("x", Layer::Relu, &["missing"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn masks_zero_channels_and_eval_is_deterministic() {
    let m = Model::init(small(), 1).expect("init");
    let x = Tensor::uniform([2, 2, 6, 6], -1.0, 1.0, &mut rng());
    let a = predict(&m, x.clone(), None).expect("predict");
    assert_eq!(a, predict(&m, x.clone(), None).expect("predict"));
    let mut masks = ChannelMasks::new();
    masks.insert("relu".into(), vec![true, false, true]);
    let mut tape = Tape::no_grad();
    let input = tape.constant(x);
    let opts = RunOptions::eval().with_masks(Some(&masks));
    let f = forward(&m, &mut tape, input, &opts, &mut rng()).expect("forward");
    let relu = tape.value(f.nodes[3]).expect("relu out");
    for n in 0..2 {
        let ch = &relu.data()[(n * 3 + 1) * 36..(n * 3 + 2) * 36];
        assert!(ch.iter().all(|v| *v == 0.0));
    }
    masks.insert("relu".into(), vec![true]);
    let mut tape = Tape::no_grad();
    let input = tape.constant(Tensor::zeros([1, 2, 6, 6]));
    let opts = RunOptions::eval().with_masks(Some(&masks));
    let e = forward(&m, &mut tape, input, &opts, &mut rng())
        .err()
        .expect("bad mask");
    assert!(e.to_string().contains("relu"), "{e}");
}

#[test]
fn train_mode_updates_running_statistics() {
    let mut m = Model::init(small(), 1).expect("init");
    let x = Tensor::uniform([4, 2, 6, 6], 0.0, 2.0, &mut rng());
    let updates = {
        let mut tape = Tape::new();
        let input = tape.constant(x);
        forward(
            &m,
            &mut tape,
            input,
            &RunOptions::train(GateNoise::new(0, 0)),
            &mut rng(),
        )
        .expect("fwd")
        .bn_updates
    };
    assert_eq!(updates.len(), 1);
    apply_bn_updates(&mut m, &updates).expect("apply");
    let rm = m.params.get("bn.running_mean").expect("rm");
    for (r, b) in rm.data().iter().zip(updates[0].mean.data()) {
        assert!((r - 0.1 * b).abs() < 1e-6);
    }
}

/// Σ logits ⊙ R in train mode, and the tape's gradient of every parameter.
fn loss_and_grads(
    m: &Model,
    x: &Tensor,
    r: &Tensor,
) -> (f64, std::collections::BTreeMap<String, Tensor>) {
    let mut tape = Tape::new();
    let input = tape.constant(x.clone());
    let f = forward(
        m,
        &mut tape,
        input,
        &RunOptions::train(GateNoise::new(0, 0)),
        &mut rng(),
    )
    .expect("forward");
    let rv = tape.constant(r.clone());
    let p = tape.mul(f.output, rv).expect("mul");
    let l = tape.sum_all(p).expect("sum");
    let value = tape.value(l).expect("v").item().expect("scalar") as f64;
    let mut g = tape.backward(l).expect("backward");
    let grads = f
        .params
        .iter()
        .filter_map(|(n, v)| g.take(*v).map(|t| (n.clone(), t)))
        .collect();
    (value, grads)
}

#[test]
fn interpreter_gradients_match_finite_differences() {
    // average pooling: max pooling's kinks make finite differences unreliable
    let mut g = small();
    g.nodes[4].layer = Layer::AvgPool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    let m = Model::init(g, 2).expect("init");
    let x = Tensor::uniform([3, 2, 6, 6], -1.0, 1.0, &mut rng());
    let r = Tensor::uniform(
        [3, 4],
        -1.0,
        1.0,
        &mut rand_chacha::ChaCha8Rng::seed_from_u64(9),
    );
    let (_, grads) = loss_and_grads(&m, &x, &r);
    let eps = 1e-3f32;
    for name in [
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "fc.weight",
        "fc.bias",
    ] {
        let g = grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g.numel();
        for j in (0..n).step_by((n / 6).max(1)) {
            let mut mp = m.clone();
            mp.params.get_mut(name).expect("p").data_mut()[j] += eps;
            let mut mm = m.clone();
            mm.params.get_mut(name).expect("p").data_mut()[j] -= eps;
            let num = (loss_and_grads(&mp, &x, &r).0 - loss_and_grads(&mm, &x, &r).0)
                / (2.0 * eps as f64);
            let a = g.data()[j] as f64;
            assert!(
                (a - num).abs() <= 3e-3 + 3e-2 * a.abs().max(num.abs()),
                "{name}[{j}]: analytic {a}, numeric {num}"
            );
        }
    }
}
