//! The whole pipeline on a CI-sized budget: dense LeNet5 for one epoch,
//! SBP sparse training, the rule, compilation (which verifies itself),
//! fine-tuning and the report.

use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::run::train_dense;
use prune_nn::train::{OptimizerKind, TrainConfig};
use prune_tests::mnist;

fn main() {
    let need = prune_testkit::Need::data();
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        lenet5_one_epoch_then_sbp_prune_compile_finetune,
    ));
}

fn lenet5_one_epoch_then_sbp_prune_compile_finetune() {
    let (train, test) = mnist();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 100,
        lr: 1e-3,
        optimizer: OptimizerKind::adam(),
        schedule: Default::default(),
        seed: 0,
        augment: false,
        max_batches: None,
        progress: false,
    };
    let (dense, report) = train_dense(
        "lenet5",
        &train,
        &test,
        &cfg,
        &dir.path().join("dense"),
        false,
    )
    .expect("train");
    assert!(
        report.test_accuracy >= 0.97,
        "one epoch of LeNet5 reached {}",
        report.test_accuracy
    );
    let written: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("dense/report.json")).expect("report.json"),
    )
    .expect("json");
    for key in [
        "test_accuracy",
        "epochs",
        "train_images_per_sec",
        "params",
        "flops",
    ] {
        assert!(written.get(key).is_some(), "report.json lacks {key}");
    }

    let mut pcfg = PruneConfig::paper_defaults(Method::Sbp);
    pcfg.epochs = 1;
    pcfg.finetune_epochs = 1;
    pcfg.max_batches = Some(300);
    pcfg.sbp_lr_mult = 100.0;
    pcfg.speed_repeats = 0;
    let out = dir.path().join("sbp");
    let pruned = prune(&dense, &train, &test, &pcfg, &out).expect("prune");
    let r = &pruned.report;
    assert!(
        r.flops_after < r.flops_before,
        "no units were removed: {r:?}"
    );
    assert!(
        r.verify_max_rel_error <= 1e-5,
        "compiled model off by {}",
        r.verify_max_rel_error
    );
    assert!(
        r.test_accuracy_after >= 0.95,
        "accuracy after pruning {}",
        r.test_accuracy_after
    );
    for f in [
        "model.json",
        "weights.safetensors",
        "report.json",
        "report.md",
        "masks.json",
        "histograms.svg",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let compiled = prune_nn::graph::Model::load(&out).expect("compiled model loads");
    let ev = prune_nn::evaluate(&compiled, &test).expect("eval");
    assert!((ev.accuracy - r.test_accuracy_after).abs() < 1e-9);
}
