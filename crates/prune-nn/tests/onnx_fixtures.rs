//! Small CNNs written with the `onnx` package's helper API
//! (`crates/prune-onnx/py/make_fixtures.py`): imported, compared with
//! onnxruntime, pruned with each method for a few batches, exported, and the
//! exported pruned model compared with prune-nn's compiled model.

mod ort;

mod synthetic;
use prune_nn::data::{DatasetKind, Split};
use prune_nn::graph::{predict, Model};
use prune_nn::onnx::{check_fits, export_file, import_file, ExportOptions};
use prune_nn::prune::{prune, Method, PruneConfig};
use std::path::{Path, PathBuf};
use synthetic::synthetic;

fn main() {
    let ort = ort::need();
    let torch = prune_testkit::Need::check(
        "no PyTorch export to check",
        match std::env::var_os("PRUNE_NN_TORCH_ONNX") {
            Some(_) => Ok(()),
            None => Err("PRUNE_NN_TORCH_ONNX is not set (see docs/onnx.md)".to_string()),
        },
    );
    let mut trials = prune_testkit::tests!(dataset_must_fit_the_imported_input);
    trials.extend(prune_testkit::tests_needing!(&ort;
        imported_fixtures_match_onnxruntime,
        imported_names_are_kept,
        unsupported_operator_is_named,
        pruned_fixtures_export_and_match_onnxruntime,
    ));
    if ort.is_met() {
        trials.extend(prune_testkit::tests_needing!(&torch; torch_export_matches_onnxruntime));
    } else {
        trials.extend(prune_testkit::tests_needing!(&ort; torch_export_matches_onnxruntime));
    }
    prune_testkit::run(trials);
}

const MODELS: [&str; 3] = ["chain", "residual", "branches"];

fn fixtures(py: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("fixtures");
    ort::run_py(py, "make_fixtures.py", &[out.display().to_string()]);
    out
}

fn imported_fixtures_match_onnxruntime() {
    let py = ort::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(&py, dir.path());
    let x = ort::random_input(&[3, 1, 28, 28], 7);
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for name in MODELS {
        let path = fx.join(format!("{name}.onnx"));
        let model = import_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        want.push(predict(&model, x.clone(), None).expect("predict"));
        jobs.push((path, x.clone()));
    }
    let got = ort::run_models(&py, dir.path(), &jobs);
    for ((name, y), o) in MODELS.iter().zip(&want).zip(&got) {
        let e = ort::rel_error(y, o);
        eprintln!("{name}: prune-nn vs onnxruntime rel. error {e:.2e}");
        assert!(e <= 1e-5, "{name}: rel. error {e:.2e}");
    }
}

fn imported_names_are_kept() {
    let py = ort::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(&py, dir.path());
    let m = import_file(&fx.join("residual.onnx")).expect("import");
    for n in ["stem.conv", "stem.bn", "block.down.conv", "block.add", "fc"] {
        assert!(
            m.graph.index_of(n).is_some(),
            "no node '{n}' in {:?}",
            m.graph.nodes
        );
    }
    assert!(m.params.contains("block.down.bn.running_var"));
    assert!(
        m.params.contains("fc.bias"),
        "MatMul + Add became one linear layer"
    );
}

fn unsupported_operator_is_named() {
    let py = ort::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(&py, dir.path());
    let err = import_file(&fx.join("unsupported.onnx")).expect_err("Sigmoid is not importable");
    let text = err.to_string();
    for part in [
        "unsupported.onnx",
        "node 'gate'",
        "'Sigmoid'",
        "supported: Conv, Gemm",
    ] {
        assert!(text.contains(part), "'{part}' missing from: {text}");
    }
}

fn pruned_fixtures_export_and_match_onnxruntime() {
    let py = ort::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let fx = fixtures(&py, dir.path());
    let train = synthetic(DatasetKind::Mnist, Split::Train, 256, 1);
    let test = synthetic(DatasetKind::Mnist, Split::Test, 64, 2);
    let x = ort::random_input(&[3, 1, 28, 28], 11);
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for name in MODELS {
        let dense: Model = import_file(&fx.join(format!("{name}.onnx"))).expect("import");
        check_fits(&dense, &train).expect("fits MNIST");
        for method in [Method::Sbp, Method::Polarization, Method::Slimming] {
            let mut cfg = PruneConfig::paper_defaults(method);
            cfg.epochs = 1;
            cfg.finetune_epochs = 1;
            cfg.batch_size = 32;
            cfg.max_batches = Some(3);
            cfg.speed_repeats = 0;
            cfg.lambda = 1e-2;
            cfg.slim_lambda = 1e-2;
            let out = dir.path().join(format!("{name}-{method:?}"));
            let pruned = prune(&dense, &train, &test, &cfg, &out)
                .unwrap_or_else(|e| panic!("{name} {method:?}: {e}"));
            let onnx = out.join("pruned.onnx");
            export_file(&pruned.model, &ExportOptions::default(), &onnx)
                .unwrap_or_else(|e| panic!("{name} {method:?}: export: {e}"));
            want.push((
                format!("{name} {method:?}"),
                predict(&pruned.model, x.clone(), None).expect("predict"),
            ));
            jobs.push((onnx, x.clone()));
        }
    }
    let got = ort::run_models(&py, dir.path(), &jobs);
    for ((label, y), o) in want.iter().zip(&got) {
        let e = ort::rel_error(o, y);
        eprintln!("{label}: onnxruntime vs compiled model rel. error {e:.2e}");
        assert!(e <= 1e-5, "{label}: rel. error {e:.2e}");
    }
}

fn dataset_must_fit_the_imported_input() {
    let g = prune_nn::graph::zoo::build("lenet5", &[3, 32, 32], 10).expect("zoo");
    let m = Model::init(g, 0).expect("init");
    let err = check_fits(&m, &synthetic(DatasetKind::Mnist, Split::Test, 4, 0))
        .expect_err("shape mismatch");
    assert!(err.to_string().contains("[3, 32, 32]"), "{err}");
    let g = prune_nn::graph::zoo::build("lenet5", &[1, 28, 28], 7).expect("zoo");
    let m = Model::init(g, 0).expect("init");
    let err = check_fits(&m, &synthetic(DatasetKind::Mnist, Split::Test, 4, 0))
        .expect_err("class mismatch");
    assert!(err.to_string().contains("10 classes"), "{err}");
}

/// A model exported from PyTorch (`py/export_torchvision.py`), named by
/// `PRUNE_NN_TORCH_ONNX`: imported and compared with onnxruntime.
fn torch_export_matches_onnxruntime() {
    let path = std::env::var_os("PRUNE_NN_TORCH_ONNX").expect("the harness checked it");
    let py = ort::python();
    let path = PathBuf::from(path);
    let m = import_file(&path).expect("import");
    let mut shape = vec![2];
    shape.extend(m.graph.input_shape().expect("input"));
    let x = ort::random_input(&shape, 3);
    let y = predict(&m, x.clone(), None).expect("predict");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = ort::run_models(&py, dir.path(), &[(path, x)]);
    let e = ort::rel_error(&y, &o[0]);
    eprintln!(
        "{}: prune-nn vs onnxruntime rel. error {e:.2e}",
        m.graph.name
    );
    assert!(e <= 1e-5, "rel. error {e:.2e}");
}
