//! Input safety of the commands, on a small synthetic MNIST-format set:
//! no command replaces what it reads or an earlier run without `--force`,
//! `--resume` continues only what the command line describes, degenerate
//! values and broken files get clear errors, and every run directory a
//! command writes can be evaluated without flags.

mod common;

use common::*;
use std::path::Path;

fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = synthetic_mnist(dir, 300, 100);
    let run_dir = dir.join("dense");
    let o = quick_train(&data, &run_dir, &[]);
    assert!(o.status.success(), "{}", text(&o));
    (data, run_dir)
}

fn quick_prune(data: &Path, model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let args = with_defaults(
        &["prune"],
        &[
            ("--method", "slimming"),
            ("--model", s(model)),
            ("--dataset", "mnist"),
            ("--data", s(data)),
            ("--epochs", "1"),
            ("--finetune-epochs", "1"),
            ("--batch-size", "50"),
            ("--out", s(out)),
        ],
        extra,
    );
    run(&args)
}

fn fails_with(o: &std::process::Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    assert!(
        text(o).contains(needle),
        "expected '{needle}' in:\n{}",
        text(o)
    );
}

#[test]
fn commands_never_replace_the_model_they_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, dense) = setup(dir.path());
    let pruned = dir.path().join("pruned");
    let o = quick_prune(&data, &dense, &pruned, &[]);
    assert!(o.status.success(), "{}", text(&o));

    let weights = |d: &Path| std::fs::read(d.join("weights.safetensors")).expect("weights");
    let (dense_w, sparse_w) = (weights(&dense), weights(&pruned.join("sparse")));
    let sparse = pruned.join("sparse");
    let masks = pruned.join("masks.json");
    for force in [false, true] {
        let mut args = vec![
            "compile",
            "--model",
            s(&sparse),
            "--masks",
            s(&masks),
            "--out",
            s(&sparse),
        ];
        if force {
            args.push("--force");
        }
        fails_with(&run(&args), "which this command reads");
        let extra: &[&str] = if force { &["--force"] } else { &[] };
        fails_with(
            &quick_prune(&data, &dense, &dense, extra),
            "which this command reads",
        );
        // An --out above the input would replace it too (prune writes sparse/).
        fails_with(
            &quick_prune(&data, &sparse, &pruned, extra),
            "which this command reads",
        );
    }
    assert_eq!(weights(&dense), dense_w, "the dense model was replaced");
    assert_eq!(weights(&sparse), sparse_w, "the sparse model was replaced");

    // An earlier run elsewhere is kept unless --force says otherwise.
    let o = quick_prune(&data, &dense, &pruned, &[]);
    fails_with(&o, "already holds a run");
    assert!(text(&o).contains("--force"), "{}", text(&o));
    let compiled = dir.path().join("compiled");
    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile",
            "--model",
            s(&sparse),
            "--masks",
            s(&masks),
            "--out",
            s(&compiled),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    assert!(compile(&[]).status.success());
    fails_with(&compile(&[]), "already holds a run");
    let o = compile(&["--force"]);
    assert!(o.status.success(), "{}", text(&o));

    // Every run directory written above evaluates without flags.
    for d in [
        &dense,
        &pruned,
        &sparse,
        &pruned.join("finetune"),
        &compiled,
    ] {
        let o = run(&["eval", "--model", s(d), "--data", s(&data)]);
        assert!(
            o.status.success() && text(&o).contains("test accuracy"),
            "eval --model {}: {}",
            d.display(),
            text(&o)
        );
    }
}

