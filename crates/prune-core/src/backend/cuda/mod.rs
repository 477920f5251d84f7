//! The CUDA device, device storage and the CUDA backend (the `cuda` feature).
//!
//! [`CudaDevice::new`] opens GPU `ordinal` once per process: the driver, NVRTC,
//! cuBLAS and (when present) cuDNN are loaded at run time (cudarc's `dynamic-loading`), each checked before it is
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
//! optimizer steps, SBP), cuBLAS (GEMM) and cuDNN (convolution, with the implicit-GEMM
//! kernels as the fallback: `conv.rs`); see `ops.rs` for which op maps to which kernel,
//! and in which file. Host↔device copies happen only in [`CudaStorage::upload`] /
//! [`CudaStorage::download`] (called by `Tensor::to_device`), for host index lists given
//! with a batch (cross-entropy labels), and for the scalar answers of `all_finite`. The
//! read-only lists the kernels take (the index lists of index-select and its backward,
//! the broadcast shapes of elementwise ops) are uploaded once per content and held by the
//! device's kernels (`prune_kernels::NnKernels`, bounded), so a repeated training step
//! copies nothing else.

mod buffers;
mod channels;
mod conv;
mod conv_desc;
mod cudnn;
mod elementwise;
mod loss;
mod nn;
mod ops;
pub mod runtime;
mod sbp;
mod update;

pub use conv::{ChosenAlgo, ConvAlgo, ConvSetting};
pub use conv_desc::{ConvDesc, ConvPass};
pub use cudnn::{cudnn_output_dims, CudnnAlgo};
pub use runtime::{GpuRuntime, Sgemm};

use crate::error::{CoreError, Result};
use crate::Device;
use prune_kernels::cudarc::driver::CudaSlice;
use prune_kernels::{
    Cuda, Elem, KeepList, KernelContext, KernelError, MaskedConv2d, NnKernels, SbpNoise,
};
use std::collections::HashMap;
use std::marker::PhantomData;
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

/// An opened device of runtime `R`: its context and stream, the loaded kernels and the
/// GEMM engine.
pub struct GpuDevice<R: GpuRuntime> {
    ordinal: usize,
    kc: KernelContext<R>,
    nn: NnKernels<R>,
    sbp: SbpNoise<R>,
    conv: MaskedConv2d<R>,
    blas: R::Blas,
    /// Convolution: cuDNN (or its stand-in) or the implicit-GEMM kernels.
    convs: conv::ConvEngine<R>,
    /// "Every channel" keep lists of the convolution kernels, by channel count.
    keeps: Mutex<HashMap<usize, Arc<KeepList<R>>>>,
    /// Released float buffers by length, reused by [`GpuDevice::zeros`] instead of a new
    /// allocation per op (at most [`POOL_PER_SIZE`] per length).
    pool: Mutex<HashMap<usize, Vec<R::Buf<f32>>>>,
    /// All-ones buffers by length (the dropout kernel's input), made once per length.
    ones: Mutex<HashMap<usize, Arc<R::Buf<f32>>>>,
}

/// Most released buffers kept per length.
const POOL_PER_SIZE: usize = 64;

/// An opened GPU.
pub type CudaDevice = GpuDevice<Cuda>;

impl<R: GpuRuntime> std::fmt::Debug for GpuDevice<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuDevice(cuda:{}, {:?}, convolution: {})",
            self.ordinal,
            self.kc,
            self.convolution()
        )
    }
}

