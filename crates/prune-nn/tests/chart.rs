//! `prune-nn chart`: accuracy against FLOPs, kept units per epoch and the
//! pruning histograms, drawn from real (small) training and pruning runs on
//! synthetic MNIST-shaped data; run directories that are not runs, reports
//! missing a field and wrong extensions are clear errors.

mod synthetic;
use prune_nn::chart::{
    accuracy_flops, accuracy_flops_chart, histograms, kept_units, run_point, RunPoint,
};
use prune_nn::data::{DatasetKind, Split};
use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::run::train_dense;
use prune_nn::train::{OptimizerKind, TrainConfig};
use std::path::{Path, PathBuf};
use synthetic::synthetic;

/// A dense LeNet5 run and SBP and slimming runs pruned from it.
fn runs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let train = synthetic(DatasetKind::Mnist, Split::Train, 192, 1);
    let test = synthetic(DatasetKind::Mnist, Split::Test, 64, 2);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 32,
        lr: 1e-3,
        optimizer: OptimizerKind::adam(),
        schedule: Default::default(),
        seed: 0,
        augment: false,
        max_batches: Some(3),
        progress: false,
    };
    let dense_dir = dir.join("dense");
    let (dense, _) = train_dense("lenet5", &train, &test, &cfg, &dense_dir, false).expect("train");
    let mut out = Vec::new();
    for method in [Method::Sbp, Method::Slimming] {
        let mut pc = PruneConfig::paper_defaults(method);
        pc.epochs = 2;
        pc.finetune_epochs = 1;
        pc.batch_size = 32;
        pc.max_batches = Some(2);
        pc.speed_repeats = 0;
        let d = dir.join(format!("{method:?}"));
        prune(&dense, &train, &test, &pc, &d).expect("prune");
        out.push(d);
    }
    (dense_dir, out[0].clone(), out[1].clone())
}

#[test]
fn charts_of_real_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dense, sbp, slim) = runs(tmp.path());

    let p = run_point(&sbp).expect("pruning report");
    assert_eq!(p.method, Some(Method::Sbp));
    assert!(p.flops_reduction >= 1.0 && p.dense_accuracy.is_some());
    let d = run_point(&dense).expect("training report");
    assert_eq!((d.method, d.flops_reduction), (None, 1.0));

    let svg = tmp.path().join("acc.svg");
    accuracy_flops(&[dense.clone(), sbp.clone(), slim.clone()], &svg).expect("chart");
    let text = std::fs::read_to_string(&svg).expect("svg");
    for s in ["dense", "SBP", "network slimming", "FLOPs reduction"] {
        assert!(text.contains(s), "'{s}' missing");
    }
    let png = tmp.path().join("acc.png");
    accuracy_flops(&[dense, sbp.clone(), slim.clone()], &png).expect("chart");
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));

    let kept = tmp.path().join("kept.svg");
    kept_units(&sbp, &kept).expect("kept units");
    let text = std::fs::read_to_string(&kept).expect("svg");
    for s in [
        "conv1.sbp",
        "fc1.in_sbp",
        "epoch of sparse training",
        "lenet5, SBP",
    ] {
        assert!(text.contains(s), "'{s}' missing");
    }
    kept_units(&slim, &tmp.path().join("kept.png")).expect("kept units png");

    let hist = tmp.path().join("hist.svg");
    histograms(&sbp, &hist).expect("histograms");
    let text = std::fs::read_to_string(&hist).expect("svg");
    assert!(
        text.contains("SNR = 1") && text.contains("kept ("),
        "legend missing"
    );
    histograms(&slim, &tmp.path().join("hist.png")).expect("histograms png");
}

fn point(model: &str, method: Option<Method>, x: f64, acc: f64, dense: f64) -> RunPoint {
    RunPoint {
        dir: PathBuf::from("r"),
        model: model.into(),
        method,
        flops_reduction: x,
        test_accuracy: acc,
        dense_accuracy: method.map(|_| dense),
    }
}

