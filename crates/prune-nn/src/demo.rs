//! `prune-nn demo`: LeNet5 trained briefly, pruned with SBP, compiled, and
//! compared before/after — the whole pipeline in one command.

use crate::error::Result;
use crate::prune::{prune, Method, PruneConfig};
use crate::report::PruneReport;
use crate::run::{load_data, train_dense};
use prune_train::{OptimizerKind, TrainConfig};
use std::path::Path;

/// Runs the demo into `out`; uses MNIST, or Fashion-MNIST when MNIST is
/// neither present nor downloadable (and says which it used).
pub fn run(
    out: &Path,
    data: Option<&Path>,
    epochs: usize,
    sbp_epochs: usize,
) -> Result<PruneReport> {
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
    let (dense, _) = train_dense("lenet5", &train, &test, &cfg, &out.join("dense"), false)?;
    let mut pcfg = PruneConfig::paper_defaults(Method::Sbp);
    pcfg.epochs = sbp_epochs;
    // μ and log σ at 100x the network's rate, so that a few epochs suffice
    // for the noise of unneeded units to grow (docs/results.md).
    pcfg.sbp_lr_mult = 100.0;
    pcfg.finetune_epochs = 1;
    pcfg.progress = true;
    eprintln!("demo: SBP sparse training ({sbp_epochs} epochs), compile, fine-tune");
    let pruned = prune(&dense, &train, &test, &pcfg, &out.join("sbp"))?;
    Ok(pruned.report)
}
