//! `prune-nn import` and `prune-nn export`: ONNX in and out of run directories.

use clap::Args;
use prune_nn::onnx::{export_run, import_run, ExportOptions, DEFAULT_OPSET};
use prune_nn::Result;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The ONNX file (a CNN as torch.onnx.export writes it).
    #[arg(long)]
    pub onnx: PathBuf,
    /// The run directory to create (must not hold a model yet).
    #[arg(long)]
    pub out: PathBuf,
    /// The dataset the model is for (mnist, fashion-mnist, cifar10): recorded
    /// in the run directory so `eval --model DIR` needs no other flag.
    #[arg(long)]
    pub dataset: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A run directory (dense, gated or compiled).
    #[arg(long)]
    pub model: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    pub onnx: PathBuf,
    /// Default-domain opset, 13 to 21.
    #[arg(long, default_value_t = DEFAULT_OPSET)]
    pub opset: i64,
    /// Fold batch norm into the preceding conv/linear layer.
    #[arg(long)]
    pub fold_bn: bool,
}

pub fn import(a: ImportArgs) -> Result<()> {
    if let Some(d) = &a.dataset {
        d.parse::<prune_nn::data::DatasetKind>()?;
    }
    let r = import_run(&a.onnx, &a.out)?;
    if let Some(d) = &a.dataset {
        prune_nn::outputs::record_dataset(&a.out, d)?;
    }
    println!(
        "imported {} ({} nodes): input {:?}, {} classes, {} params, {} FLOPs (MACs); wrote {}",
        a.onnx.display(),
        r.nodes,
        r.input_shape,
        r.classes,
        r.params,
        r.flops,
        a.out.display()
    );
    Ok(())
}

pub fn export(a: ExportArgs) -> Result<()> {
    let opts = ExportOptions {
        opset: a.opset,
        fold_bn: a.fold_bn,
    };
    let s = export_run(&a.model, &a.onnx, &opts)?;
    println!(
        "exported {} ({} nodes, {} params, {} FLOPs) to {} (opset {}, {} bytes)",
        a.model.display(),
        s.nodes,
        s.params,
        s.flops,
        a.onnx.display(),
        a.opset,
        s.bytes
    );
    Ok(())
}
