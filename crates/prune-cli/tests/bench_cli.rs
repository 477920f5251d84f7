//! `prune-nn bench`: a zoo model end to end, JSON output, and bad input. (On a
//! device: prune-nn's `device_pipeline` test, on the emulated device and on a GPU.)

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .arg("bench")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn zoo_model_json_report() {
    let o = bench(&[
        "--model",
        "lenet5",
        "--batch-size",
        "2",
        "--train",
        "--threads",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--latency-runs",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert_eq!(v["model"], "lenet5");
    assert_eq!(v["batch_size"], 2);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["device"], "cpu");
    assert!(v["inference"]["median_images_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["training"]["median_images_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(v["latency_batch1"]["runs"], 2);
}

#[test]
fn unknown_model_is_a_clear_error() {
    let o = bench(&["--model", "no-such-model"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no-such-model") && err.contains("resnet20"),
        "{err}"
    );
}

#[test]
fn a_bad_device_is_a_clear_error() {
    let o = bench(&["--model", "lenet5", "--device", "gpu"]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("gpu") && err.contains("cuda:N"), "{err}");
}
