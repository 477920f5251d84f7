//! The error type of the `prune-nn` facade.

/// Any error of the pipeline, wrapping the error of the crate it came from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] prune_core::CoreError),
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
    #[error(transparent)]
    Data(#[from] prune_data::DataError),
    #[error(transparent)]
    Train(#[from] prune_train::TrainError),
    #[error(transparent)]
    Reg(#[from] prune_reg::RegError),
    #[error(transparent)]
    Compile(#[from] prune_compiler::CompileError),
    #[error(transparent)]
    Onnx(#[from] prune_onnx::OnnxError),
    /// A bad argument or run directory.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a run file failed.
    #[error("{path}: {reason}")]
    Io {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Result alias of the facade.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}
