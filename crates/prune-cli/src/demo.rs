//! `prune-nn demo`: the whole pipeline on LeNet5, then where its files are
//! and what to run next.

use crate::args::DemoArgs;
use prune_nn::outputs::{check_output_dir, RunLock};
use prune_nn::{Error, Result};
use std::path::Path;

/// Marks a directory as the demo's own output, which a later demo replaces.
const DEMO_NOTE: &str = "demo.md";

pub fn demo(a: DemoArgs) -> Result<()> {
    let device = crate::device::open(a.device)?;
    // A second demo replaces the first one's runs; anything else in the way
    // needs --force.
    let replace = a.force || a.out.join(DEMO_NOTE).is_file();
    for sub in ["dense", "sbp"] {
        check_output_dir(&a.out.join(sub), &[], replace)?;
    }
    let _lock = RunLock::acquire(&a.out)?;
    let run = prune_nn::demo::run(&a.out, a.data.as_deref(), a.epochs, a.sbp_epochs, device)?;
    let report = prune_nn::report::render_markdown(&run.report);
    let guide = next_steps(&run.dense_dir, &run.pruned_dir, run.dataset);
    let note = a.out.join(DEMO_NOTE);
    std::fs::write(&note, format!("{report}\n{guide}")).map_err(|e| Error::Io {
        path: note.clone(),
        reason: e.to_string(),
    })?;
    println!("{report}\n{guide}");
    Ok(())
}

/// Where the demo wrote its files and the commands to try next, spelled
/// with the program as it was invoked (e.g. `target/release/prune-nn` under
/// `cargo run`), so they can be pasted as they are.
fn next_steps(dense: &Path, pruned: &Path, dataset: &str) -> String {
    let exe = std::env::args()
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "prune-nn".into());
    let (d, p) = (dense.display(), pruned.display());
    format!(
        "## Files\n\n\
         - `{d}`: the dense LeNet5 ({dataset}): model.json, weights.safetensors, report.json, metrics.jsonl\n\
         - `{p}`: the pruned, compiled and fine-tuned model, report.md, masks.json, histograms\n\
         - `{p}/sparse`: the gated model after SBP training\n\n\
         ## Next\n\n\
         ```sh\n\
         {exe} eval  --model {p}\n\
         {exe} graph --model {p}\n\
         {exe} eval  --model {d}\n\
         {exe} compile --model {p}/sparse --masks {p}/masks.json --out {p}-recompiled\n\
         {exe} prune --method polarization --model {d} --dataset {dataset} --epochs 3 --out {p}-polarization\n\
         ```\n"
    )
}
