//! The CUDA device, device storage and the CUDA backend (the `cuda` feature).
//!
//! [`CudaDevice::new`] opens GPU `ordinal` once per process: the driver, NVRTC and
//! cuBLAS are loaded at run time (cudarc's `dynamic-loading`), each checked before it is
//! touched, so a missing library or device is a [`CoreError::Unsupported`] naming it —
//! never a panic. Opening compiles every kernel file of `kernels/*.cu` for the device.
//!
//! Storage ([`CudaStorage`], [`CudaIndices`]) is a reference-counted device buffer:
//! cloning a tensor shares the buffer, and an in-place update of a shared buffer copies it
//! first (so clones behave as values, as on the CPU). Equality of device storage is
//! identity of the buffer (comparing values needs a copy to the host).
//!
//! The backend ([`CudaBackend`]) runs every op on the device's default stream through the
//! prune-kernels wrappers (elementwise, reductions, batch norm, pooling, channels,
//! optimizer steps, SBP) and cuBLAS (GEMM); see `ops.rs` and `nn.rs` for which op maps
//! to which kernel. Host↔device copies happen only in [`CudaStorage::upload`] /
//! [`CudaStorage::download`] (called by `Tensor::to_device`), for index lists, and for
//! the scalar answers of `all_finite`.

mod nn;
mod ops;

use crate::error::{CoreError, Result};
use crate::Device;
use prune_kernels::cudarc::cublas::CudaBlas;
use prune_kernels::cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits};
use prune_kernels::{KeepList, KernelContext, KernelError, MaskedConv2d, NnKernels, SbpNoise};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A kernel-crate error as a core error: a missing library or device is
/// [`CoreError::Unsupported`], anything else an error of `op` on the device.
pub(crate) fn kernel_err(op: &'static str) -> impl Fn(KernelError) -> CoreError {
    move |e| match e {
        KernelError::NoCuda(m) | KernelError::NoDevice(m) => CoreError::Unsupported(m),
        e => CoreError::InvalidArgument {
            op,
            reason: e.to_string(),
        },
    }
}

/// An opened GPU: its context and stream, the loaded kernels and a cuBLAS handle.
pub struct CudaDevice {
    ordinal: usize,
    kc: KernelContext,
    nn: NnKernels,
    sbp: SbpNoise,
    conv: MaskedConv2d,
    blas: CudaBlas,
    /// "Every channel" keep lists of the convolution kernels, by channel count.
    keeps: Mutex<HashMap<usize, Arc<KeepList>>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice(cuda:{}, {:?})", self.ordinal, self.kc)
    }
}

fn devices() -> &'static Mutex<HashMap<usize, Arc<CudaDevice>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    DEVICES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl CudaDevice {
    /// Opens GPU `ordinal` (once per process; later calls share it). Errors name what is
    /// missing: the driver library, a device with this ordinal, NVRTC or cuBLAS.
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let mut open = devices().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = open.get(&ordinal) {
            return Ok(d.clone());
        }
        let at = |m: String| CoreError::Unsupported(format!("opening cuda:{ordinal}: {m}"));
        let kc = KernelContext::new(ordinal).map_err(|e| at(e.to_string()))?;
        // SAFETY: only asks the dynamic loader whether the library can be opened.
        if !unsafe { prune_kernels::cudarc::cublas::sys::is_culib_present() } {
            return Err(at(
                "the cuBLAS library (libcublas.so) was not found; install CUDA's cuBLAS or \
                 add its folder to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let blas = CudaBlas::new(kc.stream().clone())
            .map_err(|e| at(format!("creating a cuBLAS handle: {e:?}")))?;
        let compile = |e: KernelError| at(format!("preparing the kernels: {e}"));
        let dev = Arc::new(CudaDevice {
            ordinal,
            nn: NnKernels::new(&kc).map_err(compile)?,
            sbp: SbpNoise::new(&kc).map_err(compile)?,
            conv: MaskedConv2d::new(&kc).map_err(compile)?,
            blas,
            keeps: Mutex::new(HashMap::new()),
            kc,
        });
        open.insert(ordinal, dev.clone());
        Ok(dev)
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        self.kc.stream()
    }

    /// A zeroed buffer of `n` floats (at least one element: zero-byte allocations are not
    /// portable, and the kernels never read past `n`).
    pub(crate) fn zeros(&self, n: usize) -> Result<CudaSlice<f32>> {
        prune_kernels::host::zeros(self.stream(), n).map_err(kernel_err("allocating"))
    }

    /// Waits for the device's work.
    pub fn synchronize(&self) -> Result<()> {
        self.kc.synchronize().map_err(kernel_err("synchronize"))
    }
}

/// The backend of GPU `ordinal` (one per ordinal, for the life of the process).
pub fn backend(ordinal: usize) -> &'static dyn crate::Backend {
    static BACKENDS: OnceLock<Mutex<HashMap<usize, &'static CudaBackend>>> = OnceLock::new();
    let mut map = BACKENDS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *map.entry(ordinal)
        .or_insert_with(|| Box::leak(Box::new(CudaBackend { ordinal })))
}

