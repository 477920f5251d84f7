//! The launcher interface: what the kernel wrappers need from a device — buffers, copies,
//! loaded kernels and launches — as the [`Runtime`] trait, with two implementations:
//!
//! * [`Cuda`]: a CUDA context through cudarc (buffers are `CudaSlice`s, kernels come from
//!   NVRTC, launches go through cudarc's launch builder);
//! * `Emu` (feature `emu`, in `runtime_emu.rs`): the kernels of `kernels/*.cu` compiled as
//!   C++ and run on the CPU by `prune-kernels-emu`.
//!
//! The wrappers ([`crate::NnKernels`], [`crate::SbpNoise`], [`crate::MaskedConv2d`]) are
//! generic over the runtime with `Cuda` as the default, so the same wrapper code —
//! buffer checks, grid sizes, argument order, workspaces — runs against a GPU and, in CI,
//! against the emulated kernels.  An argument list is built once ([`Args`]) and handed to
//! the runtime, so a list that disagrees with a kernel's C++ signature (count or size of
//! a parameter) fails under the emulation, which checks it, before a GPU sees it.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchArgs, LaunchConfig,
    PushKernelArg, ValidAsZeroBits,
};

use crate::context::LoadedModule;
use crate::error::KernelError;
use crate::source::{compile, KernelFile};

#[cfg(feature = "emu")]
mod emu_bound {
    /// Element types the emulation can hold.
    pub trait EmuElem: prune_kernels_emu::Element {}
    impl<T: prune_kernels_emu::Element> EmuElem for T {}
}
#[cfg(not(feature = "emu"))]
mod emu_bound {
    /// No extra requirement without the emulation.
    pub trait EmuElem {}
    impl<T> EmuElem for T {}
}

/// Element types of device buffers: plain 4- or 8-byte numbers.
pub trait Elem:
    DeviceRepr + ValidAsZeroBits + Default + Copy + Unpin + Send + Sync + emu_bound::EmuElem + 'static
{
}
impl Elem for f32 {}
impl Elem for f64 {}
impl Elem for i32 {}
impl Elem for u32 {}
impl Elem for i64 {}
impl Elem for u64 {}

/// A scalar kernel argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
}

macro_rules! scalar_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Scalar {
            fn from(x: $t) -> Scalar {
                Scalar::$v(x)
            }
        }
        impl From<&$t> for Scalar {
            fn from(x: &$t) -> Scalar {
                Scalar::$v(*x)
            }
        }
    )*};
}
scalar_from!(i32 => I32, u32 => U32, i64 => I64, u64 => U64, f32 => F32, f64 => F64);

/// A device on which the kernel wrappers run.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A device buffer of `T`.
    type Buf<T: Elem>: Send + Sync;
    /// The stream launches and copies are ordered on.
    type Stream: Send + Sync;
    /// A loaded kernel.
    type Func: Send + Sync;
    /// One launch argument.
    type Arg<'a>;

    /// Errors unless `stream` belongs to this device.
    fn check_stream(&self, op: &'static str, stream: &Self::Stream) -> Result<(), KernelError>;
    /// Errors unless `buf` was allocated on this device.
    fn check_owner<T: Elem>(
        &self,
        op: &'static str,
        name: &str,
        buf: &Self::Buf<T>,
    ) -> Result<(), KernelError>;
    /// Compiles (where needed) and loads the kernels of `file`.
    fn load(
        &self,
        file: KernelFile,
        arch: &str,
    ) -> Result<HashMap<&'static str, Self::Func>, KernelError>;

    /// Number of elements of `buf`.
    fn len<T: Elem>(buf: &Self::Buf<T>) -> usize;
    /// A zeroed buffer of `n` elements (at least one: zero-byte allocations are not
    /// portable).
    fn zeros<T: Elem>(stream: &Self::Stream, n: usize) -> Result<Self::Buf<T>, KernelError>;
    /// A buffer of `n` elements (at least one) whose contents the caller overwrites
    /// before reading them.
    fn alloc<T: Elem>(stream: &Self::Stream, n: usize) -> Result<Self::Buf<T>, KernelError>;
    /// Sets every element of `buf` to zero (ordered on the stream).
    fn fill_zero<T: Elem>(stream: &Self::Stream, buf: &mut Self::Buf<T>)
        -> Result<(), KernelError>;
    /// A new buffer holding `data` (an empty slice gives a one-element zeroed buffer).
    fn upload<T: Elem>(stream: &Self::Stream, data: &[T]) -> Result<Self::Buf<T>, KernelError>;
    /// The first `len` elements of `buf` on the host (waits for the stream).
    fn download<T: Elem>(
        stream: &Self::Stream,
        buf: &Self::Buf<T>,
        len: usize,
    ) -> Result<Vec<T>, KernelError>;
    /// A device-side copy of `buf`.
    fn duplicate<T: Elem>(
        stream: &Self::Stream,
        buf: &Self::Buf<T>,
    ) -> Result<Self::Buf<T>, KernelError>;

    /// A buffer the kernel reads.
    fn arg_in<'a, T: Elem>(buf: &'a Self::Buf<T>) -> Self::Arg<'a>;
    /// A buffer the kernel writes.
    fn arg_out<'a, T: Elem>(buf: &'a mut Self::Buf<T>) -> Self::Arg<'a>;
    /// A scalar.
    fn arg_val<'a>(v: Scalar) -> Self::Arg<'a>;
    /// Launches `func` (`name` for messages) with `args` in the kernel's parameter order.
    ///
    /// The caller has checked that every buffer holds what the kernel indexes.
    fn launch(
        stream: &Self::Stream,
        func: &Self::Func,
        name: &'static str,
        cfg: LaunchConfig,
        args: Vec<Self::Arg<'_>>,
    ) -> Result<(), KernelError>;
}

