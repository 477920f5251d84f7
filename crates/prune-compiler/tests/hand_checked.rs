//! Small graphs whose sliced and folded weights are checked by hand.

mod common;

use common::{conv, keep_only, linear};
use prune_compiler::{compile, CompileOptions};
use prune_core::Tensor;
use prune_graph::ir::{Graph, Layer};
use prune_graph::{ChannelMasks, Model};

fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), data.to_vec()).unwrap()
}

fn input_names(g: &Graph, node: &str) -> Vec<String> {
    g.node(node).unwrap().inputs.clone()
}

/// input [3] → fc1 (3→4) → g (scale) → relu → fc2 (4→2).
fn mlp() -> Model {
    let mut g = Graph::new("mlp", &[3, 1, 1]);
    g.push("flatten", Layer::Flatten, &["input"]).unwrap();
    g.push("fc1", linear(3, 4), &["flatten"]).unwrap();
    g.push("g", Layer::Scale { units: 4 }, &["fc1"]).unwrap();
    g.push("relu", Layer::Relu, &["g"]).unwrap();
    g.push("fc2", linear(4, 2), &["relu"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    let w1: Vec<f32> = (0..12).map(|i| i as f32).collect();
    m.params.insert("fc1.weight", t(&[4, 3], &w1));
    m.params.insert("fc1.bias", t(&[4], &[1., 2., 3., 4.]));
    m.params.insert("g.weight", t(&[4], &[2., 3., 4., 5.]));
    let w2: Vec<f32> = (0..8).map(|i| 10.0 + i as f32).collect();
    m.params.insert("fc2.weight", t(&[2, 4], &w2));
    m.params.insert("fc2.bias", t(&[2], &[0.5, -0.5]));
    m
}

#[test]
fn mlp_rows_columns_and_scale_fold() {
    let m = mlp();
    let mut masks = ChannelMasks::new();
    masks.insert("g".into(), vec![true, false, true, false]);
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    let g = &c.model.graph;
    assert!(g.node("g").is_err(), "scale gate folded away");
    assert_eq!(input_names(g, "relu"), vec!["fc1".to_string()]);
    assert_eq!(
        g.node("fc1").unwrap().layer,
        Layer::Linear {
            in_features: 3,
            out_features: 2,
            bias: true
        }
    );
    // Rows 0 and 2 of fc1, times γ = 2 and 4.
    let w1 = c.model.params.get("fc1.weight").unwrap();
    assert_eq!(w1.shape(), &[2, 3]);
    assert_eq!(w1.data(), &[0., 2., 4., 24., 28., 32.]);
    assert_eq!(c.model.params.get("fc1.bias").unwrap().data(), &[2., 12.]);
    // Columns 0 and 2 of fc2.
    let w2 = c.model.params.get("fc2.weight").unwrap();
    assert_eq!(w2.shape(), &[2, 2]);
    assert_eq!(w2.data(), &[10., 12., 14., 16.]);
    assert_eq!(c.model.params.get("fc2.bias").unwrap().data(), &[0.5, -0.5]);
    assert!(c.model.params.get("g.weight").is_err());
    let r = &c.report;
    assert_eq!(r.params_before, 12 + 4 + 4 + 8 + 2);
    assert_eq!(r.params_after, 6 + 2 + 4 + 2);
    assert_eq!(r.flops_before, 12 + 8);
    assert_eq!(r.flops_after, 6 + 4);
    let fc1 = r.layers.iter().find(|l| l.name == "fc1").unwrap();
    assert_eq!((fc1.channels_before, fc1.channels_after), (4, 2));
    let gate = r.layers.iter().find(|l| l.name == "g").unwrap();
    assert_eq!(gate.folded_into.as_deref(), Some("fc1"));
    assert!(r.verify_max_rel_error.unwrap() <= 1e-5);
}

/// conv (2→3, 1x1) → s (scale) → relu → flatten (3·2·2) → fc (12→2).
fn conv_flatten() -> Model {
    let mut g = Graph::new("cf", &[2, 2, 2]);
    g.push("conv", conv(2, 3, 1, 0, true), &["input"]).unwrap();
    g.push("s", Layer::Scale { units: 3 }, &["conv"]).unwrap();
    g.push("relu", Layer::Relu, &["s"]).unwrap();
    g.push("flatten", Layer::Flatten, &["relu"]).unwrap();
    g.push("f", Layer::Scale { units: 12 }, &["flatten"])
        .unwrap();
    g.push("fc", linear(12, 2), &["f"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    m.params
        .insert("conv.weight", t(&[3, 2, 1, 1], &[1., 2., 3., 4., 5., 6.]));
    m.params.insert("conv.bias", t(&[3], &[0.1, 0.2, 0.3]));
    m.params.insert("s.weight", t(&[3], &[1., 1., 10.]));
    let f: Vec<f32> = (0..12).map(|i| 1.0 + i as f32 / 100.0).collect();
    m.params.insert("f.weight", t(&[12], &f));
    let w: Vec<f32> = (0..24).map(|i| i as f32).collect();
    m.params.insert("fc.weight", t(&[2, 12], &w));
    m
}

#[test]
fn flatten_expands_channels_to_blocks_and_zeroes_gated_features() {
    let m = conv_flatten();
    let mut masks = ChannelMasks::new();
    masks.insert("s".into(), vec![true, false, true]);
    // Features: drop feature 8 (channel 2, position 0) and every feature of
    // channel 1 is kept by this gate but removed by the channel mask.
    let mut f = vec![true; 12];
    f[8] = false;
    masks.insert("f".into(), f);
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    let p = &c.model.params;
    // conv rows 0 and 2; channel 2 scaled by 10 (backward fold of `s`).
    assert_eq!(p.get("conv.weight").unwrap().data(), &[1., 2., 50., 60.]);
    let b = p.get("conv.bias").unwrap().data();
    assert!(
        (b[0] - 0.1).abs() < 1e-6 && (b[1] - 3.0).abs() < 1e-6,
        "{b:?}"
    );
    // fc reads the features of channels 0 and 2 (0..4, 8..12), each scaled
    // by the feature gate (forward fold of `f` into the fc columns); feature
    // 8 survives with its channel but has a zero column, so a `Select`
    // gathers the seven live features and fc shrinks to them.
    let fc = p.get("fc.weight").unwrap();
    assert_eq!(fc.shape(), &[2, 7]);
    let cols = [0usize, 1, 2, 3, 9, 10, 11];
    for (o, row) in fc.data().chunks(7).enumerate() {
        for (k, &col) in cols.iter().enumerate() {
            let want = (o * 12 + col) as f32 * (1.0 + col as f32 / 100.0);
            assert!(
                (row[k] - want).abs() < 1e-5,
                "fc[{o},{k}] = {} vs {want}",
                row[k]
            );
        }
    }
    assert_eq!(
        c.model.graph.node("fc.select").unwrap().layer,
        Layer::Select {
            indices: vec![0, 1, 2, 3, 5, 6, 7]
        }
    );
    assert_eq!(
        c.model.graph.node("fc").unwrap().layer,
        Layer::Linear {
            in_features: 7,
            out_features: 2,
            bias: true
        }
    );
    let f_report = c.report.layers.iter().find(|l| l.name == "f").unwrap();
    assert_eq!((f_report.channels_after, f_report.channels_zeroed), (8, 1));
    assert_eq!(c.effective_masks["s"], vec![true, false, true]);
    let mut want_f = vec![true; 12];
    for (i, w) in want_f.iter_mut().enumerate() {
        *w = !(4..=8).contains(&i);
    }
    assert_eq!(c.effective_masks["f"], want_f);
    assert!(c.model.graph.nodes.iter().all(|n| !n.layer.is_gate()));
}

#[test]
fn depthwise_conv_shrinks_groups_in_and_out_together() {
    let mut g = Graph::new("dw", &[2, 3, 3]);
    g.push("pw", conv(2, 3, 1, 0, false), &["input"]).unwrap();
    g.push("s", Layer::Scale { units: 3 }, &["pw"]).unwrap();
    g.push(
        "dw",
        Layer::Conv2d {
            in_channels: 3,
            out_channels: 3,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            groups: 3,
            bias: false,
        },
        &["s"],
    )
    .unwrap();
    g.push("relu", Layer::Relu, &["dw"]).unwrap();
    g.push("head", conv(3, 1, 1, 0, false), &["relu"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    m.params
        .insert("pw.weight", t(&[3, 2, 1, 1], &[1., 1., 2., 2., 3., 3.]));
    m.params.insert("s.weight", t(&[3], &[1., 1., 1.]));
    m.params
        .insert("dw.weight", t(&[3, 1, 1, 1], &[7., 8., 9.]));
    m.params
        .insert("head.weight", t(&[1, 3, 1, 1], &[4., 5., 6.]));
    let mut masks = ChannelMasks::new();
    masks.insert("s".into(), keep_only(3, &[0, 2]));
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    let gr = &c.model.graph;
    assert_eq!(
        gr.node("dw").unwrap().layer,
        Layer::Conv2d {
            in_channels: 2,
            out_channels: 2,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            groups: 2,
            bias: false,
        }
    );
    let p = &c.model.params;
    assert_eq!(p.get("pw.weight").unwrap().data(), &[1., 1., 3., 3.]);
    assert_eq!(p.get("dw.weight").unwrap().data(), &[7., 9.]);
    assert_eq!(p.get("head.weight").unwrap().data(), &[4., 6.]);
}

#[test]
fn batch_norm_and_sbp_parameters_are_sliced() {
    let mut g = Graph::new("bn", &[3, 4, 4]);
    g.push("conv", conv(3, 4, 3, 1, false), &["input"]).unwrap();
    g.push("bn", common::bn(4), &["conv"]).unwrap();
    g.push("relu", Layer::Relu, &["bn"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["relu"]).unwrap();
    g.push("fc", linear(4, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 1).unwrap();
    common::randomize(&mut m, 3);
    let gamma = m.params.get("bn.weight").unwrap().data().to_vec();
    let mean = m.params.get("bn.running_mean").unwrap().data().to_vec();
    let mut masks = ChannelMasks::new();
    masks.insert("bn".into(), keep_only(4, &[1, 3]));
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    let p = &c.model.params;
    assert_eq!(p.get("bn.weight").unwrap().data(), &[gamma[1], gamma[3]]);
    assert_eq!(
        p.get("bn.running_mean").unwrap().data(),
        &[mean[1], mean[3]]
    );
    assert_eq!(p.get("conv.weight").unwrap().shape(), &[2, 3, 3, 3]);
    assert_eq!(p.get("fc.weight").unwrap().shape(), &[2, 2]);
    let fc_before = m.params.get("fc.weight").unwrap().data();
    assert_eq!(
        p.get("fc.weight").unwrap().data(),
        &[fc_before[1], fc_before[3], fc_before[5], fc_before[7]]
    );
}
