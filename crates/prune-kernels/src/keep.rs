//! Validated lists of kept channel indices.

use crate::error::KernelError;
use crate::runtime::{Cuda, Runtime};

/// Checks that `indices` are unique and below `bound` (and that `bound` fits the kernels'
/// 32-bit channel arithmetic).  Order is free: gathering follows the list order.
pub fn validate_keep(indices: &[u32], bound: usize) -> Result<(), KernelError> {
    if bound > i32::MAX as usize {
        return Err(KernelError::invalid(
            "keep list",
            format!("channel count {bound} exceeds the 32-bit range"),
        ));
    }
    let mut seen = vec![false; bound];
    for (pos, &i) in indices.iter().enumerate() {
        let slot = seen.get_mut(i as usize).ok_or_else(|| {
            KernelError::invalid(
                "keep list",
                format!("index {i} at position {pos} is out of range for {bound} channels"),
            )
        })?;
        if *slot {
            return Err(KernelError::invalid(
                "keep list",
                format!("index {i} appears more than once (position {pos})"),
            ));
        }
        *slot = true;
    }
    Ok(())
}

/// A list of kept channels, validated on the host and mirrored on the device.  Kernels
/// index tensors through the device copy; validation at construction is what keeps those
/// accesses in bounds.
pub struct KeepList<R: Runtime = Cuda> {
    host: Vec<u32>,
    dev: R::Buf<u32>,
    bound: usize,
}

impl<R: Runtime> std::fmt::Debug for KeepList<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepList")
            .field("indices", &self.host)
            .field("bound", &self.bound)
            .finish()
    }
}

impl<R: Runtime> KeepList<R> {
    /// Validates `indices` against `bound` channels and uploads them on `stream`.
    pub fn new(
        stream: &R::Stream,
        indices: &[u32],
        bound: usize,
    ) -> Result<KeepList<R>, KernelError> {
        validate_keep(indices, bound)?;
        Ok(KeepList {
            host: indices.to_vec(),
            dev: R::upload(stream, indices)?,
            bound,
        })
    }

    /// Keeps every one of `bound` channels, in order.
    pub fn all(stream: &R::Stream, bound: usize) -> Result<KeepList<R>, KernelError> {
        let idx: Vec<u32> = (0..bound as u32).collect();
        KeepList::new(stream, &idx, bound)
    }

    /// Number of kept channels.
    pub fn len(&self) -> usize {
        self.host.len()
    }

    /// `true` when no channel is kept.
    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// Number of channels of the full tensor.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// The kept indices.
    pub fn indices(&self) -> &[u32] {
        &self.host
    }

    /// The device copy (at least one element long; only the first `len()` are meaningful).
    pub fn device(&self) -> &R::Buf<u32> {
        &self.dev
    }
}
