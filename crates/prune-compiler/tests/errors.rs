//! Error cases: every message names the problem.

mod common;

use common::{bn, conv, keep_only, linear};
use prune_compiler::{compile, effective_masks, CompileError, CompileOptions};
use prune_graph::ir::{Graph, Layer};
use prune_graph::{ChannelMasks, Model};

fn small() -> Model {
    let mut g = Graph::new("small", &[3, 6, 6]);
    g.push("conv1", conv(3, 4, 3, 1, false), &["input"])
        .unwrap();
    g.push("bn1", bn(4), &["conv1"]).unwrap();
    g.push("relu1", Layer::Relu, &["bn1"]).unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["relu1"]).unwrap();
    g.push("fc", linear(4, 3), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 1);
    m
}

fn one(name: &str, keep: Vec<bool>) -> ChannelMasks {
    let mut m = ChannelMasks::new();
    m.insert(name.into(), keep);
    m
}

#[test]
fn wrong_mask_length_names_node_and_both_lengths() {
    let m = small();
    let err = compile(&m, &one("bn1", vec![true; 5]), &CompileOptions::default()).unwrap_err();
    assert!(matches!(err, CompileError::Mask { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("bn1") && msg.contains('5') && msg.contains('4'),
        "{msg}"
    );
}

#[test]
fn unknown_gate_is_reported() {
    let m = small();
    let err = effective_masks(&m.graph, &one("bn7", vec![true; 4])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bn7") && msg.contains("no node"), "{msg}");
}

#[test]
fn mask_on_a_non_gate_is_rejected() {
    let m = small();
    let err = effective_masks(&m.graph, &one("conv1", vec![true; 4])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("conv1") && msg.contains("conv2d"), "{msg}");
}

#[test]
fn empty_group_is_an_error() {
    let m = small();
    let err = compile(&m, &one("bn1", vec![false; 4]), &CompileOptions::default()).unwrap_err();
    assert!(
        matches!(err, CompileError::EmptyGroup { size: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("bn1"), "{err}");
}

#[test]
fn sbp_gates_compile_without_a_runtime() {
    // The SBP gate is a core op: no runtime to supply, so nothing to forget.
    let mut g = Graph::new("s", &[2, 4, 4]);
    g.push("conv", conv(2, 3, 1, 0, true), &["input"]).unwrap();
    g.push("sbp", Layer::SbpGate { units: 3 }, &["conv"])
        .unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["sbp"]).unwrap();
    g.push("fc", linear(3, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 2);
    let masks = one("sbp", keep_only(3, &[0, 2]));
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}

#[test]
fn verification_failure_reports_the_measured_error() {
    let mut g = Graph::new("s", &[2, 4, 4]);
    g.push("conv", conv(2, 3, 1, 0, true), &["input"]).unwrap();
    g.push("sbp", Layer::SbpGate { units: 3 }, &["conv"])
        .unwrap();
    g.push("gap", Layer::GlobalAvgPool, &["sbp"]).unwrap();
    g.push("fc", linear(3, 2), &["gap"]).unwrap();
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 2);
    // μ = -0.5, log σ = -3: SNR ≫ 1, factor ≈ e^{-0.5}, folded into a scale layer
    // whose f32 rounding leaves a small but nonzero error, above a 1e-30 tolerance.
    m.params
        .insert("sbp.mu", prune_core::Tensor::full([3], -0.5));
    m.params
        .insert("sbp.log_sigma", prune_core::Tensor::full([3], -3.0));
    let opts = CompileOptions {
        tolerance: 1e-30,
        ..Default::default()
    };
    let err = compile(&m, &ChannelMasks::new(), &opts).unwrap_err();
    match err {
        CompileError::Verify {
            max_rel_error,
            tolerance,
            ..
        } => {
            assert!(
                max_rel_error > 1e-30 && max_rel_error < 1e-4,
                "{max_rel_error}"
            );
            assert_eq!(tolerance, f64::from(1e-30f32));
        }
        other => panic!("expected a verification error, got {other}"),
    }
}

#[test]
fn bad_options_are_rejected() {
    let m = small();
    let opts = CompileOptions {
        verify_batch: 0,
        ..Default::default()
    };
    assert!(matches!(
        compile(&m, &ChannelMasks::new(), &opts),
        Err(CompileError::Options(_))
    ));
    let opts = CompileOptions {
        tolerance: f32::NAN,
        ..Default::default()
    };
    assert!(compile(&m, &ChannelMasks::new(), &opts).is_err());
}
