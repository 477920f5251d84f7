//! `prune-nn`: train, prune, compile and evaluate neural networks from the
//! command line. Every command reads and writes run directories
//! (`model.json`, `weights.safetensors`, `report.json`).

mod args;
mod commands;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
