//! The error type of `prune-train`.

use std::path::PathBuf;

/// Errors of training, evaluation and checkpointing.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Core(#[from] prune_core::CoreError),
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
    #[error(transparent)]
    Data(#[from] prune_data::DataError),
    /// The loss or a gradient became NaN or infinite; the last checkpoint is intact.
    #[error("epoch {epoch}, batch {batch}: {what} is not finite; training stopped (the last checkpoint is intact)")]
    NonFinite {
        epoch: usize,
        batch: usize,
        what: String,
    },
    /// A bad setting.
    #[error("config: {0}")]
    Config(String),
    /// `--resume` with settings that differ from the checkpoint's.
    #[error("cannot resume {dir}: {field} {reason}")]
    Resume {
        dir: PathBuf,
        /// The setting that differs, as the command line names it.
        field: String,
        reason: String,
    },
    /// A training step would not fit in memory.
    #[error("memory: {0}")]
    Memory(String),
    /// Reading or writing a run file failed.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// A regularizer failed.
    #[error("regularizer: {0}")]
    Regularizer(String),
}

/// Result alias of `prune-train`.
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}
