//! The `prune-nn` binary: flags, errors, and a short train → eval → graph →
//! prune → compile round on the real MNIST files under `PRUNE_NN_DATA`
//! (reported as ignored, with the reason, when the variable is unset).

mod common;

use common::*;
use prune_testkit::{data, Need};

fn main() {
    let real = Need::data();
    let mut trials =
        prune_testkit::tests![bad_flags_get_clap_errors, missing_inputs_are_clear_errors];
    trials.extend(prune_testkit::tests_needing!(&real;
        train_eval_graph_prune_compile_on_real_data,
        a_batch_that_cannot_fit_in_memory_is_refused,
    ));
    trials.push(prune_testkit::test_needing(
        "unreadable_data_folders_are_reported_as_unreadable",
        &unprivileged_need(),
        unreadable_data_folders_are_reported_as_unreadable,
    ));
    prune_testkit::run(trials);
}
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

fn train_eval_graph_prune_compile_on_real_data() {
    let data = data().join("mnist");
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
    // The compiled run names its dataset: eval needs no --dataset.
    let o = run(&["eval", "--model", c, "--data", d]);
    assert!(o.status.success(), "{}", text(&o));
}

/// ResNet-56 at a batch of all 60,000 MNIST images needs hundreds of GiB of
/// activations: refused before training, with the estimate and the limit.
fn a_batch_that_cannot_fit_in_memory_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("big");
    let o = run(&[
        "train",
        "--model",
        "resnet56",
        "--data",
        s(&data()),
        "--batch-size",
        "1000000",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("batch size 60000") && t.contains("GiB") && t.contains("MemAvailable"),
        "{t}"
    );
}

/// How the permission test drops root's right to read anything: `setpriv`
/// to the `nobody` user, or nothing when not root.
fn unprivileged() -> Option<Vec<String>> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    if uid != "0" {
        return Some(Vec::new());
    }
    // nobody must be able to reach and run the binary from where it was built.
    let ok = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args([env!("CARGO_BIN_EXE_prune-nn"), "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| {
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
        .map(String::from)
        .to_vec()
    })
}

fn unprivileged_need() -> Need {
    Need::check(
        "cannot drop root's permission to read any folder",
        unprivileged().map(drop).ok_or_else(|| {
            "running as root, and `setpriv` to user nobody cannot run the binary".to_string()
        }),
    )
}

/// A data folder that exists but may not be read is not reported as
/// "missing files".
fn unreadable_data_folders_are_reported_as_unreadable() {
    use std::os::unix::fs::PermissionsExt;
    let prefix = unprivileged().expect("probed");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mnist = synthetic_mnist(dir.path(), 10, 10);
    std::fs::set_permissions(&mnist, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let out = dir.path().join("out");
    let exe = env!("CARGO_BIN_EXE_prune-nn");
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = std::process::Command::new(p);
            c.args(rest).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    let o = cmd
        .args([
            "train",
            "--model",
            "lenet-300-100",
            "--data",
            s(&mnist),
            "--out",
            s(&out),
        ])
        .output()
        .expect("runs");
    std::fs::set_permissions(&mnist, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("permission denied") && t.contains(s(&mnist)),
        "{t}"
    );
    assert!(!t.contains("missing:"), "{t}");
}
