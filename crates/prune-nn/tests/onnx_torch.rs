//! torchvision's ResNet-18 exported by PyTorch itself
//! (`crates/prune-onnx/py/export_torchvision.py`: 10 classes, a 1-channel
//! stem for 1×28×28 Fashion-MNIST images, batch norms kept and drawn the
//! way a trained network's look, `--random-bn`): imported and
//! compared with onnxruntime, pruned with polarization for a few batches,
//! compiled, exported (with and without folded batch norm), and the exported
//! pruned model run in onnxruntime against prune-nn's compiled model, all to
//! 1e-5 relative.
//!
//! Needs `PRUNE_NN_PYTHON` naming a Python with torch, torchvision, onnx and
//! onnxruntime; without one the test is reported as ignored with the
//! reason (`PRUNE_NN_REQUIRE_TORCH=1` makes that a failure). CI installs no
//! torch: it checks the same import and export paths with the `onnx`-built
//! fixtures of `onnx_fixtures.rs`.

mod ort;

mod synthetic;
use prune_nn::data::{DatasetKind, Split};
use prune_nn::graph::{predict, Layer};
use prune_nn::onnx::{check_fits, export_file, import_file, ExportOptions};
use prune_nn::prune::{prune, Method, PruneConfig};
use synthetic::synthetic;

fn main() {
    let torch = ort::python_need(
        &["torch", "torchvision", "onnx", "onnxruntime", "numpy"],
        "no PyTorch",
        "PRUNE_NN_REQUIRE_TORCH",
    );
    prune_testkit::run(prune_testkit::tests_needing!(&torch;
        torchvision_resnet18_imports_prunes_and_exports,
    ));
}

fn torchvision_resnet18_imports_prunes_and_exports() {
    let py = ort::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resnet18.onnx");
    ort::run_py(
        &py,
        "export_torchvision.py",
        &[
            path.display().to_string(),
            "--keep-bn".to_string(),
            "--random-bn".to_string(),
        ],
    );
    let dense = import_file(&path).expect("import");
    let bns = dense
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::BatchNorm { .. }))
        .count();
    assert_eq!(bns, 20, "ResNet-18 has 20 batch norms");
    for name in [
        "conv1",
        "layer1.0.conv1",
        "layer4.1.bn2",
        "layer2.0.downsample.0",
        "fc",
    ] {
        assert!(dense.graph.index_of(name).is_some(), "no node '{name}'");
    }
    let train = synthetic(DatasetKind::FashionMnist, Split::Train, 96, 1);
    let test = synthetic(DatasetKind::FashionMnist, Split::Test, 32, 2);
    check_fits(&dense, &train).expect("fits Fashion-MNIST");

    // The import reproduces PyTorch's model as onnxruntime runs it.
    let x = ort::random_input(&[4, 1, 28, 28], 5);
    let y_dense = predict(&dense, x.clone(), None).expect("predict");

    // Polarization for a few batches: sparse training, masks, compile,
    // fine-tune.
    let mut cfg = PruneConfig::paper_defaults(Method::Polarization);
    cfg.epochs = 1;
    cfg.finetune_epochs = 1;
    cfg.batch_size = 32;
    cfg.max_batches = Some(3);
    cfg.speed_repeats = 0;
    cfg.lambda = 1e-2;
    let out = dir.path().join("pruned");
    let pruned = prune(&dense, &train, &test, &cfg, &out).expect("prune");
    let r = &pruned.report;
    eprintln!(
        "resnet18: {} -> {} FLOPs ({:.2}x), {} -> {} params, verify {:.1e}",
        r.flops_before,
        r.flops_after,
        r.flops_reduction,
        r.params_before,
        r.params_after,
        r.verify_max_rel_error
    );
    assert!(r.flops_after < r.flops_before, "nothing was pruned");

    let mut jobs = vec![(path.clone(), x.clone())];
    let mut want = vec![("dense import".to_string(), y_dense)];
    let y_pruned = predict(&pruned.model, x.clone(), None).expect("predict");
    for fold_bn in [false, true] {
        let onnx = dir.path().join(format!("pruned-fold{fold_bn}.onnx"));
        let opts = ExportOptions {
            fold_bn,
            ..ExportOptions::default()
        };
        export_file(&pruned.model, &opts, &onnx).expect("export");
        jobs.push((onnx, x.clone()));
        want.push((
            format!("pruned export, fold_bn {fold_bn}"),
            y_pruned.clone(),
        ));
    }
    let got = ort::run_models(&py, dir.path(), &jobs);
    for ((label, y), o) in want.iter().zip(&got) {
        let e = ort::rel_error(o, y);
        eprintln!("{label}: onnxruntime vs prune-nn rel. error {e:.2e}");
        assert!(e <= 1e-5, "{label}: rel. error {e:.2e}");
    }
}
