//! The methods on the tape and in models: gradients of the SBP gate, the KL
//! term and the γ penalties against finite differences; gate placement;
//! rules read from models.

use prune_core::gradcheck::{check_gradients, GradcheckConfig};
use prune_core::sbp::{sbp_gate_train, sbp_kl, NoiseMode, NoiseStream};
use prune_core::{Tape, Tensor};
use prune_graph::{predict, zoo, Layer, Model, Regularizer};
use prune_reg::method::*;
use prune_reg::polarization::Polarization;
use rand::SeedableRng;
use std::collections::BTreeMap;

fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

fn cfg() -> GradcheckConfig {
    GradcheckConfig {
        eps: 1e-3,
        ..Default::default()
    }
}

#[test]
fn sbp_gate_gradients_match_finite_differences() {
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        let x = Tensor::uniform([3, 4, 2, 2], -1.0, 1.0, &mut rng(1));
        let mu = Tensor::from_vec([4], vec![-0.5, -1.0, -2.0, -0.2]).expect("mu");
        let ls = Tensor::from_vec([4], vec![-1.0, -0.5, 0.0, -2.0]).expect("ls");
        let report = check_gradients(
            &[x, mu, ls],
            |tape, v| sbp_gate_train(tape, v[0], v[1], v[2], NoiseStream::new(5, 2, 9), mode),
            cfg(),
        )
        .expect("gradcheck");
        assert!(report.passed, "{mode:?}: {}", report.worst);
    }
}

#[test]
fn kl_and_gamma_penalties_match_finite_differences() {
    let mu = Tensor::from_vec([5], vec![-3.0, -1.0, 0.0, 1.0, -8.0]).expect("mu");
    let ls = Tensor::from_vec([5], vec![-5.0, -1.0, 0.5, -2.0, 1.0]).expect("ls");
    let r = check_gradients(&[mu, ls], |tape, v| sbp_kl(tape, v[0], v[1]), cfg()).expect("gc");
    assert!(r.passed, "kl: {}", r.worst);

    // γ penalties through a model with two scale gates, away from kinks
    let mut g = prune_graph::Graph::new("toy", &[3]);
    g.push("a", Layer::Scale { units: 3 }, &["input"])
        .expect("push");
    g.push("b", Layer::Scale { units: 3 }, &["a"])
        .expect("push");
    let model = Model::init(g, 0).expect("init");
    let ga = Tensor::from_vec([3], vec![0.1, 0.7, 0.45]).expect("g");
    let gb = Tensor::from_vec([3], vec![0.9, 0.05, 0.3]).expect("g");
    let methods: Vec<Box<dyn Regularizer>> = vec![
        Box::new(PolarizationMethod {
            reg: Polarization::new(0.5, 1.2).expect("pol"),
            upper: 1.0,
        }),
        Box::new(SlimmingMethod { lambda: 0.3 }),
    ];
    for m in &methods {
        let r = check_gradients(
            &[ga.clone(), gb.clone()],
            |tape, v| {
                let mut params = BTreeMap::new();
                params.insert("a.weight".to_string(), v[0]);
                params.insert("b.weight".to_string(), v[1]);
                Ok(m.penalty(tape, &model, &params, 1)?.expect("a penalty"))
            },
            cfg(),
        )
        .expect("gc");
        assert!(r.passed, "{}: {}", m.name(), r.worst);
    }
}

#[test]
fn sbp_gates_go_where_the_paper_puts_them() {
    let dense = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let gated = insert_sbp_gates(&dense).expect("gates");
    assert_eq!(
        sbp_gates(&gated.graph),
        ["conv1.sbp", "conv2.sbp", "fc1.in_sbp", "fc2.in_sbp"]
    );
    // conv gates sit before the nonlinearity
    assert_eq!(
        gated.graph.node("relu1").expect("relu1").inputs,
        ["conv1.sbp"]
    );
    let units: Vec<usize> = gated
        .graph
        .nodes
        .iter()
        .filter_map(|n| match n.layer {
            Layer::SbpGate { units } => Some(units),
            _ => None,
        })
        .collect();
    assert_eq!(units, [20, 50, 800, 500]);
    // at initialization (μ = 0, log σ = −5) the gated net is nearly the dense one
    let x = Tensor::uniform([4, 1, 28, 28], -1.0, 1.0, &mut rng(2));
    let a = predict(&dense, x.clone(), None).expect("dense");
    let b = predict(&gated, x, None).expect("gated");
    let scale = a.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(a.max_abs_diff(&b).expect("shape") < 0.05 * scale);
    let fc = insert_sbp_gates(
        &Model::init(zoo::build("lenet-500-300", &[1, 28, 28], 10).expect("z"), 0).expect("i"),
    )
    .expect("g");
    assert_eq!(
        sbp_gates(&fc.graph),
        ["fc1.in_sbp", "fc2.in_sbp", "fc3.in_sbp"]
    );
}

