//! The error type of `prune-reg`.

use std::path::PathBuf;

/// Errors of the regularizers, pruning rules, mask files and plots.
#[derive(Debug, thiserror::Error)]
pub enum RegError {
    /// Two slices that must have one entry per unit differ in length.
    #[error("length mismatch for {what}: expected {expected}, got {got}")]
    LengthMismatch {
        /// Which slice.
        what: &'static str,
        /// Length required.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A layer (or the whole input) has no units.
    #[error("{what} is empty")]
    Empty {
        /// What is empty (a layer name or an argument).
        what: String,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("{what}[{index}] is not finite ({value})")]
    NonFinite {
        /// Which slice or layer.
        what: String,
        /// Position of the value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A scalar argument is out of its valid range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is required.
        reason: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A mask file is not valid JSON of the expected shape.
    #[error("invalid mask JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A mask file parsed but is inconsistent.
    #[error("invalid masks in {path}: {reason}")]
    InvalidMasks {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// Backend message.
        message: String,
    },
    /// The training callback of the FLOPs-target search failed.
    #[error("search trial {step} (lambda = {lambda}, t = {t}) failed: {source}")]
    SearchCallback {
        /// Index of the trial (0-based).
        step: usize,
        /// λ of the trial.
        lambda: f64,
        /// t of the trial.
        t: f64,
        /// The callback's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The model a method or rule was applied to is unusable.
    #[error(transparent)]
    Graph(#[from] prune_graph::GraphError),
}

/// Result alias of `prune-reg`.
pub type Result<T> = std::result::Result<T, RegError>;
