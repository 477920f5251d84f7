//! `prune-nn`: train, prune, compile and evaluate neural networks from the
//! command line. Every command reads and writes run directories
//! (`model.json`, `weights.safetensors`, `report.json`).

mod alloc;
mod args;
mod bench;
mod commands;
mod demo;
mod onnx;

use clap::Parser;

/// Training allocates and frees large activation buffers every step; mimalloc
/// reuses them instead of returning them to the kernel each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    alloc::keep_freed_pages();
    let cli = args::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
