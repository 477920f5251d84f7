//! `prune-nn demo`: LeNet5 trained briefly, pruned with SBP, compiled, and
//! compared before/after — the whole pipeline in one command.

use crate::error::Result;
use crate::outputs::record_dataset_tree;
use crate::prune::{prune, Method, PruneConfig};
use crate::report::PruneReport;
use crate::run::{load_data, train_dense_on};
use prune_core::Device;
use prune_train::{OptimizerKind, TrainConfig};
use std::path::{Path, PathBuf};

/// What the demo produced and where.
pub struct DemoRun {
    pub report: PruneReport,
    /// `mnist`, or `fashion-mnist` when MNIST was not available.
    pub dataset: &'static str,
    /// The dense run directory (`<out>/dense`).
    pub dense_dir: PathBuf,
    /// The pruning run directory (`<out>/sbp`): the compiled, fine-tuned
    /// model, `report.md`, `masks.json`, histograms and `sparse/`.
    pub pruned_dir: PathBuf,
}

/// Runs the demo into `out`; uses MNIST, or Fashion-MNIST when MNIST is
/// neither present nor downloadable (and says which it used). Every run
/// directory it writes records its dataset, so `prune-nn eval --model DIR`
/// works on each without flags. Training, pruning and fine-tuning run on
/// `device` (see [`prune`]).
pub fn run(
    out: &Path,
    data: Option<&Path>,
    epochs: usize,
    sbp_epochs: usize,
    device: Device,
) -> Result<DemoRun> {
    let (name, (train, test, dir)) = match load_data("mnist", data) {
        Ok(d) => ("mnist", d),
        Err(e) => {
            eprintln!("MNIST unavailable ({e}); trying Fashion-MNIST");
            ("fashion-mnist", load_data("fashion-mnist", data)?)
        }
    };
    eprintln!("demo: LeNet5 on {name} from {}", dir.display());
    let cfg = TrainConfig {
        epochs,
        batch_size: 100,
        lr: 1e-3,
        optimizer: OptimizerKind::adam(),
        schedule: Default::default(),
        seed: 0,
        augment: false,
        max_batches: None,
        progress: true,
    };
    eprintln!("demo: training the dense model ({epochs} epochs)");
    let dense_dir = out.join("dense");
    let (mut dense, _) = train_dense_on(device, "lenet5", &train, &test, &cfg, &dense_dir, false)?;
    prune_train::model_to(&mut dense, device)?;
    let mut pcfg = PruneConfig::paper_defaults(Method::Sbp);
    pcfg.epochs = sbp_epochs;
    // μ and log σ at 100x the network's rate, so that a few epochs suffice
    // for the noise of unneeded units to grow (docs/results.md).
    pcfg.sbp_lr_mult = 100.0;
    pcfg.finetune_epochs = 1;
    pcfg.progress = true;
    eprintln!("demo: SBP sparse training ({sbp_epochs} epochs), compile, fine-tune");
    let pruned_dir = out.join("sbp");
    let pruned = prune(&dense, &train, &test, &pcfg, &pruned_dir)?;
    record_dataset_tree(&pruned_dir, name)?;
    Ok(DemoRun {
        report: pruned.report,
        dataset: name,
        dense_dir,
        pruned_dir,
    })
}
