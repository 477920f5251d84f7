//! Folding of batch norms, SBP gates and scale gates.

mod common;

use common::{bn, conv, keep_only, linear, nodes_of_kind, pool2};
use prune_compiler::{compile, verify, CompileOptions};
use prune_core::Tensor;
use prune_graph::ir::{Graph, Layer};
use prune_graph::{predict, ChannelMasks, Model};

fn fold_bn() -> CompileOptions {
    CompileOptions {
        fold_bn: true,
        ..Default::default()
    }
}

#[test]
fn bn_folding_is_exact_without_masks() {
    let mut g = Graph::new("bnfold", &[3, 8, 8]);
    g.push("conv1", conv(3, 6, 3, 1, false), &["input"])
        .unwrap();
    g.push("bn1", bn(6), &["conv1"]).unwrap();
    g.push("relu1", Layer::Relu, &["bn1"]).unwrap();
    g.push("conv2", conv(6, 4, 3, 1, true), &["relu1"]).unwrap();
    g.push("bn2", bn(4), &["conv2"]).unwrap();
    g.push("relu2", Layer::Relu, &["bn2"]).unwrap();
    g.push("flatten", Layer::Flatten, &["relu2"]).unwrap();
    g.push("fc1", linear(256, 8), &["flatten"]).unwrap();
    g.push("bn3", bn(8), &["fc1"]).unwrap();
    g.push("relu3", Layer::Relu, &["bn3"]).unwrap();
    g.push("fc2", linear(8, 3), &["relu3"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 5);
    let c = compile(&m, &ChannelMasks::new(), &fold_bn()).unwrap();
    assert!(nodes_of_kind(&c.model.graph, "batch_norm").is_empty());
    assert_eq!(
        c.model.graph.node("conv1").unwrap().layer,
        Layer::Conv2d {
            in_channels: 3,
            out_channels: 6,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: 1,
            bias: true,
        }
    );
    // Independent check of conv1's folded bias: b' = β − γ·mean/√(var+ε).
    let p = &m.params;
    let (gm, bt, mn, vr) = (
        p.get("bn1.weight").unwrap().data(),
        p.get("bn1.bias").unwrap().data(),
        p.get("bn1.running_mean").unwrap().data(),
        p.get("bn1.running_var").unwrap().data(),
    );
    let b = c.model.params.get("conv1.bias").unwrap().data();
    for k in 0..6 {
        let want = bt[k] - gm[k] * mn[k] / (vr[k] + 1e-5).sqrt();
        assert!((b[k] - want).abs() < 1e-5, "bias {k}: {} vs {want}", b[k]);
    }
    let x = verify::random_batch(&m, 6, 42).unwrap();
    let a = predict(&m, x.clone(), None).unwrap();
    let z = predict(&c.model, x, None).unwrap();
    assert!(verify::max_rel_error(&z, &a).unwrap() <= 1e-5);
}

#[test]
fn bn_stays_when_its_producer_has_other_consumers() {
    let mut g = Graph::new("shared", &[2, 4, 4]);
    g.push("conv", conv(2, 3, 1, 0, false), &["input"]).unwrap();
    g.push("bn", bn(3), &["conv"]).unwrap();
    g.push("add", Layer::Add, &["bn", "conv"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["add"]).unwrap();
    g.push("fc", linear(3, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 6);
    let c = compile(&m, &ChannelMasks::new(), &fold_bn()).unwrap();
    assert!(c.model.graph.node("bn").is_ok());
    assert!(c
        .report
        .notes
        .iter()
        .any(|n| n.contains("batch norm 'bn' kept")));
}

#[test]
fn sbp_gate_after_relu_folds_back_through_relu() {
    // conv → relu → sbp → max pool → conv: E[θ] ≥ 0 commutes with the ReLU,
    // so the factor lands in conv1's rows.
    let mut g = Graph::new("fwd", &[2, 8, 8]);
    g.push("conv1", conv(2, 5, 3, 1, true), &["input"]).unwrap();
    g.push("relu1", Layer::Relu, &["conv1"]).unwrap();
    g.push("sbp", Layer::SbpGate { units: 5 }, &["relu1"])
        .unwrap();
    g.push("pool", pool2(), &["sbp"]).unwrap();
    g.push("conv2", conv(5, 3, 3, 1, false), &["pool"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["conv2"]).unwrap();
    g.push("fc", linear(3, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 8);
    m.params.insert("sbp.log_sigma", Tensor::full([5], -3.0));
    let mut masks = ChannelMasks::new();
    masks.insert("sbp".into(), keep_only(5, &[0, 2, 3]));
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    assert!(nodes_of_kind(&c.model.graph, "sbp_gate").is_empty());
    let folded = c.report.layers.iter().find(|l| l.name == "sbp").unwrap();
    assert_eq!(folded.folded_into.as_deref(), Some("conv1"));
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}

#[test]
fn gate_with_shared_input_folds_into_consumers() {
    // relu1 feeds both the gate and a second branch, so the gate cannot fold
    // backwards; γ > 0 commutes with the max pool, so it folds into conv2.
    let mut g = Graph::new("fwd2", &[2, 6, 6]);
    g.push("conv1", conv(2, 4, 3, 1, true), &["input"]).unwrap();
    g.push("relu1", Layer::Relu, &["conv1"]).unwrap();
    g.push("s", Layer::Scale { units: 4 }, &["relu1"]).unwrap();
    g.push("pool", pool2(), &["s"]).unwrap();
    g.push("conv2", conv(4, 4, 1, 0, false), &["pool"]).unwrap();
    g.push("gap2", Layer::GlobalAvgPool, &["conv2"]).unwrap();
    g.push("gap1", Layer::GlobalAvgPool, &["relu1"]).unwrap();
    g.push("fc1", linear(4, 4), &["gap1"]).unwrap();
    g.push("add", Layer::Add, &["gap2", "fc1"]).unwrap();
    g.push("fc", linear(4, 2), &["add"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 12);
    m.params.insert(
        "s.weight",
        Tensor::from_vec([4], vec![0.5, 2.0, 1.5, 3.0]).unwrap(),
    );
    let c = compile(&m, &ChannelMasks::new(), &CompileOptions::default()).unwrap();
    let s = c.report.layers.iter().find(|l| l.name == "s").unwrap();
    assert_eq!(s.folded_into.as_deref(), Some("conv2"));
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}

#[test]
fn gate_feeding_a_residual_sum_becomes_a_scale_layer() {
    let mut g = Graph::new("res", &[3, 6, 6]);
    g.push("conv0", conv(3, 4, 3, 1, false), &["input"])
        .unwrap();
    g.push("bn0", bn(4), &["conv0"]).unwrap();
    g.push("relu0", Layer::Relu, &["bn0"]).unwrap();
    g.push("conv1", conv(4, 4, 3, 1, false), &["relu0"])
        .unwrap();
    g.push("bn1", bn(4), &["conv1"]).unwrap();
    g.push("add", Layer::Add, &["bn1", "relu0"]).unwrap();
    g.push("sbp", Layer::SbpGate { units: 4 }, &["add"])
        .unwrap();
    g.push("relu", Layer::Relu, &["sbp"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["relu"]).unwrap();
    g.push("fc", linear(4, 2), &["gap"]).unwrap();
    g.push("add2", Layer::Add, &["fc", "fc"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 13);
    m.params.insert("sbp.log_sigma", Tensor::full([4], -3.0));
    let mut masks = ChannelMasks::new();
    masks.insert("sbp".into(), keep_only(4, &[1, 2, 3]));
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    // The gate after the sum cannot fold backwards; the relu → gap → fc path
    // after it absorbs the factor.
    assert!(nodes_of_kind(&c.model.graph, "sbp_gate").is_empty());
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
    // Negative scale factors cannot cross a ReLU: the gate stays as a scale.
    let mut g2 = m.graph.clone();
    let i = g2.index_of("sbp").unwrap();
    g2.nodes[i].layer = Layer::Scale { units: 4 };
    let mut m2 = Model {
        graph: g2,
        params: m.params.clone(),
    };
    m2.params.remove("sbp.mu");
    m2.params.remove("sbp.log_sigma");
    m2.params.insert(
        "sbp.weight",
        Tensor::from_vec([4], vec![1.0, -2.0, 0.5, 1.0]).unwrap(),
    );
    let c2 = compile(&m2, &masks, &CompileOptions::default()).unwrap();
    assert_eq!(
        nodes_of_kind(&c2.model.graph, "scale"),
        vec!["sbp".to_string()]
    );
    assert_eq!(
        c2.model.params.get("sbp.weight").unwrap().data(),
        &[-2.0, 0.5, 1.0]
    );
    assert!(c2.report.notes.iter().any(|n| n.contains("'sbp'")));
}

#[test]
fn sbp_gate_that_cannot_fold_is_replaced_by_its_eval_factor() {
    // The gate feeds an add directly: no fold possible.
    let mut g = Graph::new("nofold", &[3, 6, 6]);
    g.push("conv0", conv(3, 4, 3, 1, false), &["input"])
        .unwrap();
    g.push("bn0", bn(4), &["conv0"]).unwrap();
    g.push("relu0", Layer::Relu, &["bn0"]).unwrap();
    g.push("sbp", Layer::SbpGate { units: 4 }, &["relu0"])
        .unwrap();
    g.push("add", Layer::Add, &["sbp", "relu0"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["add"]).unwrap();
    g.push("fc", linear(4, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 14);
    let c = compile(&m, &ChannelMasks::new(), &CompileOptions::default()).unwrap();
    assert_eq!(
        nodes_of_kind(&c.model.graph, "scale"),
        vec!["sbp".to_string()]
    );
    let mu = m.params.get("sbp.mu").unwrap().data();
    let ls = m.params.get("sbp.log_sigma").unwrap().data();
    let s = c.model.params.get("sbp.weight").unwrap().data();
    for k in 0..4 {
        let (a, b) = (f64::from(mu[k]), f64::from(ls[k]));
        let want = if prune_core::sbp::keep(a, b) {
            prune_core::sbp::expected_theta(a, b)
        } else {
            0.0
        };
        assert!(
            (f64::from(s[k]) - want).abs() <= 1e-6 * want.max(1.0),
            "{k}"
        );
    }
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}

#[test]
fn scale_gate_after_bn_folds_into_bn_then_conv() {
    let mut g = Graph::new("bnscale", &[3, 6, 6]);
    g.push("conv", conv(3, 5, 3, 1, false), &["input"]).unwrap();
    g.push("bn", bn(5), &["conv"]).unwrap();
    g.push("s", Layer::Scale { units: 5 }, &["bn"]).unwrap();
    g.push("relu", Layer::Relu, &["s"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["relu"]).unwrap();
    g.push("fc", linear(5, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 15);
    let mut masks = ChannelMasks::new();
    masks.insert("s".into(), keep_only(5, &[0, 4]));
    let c = compile(&m, &masks, &fold_bn()).unwrap();
    let names: Vec<&str> = c
        .model
        .graph
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(names, ["input", "conv", "relu", "gap", "fc"]);
    let r = &c.report;
    assert_eq!(
        r.layers
            .iter()
            .find(|l| l.name == "s")
            .unwrap()
            .folded_into
            .as_deref(),
        Some("bn")
    );
    assert_eq!(
        r.layers
            .iter()
            .find(|l| l.name == "bn")
            .unwrap()
            .folded_into
            .as_deref(),
        Some("conv")
    );
    assert!(r.verify_max_rel_error.unwrap() <= 1e-5);
}
