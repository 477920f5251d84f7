//! [`KernelContext`]: one device, its default stream, and the compiled kernel modules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream};

use crate::error::KernelError;
use crate::probe::{guarded, open_device, require_nvrtc, DeviceInfo};
use crate::source::{arch_for_device, compile, nvrtc_supported_archs, KernelFile};

/// A loaded kernel module and its functions.
pub(crate) struct LoadedModule {
    file: KernelFile,
    functions: HashMap<&'static str, CudaFunction>,
}

impl LoadedModule {
    pub(crate) fn function(&self, name: &str) -> Result<&CudaFunction, KernelError> {
        self.functions.get(name).ok_or_else(|| {
            KernelError::invalid(
                "kernel lookup",
                format!("{} has no kernel named {name}", self.file.file_name()),
            )
        })
    }
}

/// A CUDA device with its primary context and default stream.  Kernel files are compiled
/// by NVRTC for the device's architecture the first time an operation needs them and the
/// loaded modules are kept here, so each file is compiled once per context.
pub struct KernelContext {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
    arch: String,
    modules: Mutex<HashMap<KernelFile, Arc<LoadedModule>>>,
}

impl std::fmt::Debug for KernelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelContext")
            .field("device", &self.info)
            .field("arch", &self.arch)
            .finish()
    }
}

impl KernelContext {
    /// Opens device `ordinal`.  Fails cleanly (no panic) with [`KernelError::NoCuda`] when
    /// the driver or NVRTC is missing and [`KernelError::NoDevice`] without a device.
    pub fn new(ordinal: usize) -> Result<KernelContext, KernelError> {
        let (ctx, info) = open_device(ordinal)?;
        require_nvrtc()?;
        let arch = arch_for_device(info.compute_capability, &nvrtc_supported_archs()?)?;
        let stream = ctx.default_stream();
        Ok(KernelContext {
            ctx,
            stream,
            info,
            arch,
            modules: Mutex::new(HashMap::new()),
        })
    }

    /// The device this context runs on.
    pub fn device(&self) -> &DeviceInfo {
        &self.info
    }

    /// The NVRTC architecture option used for this device (e.g. `compute_90`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// The underlying cudarc context.
    pub fn cuda_context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The context's default stream.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// A new stream on this context.
    pub fn new_stream(&self) -> Result<Arc<CudaStream>, KernelError> {
        self.ctx
            .new_stream()
            .map_err(KernelError::driver("creating a stream"))
    }

    /// Waits for all work on the device.
    pub fn synchronize(&self) -> Result<(), KernelError> {
        self.ctx
            .synchronize()
            .map_err(KernelError::driver("synchronising the context"))
    }

    /// Compiles and loads every kernel file now instead of on first use.
    pub fn compile_all(&self) -> Result<(), KernelError> {
        for file in KernelFile::ALL {
            self.module(file)?;
        }
        Ok(())
    }

    pub(crate) fn module(&self, file: KernelFile) -> Result<Arc<LoadedModule>, KernelError> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(&file) {
            return Ok(m.clone());
        }
        let compiled = compile(file, &self.arch)?;
        let loaded = guarded("loading a module", || {
            let module = self
                .ctx
                .load_module(compiled.to_ptx())
                .map_err(KernelError::driver(format!("loading {}", file.file_name())))?;
            let mut functions = HashMap::new();
            for &name in file.kernels() {
                let f = module
                    .load_function(name)
                    .map_err(KernelError::driver(format!(
                        "looking up {name} in {}",
                        file.file_name()
                    )))?;
                functions.insert(name, f);
            }
            Ok(LoadedModule { file, functions })
        })?;
        let loaded = Arc::new(loaded);
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
