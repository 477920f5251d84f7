//! Dependency analysis on zoo and hand-built graphs.

mod common;

use common::{bn, conv, linear};
use prune_compiler::{analyze, ChannelGroup, ConsumerKind};
use prune_graph::ir::{Graph, Layer};
use prune_graph::zoo;

fn names(ms: &[prune_compiler::Member]) -> Vec<&str> {
    ms.iter().map(|m| m.node.as_str()).collect()
}

fn group_with_gate<'a>(groups: &'a [ChannelGroup], gate: &str) -> &'a ChannelGroup {
    groups
        .iter()
        .find(|g| g.gates.iter().any(|m| m.node == gate))
        .unwrap_or_else(|| panic!("no group with gate {gate}"))
}

#[test]
fn lenet5_groups_and_flatten_blocks() {
    let g = common::lenet5_sbp();
    let groups = analyze(&g).unwrap();
    // input, conv1, conv2, flattened features, fc1, logits.
    assert_eq!(groups.len(), 6);
    let input = &groups[0];
    assert_eq!(input.size, 1);
    assert_eq!(input.pinned.as_deref(), Some("network input"));
    let c1 = group_with_gate(&groups, "conv1.sbp");
    assert_eq!(c1.size, 20);
    assert_eq!(names(&c1.producers), ["conv1"]);
    assert_eq!(names(&c1.passthrough), ["relu1", "pool1"]);
    assert_eq!(c1.consumers.len(), 1);
    assert_eq!(c1.consumers[0].node, "conv2");
    assert_eq!(c1.consumers[0].how, ConsumerKind::ConvInput);
    let c2 = group_with_gate(&groups, "conv2.sbp");
    assert_eq!(
        c2.consumers[0].how,
        ConsumerKind::FlattenBlock { block: 16 }
    );
    let feats = group_with_gate(&groups, "fc1.in_sbp");
    assert_eq!(feats.size, 800);
    assert_eq!(names(&feats.producers), ["flatten"]);
    assert_eq!(feats.derived_from, vec![c2.id]);
    assert_eq!(feats.consumers[0].how, ConsumerKind::LinearInput);
    let hidden = group_with_gate(&groups, "fc2.in_sbp");
    assert_eq!(hidden.size, 500);
    assert_eq!(names(&hidden.producers), ["fc1"]);
    let logits = groups.last().unwrap();
    assert_eq!(logits.pinned.as_deref(), Some("model output"));
    assert!(logits.pinned.is_some());
    let text = c2.to_string();
    assert!(text.contains("producers:   conv2 (conv2d)"), "{text}");
    assert!(
        text.contains("flatten (flatten, 16 features per channel)"),
        "{text}"
    );
}

#[test]
fn resnet20_residual_groups_share_shortcuts() {
    let g = zoo::build("resnet20", &[3, 32, 32], 10).unwrap();
    let groups = analyze(&g).unwrap();
    // input, stem+stage 1, 9 inner block groups, stage 2, stage 3, logits.
    assert_eq!(groups.len(), 14);
    let stage1 = group_with_gate(&groups, "bn1");
    assert_eq!(stage1.size, 16);
    let gates = names(&stage1.gates);
    for want in ["bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2"] {
        assert!(gates.contains(&want), "{want} not in {gates:?}");
    }
    assert_eq!(
        names(&stage1.producers),
        [
            "conv1",
            "layer1.0.conv2",
            "layer1.1.conv2",
            "layer1.2.conv2"
        ]
    );
    let consumers: Vec<&str> = stage1.consumers.iter().map(|c| c.node.as_str()).collect();
    assert_eq!(
        consumers,
        [
            "layer1.0.conv1",
            "layer1.1.conv1",
            "layer1.2.conv1",
            "layer2.0.conv1",
            "layer2.0.down.conv"
        ]
    );
    let stage2 = group_with_gate(&groups, "layer2.0.down.bn");
    assert_eq!(stage2.size, 32);
    assert!(names(&stage2.producers).contains(&"layer2.0.down.conv"));
    assert!(names(&stage2.gates).contains(&"layer2.2.bn2"));
    let inner = group_with_gate(&groups, "layer3.1.bn1");
    assert_eq!(inner.size, 64);
    assert_eq!(names(&inner.gates), ["layer3.1.bn1"]);
    assert_eq!(inner.consumers[0].node, "layer3.1.conv2");
    let stage3 = group_with_gate(&groups, "layer3.2.bn2");
    assert!(names(&stage3.passthrough).contains(&"pool"));
    assert_eq!(stage3.consumers.last().unwrap().node, "fc");
}

