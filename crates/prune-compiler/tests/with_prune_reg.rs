//! The compiler on prune-reg's own gate placement, SBP gates and pruning
//! rules.

mod common;

use common::nodes_of_kind;
use prune_compiler::{compile, CompileOptions};
use prune_graph::{zoo, Model};
use prune_reg::method::{insert_sbp_gates, sbp_masks, slimming_rule, to_channel_masks};

#[test]
fn sbp_lenet5_with_the_snr_rule_and_sbp_gates() {
    let dense = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).unwrap(), 0).unwrap();
    let mut m = insert_sbp_gates(&dense).unwrap();
    common::randomize(&mut m, 21);
    let masks = to_channel_masks(&sbp_masks(&m).unwrap());
    assert!(!masks.is_empty());
    let c = compile(&m, &masks, &CompileOptions::default()).unwrap();
    assert!(nodes_of_kind(&c.model.graph, "sbp_gate").is_empty());
    assert!(c.report.flops_after < c.report.flops_before);
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}

#[test]
fn sbp_resnet20_gates_before_residual_sums() {
    let dense = Model::init(zoo::build("resnet20", &[3, 16, 16], 10).unwrap(), 0).unwrap();
    let mut m = insert_sbp_gates(&dense).unwrap();
    common::randomize(&mut m, 22);
    let masks = to_channel_masks(&sbp_masks(&m).unwrap());
    let opts = CompileOptions {
        fold_bn: true,
        verify_batch: 4,
        ..Default::default()
    };
    let c = compile(&m, &masks, &opts).unwrap();
    // Every gate sits right after a batch norm, so it folds into it and the
    // batch norm into its convolution.
    assert!(nodes_of_kind(&c.model.graph, "sbp_gate").is_empty());
    assert!(nodes_of_kind(&c.model.graph, "scale").is_empty());
    assert!(nodes_of_kind(&c.model.graph, "batch_norm").is_empty());
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}

#[test]
fn slimming_rule_on_resnet20_batch_norms() {
    let mut m = Model::init(zoo::build("resnet20", &[3, 16, 16], 10).unwrap(), 0).unwrap();
    common::randomize(&mut m, 23);
    let masks = to_channel_masks(&slimming_rule(&m, 40.0).unwrap());
    let opts = CompileOptions {
        verify_batch: 4,
        ..Default::default()
    };
    let c = compile(&m, &masks, &opts).unwrap();
    assert!(c.report.params_after < c.report.params_before);
    assert!(c.report.verify_max_rel_error.unwrap() <= 1e-5);
}
