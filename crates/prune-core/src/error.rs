//! The error type of `prune-core`.

/// Every fallible operation in `prune-core` returns this error.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CoreError {
    /// Two shapes that must agree do not; both are printed.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A tensor has the wrong rank or an impossible shape for the operation.
    #[error("{op}: bad shape {shape:?}: {reason}")]
    BadShape {
        op: &'static str,
        shape: Vec<usize>,
        reason: String,
    },
    /// An argument outside its domain (a zero stride, an out-of-range index, ...).
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument { op: &'static str, reason: String },
    /// The number of elements does not match the shape.
    #[error("tensor of shape {shape:?} needs {expected} elements, got {got}")]
    DataLength {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    /// A variable handle does not belong to this tape.
    #[error("variable {index} does not belong to this tape ({len} nodes)")]
    UnknownVar { index: usize, len: usize },
    /// `backward` was called on something that is not a scalar, or on a no-grad tape.
    #[error("backward: {0}")]
    Backward(String),
    /// A non-finite value where a finite one is required.
    #[error("{what} is not finite")]
    NonFinite { what: String },
    /// A feature that needs hardware or libraries this build or machine lacks.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Result alias of `prune-core`.
pub type Result<T> = std::result::Result<T, CoreError>;
