//! The error type of `prune-data`.

use std::path::PathBuf;

/// Every fallible operation in `prune-data` returns this error.
///
/// Each variant names the file (or URL) involved and what is wrong with it,
/// so a corrupt or misplaced dataset can be fixed from the message alone.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file whose contents violate its format (bad magic, wrong length, ...).
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },
    /// The image and label files of one split disagree on the number of examples.
    #[error("{images_file} holds {images} images but {labels_file} holds {labels} labels")]
    CountMismatch {
        images_file: String,
        images: usize,
        labels_file: String,
        labels: usize,
    },
    /// A label outside `0..classes`.
    #[error("{file}: label {label} of example {index} is outside 0..{classes}")]
    LabelOutOfRange {
        file: String,
        index: usize,
        label: u8,
        classes: usize,
    },
    /// A file's SHA-256 differs from the published one.
    #[error("{file}: SHA-256 mismatch: expected {expected}, got {actual}")]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    /// No directory holding the dataset was found; the message says where to put it.
    #[error("{0}")]
    NotFound(String),
    /// An HTTP download failed (connection, status, short body).
    #[error("download {url}: {reason}")]
    Download { url: String, reason: String },
    /// A dataset name that is not one of `mnist`, `fashion-mnist`, `cifar10`.
    #[error("unknown dataset {0:?} (expected one of: mnist, fashion-mnist, cifar10)")]
    UnknownDataset(String),
    /// An argument outside its domain (a zero batch size, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor could not be built.
    #[error(transparent)]
    Core(#[from] prune_core::CoreError),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error on `file`.
    pub fn format(file: impl Into<String>, reason: impl Into<String>) -> Self {
        DataError::Format {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias of `prune-data`.
pub type Result<T> = std::result::Result<T, DataError>;