fn devices() -> &'static Mutex<HashMap<usize, Arc<CudaDevice>>> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    DEVICES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl<R: GpuRuntime> GpuDevice<R> {
    /// Loads the kernels, the GEMM engine and (per `setting`) the convolution library on
    /// `kc`; errors name what is missing (a missing convolution library is not an error).
    fn open_on(ordinal: usize, kc: KernelContext<R>, setting: ConvSetting) -> Result<GpuDevice<R>> {
        let at = |m: String| CoreError::Unsupported(format!("opening cuda:{ordinal}: {m}"));
        let blas = R::blas(&kc).map_err(at)?;
        let compile = |e: KernelError| at(format!("preparing the kernels: {e}"));
        Ok(GpuDevice {
            ordinal,
            nn: NnKernels::new(&kc).map_err(compile)?,
            sbp: SbpNoise::new(&kc).map_err(compile)?,
            conv: MaskedConv2d::new(&kc).map_err(compile)?,
            blas,
            convs: conv::ConvEngine::open(&kc, setting),
            keeps: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            ones: Mutex::new(HashMap::new()),
            kc,
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub(crate) fn stream(&self) -> &R::Stream {
        self.kc.stream()
    }

    /// A released buffer of exactly `len` floats from the pool, contents unspecified.
    pub(crate) fn pooled(&self, len: usize) -> Option<R::Buf<f32>> {
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&len)
            .and_then(Vec::pop)
    }

    /// A zeroed buffer of `n` floats (at least one element: zero-byte allocations are not
    /// portable, and the kernels never read past `n`): a released buffer of that length
    /// when there is one (zeroed on the stream, so after the work that used it), else a
    /// new allocation.
    pub(crate) fn zeros(&self, n: usize) -> Result<R::Buf<f32>> {
        let len = n.max(1);
        match self.pooled(len) {
            Some(mut b) => {
                R::fill_zero(self.stream(), &mut b).map_err(kernel_err("allocating"))?;
                Ok(b)
            }
            None => R::zeros(self.stream(), len).map_err(kernel_err("allocating")),
        }
    }

    /// A buffer of `n` floats (at least one) with unspecified contents — a released one of
    /// that length when there is one, else a new allocation — for the output of a kernel
    /// or library call that writes every element: no memset is queued. The kernels given
    /// such outputs are those whose tests run on NaN-filled outputs (`tests/gpu_ops.rs`,
    /// the emulated `emu_ops`), and cuDNN / cuBLAS calls with beta = 0, which do not read
    /// their output.
    pub(crate) fn output(&self, n: usize) -> Result<R::Buf<f32>> {
        self.output_of(n, true)
    }

    /// [`GpuDevice::output`] when the kernel runs (`written`), else zeros: a kernel whose
    /// input is empty returns without a launch, and its non-empty outputs (the sums over
    /// an empty axis, the statistics of an empty batch) are then 0.
    pub(crate) fn output_of(&self, n: usize, written: bool) -> Result<R::Buf<f32>> {
        if !written {
            return self.zeros(n);
        }
        let len = n.max(1);
        match self.pooled(len) {
            Some(b) => Ok(b),
            None => R::alloc(self.stream(), len).map_err(kernel_err("allocating")),
        }
    }

    /// Takes back a buffer no tensor refers to any more. Work already queued on the
    /// stream that reads or writes it runs before anything queued after its reuse.
    fn release(&self, b: R::Buf<f32>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.entry(R::len(&b)).or_default();
        if list.len() < POOL_PER_SIZE {
            list.push(b);
        }
    }

    /// Number of released buffers held for reuse.
    pub fn pooled_buffers(&self) -> usize {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.values().map(Vec::len).sum()
    }

    /// `n` ones (at least one element), made once per length and shared: the kernels
    /// only read it.
    pub(crate) fn ones(&self, n: usize) -> Result<Arc<R::Buf<f32>>> {
        let len = n.max(1);
        let mut ones = self.ones.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = ones.get(&len) {
            return Ok(b.clone());
        }
        let b = Arc::new(
            R::upload(self.stream(), &vec![1.0f32; len]).map_err(kernel_err("allocating"))?,
        );
        ones.insert(len, b.clone());
        Ok(b)
    }
}

impl GpuDevice<Cuda> {
    /// Opens GPU `ordinal` (once per process; later calls share it). Errors name what is
    /// missing: the driver library, a device with this ordinal, NVRTC or cuBLAS.
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let mut open = devices().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = open.get(&ordinal) {
            return Ok(d.clone());
        }
        let at = |m: String| CoreError::Unsupported(format!("opening cuda:{ordinal}: {m}"));
        let setting = ConvSetting::from_env()?;
        let kc = KernelContext::new(ordinal).map_err(|e| at(e.to_string()))?;
        let dev = Arc::new(GpuDevice::open_on(ordinal, kc, setting)?);
        open.insert(ordinal, dev.clone());
        Ok(dev)
    }

    /// Waits for the device's work.
    pub fn synchronize(&self) -> Result<()> {
        self.kc.synchronize().map_err(kernel_err("synchronize"))
    }
}

