//! The error type of `prune-onnx`.

/// Errors of ONNX import and export. Import errors name the file, and where
/// one node is at fault, that node's name and op type.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A graph or parameter error of the IR.
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
    /// A tensor operation failed.
    #[error(transparent)]
    Core(#[from] prune_core::CoreError),
    /// The node's operator has no counterpart in the IR.
    #[error(
        "{file}: node '{node}' has op type '{op}', which prune-nn cannot import \
         (supported: {supported})"
    )]
    Unsupported {
        file: String,
        node: String,
        op: String,
        supported: String,
    },
    /// A supported operator used in a form the IR cannot express.
    #[error("{file}: node '{node}' ({op}): {reason}")]
    Node {
        file: String,
        node: String,
        op: String,
        reason: String,
    },
    /// The model as a whole is not importable (no input, several outputs, ...).
    #[error("{file}: {reason}")]
    Model { file: String, reason: String },
    /// The model cannot be written as ONNX.
    #[error("export: {0}")]
    Export(String),
    /// Reading or writing a file failed.
    #[error("{path}: {reason}")]
    Io {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Result alias of `prune-onnx`.
pub type Result<T> = std::result::Result<T, OnnxError>;
