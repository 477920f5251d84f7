//! The `prune-nn` binary: flags, errors, and a short train → eval → graph →
//! prune → compile round on real data when `PRUNE_NN_DATA` is set.

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prune-nn"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn bad_flags_get_clap_errors() {
    let o = run(&[
        "train", "--model", "lenet5", "--epochs", "many", "--out", "x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("invalid value 'many'"), "{}", text(&o));
    let o = run(&["prune", "--method", "magic", "--model", "x", "--out", "y"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("magic"), "{}", text(&o));
    let o = run(&["--help"]);
    assert!(o.status.success() && text(&o).contains("demo"));
}

#[test]
fn missing_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("nope");
    let o = run(&["eval", "--model", missing.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("nope") && text(&o).contains("model.json"),
        "{}",
        text(&o)
    );
    let o = run(&[
        "train",
        "--model",
        "lenet7",
        "--out",
        dir.path().to_str().expect("utf8"),
        "--data",
        missing.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).starts_with("error:") || text(&o).contains("error:"),
        "{}",
        text(&o)
    );
}

#[test]
fn train_eval_graph_prune_compile_on_real_data() {
    let Some(data) = std::env::var_os("PRUNE_NN_DATA") else {
        eprintln!("skipped: PRUNE_NN_DATA is not set");
        return;
    };
    let data = Path::new(&data).join("mnist");
    let dir = tempfile::tempdir().expect("tmp");
    let run_dir = dir.path().join("lenet");
    let (d, r) = (
        data.to_str().expect("utf8"),
        run_dir.to_str().expect("utf8"),
    );
    let o = run(&[
        "train",
        "--model",
        "lenet-300-100",
        "--dataset",
        "mnist",
        "--data",
        d,
        "--subset",
        "3000",
        "--epochs",
        "1",
        "--out",
        r,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in [
        "model.json",
        "weights.safetensors",
        "report.json",
        "metrics.jsonl",
    ] {
        assert!(run_dir.join(f).exists(), "{f}");
    }
    let o = run(&["eval", "--model", r, "--data", d]);
    assert!(
        o.status.success() && text(&o).contains("test accuracy"),
        "{}",
        text(&o)
    );
    let o = run(&["graph", "--model", r]);
    assert!(
        o.status.success() && text(&o).contains("fc1") && text(&o).contains("channel groups"),
        "{}",
        text(&o)
    );

    let pruned = dir.path().join("pruned");
    let p = pruned.to_str().expect("utf8");
    let o = run(&[
        "prune",
        "--method",
        "slimming",
        "--model",
        r,
        "--dataset",
        "mnist",
        "--data",
        d,
        "--subset",
        "2000",
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--percent",
        "40",
        "--out",
        p,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pruned.join("report.json")).expect("report"))
            .expect("json");
    for key in [
        "method",
        "test_accuracy_before",
        "test_accuracy_after",
        "flops_reduction",
        "flops_before",
        "flops_after",
    ] {
        assert!(report.get(key).is_some(), "report.json lacks {key}");
    }
    assert!(report["flops_reduction"].as_f64().expect("number") > 1.0);

    let compiled = dir.path().join("compiled");
    let c = compiled.to_str().expect("utf8");
    let sparse = pruned.join("sparse");
    let masks = pruned.join("masks.json");
    let o = run(&[
        "compile",
        "--model",
        sparse.to_str().expect("utf8"),
        "--masks",
        masks.to_str().expect("utf8"),
        "--out",
        c,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cr: serde_json::Value =
        serde_json::from_slice(&std::fs::read(compiled.join("report.json")).expect("report"))
            .expect("json");
    for key in [
        "flops_before",
        "flops_after",
        "params_before",
        "params_after",
        "layers",
        "dense_images_per_sec",
        "pruned_images_per_sec",
    ] {
        assert!(cr.get(key).is_some(), "compile report.json lacks {key}");
    }
    let o = run(&["eval", "--model", c, "--dataset", "mnist", "--data", d]);
    assert!(o.status.success(), "{}", text(&o));
}
