//! ResNet-20 with random masks on its batch norms.

mod common;

use common::{keep_only, nodes_of_kind, random_masks};
use prune_compiler::{analyze, compile, effective_masks, CompileOptions};
use prune_graph::ir::Layer;
use prune_graph::{zoo, ChannelMasks, Model};

fn resnet20() -> Model {
    let g = zoo::build("resnet20", &[3, 16, 16], 10).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 11);
    m
}

fn out_channels(m: &Model, node: &str) -> usize {
    match m.graph.node(node).unwrap().layer {
        Layer::Conv2d { out_channels, .. } => out_channels,
        Layer::BatchNorm { features, .. } => features,
        ref l => panic!("{l:?}"),
    }
}

#[test]
fn resnet20_random_masks_compile_and_verify() {
    let m = resnet20();
    for (seed, fold_bn) in [(1, false), (2, true), (3, true)] {
        let masks = random_masks(&m.graph, 0.6, seed);
        let opts = CompileOptions {
            fold_bn,
            verify_batch: 4,
            ..Default::default()
        };
        let c = compile(&m, &masks, &opts).unwrap();
        let e = c.report.verify_max_rel_error.unwrap();
        assert!(e <= 1e-5, "seed {seed}: {e}");
        assert!(c.report.flops_after < c.report.flops_before);
        if fold_bn {
            assert!(nodes_of_kind(&c.model.graph, "batch_norm").is_empty());
        }
        // Every gate of a residual stage carries the same effective mask.
        let stage1: Vec<&str> = vec!["bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2"];
        let first = c.effective_masks.get("bn1");
        for gate in &stage1 {
            assert_eq!(c.effective_masks.get(*gate), first, "{gate}");
        }
        if let Some(mask) = first {
            let kept = mask.iter().filter(|&&k| k).count();
            assert_eq!(out_channels(&c.model, "conv1"), kept);
            assert_eq!(out_channels(&c.model, "layer1.2.conv2"), kept);
        }
        for l in &c.report.layers {
            assert!(l.channels_after <= l.channels_before, "{}", l.name);
        }
    }
}

#[test]
fn one_masked_gate_prunes_the_whole_residual_group() {
    let m = resnet20();
    let mut masks = ChannelMasks::new();
    masks.insert("layer1.1.bn2".into(), keep_only(16, &[0, 3, 5, 9]));
    let eff = effective_masks(&m.graph, &masks).unwrap();
    let groups = analyze(&m.graph).unwrap();
    let stage1 = groups
        .iter()
        .find(|g| g.gates.iter().any(|x| x.node == "bn1"))
        .unwrap();
    for gate in &stage1.gates {
        assert_eq!(
            eff[&gate.node],
            keep_only(16, &[0, 3, 5, 9]),
            "{}",
            gate.node
        );
    }
    assert_eq!(eff.len(), stage1.gates.len());
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    assert_eq!(out_channels(&c.model, "conv1"), 4);
    assert_eq!(out_channels(&c.model, "layer1.0.conv1"), 16);
    match c.model.graph.node("layer2.0.down.conv").unwrap().layer {
        Layer::Conv2d { in_channels, .. } => assert_eq!(in_channels, 4),
        ref l => panic!("{l:?}"),
    }
}

#[test]
fn mask_union_keeps_units_any_gate_keeps() {
    let m = resnet20();
    let mut masks = ChannelMasks::new();
    masks.insert("bn1".into(), keep_only(16, &[0, 1]));
    masks.insert("layer1.2.bn2".into(), keep_only(16, &[1, 2]));
    let eff = effective_masks(&m.graph, &masks).unwrap();
    assert_eq!(eff["layer1.0.bn2"], keep_only(16, &[0, 1, 2]));
}
