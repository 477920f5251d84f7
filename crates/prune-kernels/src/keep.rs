//! Validated lists of kept channel indices.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use crate::error::KernelError;
use crate::host::upload;

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
pub struct KeepList {
    host: Vec<u32>,
    dev: CudaSlice<u32>,
    bound: usize,
}

impl std::fmt::Debug for KeepList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepList")
            .field("indices", &self.host)
            .field("bound", &self.bound)
            .finish()
    }
}

impl KeepList {
    /// Validates `indices` against `bound` channels and uploads them on `stream`.
    pub fn new(
        stream: &Arc<CudaStream>,
        indices: &[u32],
        bound: usize,
    ) -> Result<KeepList, KernelError> {
        validate_keep(indices, bound)?;
        Ok(KeepList {
            host: indices.to_vec(),
            dev: upload(stream, indices)?,
            bound,
        })
    }

    /// Keeps every one of `bound` channels, in order.
    pub fn all(stream: &Arc<CudaStream>, bound: usize) -> Result<KeepList, KernelError> {
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
    pub fn device(&self) -> &CudaSlice<u32> {
        &self.dev
    }
}