#[cfg(feature = "emu")]
fn emulated_devices() -> &'static Mutex<HashMap<usize, Arc<GpuDevice<prune_kernels::Emu>>>> {
    static EMU: OnceLock<Mutex<HashMap<usize, Arc<GpuDevice<prune_kernels::Emu>>>>> =
        OnceLock::new();
    EMU.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The emulated device registered as `cuda:ordinal`, if any.
#[cfg(feature = "emu")]
fn emulated(ordinal: usize) -> Option<Arc<GpuDevice<prune_kernels::Emu>>> {
    emulated_devices()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&ordinal)
        .cloned()
}

#[cfg(not(feature = "emu"))]
fn is_emulated(_ordinal: usize) -> bool {
    false
}

#[cfg(feature = "emu")]
fn is_emulated(ordinal: usize) -> bool {
    emulated(ordinal).is_some()
}

/// Registers the CPU emulation of the kernels (prune-kernels' `emu` runtime, grids sized
/// for `multiprocessors` SMs, threads run in `schedule`'s order) as device `cuda:ordinal`:
/// from then on `Device::Cuda(ordinal)` runs the CUDA backend's code — buffer handling,
/// argument lists, op composition — against the emulated kernels, with GEMM by
/// [`runtime::reference_sgemm`]. For tests; slow. Fails when a real GPU was already
/// opened under that ordinal; registering the same ordinal again keeps the first device.
/// Convolutions follow `PRUNE_CUDNN` as on a GPU ([`ConvSetting::from_env`]), with cuDNN's
/// host stand-in in place of the library.
#[cfg(feature = "emu")]
pub fn open_emulated(
    ordinal: usize,
    multiprocessors: u32,
    schedule: prune_kernels::Schedule,
) -> Result<()> {
    open_emulated_with(ordinal, multiprocessors, schedule, ConvSetting::from_env()?)
}

/// [`open_emulated`] with the convolution setting given: [`ConvSetting::ImplicitGemm`]
/// runs the fallback kernels, the others cuDNN's host stand-in.
#[cfg(feature = "emu")]
pub fn open_emulated_with(
    ordinal: usize,
    multiprocessors: u32,
    schedule: prune_kernels::Schedule,
    setting: ConvSetting,
) -> Result<()> {
    if devices()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains_key(&ordinal)
    {
        return Err(CoreError::InvalidArgument {
            op: "open_emulated",
            reason: format!("cuda:{ordinal} is already a real GPU"),
        });
    }
    let mut emu = emulated_devices().lock().unwrap_or_else(|p| p.into_inner());
    if let std::collections::hash_map::Entry::Vacant(slot) = emu.entry(ordinal) {
        let kc = KernelContext::emulated(multiprocessors, schedule);
        slot.insert(Arc::new(GpuDevice::open_on(ordinal, kc, setting)?));
    }
    Ok(())
}

/// The backend of `cuda:ordinal` (one per ordinal, for the life of the process): the
/// emulated device when one was registered under the ordinal, else the GPU.
pub fn backend(ordinal: usize) -> &'static dyn crate::Backend {
    static BACKENDS: OnceLock<Mutex<HashMap<usize, &'static dyn crate::Backend>>> = OnceLock::new();
    let mut map = BACKENDS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *map.entry(ordinal).or_insert_with(|| {
        #[cfg(feature = "emu")]
        if is_emulated(ordinal) {
            return Box::leak(Box::new(GpuBackend::<prune_kernels::Emu>::at(ordinal)));
        }
        Box::leak(Box::new(GpuBackend::<Cuda>::at(ordinal)))
    })
}

/// Runs ops on one device of runtime `R`; the device itself is opened on first use.
pub struct GpuBackend<R: GpuRuntime> {
    ordinal: usize,
    _r: PhantomData<fn() -> R>,
}

/// The backend of a GPU.
pub type CudaBackend = GpuBackend<Cuda>;

impl<R: GpuRuntime> std::fmt::Debug for GpuBackend<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBackend(cuda:{})", self.ordinal)
    }
}

impl<R: GpuRuntime> GpuBackend<R> {
    fn at(ordinal: usize) -> Self {
        Self {
            ordinal,
            _r: PhantomData,
        }
    }

