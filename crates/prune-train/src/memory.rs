//! The activation memory of a training step, estimated from the IR before
//! training starts, against the memory the machine has available.
//!
//! A step keeps every node's output on the tape for the backward pass and
//! creates a gradient of the same size for each of them; the kernels add
//! scratch of the order of one layer. With `a_i` the per-example element
//! count of node `i`'s output (from shape inference; the input is a node) and
//! `B` the batch size, the estimate is
//!
//! ```text
//! bytes ≈ 4 · B · (2 · Σ_i a_i + 2 · max_i a_i)
//! ```
//!
//! (f32 values and gradients of every node, plus two of the largest
//! activation for kernel scratch such as im2col and the pooling indices).
//! It is a lower bound on what the allocator will ask for: its purpose is to
//! refuse, before any work, batch sizes that cannot possibly fit.

use crate::error::{Result, TrainError};
use prune_graph::{infer_shapes, Graph};

/// Estimated bytes of activations and gradients of one training step at
/// `batch` examples (see the module docs for the formula).
pub fn step_activation_bytes(graph: &Graph, batch: usize) -> Result<u64> {
    let shapes = infer_shapes(graph)?;
    let per_example: Vec<u64> = shapes
        .iter()
        .map(|s| s.iter().map(|&d| d as u64).product::<u64>())
        .collect();
    let sum: u64 = per_example.iter().sum();
    let max = per_example.iter().copied().max().unwrap_or(0);
    Ok(4u64
        .saturating_mul(batch as u64)
        .saturating_mul(2 * sum + 2 * max))
}

/// `MemAvailable` of `/proc/meminfo` in bytes, where the system reports it.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

/// The `MemAvailable:` line of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Refuses a step of `batch` examples whose estimated activations exceed
/// `available` bytes; `None` (memory unknown) lets it through.
pub fn check_step_memory(graph: &Graph, batch: usize, available: Option<u64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let need = step_activation_bytes(graph, batch)?;
    if need > available {
        return Err(TrainError::Memory(format!(
            "a training step of '{}' at batch size {batch} needs about {:.1} GiB of activations \
             and gradients (estimated from the layer shapes), more than the {:.1} GiB of memory \
             available (MemAvailable); use a smaller --batch-size",
            graph.name,
            gib(need),
            gib(available)
        )));
    }
    Ok(())
}