/// Runs ops on one GPU; the device itself is opened on first use.
#[derive(Clone, Copy, Debug)]
pub struct CudaBackend {
    ordinal: usize,
}

impl CudaBackend {
    fn dev(&self) -> Result<Arc<CudaDevice>> {
        CudaDevice::new(self.ordinal)
    }
}

/// A reference-counted device buffer of `len` elements of `T` on one device.
pub struct DeviceBuffer<T> {
    dev: Arc<CudaDevice>,
    buf: Arc<CudaSlice<T>>,
    len: usize,
}

impl<T> Clone for DeviceBuffer<T> {
    fn clone(&self) -> Self {
        Self {
            dev: self.dev.clone(),
            buf: self.buf.clone(),
            len: self.len,
        }
    }
}

impl<T> PartialEq for DeviceBuffer<T> {
    /// The same buffer (values are not compared: that needs a copy to the host).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf) && self.len == other.len
    }
}

impl<T> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer(cuda:{}, {} elements)",
            self.dev.ordinal, self.len
        )
    }
}

/// Values on a GPU.
pub type CudaStorage = DeviceBuffer<f32>;
/// Indices on a GPU (`i32` on the device, the kernels' index type).
pub type CudaIndices = DeviceBuffer<i32>;

impl<T: DeviceRepr + ValidAsZeroBits + Default + Clone> DeviceBuffer<T> {
    pub(crate) fn new(dev: Arc<CudaDevice>, buf: CudaSlice<T>, len: usize) -> Self {
        Self {
            dev,
            buf: Arc::new(buf),
            len,
        }
    }

    fn upload_raw(ordinal: usize, data: &[T]) -> Result<Self> {
        let dev = CudaDevice::new(ordinal)?;
        let buf = prune_kernels::host::upload(dev.stream(), data)
            .map_err(kernel_err("copy to the device"))?;
        Ok(Self::new(dev, buf, data.len()))
    }

    fn download_raw(&self) -> Result<Vec<T>> {
        prune_kernels::host::download(self.dev.stream(), &self.buf, self.len)
            .map_err(kernel_err("copy to the host"))
    }

    /// The device holding the elements.
    pub fn device(&self) -> Device {
        Device::Cuda(self.dev.ordinal)
    }

    /// The opened device.
    pub fn cuda_device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device buffer (at least one element long).
    pub fn slice(&self) -> &CudaSlice<T> {
        &self.buf
    }

    /// The buffer for writing: copied first when another tensor shares it.
    pub(crate) fn slice_mut(&mut self) -> Result<&mut CudaSlice<T>> {
        if Arc::get_mut(&mut self.buf).is_none() {
            let copy = self
                .dev
                .stream()
                .clone_dtod(self.buf.as_ref())
                .map_err(|e| CoreError::InvalidArgument {
                    op: "copy on write",
                    reason: format!("device copy of {} elements: {e:?}", self.len),
                })?;
            self.buf = Arc::new(copy);
        }
        Arc::get_mut(&mut self.buf).ok_or_else(|| CoreError::InvalidArgument {
            op: "copy on write",
            reason: "the buffer is still shared".into(),
        })
    }

    /// Device elements have no host slice: reading one as host data is a bug in the
    /// caller (copy with `to_device(Device::Cpu)` first).
    pub(crate) fn not_on_host(&self) -> ! {
        panic!(
            "a tensor on cuda:{} was read as host data; copy it with to_device(Device::Cpu) first",
            self.dev.ordinal
        )
    }
}

impl DeviceBuffer<f32> {
    /// Copies host values to GPU `ordinal`.
    pub fn upload(ordinal: usize, data: &[f32]) -> Result<Self> {
        Self::upload_raw(ordinal, data)
    }

    /// Copies the values to the host.
    pub fn download(&self) -> Result<Vec<f32>> {
        self.download_raw()
    }
}

impl DeviceBuffer<i32> {
    /// Copies host indices to GPU `ordinal` (each must fit in `i32`).
    pub fn upload(ordinal: usize, data: &[u32]) -> Result<Self> {
        let v = data
            .iter()
            .map(|&i| {
                i32::try_from(i).map_err(|_| CoreError::InvalidArgument {
                    op: "indices to the device",
                    reason: format!("index {i} exceeds the device index range (i32)"),
                })
            })
            .collect::<Result<Vec<i32>>>()?;
        Self::upload_raw(ordinal, &v)
    }

    /// Copies the indices to the host.
    pub fn download(&self) -> Result<Vec<u32>> {
        Ok(self
            .download_raw()?
            .into_iter()
            .map(|i| i.max(0) as u32)
            .collect())
    }
}
