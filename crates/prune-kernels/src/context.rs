//! [`KernelContext`]: one device, its default stream, and the compiled kernel modules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};

use crate::error::KernelError;
use crate::probe::{open_device, require_nvrtc, DeviceInfo};
use crate::runtime::{Cuda, Runtime};
use crate::source::{arch_for_device, nvrtc_supported_archs, KernelFile};

/// A loaded kernel module and its functions.
pub struct LoadedModule<R: Runtime = Cuda> {
    file: KernelFile,
    functions: HashMap<&'static str, R::Func>,
}

impl<R: Runtime> LoadedModule<R> {
    pub(crate) fn function(&self, name: &str) -> Result<&R::Func, KernelError> {
        self.functions.get(name).ok_or_else(|| {
            KernelError::invalid(
                "kernel lookup",
                format!("{} has no kernel named {name}", self.file.file_name()),
            )
        })
    }
}

/// A device with its stream and the loaded kernel modules: a CUDA device (the default
/// runtime [`Cuda`]: its primary context and default stream; kernel files are compiled by
/// NVRTC for the device's architecture the first time an operation needs them) or, with
/// the `emu` feature, the CPU emulation of the kernels ([`KernelContext::emulated`]).
/// Each file is loaded once per context.
pub struct KernelContext<R: Runtime = Cuda> {
    rt: R,
    stream: R::Stream,
    info: DeviceInfo,
    arch: String,
    modules: Mutex<HashMap<KernelFile, Arc<LoadedModule<R>>>>,
}

impl<R: Runtime> std::fmt::Debug for KernelContext<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelContext")
            .field("device", &self.info)
            .field("arch", &self.arch)
            .finish()
    }
}

impl KernelContext<Cuda> {
    /// Opens device `ordinal`.  Fails cleanly (no panic) with [`KernelError::NoCuda`] when
    /// the driver or NVRTC is missing and [`KernelError::NoDevice`] without a device.
    pub fn new(ordinal: usize) -> Result<KernelContext, KernelError> {
        let (ctx, info) = open_device(ordinal)?;
        require_nvrtc()?;
        let arch = arch_for_device(info.compute_capability, &nvrtc_supported_archs()?)?;
        let stream = ctx.default_stream();
        Ok(KernelContext {
            rt: Cuda(ctx),
            stream,
            info,
            arch,
            modules: Mutex::new(HashMap::new()),
        })
    }

    /// The underlying cudarc context.
    pub fn cuda_context(&self) -> &Arc<CudaContext> {
        &self.rt.0
    }

    /// A new stream on this context.
    pub fn new_stream(&self) -> Result<Arc<CudaStream>, KernelError> {
        self.rt
            .0
            .new_stream()
            .map_err(KernelError::driver("creating a stream"))
    }

    /// Waits for all work on the device.
    pub fn synchronize(&self) -> Result<(), KernelError> {
        self.rt
            .0
            .synchronize()
            .map_err(KernelError::driver("synchronising the context"))
    }
}

#[cfg(feature = "emu")]
impl KernelContext<crate::runtime_emu::Emu> {
    /// The CPU emulation of the kernels as a device with `multiprocessors` SMs (grids
    /// are sized from it: a small count keeps emulated launches short), running the
    /// threads of each block in `schedule`'s order.
    pub fn emulated(
        multiprocessors: u32,
        schedule: crate::runtime_emu::Schedule,
    ) -> KernelContext<crate::runtime_emu::Emu> {
        KernelContext {
            rt: crate::runtime_emu::Emu,
            stream: crate::runtime_emu::EmuStream { schedule },
            info: DeviceInfo {
                ordinal: 0,
                name: "CPU emulation of kernels/*.cu".into(),
                compute_capability: (0, 0),
                multiprocessors: multiprocessors.max(1),
                total_memory: 0,
            },
            arch: "emulated".into(),
            modules: Mutex::new(HashMap::new()),
        }
    }
}

impl<R: Runtime> KernelContext<R> {
    /// The device this context runs on.
    pub fn device(&self) -> &DeviceInfo {
        &self.info
    }

    /// The NVRTC architecture option used for this device (e.g. `compute_90`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The runtime handle.
    pub fn runtime(&self) -> &R {
        &self.rt
    }

    /// The context's default stream.
    pub fn stream(&self) -> &R::Stream {
        &self.stream
    }

    /// Compiles and loads every kernel file now instead of on first use.
    pub fn compile_all(&self) -> Result<(), KernelError> {
        for file in KernelFile::ALL {
            self.module(file)?;
        }
        Ok(())
    }

    pub(crate) fn module(&self, file: KernelFile) -> Result<Arc<LoadedModule<R>>, KernelError> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(&file) {
            return Ok(m.clone());
        }
        let functions = self.rt.load(file, &self.arch)?;
        let loaded = Arc::new(LoadedModule { file, functions });
        modules.insert(file, loaded.clone());
        Ok(loaded)
    }

    /// The multiprocessor count used to size grids.
    pub(crate) fn sms(&self) -> u32 {
        self.info.multiprocessors
    }
}

/// Errors unless `stream` belongs to `ctx`.
pub(crate) fn check_stream(
    ctx: &Arc<CudaContext>,
    op: &'static str,
    stream: &CudaStream,
) -> Result<(), KernelError> {
    if stream.context().as_ref() == ctx.as_ref() {
        Ok(())
    } else {
        Err(KernelError::invalid(
            op,
            "the stream belongs to another CUDA context",
        ))
    }
}

/// Errors unless `slice` was allocated in `ctx`.
pub(crate) fn check_slice<T>(
    ctx: &Arc<CudaContext>,
    op: &'static str,
    name: &str,
    slice: &CudaSlice<T>,
) -> Result<(), KernelError> {
    if slice.context().as_ref() == ctx.as_ref() {
        Ok(())
    } else {
        Err(KernelError::invalid(
            op,
            format!("buffer `{name}` belongs to another CUDA context"),
        ))
    }
}

/// Errors unless `slice` holds exactly `expected` elements.  A zero-element tensor may be
/// passed as any buffer, since a zero-byte device allocation is not portable.
pub(crate) fn check_len<T>(
    op: &'static str,
    name: &str,
    slice: &CudaSlice<T>,
    expected: usize,
) -> Result<(), KernelError> {
    if expected == 0 || slice.len() == expected {
        Ok(())
    } else {
        Err(KernelError::shape(
            op,
            format!("`{name}` has {} elements, expected {expected}", slice.len()),
        ))
    }
}

/// Errors unless `v` fits a 32-bit kernel argument.
pub(crate) fn as_i32(op: &'static str, name: &str, v: usize) -> Result<i32, KernelError> {
    i32::try_from(v).map_err(|_| {
        KernelError::invalid(
            op,
            format!("{name} = {v} exceeds the 32-bit kernel argument range"),
        )
    })
}

/// [`check_slice`] and [`check_len`] together.
pub(crate) fn check_buf<T>(
    ctx: &Arc<CudaContext>,
    op: &'static str,
    name: &str,
    slice: &CudaSlice<T>,
    expected: usize,
) -> Result<(), KernelError> {
    check_slice(ctx, op, name, slice)?;
    check_len(op, name, slice, expected)
}