#[test]
fn a_line_per_method_and_the_dense_point() {
    let pts = [
        point("lenet5", Some(Method::Sbp), 3.0, 0.98, 0.99),
        point("lenet5", Some(Method::Sbp), 2.0, 0.985, 0.99),
        point("lenet5", Some(Method::Polarization), 1.5, 0.99, 0.99),
    ];
    let c = accuracy_flops_chart(&pts);
    let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["dense", "SBP", "polarization"]);
    // Without a dense run, the reports' shared dense accuracy, once.
    assert_eq!(c.series[0].points, [(1.0, 99.0)]);
    assert!(!c.series[0].line && c.series[1].line);
    // Points along a line in order of FLOPs reduction.
    assert_eq!(c.series[1].points, [(2.0, 98.5), (3.0, 98.0)]);
    assert!(c.x_log);

    // With a dense run it is the dense point; two models are told apart.
    let pts = [
        point("lenet5", None, 1.0, 0.991, 0.0),
        point("lenet5", Some(Method::Sbp), 3.0, 0.98, 0.99),
        point("vgg-like", Some(Method::Sbp), 5.0, 0.9, 0.92),
    ];
    let c = accuracy_flops_chart(&pts);
    let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["dense (lenet5)", "SBP (lenet5)", "SBP (vgg-like)"]);
    assert_eq!(c.series[0].points, [(1.0, 99.1)]);
}

#[test]
fn bad_chart_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let out = dir.join("c.svg");
    let err = |r: prune_nn::Result<()>| r.expect_err("must fail").to_string();

    let e = err(accuracy_flops(&[dir.join("missing")], &out));
    assert!(
        e.contains("missing") && e.contains("no such directory"),
        "{e}"
    );

    let empty = dir.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let e = err(accuracy_flops(std::slice::from_ref(&empty), &out));
    assert!(
        e.contains("not a run directory") && e.contains("report.json"),
        "{e}"
    );

    let partial = dir.join("partial");
    std::fs::create_dir(&partial).expect("mkdir");
    std::fs::write(
        partial.join("report.json"),
        r#"{"method": "sbp", "model": "lenet5", "test_accuracy_after": 0.99}"#,
    )
    .expect("write");
    let e = err(accuracy_flops(std::slice::from_ref(&partial), &out));
    assert!(
        e.contains("report.json") && e.contains("'flops_reduction'"),
        "{e}"
    );

    let imported = dir.join("imported");
    std::fs::create_dir(&imported).expect("mkdir");
    std::fs::write(imported.join("report.json"), r#"{"dataset": "mnist"}"#).expect("write");
    let e = err(accuracy_flops(std::slice::from_ref(&imported), &out));
    assert!(e.contains("neither a pruning report"), "{e}");

    let bad_method = dir.join("bad-method");
    std::fs::create_dir(&bad_method).expect("mkdir");
    std::fs::write(bad_method.join("report.json"), r#"{"method": "magic"}"#).expect("write");
    let e = err(accuracy_flops(std::slice::from_ref(&bad_method), &out));
    assert!(e.contains("'method'"), "{e}");

    let e = err(accuracy_flops(
        std::slice::from_ref(&partial),
        &dir.join("c.jpg"),
    ));
    assert!(e.contains(".jpg") && e.contains(".svg or .png"), "{e}");

    let e = err(kept_units(&partial, &out));
    assert!(
        e.contains("kept-units trajectory") && e.contains("kept.jsonl"),
        "{e}"
    );
    std::fs::create_dir(partial.join("sparse")).expect("mkdir");
    std::fs::write(
        partial.join("sparse/kept.jsonl"),
        "{\"epoch\": 1, \"kept\": {\"a\": 3}}\nnot json\n",
    )
    .expect("write");
    let e = err(kept_units(&partial, &out));
    assert!(e.contains("kept.jsonl") && e.contains("line 2"), "{e}");

    let e = err(histograms(&partial, &out));
    assert!(e.contains("masks.json"), "{e}");
    let e = err(histograms(&imported, &out));
    assert!(e.contains("no field 'method'"), "{e}");
    assert!(!out.exists(), "nothing is written on error");
}

#[test]
fn kept_units_use_a_log_axis_when_layer_widths_differ_by_more_than_20x() {
    use prune_nn::chart::kept_units_chart;
    use prune_nn::trajectory::KeptRecord;
    let record = |epoch, a, b| KeptRecord {
        epoch,
        kept: [("conv1".to_string(), a), ("fc1".to_string(), b)]
            .into_iter()
            .collect(),
        median_score: Default::default(),
    };
    // LeNet5-like widths: 20 filters beside 800 inputs.
    let c = kept_units_chart(&[record(1, 20, 800), record(2, 5, 135)], "t");
    assert!(c.y_log && c.y_label.contains("log"));
    assert_eq!(c.series[0].points, [(1.0, 20.0), (2.0, 5.0)]);
    // Similar widths keep a linear axis.
    let c = kept_units_chart(&[record(1, 300, 500), record(2, 200, 250)], "t");
    assert!(!c.y_log && c.y_label == "kept units");
}