#[test]
fn concat_keeps_branches_apart_and_bn_spans_both() {
    let mut g = Graph::new("cat", &[3, 8, 8]);
    g.push("a", conv(3, 4, 3, 1, false), &["input"]).unwrap();
    g.push("b", conv(3, 5, 1, 0, false), &["input"]).unwrap();
    g.push("cat", Layer::Concat, &["a", "b"]).unwrap();
    g.push("bn", bn(9), &["cat"]).unwrap();
    g.push("relu", Layer::Relu, &["bn"]).unwrap();
    g.push("head", conv(9, 2, 1, 0, false), &["relu"]).unwrap();
    let groups = analyze(&g).unwrap();
    let ga = groups
        .iter()
        .find(|gr| names(&gr.producers) == ["a"])
        .unwrap();
    let gb = groups
        .iter()
        .find(|gr| names(&gr.producers) == ["b"])
        .unwrap();
    assert_eq!((ga.size, gb.size), (4, 5));
    for grp in [ga, gb] {
        assert_eq!(names(&grp.gates), ["bn"]);
        assert_eq!(names(&grp.passthrough), ["cat", "relu"]);
        assert_eq!(grp.consumers[0].node, "head");
    }
}

#[test]
fn depthwise_conv_ties_input_and_output() {
    let mut g = Graph::new("dw", &[3, 8, 8]);
    g.push("pw", conv(3, 6, 1, 0, false), &["input"]).unwrap();
    g.push("bn1", bn(6), &["pw"]).unwrap();
    g.push(
        "dw",
        Layer::Conv2d {
            in_channels: 6,
            out_channels: 6,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: 6,
            bias: false,
        },
        &["bn1"],
    )
    .unwrap();
    g.push("bn2", bn(6), &["dw"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["bn2"]).unwrap();
    g.push("fc", linear(6, 2), &["gap"]).unwrap();
    let groups = analyze(&g).unwrap();
    let grp = group_with_gate(&groups, "bn1");
    assert_eq!(names(&grp.gates), ["bn1", "bn2"]);
    assert_eq!(names(&grp.passthrough), ["dw", "gap"]);
    assert_eq!(grp.consumers[0].node, "fc");
}

#[test]
fn grouped_convolution_is_pinned() {
    let mut g = Graph::new("grp", &[4, 6, 6]);
    g.push("a", conv(4, 4, 1, 0, false), &["input"]).unwrap();
    g.push(
        "g",
        Layer::Conv2d {
            in_channels: 4,
            out_channels: 8,
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            groups: 2,
            bias: false,
        },
        &["a"],
    )
    .unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["g"]).unwrap();
    g.push("fc", linear(8, 2), &["gap"]).unwrap();
    let groups = analyze(&g).unwrap();
    let ga = groups
        .iter()
        .find(|gr| names(&gr.producers) == ["a"])
        .unwrap();
    assert!(ga
        .pinned
        .as_deref()
        .unwrap()
        .contains("grouped convolution 'g'"));
    let gg = groups
        .iter()
        .find(|gr| names(&gr.producers) == ["g"])
        .unwrap();
    assert!(gg.pinned.is_some());
}

#[test]
fn analysis_rejects_malformed_graphs() {
    let mut g = Graph::new("bad", &[3, 8, 8]);
    g.push("a", conv(4, 4, 1, 0, false), &["input"]).unwrap();
    let err = analyze(&g).unwrap_err().to_string();
    assert!(err.contains("'a'"), "{err}");
}