/// A kernel's argument list, in parameter order.
pub struct Args<'a, R: Runtime>(Vec<R::Arg<'a>>);

impl<R: Runtime> Default for Args<'_, R> {
    fn default() -> Self {
        Self(Vec::with_capacity(24))
    }
}

impl<'a, R: Runtime> Args<'a, R> {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer the kernel reads.
    pub fn input<T: Elem>(&mut self, buf: &'a R::Buf<T>) -> &mut Self {
        self.0.push(R::arg_in(buf));
        self
    }

    /// A buffer the kernel writes (and may read).
    pub fn output<T: Elem>(&mut self, buf: &'a mut R::Buf<T>) -> &mut Self {
        self.0.push(R::arg_out(buf));
        self
    }

    /// A scalar.
    pub fn arg(&mut self, v: impl Into<Scalar>) -> &mut Self {
        self.0.push(R::arg_val(v.into()));
        self
    }

    /// Launches kernel `name` of module `m` over `cfg`.
    pub(crate) fn launch(
        self,
        stream: &R::Stream,
        m: &LoadedModule<R>,
        name: &'static str,
        cfg: LaunchConfig,
    ) -> Result<(), KernelError> {
        R::launch(stream, m.function(name)?, name, cfg, self.0)
    }
}

/// Errors unless `buf` is on `rt` and holds exactly `expected` elements (a zero-element
/// tensor may be passed as any buffer, since a zero-byte allocation is not portable).
pub(crate) fn check_buf<R: Runtime, T: Elem>(
    rt: &R,
    op: &'static str,
    name: &str,
    buf: &R::Buf<T>,
    expected: usize,
) -> Result<(), KernelError> {
    rt.check_owner(op, name, buf)?;
    let len = R::len(buf);
    if expected == 0 || len == expected {
        Ok(())
    } else {
        Err(KernelError::shape(
            op,
            format!("`{name}` has {len} elements, expected {expected}"),
        ))
    }
}

/// A buffer of `len` floats (at least one) filled with NaN, so that an output a kernel
/// fails to write is visible.
pub fn poisoned<R: Runtime>(stream: &R::Stream, len: usize) -> Result<R::Buf<f32>, KernelError> {
    R::upload(stream, &vec![f32::NAN; len.max(1)])
}

/// A CUDA context (the default runtime).
#[derive(Clone)]
pub struct Cuda(pub Arc<CudaContext>);

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cuda(ordinal {})", self.0.ordinal())
    }
}

/// A buffer cudarc pushes as a read argument.
pub trait CudaIn: Sync {
    fn push<'b>(&'b self, la: &mut LaunchArgs<'b>);
}
/// A buffer cudarc pushes as a written argument.
pub trait CudaOut: Send {
    fn push_mut<'b>(&'b mut self, la: &mut LaunchArgs<'b>);
}
impl<T: Elem> CudaIn for CudaSlice<T> {
    fn push<'b>(&'b self, la: &mut LaunchArgs<'b>) {
        la.arg(self);
    }
}
impl<T: Elem> CudaOut for CudaSlice<T> {
    fn push_mut<'b>(&'b mut self, la: &mut LaunchArgs<'b>) {
        la.arg(self);
    }
}