    fn dev(&self) -> Result<Arc<GpuDevice<R>>> {
        R::open(self.ordinal)
    }
}

/// The device a buffer lives on.
#[derive(Clone)]
pub enum AnyDevice {
    Cuda(Arc<CudaDevice>),
    #[cfg(feature = "emu")]
    Emu(Arc<GpuDevice<prune_kernels::Emu>>),
}

impl AnyDevice {
    /// The device registered as `cuda:ordinal` (emulated) or GPU `ordinal`.
    fn open(ordinal: usize) -> Result<AnyDevice> {
        #[cfg(feature = "emu")]
        if let Some(d) = emulated(ordinal) {
            return Ok(AnyDevice::Emu(d));
        }
        let _ = is_emulated;
        Ok(AnyDevice::Cuda(CudaDevice::new(ordinal)?))
    }

    fn ordinal(&self) -> usize {
        match self {
            AnyDevice::Cuda(d) => d.ordinal,
            #[cfg(feature = "emu")]
            AnyDevice::Emu(d) => d.ordinal,
        }
    }
}

/// A device buffer of one runtime.
pub enum AnyBuf<T: Elem> {
    Cuda(CudaSlice<T>),
    #[cfg(feature = "emu")]
    Emu(<prune_kernels::Emu as prune_kernels::Runtime>::Buf<T>),
}

/// A reference-counted device buffer of `len` elements of `T` on one device.
pub struct DeviceBuffer<T: Elem> {
    dev: AnyDevice,
    /// Present for the whole life of the value (taken only by `drop`).
    buf: Option<Arc<AnyBuf<T>>>,
    len: usize,
}

impl<T: Elem> Clone for DeviceBuffer<T> {
    fn clone(&self) -> Self {
        Self {
            dev: self.dev.clone(),
            buf: self.buf.clone(),
            len: self.len,
        }
    }
}

impl<T: Elem> PartialEq for DeviceBuffer<T> {
    /// The same buffer (values are not compared: that needs a copy to the host).
    fn eq(&self, other: &Self) -> bool {
        match (&self.buf, &other.buf) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) && self.len == other.len,
            _ => false,
        }
    }
}

impl<T: Elem> std::fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer(cuda:{}, {} elements)",
            self.dev.ordinal(),
            self.len
        )
    }
}

impl<T: Elem> Drop for DeviceBuffer<T> {
    /// The last reference to a float buffer returns it to its device's pool.
    fn drop(&mut self) {
        let Some(Ok(buf)) = self.buf.take().map(Arc::try_unwrap) else {
            return;
        };
        let any: Box<dyn std::any::Any> = Box::new(buf);
        let Ok(buf) = any.downcast::<AnyBuf<f32>>() else {
            return;
        };
        match (&self.dev, *buf) {
            (AnyDevice::Cuda(d), AnyBuf::Cuda(b)) => d.release(b),
            #[cfg(feature = "emu")]
            (AnyDevice::Emu(d), AnyBuf::Emu(b)) => d.release(b),
            #[cfg(feature = "emu")]
            _ => {}
        }
    }
}

/// Values on a GPU.
pub type CudaStorage = DeviceBuffer<f32>;
/// Indices on a GPU (`i32` on the device, the kernels' index type).
pub type CudaIndices = DeviceBuffer<i32>;

fn wrong_runtime(op: &'static str) -> CoreError {
    CoreError::InvalidArgument {
        op,
        reason: "the buffer belongs to another device runtime".into(),
    }
}

impl<T: Elem> DeviceBuffer<T> {
    pub(crate) fn new<R: GpuRuntime>(dev: Arc<GpuDevice<R>>, buf: R::Buf<T>, len: usize) -> Self {
        Self {
            dev: R::any_device(dev),
            buf: Some(Arc::new(R::wrap(buf))),
            len,
        }
    }

    fn upload_raw(ordinal: usize, data: &[T]) -> Result<Self> {
        fn up<R: GpuRuntime, T: Elem>(d: Arc<GpuDevice<R>>, data: &[T]) -> Result<DeviceBuffer<T>> {
            let buf = R::upload(d.stream(), data).map_err(kernel_err("copy to the device"))?;
            Ok(DeviceBuffer::new(d, buf, data.len()))
        }
        match AnyDevice::open(ordinal)? {
            AnyDevice::Cuda(d) => up(d, data),
            #[cfg(feature = "emu")]
            AnyDevice::Emu(d) => up(d, data),
        }
    }

