//! `prune-nn`: train, prune, compile and evaluate neural networks from the
//! command line. Every command reads and writes run directories
//! (`model.json`, `weights.safetensors`, `report.json`).

mod alloc;
mod args;
mod bench;
mod chart;
mod commands;
mod demo;
mod device;
mod onnx;
mod recipe_args;
mod schedule_args;

/// Training allocates and frees large activation buffers every step; mimalloc
/// reuses them instead of returning them to the kernel each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    alloc::keep_freed_pages();
    let result = recipe_args::parse().and_then(|(cli, resolved)| {
        // With a recipe the resolved settings are written before the run
        // starts (long runs), otherwise once the command has succeeded.
        if let Some(r) = resolved.as_ref().filter(|r| r.recipe.is_some()) {
            r.write()?;
        }
        commands::run(cli)?;
        match &resolved {
            Some(r) => r.write(),
            None => Ok(()),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
