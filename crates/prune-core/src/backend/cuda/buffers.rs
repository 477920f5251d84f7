//! Tensors as device buffers: the storage of a device tensor, a new tensor over a
//! buffer, and device copies of index lists given with a batch.

use super::{CudaIndices, CudaStorage, GpuDevice, GpuRuntime};
use crate::error::{CoreError, Result};
use crate::storage::{IndexStorage, Indices, Storage};
use crate::tensor::{numel, Tensor};
use std::sync::Arc;

/// The device storage of `t`, or an error naming `op` when `t` is on the host.
pub(super) fn st<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a CudaStorage> {
    match t.storage() {
        Storage::Cuda(s) => Ok(s),
        Storage::Cpu(_) => Err(CoreError::InvalidArgument {
            op,
            reason: "a host tensor was given to the CUDA backend".into(),
        }),
    }
}

/// The device buffer of `t`.
pub(super) fn sl<'a, R: GpuRuntime>(op: &'static str, t: &'a Tensor) -> Result<&'a R::Buf<f32>> {
    st(op, t)?.buf::<R>()
}

/// Device `i32` indices (host indices are copied over: labels arrive once per batch).
pub(super) fn idx<R: GpuRuntime>(d: &Arc<GpuDevice<R>>, i: &Indices) -> Result<CudaIndices> {
    match i.storage() {
        IndexStorage::Cuda(s) => Ok(s.clone()),
        IndexStorage::Cpu(v) => CudaIndices::upload(d.ordinal(), v),
    }
}

/// A device tensor of `shape` over `buf`.
pub(super) fn wrap<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    shape: Vec<usize>,
    buf: R::Buf<f32>,
) -> Result<Tensor> {
    let n = numel(&shape);
    Tensor::from_storage(shape, Storage::Cuda(CudaStorage::new(d.clone(), buf, n)))
}

/// The writable device buffer of `t` (copied first when shared).
pub(super) fn st_mut<'a, R: GpuRuntime>(
    op: &'static str,
    t: &'a mut Tensor,
) -> Result<&'a mut R::Buf<f32>> {
    match t.storage_mut() {
        Storage::Cuda(s) => s.buf_mut::<R>(),
        Storage::Cpu(_) => Err(CoreError::InvalidArgument {
            op,
            reason: "a host tensor was given to the CUDA backend".into(),
        }),
    }
}