    fn download_raw(&self) -> Result<Vec<T>> {
        fn down<R: GpuRuntime, T: Elem>(b: &DeviceBuffer<T>) -> Result<Vec<T>> {
            let d = R::device_of(&b.dev).ok_or_else(|| wrong_runtime("copy to the host"))?;
            R::download(d.stream(), b.buf::<R>()?, b.len).map_err(kernel_err("copy to the host"))
        }
        match &self.dev {
            AnyDevice::Cuda(_) => down::<Cuda, T>(self),
            #[cfg(feature = "emu")]
            AnyDevice::Emu(_) => down::<prune_kernels::Emu, T>(self),
        }
    }

    /// The device holding the elements.
    pub fn device(&self) -> Device {
        Device::Cuda(self.dev.ordinal())
    }

    /// The opened device, when it is of runtime `R`.
    pub(crate) fn gpu_device<R: GpuRuntime>(&self) -> Result<&Arc<GpuDevice<R>>> {
        R::device_of(&self.dev).ok_or_else(|| wrong_runtime("device"))
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn shared(&self) -> Result<&Arc<AnyBuf<T>>> {
        self.buf
            .as_ref()
            .ok_or_else(|| wrong_runtime("device buffer"))
    }

    /// The device buffer (at least one element long), when it is of runtime `R`.
    pub(crate) fn buf<R: GpuRuntime>(&self) -> Result<&R::Buf<T>> {
        R::view(self.shared()?).ok_or_else(|| wrong_runtime("device buffer"))
    }

    /// The buffer for writing: copied first when another tensor shares it.
    pub(crate) fn buf_mut<R: GpuRuntime>(&mut self) -> Result<&mut R::Buf<T>> {
        let shared = self.buf.as_mut().is_none_or(|b| Arc::get_mut(b).is_none());
        if shared {
            let d = R::device_of(&self.dev).ok_or_else(|| wrong_runtime("copy on write"))?;
            let copy = R::duplicate(d.stream(), self.buf::<R>()?).map_err(|e| {
                CoreError::InvalidArgument {
                    op: "copy on write",
                    reason: format!("device copy of {} elements: {e}", self.len),
                }
            })?;
            self.buf = Some(Arc::new(R::wrap(copy)));
        }
        let b =
            self.buf
                .as_mut()
                .and_then(Arc::get_mut)
                .ok_or_else(|| CoreError::InvalidArgument {
                    op: "copy on write",
                    reason: "the buffer is still shared".into(),
                })?;
        R::view_mut(b).ok_or_else(|| wrong_runtime("copy on write"))
    }

    /// Device elements have no host slice: reading one as host data is a bug in the
    /// caller (copy with `to_device(Device::Cpu)` first).
    pub(crate) fn not_on_host(&self) -> ! {
        panic!(
            "a tensor on cuda:{} was read as host data; copy it with to_device(Device::Cpu) first",
            self.dev.ordinal()
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

#[cfg(all(test, feature = "emu"))]
mod tests {
    use super::*;
    use crate::Tensor;

    /// A released buffer is reused for the next one of its length, zeroed; a buffer still
    /// shared by another tensor is not released.
    #[test]
    fn released_buffers_are_reused_zeroed() {
        let ordinal = 62;
        open_emulated(ordinal, 2, prune_kernels::Schedule::Ascending).expect("emulated device");
        let d = emulated(ordinal).expect("registered");
        let dev = Device::Cuda(ordinal);
        let before = d.pooled_buffers();
        let t = Tensor::from_vec([7], vec![3.0; 7])
            .and_then(|t| t.to_device(dev))
            .expect("upload");
        let shared = t.clone();
        drop(t);
        assert_eq!(d.pooled_buffers(), before, "still shared");
        drop(shared);
        assert_eq!(d.pooled_buffers(), before + 1, "released");
        let z = dev.backend().full(&[7], 0.0).expect("zeros");
        assert_eq!(d.pooled_buffers(), before, "reused");
        let host = z.to_device(Device::Cpu).expect("download");
        assert_eq!(host.data(), &[0.0; 7]);
    }
}