#[test]
fn train_into_an_existing_run_needs_resume_or_force() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, dense) = setup(dir.path());
    let before = std::fs::read(dense.join("weights.safetensors")).expect("weights");
    let o = quick_train(&data, &dense, &[]);
    fails_with(&o, "already holds a run");
    assert!(text(&o).contains("--resume"), "{}", text(&o));
    assert_eq!(
        std::fs::read(dense.join("weights.safetensors")).expect("weights"),
        before
    );
    let o = quick_train(&data, &dense, &["--force", "--seed", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let metrics = std::fs::read_to_string(dense.join("metrics.jsonl")).expect("metrics");
    assert_eq!(
        metrics.lines().count(),
        1,
        "old metrics were kept: {metrics}"
    );

    // A second command writing into the same directory at the same time
    // (here: one whose lock names this live test process) is refused ...
    let lock = dense.join(prune_nn::outputs::LOCK_FILE);
    std::fs::write(&lock, std::process::id().to_string()).expect("lock");
    let o = quick_train(&data, &dense, &["--force", "--seed", "5"]);
    fails_with(&o, "being written by another prune-nn command");
    // ... while the lock of a process that no longer runs is taken over.
    std::fs::write(&lock, "999999999").expect("lock");
    let o = quick_train(&data, &dense, &["--resume", "--seed", "5", "--epochs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!lock.exists(), "the lock outlived its command");
}

#[test]
fn resume_checks_the_command_line_against_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, dense) = setup(dir.path());
    let resume = |extra: &[&str]| {
        let mut args = vec!["--resume"];
        args.extend_from_slice(extra);
        quick_train(&data, &dense, &args)
    };
    // Another --model: the command line says lenet5, the checkpoint holds
    // lenet-300-100.
    let mut args = vec![
        "train",
        "--model",
        "lenet5",
        "--data",
        s(&data),
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--resume",
        "--out",
        s(&dense),
    ];
    fails_with(&run(&args), "--model");
    args[2] = "lenet-300-100";
    args[6] = "3";
    args[8] = "64";
    fails_with(&run(&args), "--batch-size");
    fails_with(&resume(&["--lr", "0.01"]), "--lr");
    fails_with(&resume(&["--subset", "200"]), "--subset");
    fails_with(&resume(&["--seed", "2"]), "--seed");
    synthetic_set(dir.path(), "fashion-mnist", 300, 100);
    let all = dir.path().to_path_buf();
    let o = run(&[
        "train",
        "--model",
        "lenet-300-100",
        "--dataset",
        "fashion-mnist",
        "--data",
        s(&all),
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--resume",
        "--out",
        s(&dense),
    ]);
    fails_with(&o, "--dataset");
    // Identical settings continue; more epochs train further.
    let o = resume(&["--epochs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    let report = json(&dense.join("report.json"));
    assert_eq!(report["epochs"], 2);
    assert_eq!(report["model"], "lenet-300-100");
    // --resume where there is nothing to resume.
    let empty = dir.path().join("empty");
    fails_with(&quick_train(&data, &empty, &["--resume"]), "no checkpoint");
}

#[test]
fn degenerate_values_are_rejected_with_the_flag_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = synthetic_mnist(dir.path(), 100, 20);
    let out = dir.path().join("never");
    for (extra, needle) in [
        (&["--epochs", "0"][..], "epochs must be at least 1"),
        (&["--subset", "0"][..], "--subset must be at least 1"),
        (
            &["--max-batches", "0"][..],
            "max batches must be at least 1",
        ),
        (
            &["--lr", "0"][..],
            "learning rate must be a positive number",
        ),
        // Negative numbers are values, not flags: the check sees them.
        (
            &["--lr", "-1"][..],
            "learning rate must be a positive number, got -1",
        ),
        (&["--weight-decay", "-10"][..], "weight decay"),
        (
            &["--optimizer", "sgd", "--momentum", "-0.5"][..],
            "momentum",
        ),
    ] {
        let o = quick_train(&data, &out, extra);
        fails_with(&o, needle);
        assert!(!out.join("model.json").exists(), "{extra:?} wrote a model");
    }
    let (_, dense) = setup(&dir.path().join("d"));
    let pruned = dir.path().join("p");
    for (extra, needle) in [
        (&["--beta1", "2"][..], "beta1 must lie in [0, 1)"),
        (&["--target-flops", "0"][..], "--target-flops"),
        (&["--target-flops", "-3"][..], "--target-flops"),
        (&["--epochs", "0"][..], "--epochs"),
        (&["--lr", "-0.1"][..], "--lr must be a positive number"),
        (&["--percent", "100"][..], "--percent"),
    ] {
        fails_with(&quick_prune(&data, &dense, &pruned, extra), needle);
        assert!(
            !pruned.join("model.json").exists(),
            "{extra:?} wrote a model"
        );
    }
    // An unreachable target is not an error, but the report and a warning say so.
    let o = quick_prune(&data, &dense, &pruned, &["--target-flops", "1e9"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning: the FLOPs target"),
        "{}",
        text(&o)
    );
    assert_eq!(json(&pruned.join("report.json"))["target_flops_met"], false);
}

#[test]
fn broken_model_files_get_errors_naming_the_file_or_tensor() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, dense) = setup(dir.path());
    let weights = dense.join("weights.safetensors");
    let good = std::fs::read(&weights).expect("weights");

    std::fs::write(&weights, &good[..good.len() / 3]).expect("truncate");
    let o = run(&["eval", "--model", s(&dense), "--data", s(&data)]);
    fails_with(&o, "weights.safetensors");
    assert!(text(&o).contains("truncated"), "{}", text(&o));

    // NaN weights: refused at load by eval, graph and compile.
    let mut model = prune_nn::graph::Model::init(
        prune_nn::graph::zoo::build("lenet-300-100", &[1, 28, 28], 10).expect("zoo"),
        0,
    )
    .expect("init");
    model.params.get_mut("fc2.weight").expect("fc2").data_mut()[3] = f32::NAN;
    model.save(&dense).expect("save");
    for args in [
        vec!["eval", "--model", s(&dense), "--data", s(&data)],
        vec!["graph", "--model", s(&dense)],
    ] {
        let o = run(&args);
        fails_with(&o, "fc2.weight");
        assert!(text(&o).contains("NaN"), "{}", text(&o));
    }
}

#[test]
fn the_demo_says_where_its_files_are_and_each_run_evaluates() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = synthetic_mnist(dir.path(), 300, 100);
    let out = dir.path().join("demo");
    let demo = || {
        run(&[
            "demo",
            "--data",
            s(&data),
            "--epochs",
            "1",
            "--sbp-epochs",
            "1",
            "--out",
            s(&out),
        ])
    };
    let o = demo();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let (dense, sbp) = (out.join("dense"), out.join("sbp"));
    for needle in [
        "with SBP",
        s(&dense),
        s(&sbp),
        &format!("eval  --model {}", s(&sbp)),
    ] {
        assert!(stdout.contains(needle), "no '{needle}' in:\n{stdout}");
    }
    // The layer table lists only layers with channels of their own.
    for row in ["| relu", "| pool", "_gate |", "| flatten"] {
        assert!(!stdout.contains(row), "row '{row}' in:\n{stdout}");
    }
    assert!(text(&o).contains("finetune: epoch 1/1"), "{}", text(&o));
    for d in [&dense, &sbp, &sbp.join("sparse"), &sbp.join("finetune")] {
        let o = run(&["eval", "--model", s(d), "--data", s(&data)]);
        assert!(
            o.status.success(),
            "eval --model {}: {}",
            d.display(),
            text(&o)
        );
    }
    // A second demo replaces the first one's output.
    let o = demo();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn an_imported_model_with_its_dataset_evaluates_without_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, dense) = setup(dir.path());
    let onnx = dir.path().join("dense.onnx");
    let o = run(&["export", "--model", s(&dense), "--onnx", s(&onnx)]);
    assert!(o.status.success(), "{}", text(&o));
    // Without --dataset the run directory cannot name its data: eval says so.
    let bare = dir.path().join("imported-bare");
    let o = run(&["import", "--onnx", s(&onnx), "--out", s(&bare)]);
    assert!(o.status.success(), "{}", text(&o));
    fails_with(
        &run(&["eval", "--model", s(&bare), "--data", s(&data)]),
        "--dataset",
    );
    // An unknown dataset name is refused before anything is written.
    let wrong = dir.path().join("imported-wrong");
    let o = run(&[
        "import",
        "--onnx",
        s(&onnx),
        "--out",
        s(&wrong),
        "--dataset",
        "imagenet",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("imagenet"), "{}", text(&o));
    assert!(!wrong.join("model.json").exists());
    // With --dataset it evaluates like any other run directory.
    let named = dir.path().join("imported");
    let o = run(&[
        "import",
        "--onnx",
        s(&onnx),
        "--out",
        s(&named),
        "--dataset",
        "mnist",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["eval", "--model", s(&named), "--data", s(&data)]);
    assert!(
        o.status.success() && text(&o).contains("test accuracy"),
        "{}",
        text(&o)
    );
}