/// A launch argument of [`Cuda`].
pub enum CudaArg<'a> {
    In(&'a dyn CudaIn),
    Out(&'a mut dyn CudaOut),
    Val(Scalar),
}

impl Scalar {
    fn push<'b>(&'b self, la: &mut LaunchArgs<'b>) {
        match self {
            Scalar::I32(v) => la.arg(v),
            Scalar::U32(v) => la.arg(v),
            Scalar::I64(v) => la.arg(v),
            Scalar::U64(v) => la.arg(v),
            Scalar::F32(v) => la.arg(v),
            Scalar::F64(v) => la.arg(v),
        };
    }
}

impl Runtime for Cuda {
    type Buf<T: Elem> = CudaSlice<T>;
    type Stream = Arc<CudaStream>;
    type Func = CudaFunction;
    type Arg<'a> = CudaArg<'a>;

    fn check_stream(&self, op: &'static str, stream: &Arc<CudaStream>) -> Result<(), KernelError> {
        crate::context::check_stream(&self.0, op, stream)
    }

    fn check_owner<T: Elem>(
        &self,
        op: &'static str,
        name: &str,
        buf: &CudaSlice<T>,
    ) -> Result<(), KernelError> {
        crate::context::check_slice(&self.0, op, name, buf)
    }

    fn load(
        &self,
        file: KernelFile,
        arch: &str,
    ) -> Result<HashMap<&'static str, CudaFunction>, KernelError> {
        let compiled = compile(file, arch)?;
        crate::probe::guarded("loading a module", || {
            let module = self
                .0
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
            Ok(functions)
        })
    }

    fn len<T: Elem>(buf: &CudaSlice<T>) -> usize {
        buf.len()
    }

    fn zeros<T: Elem>(stream: &Arc<CudaStream>, n: usize) -> Result<CudaSlice<T>, KernelError> {
        stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(KernelError::driver(format!("allocating {n} elements")))
    }

    fn alloc<T: Elem>(stream: &Arc<CudaStream>, n: usize) -> Result<CudaSlice<T>, KernelError> {
        // SAFETY: every Elem type has no invalid bit patterns, and callers overwrite the
        // buffer before reading it.
        unsafe { stream.alloc::<T>(n.max(1)) }
            .map_err(KernelError::driver(format!("allocating {n} elements")))
    }

    fn fill_zero<T: Elem>(
        stream: &Arc<CudaStream>,
        buf: &mut CudaSlice<T>,
    ) -> Result<(), KernelError> {
        stream
            .memset_zeros(buf)
            .map_err(KernelError::driver(format!(
                "zeroing {} elements",
                buf.len()
            )))
    }

    fn upload<T: Elem>(stream: &Arc<CudaStream>, data: &[T]) -> Result<CudaSlice<T>, KernelError> {
        crate::host::upload(stream, data)
    }

    fn download<T: Elem>(
        stream: &Arc<CudaStream>,
        buf: &CudaSlice<T>,
        len: usize,
    ) -> Result<Vec<T>, KernelError> {
        crate::host::download(stream, buf, len)
    }

    fn duplicate<T: Elem>(
        stream: &Arc<CudaStream>,
        buf: &CudaSlice<T>,
    ) -> Result<CudaSlice<T>, KernelError> {
        stream.clone_dtod(buf).map_err(KernelError::driver(format!(
            "copying {} elements on the device",
            buf.len()
        )))
    }

    fn arg_in<'a, T: Elem>(buf: &'a CudaSlice<T>) -> CudaArg<'a> {
        CudaArg::In(buf)
    }

    fn arg_out<'a, T: Elem>(buf: &'a mut CudaSlice<T>) -> CudaArg<'a> {
        CudaArg::Out(buf)
    }

    fn arg_val<'a>(v: Scalar) -> CudaArg<'a> {
        CudaArg::Val(v)
    }

    fn launch(
        stream: &Arc<CudaStream>,
        func: &CudaFunction,
        name: &'static str,
        cfg: LaunchConfig,
        mut args: Vec<CudaArg<'_>>,
    ) -> Result<(), KernelError> {
        let mut b = stream.launch_builder(func);
        for a in args.iter_mut() {
            match a {
                CudaArg::In(buf) => buf.push(&mut b),
                CudaArg::Out(buf) => buf.push_mut(&mut b),
                CudaArg::Val(v) => v.push(&mut b),
            }
        }
        // SAFETY: every wrapper pushes exactly the kernel's parameters, in order and of
        // the kernel's types (the emulated tests check count and sizes against the C++
        // signatures), after checking each buffer holds what the kernel indexes.
        unsafe { b.launch(cfg) }
            .map(|_| ())
            .map_err(KernelError::launch(name))
    }
}
