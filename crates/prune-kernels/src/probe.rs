//! Detection of the CUDA driver, NVRTC and a device, without panicking.
//!
//! cudarc loads `libcuda` and `libnvrtc` lazily and panics when a library is missing, so
//! every entry point of this crate asks [`driver_library_present`] /
//! [`nvrtc_library_present`] first.  cudarc searches the dynamic loader path
//! (`LD_LIBRARY_PATH`, the ld.so cache) for `libcuda.so`, `libcuda.so.1`, ... and
//! `libnvrtc.so`, `libnvrtc.so.13`, ... (names built by
//! `cudarc::get_lib_name_candidates`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{sys::CUdevice_attribute, CudaContext};

use crate::error::KernelError;

/// What [`probe`] found out about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device ordinal as seen by the driver.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Number of streaming multiprocessors.
    pub multiprocessors: u32,
    /// Device memory in bytes.
    pub total_memory: usize,
}

/// `true` when cudarc can load the CUDA driver library.
pub fn driver_library_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the candidate library names; no symbol is called.
    *PRESENT.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}

/// `true` when cudarc can load NVRTC.
pub fn nvrtc_library_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the candidate library names; no symbol is called.
    *PRESENT.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

pub(crate) fn require_driver() -> Result<(), KernelError> {
    if driver_library_present() {
        Ok(())
    } else {
        Err(KernelError::NoCuda(
            "the CUDA driver library (libcuda.so) was not found on the loader path".into(),
        ))
    }
}

pub(crate) fn require_nvrtc() -> Result<(), KernelError> {
    if nvrtc_library_present() {
        Ok(())
    } else {
        Err(KernelError::NoCuda(
            "NVRTC (libnvrtc.so or libnvrtc.so.13) was not found on the loader path; \
             install it (e.g. pip package nvidia-cuda-nvrtc) and add its lib directory to \
             LD_LIBRARY_PATH"
                .into(),
        ))
    }
}

/// Runs a driver-touching closure, turning a panic inside cudarc (for example a symbol the
/// installed driver lacks) into [`KernelError::NoCuda`].
pub(crate) fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, KernelError>,
) -> Result<T, KernelError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(KernelError::NoCuda(format!(
                "the CUDA library failed while {what}: {msg}"
            )))
        }
    }
}

/// Opens the primary context of `ordinal` and reads the device attributes.
pub(crate) fn open_device(ordinal: usize) -> Result<(Arc<CudaContext>, DeviceInfo), KernelError> {
    require_driver()?;
    guarded("opening the device", || {
        let count = CudaContext::device_count()
            .map_err(|e| KernelError::NoDevice(format!("cuInit / cuDeviceGetCount: {e}")))?;
        if count <= 0 {
            return Err(KernelError::NoDevice("the driver reports 0 devices".into()));
        }
        if ordinal >= count as usize {
            return Err(KernelError::NoDevice(format!(
                "device ordinal {ordinal} requested but only {count} device(s) present"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| KernelError::NoDevice(format!("creating context {ordinal}: {e}")))?;
        let info = DeviceInfo {
            ordinal,
            name: ctx
                .name()
                .map_err(KernelError::driver("reading device name"))?,
            compute_capability: ctx
                .compute_capability()
                .map_err(KernelError::driver("reading compute capability"))?,
            multiprocessors: ctx
                .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
                .map_err(KernelError::driver("reading multiprocessor count"))?
                .max(1) as u32,
            total_memory: ctx
                .total_mem()
                .map_err(KernelError::driver("reading device memory size"))?,
        };
        Ok((ctx, info))
    })
}

/// Checks that the CUDA driver, NVRTC and device 0 are usable and describes the device.
///
/// Returns [`KernelError::NoCuda`] when a library is missing and
/// [`KernelError::NoDevice`] when the driver loads but has no device; never panics.
pub fn probe() -> Result<DeviceInfo, KernelError> {
    probe_device(0)
}

/// [`probe`] for a given device ordinal.
pub fn probe_device(ordinal: usize) -> Result<DeviceInfo, KernelError> {
    let (_ctx, info) = open_device(ordinal)?;
    require_nvrtc()?;
    Ok(info)
}