#[test]
fn scale_gates_leave_the_function_unchanged() {
    let dense = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let gated = insert_scale_gates(&dense, 0.5).expect("gates");
    assert_eq!(
        gamma_gates(&gated.graph),
        ["conv1.scale", "conv2.scale", "fc1.scale"]
    );
    let x = Tensor::uniform([3, 1, 28, 28], -1.0, 1.0, &mut rng(3));
    let a = predict(&dense, x.clone(), None).expect("dense");
    let b = predict(&gated, x, None).expect("gated");
    assert!(a.max_abs_diff(&b).expect("shape") < 1e-4);
    // networks with BN regularize their BN scales instead
    let vgg = Model::init(zoo::build("vgg-like", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let v = insert_scale_gates(&vgg, 0.5).expect("gates");
    assert_eq!(v.graph.nodes.len(), vgg.graph.nodes.len());
    assert_eq!(gamma_gates(&v.graph).len(), 14);
}

#[test]
fn rules_read_models_without_changing_them() {
    let dense = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let mut gated = insert_sbp_gates(&dense).expect("gates");
    {
        let mu = gated.params.get_mut("conv1.sbp.mu").expect("mu");
        mu.data_mut()[..15].iter_mut().for_each(|v| *v = -15.0);
        let ls = gated.params.get_mut("conv1.sbp.log_sigma").expect("ls");
        ls.data_mut()[..15].iter_mut().for_each(|v| *v = 1.5);
    }
    let before = gated.clone();
    let masks = sbp_masks(&gated).expect("masks");
    assert_eq!(gated, before);
    let m = masks.get("conv1.sbp").expect("conv1");
    assert_eq!(m.kept(), 5);
    assert!(m.keep[15..].iter().all(|k| *k) && !m.keep[0]);
    let cm = to_channel_masks(&masks);
    assert_eq!(cm.len(), 4);

    let mut s = insert_scale_gates(&dense, 1.0).expect("scale");
    s.params
        .get_mut("conv2.scale.weight")
        .expect("g")
        .data_mut()
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = if i % 2 == 0 { 0.01 } else { 0.9 });
    let sm = slimming_rule(&s, 10.0).expect("slimming");
    assert!(sm.get("conv2.scale").expect("conv2").kept() < 50);
    let (pm, th) =
        polarization_rule(&s, prune_reg::threshold::ThresholdMode::PerLayer, 1.0).expect("pol");
    assert_eq!(pm.layers.len(), th.len());
    assert_eq!(pm.get("conv2.scale").expect("conv2").kept(), 25);
}

#[test]
fn sbp_method_penalty_is_kl_over_n_and_after_step_clips() {
    let dense = Model::init(
        zoo::build("lenet-300-100", &[1, 28, 28], 10).expect("zoo"),
        0,
    )
    .expect("init");
    let mut gated = insert_sbp_gates(&dense).expect("gates");
    let method = SbpMethod::default();
    let penalty = |method: &SbpMethod| {
        let mut tape = Tape::new();
        let mut params = BTreeMap::new();
        for g in sbp_gates(&gated.graph) {
            for f in ["mu", "log_sigma"] {
                let name = format!("{g}.{f}");
                params.insert(
                    name.clone(),
                    tape.param(gated.params.get(&name).expect("p")),
                );
            }
        }
        let p = method
            .penalty(&mut tape, &gated, &params, 1000)
            .expect("penalty")
            .expect("some");
        tape.value(p).expect("v").item().expect("scalar") as f64
    };
    let value = penalty(&method);
    // Per gate (784, 300, 100 units), from the f64 closed form.
    let per_gate: Vec<f64> = [784usize, 300, 100]
        .iter()
        .map(|&n| n as f64 * prune_core::sbp::kl(0.0, -5.0))
        .collect();
    let kl: f64 = per_gate.iter().sum();
    assert!(
        (value - kl / 1000.0).abs() < 1e-3 * kl / 1000.0,
        "{value} vs {}",
        kl / 1000.0
    );
    // Per-layer KL weights (the third gate, past the list, gets 1).
    let weighted = SbpMethod {
        kl_weights: vec![100.0, 10.0],
        ..SbpMethod::default()
    };
    let want = (100.0 * per_gate[0] + 10.0 * per_gate[1] + per_gate[2]) / 1000.0;
    let got = penalty(&weighted);
    assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
    // Weights of 1 are the plain SGVLB.
    let ones = SbpMethod {
        kl_weights: vec![1.0; 3],
        ..SbpMethod::default()
    };
    assert!((penalty(&ones) - value).abs() < 1e-5 * value);
    gated
        .params
        .get_mut("fc1.in_sbp.mu")
        .expect("mu")
        .data_mut()[0] = -40.0;
    method.after_step(&mut gated).expect("clip");
    assert_eq!(
        gated.params.get("fc1.in_sbp.mu").expect("mu").data()[0],
        -20.0
    );
}
