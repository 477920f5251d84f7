//! `--device`: bad values are flag errors; on a machine without a GPU, `cuda` is a clear
//! error naming what is missing, for every command that takes the flag, before any input
//! is read.

use prune_nn::core::backend::cuda::CudaDevice;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .args(args)
        .output()
        .expect("run prune-nn")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn main() {
    let no_gpu = prune_testkit::Need::check(
        "this machine has a usable GPU",
        match CudaDevice::new(0) {
            Ok(_) => Err("cuda:0 opened".into()),
            Err(_) => Ok(()),
        },
    );
    prune_testkit::run(vec![
        prune_testkit::test(
            "bad_device_values_are_flag_errors",
            bad_device_values_are_flag_errors,
        ),
        prune_testkit::test_needing(
            "cuda_without_a_gpu_is_a_clear_error",
            &no_gpu,
            cuda_without_a_gpu_is_a_clear_error,
        ),
    ]);
}

fn bad_device_values_are_flag_errors() {
    let o = run(&[
        "train", "--model", "lenet5", "--out", "x", "--device", "gpu",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cuda:N"), "{}", text(&o));
}

fn cuda_without_a_gpu_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (model, masks, out) = (p("model"), p("masks.json"), p("out"));
    for args in [
        vec!["train", "--model", "lenet5", "--out", &out],
        vec!["eval", "--model", &model],
        vec!["prune", "--method", "sbp", "--model", &model, "--out", &out],
        vec![
            "compile", "--model", &model, "--masks", &masks, "--out", &out,
        ],
        vec!["demo", "--out", &out],
    ] {
        let mut a = args.clone();
        a.extend(["--device", "cuda:0"]);
        let o = run(&a);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains("--device cuda:0") && t.contains("opening cuda:0"),
            "{args:?}: {t}"
        );
        assert!(
            !dir.path().join("out").exists(),
            "{args:?} wrote its output"
        );
    }
}
