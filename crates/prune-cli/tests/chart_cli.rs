//! `prune-nn chart`: a chart from a hand-written pruning report, and the
//! errors for a wrong extension and a directory that is not a run.

use std::process::Command;

fn chart(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .arg("chart")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn accuracy_flops_png_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    std::fs::write(
        run.join("report.json"),
        r#"{"method": "polarization", "model": "lenet5", "flops_reduction": 2.5,
            "test_accuracy_after": 0.99, "test_accuracy_before": 0.992}"#,
    )
    .expect("write");
    let run_s = run.to_str().expect("utf-8");
    let png = dir.path().join("acc.png");
    let o = chart(&[
        "accuracy-flops",
        "--out",
        png.to_str().expect("utf-8"),
        run_s,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));

    let jpg = dir.path().join("acc.jpg");
    let o = chart(&[
        "accuracy-flops",
        "--out",
        jpg.to_str().expect("utf-8"),
        run_s,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(".svg or .png"), "{err}");

    let svg = dir.path().join("kept.svg");
    let o = chart(&["kept-units", "--out", svg.to_str().expect("utf-8"), run_s]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("kept.jsonl"), "{err}");
    assert!(!svg.exists());
}
