//! The error type of `prune-compiler`.

use prune_core::CoreError;
use prune_graph::GraphError;

/// Errors of dependency analysis, mask validation, surgery and verification.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The input model is malformed, or building/running a graph failed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A tensor operation failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A mask names an unknown node, a node that is not a gate, or has the
    /// wrong length.
    #[error("mask '{node}': {reason}")]
    Mask { node: String, reason: String },
    /// Every unit of a channel group (or every channel of a node) would be
    /// removed.
    #[error("channel group {group} ({members}) would lose all {size} of its units")]
    EmptyGroup {
        group: usize,
        size: usize,
        members: String,
    },
    /// A node would be left with no output channels.
    #[error("node '{node}' would be left with no output channels (of {channels})")]
    EmptyNode { node: String, channels: usize },
    /// A construct the compiler cannot handle exactly.
    #[error("node '{node}': {reason}")]
    Unsupported { node: String, reason: String },
    /// A parameter has an unexpected shape or is missing.
    #[error("parameter '{name}': {reason}")]
    Param { name: String, reason: String },
    /// The compiled model does not reproduce the masked model.
    #[error(
        "verification failed: compiled model differs from the masked model by \
         {max_rel_error:.3e} (relative; tolerance {tolerance:.1e}) on a batch of {batch}"
    )]
    Verify {
        max_rel_error: f64,
        tolerance: f64,
        batch: usize,
    },
    /// Invalid options.
    #[error("options: {0}")]
    Options(String),
}

/// Result alias of `prune-compiler`.
pub type Result<T> = std::result::Result<T, CompileError>;
