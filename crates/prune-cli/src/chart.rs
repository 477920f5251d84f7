//! `prune-nn chart`: charts of run directories as `.svg` or `.png`.

use clap::{Args, Subcommand};
use prune_nn::Result;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ChartArgs {
    #[command(subcommand)]
    pub kind: ChartKind,
}

#[derive(Subcommand, Debug)]
pub enum ChartKind {
    /// Test accuracy against FLOPs reduction (log axis): one point per run,
    /// a line per method, dense training runs at reduction 1.
    AccuracyFlops {
        /// The chart to write (.svg or .png).
        #[arg(long)]
        out: PathBuf,
        /// Run directories of `prune-nn prune` and `prune-nn train`.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
    },
    /// Kept units per layer over the epochs of a pruning run's sparse
    /// training (its sparse/kept.jsonl).
    KeptUnits {
        /// The chart to write (.svg or .png).
        #[arg(long)]
        out: PathBuf,
        /// A `prune-nn prune` run directory.
        run: PathBuf,
    },
    /// Per-layer histograms of the pruning scores in a run's masks.json
    /// (log10 SNR or gamma), kept and pruned units in two colours, with the
    /// threshold.
    Histograms {
        /// The chart to write (.svg or .png).
        #[arg(long)]
        out: PathBuf,
        /// A `prune-nn prune` run directory.
        run: PathBuf,
    },
}

pub fn run(a: ChartArgs) -> Result<()> {
    let out = match a.kind {
        ChartKind::AccuracyFlops { out, runs } => {
            prune_nn::chart::accuracy_flops(&runs, &out)?;
            out
        }
        ChartKind::KeptUnits { out, run } => {
            prune_nn::chart::kept_units(&run, &out)?;
            out
        }
        ChartKind::Histograms { out, run } => {
            prune_nn::chart::histograms(&run, &out)?;
            out
        }
    };
    println!("wrote {}", out.display());
    Ok(())
}
