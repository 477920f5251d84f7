//! PyTorch → prune-nn → onnxruntime: imports an ONNX model, prunes it
//! briefly with polarization, exports dense and pruned models, and — when
//! `PRUNE_NN_PYTHON` names a Python with `onnx` and `onnxruntime` — checks
//! the pruned ONNX model against prune-nn's compiled model and measures both
//! in onnxruntime.
//!
//! ```sh
//! python crates/prune-onnx/py/export_torchvision.py resnet18.onnx --keep-bn
//! PRUNE_NN_PYTHON=/path/to/venv/bin/python PRUNE_NN_DATA=../shared/data \
//!   cargo run --release -p prune-nn --example onnx_round_trip -- \
//!   resnet18.onnx fashion-mnist runs/resnet18-onnx 40
//! ```
//! Arguments: the ONNX file, the dataset, an output directory, and the
//! number of batches of sparse training and of fine-tuning (default 40).

use prune_nn::graph::{predict, Model};
use prune_nn::onnx::{check_fits, export_file, import_file, ExportOptions};
use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::run::load_data;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [onnx, dataset, out, rest @ ..] = args.as_slice() else {
        return Err("usage: onnx_round_trip MODEL.onnx DATASET OUT_DIR [BATCHES]".into());
    };
    let batches: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(40);
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;

    let dense: Model = import_file(Path::new(onnx))?;
    let (train, test, _) = load_data(dataset, None)?;
    check_fits(&dense, &train)?;
    println!(
        "imported {onnx}: {} nodes, {} FLOPs",
        dense.graph.nodes.len(),
        dense.cost()?.flops
    );

    let mut cfg = PruneConfig::paper_defaults(Method::Polarization);
    cfg.epochs = 1;
    cfg.finetune_epochs = 1;
    cfg.max_batches = Some(batches);
    cfg.batch_size = 64;
    cfg.lambda = 5e-4;
    cfg.speed_repeats = 3;
    cfg.progress = true;
    let pruned = prune(&dense, &train, &test, &cfg, &out.join("pruned"))?;
    let r = &pruned.report;
    println!(
        "polarization: FLOPs {} -> {} ({:.2}x fewer), params {} -> {}, test accuracy {:.4} -> {:.4}",
        r.flops_before, r.flops_after, r.flops_reduction, r.params_before, r.params_after,
        r.test_accuracy_before, r.test_accuracy_after
    );
    if let (Some(d), Some(p)) = (r.dense_images_per_sec, r.pruned_images_per_sec) {
        println!(
            "prune-nn (batch 100): dense {d:.0} images/s, pruned {p:.0} images/s ({:.2}x)",
            p / d
        );
    }
    let (dense_onnx, pruned_onnx) = (out.join("dense.onnx"), out.join("pruned.onnx"));
    export_file(&dense, &ExportOptions::default(), &dense_onnx)?;
    export_file(&pruned.model, &ExportOptions::default(), &pruned_onnx)?;
    println!(
        "wrote {} and {}",
        dense_onnx.display(),
        pruned_onnx.display()
    );

    let Some(python) = std::env::var_os("PRUNE_NN_PYTHON") else {
        println!("PRUNE_NN_PYTHON is not set: skipping the onnxruntime check and timing");
        return Ok(());
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prune-onnx/py/run_ort.py");
    let (x, _) = test.subset(16).to_tensor()?;
    let want = predict(&pruned.model, x.clone(), None)?;
    let (inp, got) = (out.join("input.f32"), out.join("ort-output.f32"));
    std::fs::write(&inp, x.as_bytes())?;
    let dims: Vec<String> = x.shape().iter().map(|d| d.to_string()).collect();
    let status = Command::new(&python)
        .arg(&script)
        .args(["check".as_ref(), pruned_onnx.as_os_str(), inp.as_os_str()])
        .arg(dims.join(","))
        .arg(&got)
        .status()?;
    if !status.success() {
        return Err("onnxruntime failed on the pruned model".into());
    }
    let y = prune_nn::core::Tensor::from_le_bytes(want.shape().to_vec(), &std::fs::read(&got)?)?;
    let scale = want
        .data()
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let err = y.max_abs_diff(&want)? / scale;
    println!("onnxruntime vs prune-nn compiled model: max relative error {err:.2e}");
    let mut shape = x.shape().to_vec();
    shape[0] = 100;
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    for model in [&dense_onnx, &pruned_onnx] {
        let status = Command::new(&python)
            .arg(&script)
            .args(["bench".as_ref(), model.as_os_str()])
            .args([dims.join(","), "3".into()])
            .status()?;
        if !status.success() {
            return Err("onnxruntime timing failed".into());
        }
    }
    if err > 1e-5 {
        return Err(format!("relative error {err:.2e} exceeds 1e-5").into());
    }
    Ok(())
}
