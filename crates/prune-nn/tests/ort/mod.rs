//! Running exported models in onnxruntime from the tests.
//!
//! `PRUNE_NN_PYTHON` names a Python with the `onnx` and `onnxruntime`
//! packages (.ci/run installs them into a venv outside the repository).
//! Without it the tests that need it are reported as ignored with the
//! reason; with `PRUNE_NN_REQUIRE_ORT=1` (set by CI) a missing or broken
//! Python fails them instead.
#![allow(dead_code)]

use prune_nn::core::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's crate holding the Python helper scripts.
pub fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../prune-onnx/py")
}

/// Whether `PRUNE_NN_PYTHON` names a Python with onnx, onnxruntime and
/// numpy: the need of the onnxruntime tests, which the harness reports as
/// ignored (with the reason) when unmet, or fails when PRUNE_NN_REQUIRE_ORT=1.
pub fn need() -> prune_testkit::Need {
    python_need(
        &["onnx", "onnxruntime", "numpy"],
        "no onnxruntime",
        "PRUNE_NN_REQUIRE_ORT",
    )
}

/// Whether `PRUNE_NN_PYTHON` names a Python that imports every module of
/// `modules`; unmet, the tests are ignored with `label` and the reason, or
/// fail when the environment variable `require` is 1.
pub fn python_need(
    modules: &[&str],
    label: &'static str,
    require: &'static str,
) -> prune_testkit::Need {
    let list = modules.join(", ");
    let probe = match std::env::var_os("PRUNE_NN_PYTHON") {
        None => Err(format!("PRUNE_NN_PYTHON is not set (a Python with {list})")),
        Some(p) => {
            let ok = Command::new(&p)
                .args(["-c", &format!("import {list}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                Ok(())
            } else {
                Err(format!("{} cannot import {list}", p.to_string_lossy()))
            }
        }
    };
    prune_testkit::Need::probe(label, require, probe)
}

/// The Python of a test that [`need`] let run.
pub fn python() -> PathBuf {
    PathBuf::from(std::env::var_os("PRUNE_NN_PYTHON").expect("the harness checked PRUNE_NN_PYTHON"))
}

/// Runs `python script args...`, panicking with its output on failure.
pub fn run_py(python: &Path, script: &str, args: &[String]) -> String {
    let out = Command::new(python)
        .arg(py_dir().join(script))
        .args(args)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

/// Runs each `(model.onnx, input)` in onnxruntime (one Python process) and
/// returns the outputs.
pub fn run_models(python: &Path, dir: &Path, jobs: &[(PathBuf, Tensor)]) -> Vec<Tensor> {
    let mut args = vec!["check".to_string()];
    let mut outs = Vec::new();
    for (k, (model, x)) in jobs.iter().enumerate() {
        let inp = dir.join(format!("in{k}.f32"));
        let out = dir.join(format!("out{k}.f32"));
        std::fs::write(&inp, x.as_bytes()).expect("write input");
        let dims: Vec<String> = x.shape().iter().map(|d| d.to_string()).collect();
        args.extend([
            model.display().to_string(),
            inp.display().to_string(),
            dims.join(","),
            out.display().to_string(),
        ]);
        outs.push(out);
    }
    run_py(python, "run_ort.py", &args);
    outs.iter()
        .zip(jobs)
        .map(|(o, (_, x))| {
            let bytes = std::fs::read(o).expect("read output");
            let n = bytes.len() / 4;
            let batch = x.shape()[0];
            Tensor::from_le_bytes(vec![batch, n / batch], &bytes).expect("output tensor")
        })
        .collect()
}

/// `max|a − b| / max(1e-6, max|b|)`, the compiler's verification measure.
pub fn rel_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "output shapes differ");
    let diff = a.max_abs_diff(b).expect("same shape");
    let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    diff / scale
}

/// A seeded standard-normal batch.
pub fn random_input(shape: &[usize], seed: u64) -> Tensor {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Tensor::randn(shape.to_vec(), 0.0, 1.0, &mut rng)
}
