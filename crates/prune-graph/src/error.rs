//! The error type of `prune-graph`.

use std::path::PathBuf;

/// Errors of graph construction, validation, execution and (de)serialization.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A tensor operation failed.
    #[error(transparent)]
    Core(#[from] prune_core::CoreError),
    /// The graph is malformed (unknown input, cycle, duplicate name, ...).
    #[error("graph: {0}")]
    Invalid(String),
    /// Shapes do not fit at a node; names the node and its producers.
    #[error("node '{node}': {reason}")]
    Shape { node: String, reason: String },
    /// A regularizer's projection after an optimizer step failed.
    #[error("regularizer: {0}")]
    Regularizer(String),
    /// A parameter is missing or has the wrong shape.
    #[error("parameter '{name}': {reason}")]
    Param { name: String, reason: String },
    /// Reading or writing a file failed.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Result alias of `prune-graph`.
pub type Result<T> = std::result::Result<T, GraphError>;

impl GraphError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        GraphError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}
