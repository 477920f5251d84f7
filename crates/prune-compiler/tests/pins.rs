//! Masked units that cannot be removed exactly are kept, with a note.

mod common;

use common::{bn, conv, keep_only, linear};
use prune_compiler::{compile, effective_masks, CompileOptions};
use prune_graph::ir::{Graph, Layer};
use prune_graph::{ChannelMasks, Model};

fn one(name: &str, keep: Vec<bool>) -> ChannelMasks {
    let mut m = ChannelMasks::new();
    m.insert(name.into(), keep);
    m
}

#[test]
fn residual_sum_with_an_ungated_branch_keeps_its_units() {
    // add = bn(conv_a(x)) + conv_b(x): conv_b's output passes no gate, so a
    // unit masked at `bn` is not zero after the sum.
    let mut g = Graph::new("ungated", &[2, 5, 5]);
    g.push("a", conv(2, 4, 3, 1, false), &["input"]).unwrap();
    g.push("bn", bn(4), &["a"]).unwrap();
    g.push("b", conv(2, 4, 1, 0, false), &["input"]).unwrap();
    g.push("add", Layer::Add, &["bn", "b"]).unwrap();
    g.push("relu", Layer::Relu, &["add"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["relu"]).unwrap();
    g.push("fc", linear(4, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 31);
    let masks = one("bn", keep_only(4, &[0, 2]));
    assert!(effective_masks(&m.graph, &masks).unwrap().is_empty());
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    assert_eq!(c.report.flops_after, c.report.flops_before);
    assert!(
        c.report
            .notes
            .iter()
            .any(|n| n.contains("2 masked unit(s) kept") && n.contains("'fc'")),
        "{:?}",
        c.report.notes
    );
}

#[test]
fn grouped_convolution_channels_are_never_removed() {
    let mut g = Graph::new("grouped", &[2, 5, 5]);
    g.push("a", conv(2, 4, 3, 1, false), &["input"]).unwrap();
    g.push("bn_a", bn(4), &["a"]).unwrap();
    g.push(
        "g",
        Layer::Conv2d {
            in_channels: 4,
            out_channels: 6,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: 2,
            bias: true,
        },
        &["bn_a"],
    )
    .unwrap();
    g.push("bn_g", bn(6), &["g"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["bn_g"]).unwrap();
    g.push("fc", linear(6, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 32);
    let mut masks = one("bn_a", keep_only(4, &[1, 2, 3]));
    masks.insert("bn_g".into(), keep_only(6, &[0, 5]));
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    assert_eq!(c.model.graph, m.graph);
    assert!(c.effective_masks.is_empty());
    let notes = c.report.notes.join("\n");
    assert!(notes.contains("grouped convolution 'g'"), "{notes}");
}

#[test]
fn masks_on_the_logits_are_ignored_with_a_note() {
    let mut g = Graph::new("logits", &[2, 3, 3]);
    g.push("flatten", Layer::Flatten, &["input"]).unwrap();
    g.push("fc", linear(18, 4), &["flatten"]).unwrap();
    g.push("bn", bn(4), &["fc"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 33);
    let c = compile(
        &m,
        &one("bn", keep_only(4, &[0])),
        &CompileOptions::default(),
    )
    .unwrap();
    assert_eq!(c.model.graph, m.graph);
    assert!(c.report.notes.iter().any(|n| n.contains("model output")));
}
