//! Host <-> device helpers used by the `*_host` conveniences, the tests and the benches.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};

use crate::error::KernelError;

/// Copies `data` to a new device buffer.  An empty slice gives a one-element zeroed buffer
/// (zero-byte allocations are not portable); kernels never read it.
pub fn upload<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    data: &[T],
) -> Result<CudaSlice<T>, KernelError> {
    if data.is_empty() {
        return stream
            .alloc_zeros::<T>(1)
            .map_err(KernelError::driver("allocating a placeholder buffer"));
    }
    stream.clone_htod(data).map_err(KernelError::driver(format!(
        "copying {} elements to the device",
        data.len()
    )))
}

/// Copies the first `len` elements of `buf` back to the host (waits for the stream).
pub fn download<T: DeviceRepr + Default + Clone>(
    stream: &Arc<CudaStream>,
    buf: &CudaSlice<T>,
    len: usize,
) -> Result<Vec<T>, KernelError> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if len > buf.len() {
        return Err(KernelError::shape(
            "download",
            format!("asked for {len} elements of a {}-element buffer", buf.len()),
        ));
    }
    let mut out = vec![T::default(); len];
    stream
        .memcpy_dtoh(&buf.slice(0..len), &mut out)
        .map_err(KernelError::driver(format!(
            "copying {len} elements to the host"
        )))?;
    stream
        .synchronize()
        .map_err(KernelError::driver("waiting for a device-to-host copy"))?;
    Ok(out)
}

/// A device buffer of `len` floats (at least one) filled with NaN, so that an output a
/// kernel fails to write is visible.
pub fn poisoned(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<f32>, KernelError> {
    upload(stream, &vec![f32::NAN; len.max(1)])
}

/// A zeroed device buffer of `len` floats (at least one).
pub fn zeros(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<f32>, KernelError> {
    stream
        .alloc_zeros::<f32>(len.max(1))
        .map_err(KernelError::driver(format!("allocating {len} floats")))
}

/// Uninitialised device buffer of `len` floats (at least one); for outputs a kernel fills.
pub(crate) fn alloc(stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<f32>, KernelError> {
    // SAFETY: f32 has no invalid bit patterns; callers fill the buffer before reading it.
    unsafe { stream.alloc::<f32>(len.max(1)) }
        .map_err(KernelError::driver(format!("allocating {len} floats")))
}
