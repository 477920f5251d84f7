//! `prune-nn`: structured pruning of neural networks — Structured Bayesian
//! Pruning (Neklyudov et al. 2017), the polarization regularizer (Zhuang et
//! al. 2020) and network slimming (Liu et al. 2017) — with a compiler that
//! turns pruning masks into a physically smaller, faster dense network.
//!
//! This crate is the facade: it re-exports the workspace crates and holds
//! the end-to-end pipeline ([`prune::prune`], [`demo::run`]).

pub mod demo;
pub mod error;
pub mod plots;
pub mod prune;
pub mod recipe;
pub mod report;
pub mod run;
pub mod sbp_weights;
mod tools;
pub mod trajectory;

pub use error::{Error, Result};
pub use prune_compiler as compiler;
pub use prune_core as core;
pub use prune_data as data;
pub use prune_graph as graph;
pub use prune_reg as reg;
pub use prune_train as train;
pub use tools::{compile_masks, describe, evaluate};
