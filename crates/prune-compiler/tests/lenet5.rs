//! LeNet5 with SBP gates pruned to the SBP paper's 3-18-284-283.

mod common;

use common::{lenet5_paper_masks, lenet5_sbp, nodes_of_kind};
use prune_compiler::{compile, CompileOptions};
use prune_graph::ir::Layer;
use prune_graph::Model;

fn sbp_lenet5() -> Model {
    let mut m = Model::init(lenet5_sbp(), 0).unwrap();
    common::randomize(&mut m, 7);
    // Keep every SBP unit informative (SNR > 1) so the logits depend on all
    // kept units: μ ∈ [-2, 0], log σ = -3.
    for gate in nodes_of_kind(&m.graph, "sbp_gate") {
        let ls = m.params.get_mut(&format!("{gate}.log_sigma")).unwrap();
        ls.data_mut().iter_mut().for_each(|v| *v = -3.0);
    }
    m
}

#[test]
fn lenet5_compiles_to_3_18_284_283() {
    // the 18 kept channels flatten to 288 features; the 4 masked features
    // of kept channels are dropped by a `Select`, so fc1 reads 284.
    let m = sbp_lenet5();
    let c = compile(&m, &lenet5_paper_masks(), &CompileOptions::default()).unwrap();
    let g = &c.model.graph;
    assert!(
        nodes_of_kind(g, "sbp_gate").is_empty(),
        "all SBP gates folded"
    );
    assert!(nodes_of_kind(g, "scale").is_empty());
    let layer = |n: &str| g.node(n).unwrap().layer.clone();
    match layer("conv1") {
        Layer::Conv2d {
            in_channels,
            out_channels,
            ..
        } => assert_eq!((in_channels, out_channels), (1, 3)),
        l => panic!("{l:?}"),
    }
    match layer("conv2") {
        Layer::Conv2d {
            in_channels,
            out_channels,
            ..
        } => assert_eq!((in_channels, out_channels), (3, 18)),
        l => panic!("{l:?}"),
    }
    assert_eq!(
        layer("fc1"),
        Layer::Linear {
            in_features: 284,
            out_features: 283,
            bias: true
        }
    );
    match layer("fc1.select") {
        Layer::Select { indices } => {
            assert_eq!(indices.len(), 284);
            assert!(indices.iter().all(|&i| i < 288));
        }
        l => panic!("{l:?}"),
    }
    assert_eq!(
        layer("fc2"),
        Layer::Linear {
            in_features: 283,
            out_features: 10,
            bias: true
        }
    );
    let r = &c.report;
    let want_flops = 3 * 25 * 24 * 24 + 18 * 3 * 25 * 8 * 8 + 284 * 283 + 283 * 10;
    assert_eq!(r.flops_after, want_flops as u64);
    assert_eq!(
        r.flops_before,
        (20 * 25 * 24 * 24 + 50 * 20 * 25 * 8 * 8 + 800 * 500 + 500 * 10) as u64
    );
    let want_params = 3 * 25 + 3 + 18 * 3 * 25 + 18 + 284 * 283 + 283 + 283 * 10 + 10;
    assert_eq!(r.params_after, want_params as u64);
    let err = r.verify_max_rel_error.unwrap();
    assert!(err <= 1e-5, "relative error {err}");
    let fc1 = r.layers.iter().find(|l| l.name == "fc1.in_sbp").unwrap();
    assert_eq!((fc1.channels_before, fc1.channels_after), (800, 288));
    assert_eq!(fc1.channels_zeroed, 4);
    let kept_features = c.effective_masks["fc1.in_sbp"]
        .iter()
        .filter(|&&k| k)
        .count();
    assert_eq!(kept_features, 284);
    assert_eq!(fc1.folded_into.as_deref(), Some("fc1"));
    let json = serde_json::to_value(r).unwrap();
    for key in [
        "flops_before",
        "flops_after",
        "params_before",
        "params_after",
        "layers",
        "dense_images_per_sec",
        "pruned_images_per_sec",
        "verify_max_rel_error",
    ] {
        assert!(json.get(key).is_some(), "report JSON lacks {key}");
    }
    assert_eq!(json["layers"][1]["channels_after"], 3);
}

#[test]
fn compiled_lenet5_matches_masked_model_on_fresh_inputs() {
    let m = sbp_lenet5();
    let masks = lenet5_paper_masks();
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    for seed in 10..13 {
        let e =
            prune_compiler::verify::compare_with_masked(&m, &c.effective_masks, &c.model, 5, seed)
                .unwrap();
        assert!(e <= 1e-5, "seed {seed}: {e}");
    }
    // The compiled model needs no SBP runtime.
    let x = prune_compiler::verify::random_batch(&m, 2, 3).unwrap();
    prune_graph::predict(&c.model, x, None).unwrap();
}

#[test]
fn masks_with_scale_gates_give_the_same_architecture() {
    // The same network with scale gates instead of SBP gates.
    let mut g = lenet5_sbp();
    for n in &mut g.nodes {
        if let Layer::SbpGate { units } = n.layer {
            n.layer = Layer::Scale { units };
        }
    }
    let mut m = Model::init(g, 0).unwrap();
    common::randomize(&mut m, 9);
    let c = compile(&m, &lenet5_paper_masks(), &CompileOptions::default()).unwrap();
    assert_eq!(
        c.model.graph.node("fc1").unwrap().layer,
        Layer::Linear {
            in_features: 284,
            out_features: 283,
            bias: true
        }
    );
    assert_eq!(c.model.graph.nodes.len(), 12);
}
