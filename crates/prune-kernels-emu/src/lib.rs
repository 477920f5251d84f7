//! Runs the CUDA kernels of `kernels/*.cu` on the CPU, so that their logic is tested on
//! every CI run without a GPU.
//!
//! The build script compiles the kernel sources unchanged as C++17 against `cpp/pk_emu.h`,
//! a header that defines the CUDA keywords, vector types, intrinsics, atomics and the thread
//! / block indices, and links a scheduler that runs every CUDA thread of a block as a fiber:
//! `__syncthreads()` and warp shuffles are real barriers, per-thread locals survive them, and
//! the order in which threads run between barriers is chosen per launch ([`Schedule`]).
//! Buffers ([`DevBuf`]) end at an inaccessible page, so an overrun faults.
//!
//! What this catches and what it cannot is described in `docs/kernels.md`.
//!
//! ```no_run
//! use prune_kernels_emu::{launch, Arg, DevBuf, Schedule};
//! # fn main() -> Result<(), prune_kernels_emu::EmuError> {
//! let mut dst = DevBuf::<f32>::zeroed(1000)?;
//! launch("fill_f32", [4, 1, 1], [256, 1, 1], &[dst.arg(), Arg::f32(1.5), Arg::i64(1000)],
//!        Schedule::Ascending)?;
//! assert!(dst.to_vec().iter().all(|&v| v == 1.5));
//! # Ok(()) }
//! ```

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::marker::PhantomData;

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    /// The launch failed: unknown kernel, bad grid, divergent barrier, ...
    #[error("emulated launch of {kernel}: {message}")]
    Launch { kernel: String, message: String },
    /// The arguments do not match the kernel's parameter list.
    #[error("emulated launch of {kernel}: {message}")]
    Args { kernel: String, message: String },
    /// A guarded buffer could not be mapped.
    #[error("could not allocate an emulated device buffer of {0} bytes")]
    Alloc(usize),
}

extern "C" {
    fn pk_emu_kernel_params(name: *const c_char, sizes: *mut usize, cap: c_int) -> c_int;
    fn pk_emu_kernel_count_get() -> c_int;
    fn pk_emu_kernel_name(k: c_int) -> *const c_char;
    fn pk_emu_launch(
        name: *const c_char,
        grid: *const u32,
        block: *const u32,
        args: *mut *mut c_void,
        schedule: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn pk_emu_alloc(bytes: usize) -> *mut c_void;
    fn pk_emu_free(p: *mut c_void, bytes: usize);
}

/// The order in which the threads of a block run between two barriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Thread 0 first.
    Ascending,
    /// The last thread first.
    Descending,
    /// A permutation drawn from the seed, new for every block and barrier interval.
    Shuffled(u32),
}

impl Schedule {
    fn code(self) -> c_int {
        match self {
            Schedule::Ascending => 0,
            Schedule::Descending => 1,
            Schedule::Shuffled(s) => 2 + (s % (i32::MAX as u32 - 2)) as c_int,
        }
    }
}

/// Element types a [`DevBuf`] may hold (plain 4- or 8-byte values).
pub trait Element: Copy + Default + 'static {}
impl Element for f32 {}
impl Element for f64 {}
impl Element for u32 {}
impl Element for i32 {}
impl Element for u64 {}
impl Element for i64 {}

/// An emulated device buffer: host memory whose end touches an inaccessible page.
pub struct DevBuf<T: Element> {
    ptr: *mut T,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Element> DevBuf<T> {
    fn bytes(len: usize) -> usize {
        len * std::mem::size_of::<T>()
    }

    /// A buffer of `len` default (zero) values.
    pub fn zeroed(len: usize) -> Result<DevBuf<T>, EmuError> {
        Self::filled(len, T::default())
    }

    /// A buffer of `len` copies of `v`.
    pub fn filled(len: usize, v: T) -> Result<DevBuf<T>, EmuError> {
        // SAFETY: pk_emu_alloc returns a writable mapping of at least `bytes` bytes, 16-byte
        // aligned, or null.
        let ptr = unsafe { pk_emu_alloc(Self::bytes(len)) } as *mut T;
        if ptr.is_null() {
            return Err(EmuError::Alloc(Self::bytes(len)));
        }
        let mut b = DevBuf {
            ptr,
            len,
            _t: PhantomData,
        };
        b.as_mut_slice().fill(v);
        Ok(b)
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[T]) -> Result<DevBuf<T>, EmuError> {
        let mut b = Self::zeroed(data.len())?;
        b.as_mut_slice().copy_from_slice(data);
        Ok(b)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The contents.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: ptr points to len initialised elements owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The contents, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// A copy of the contents.
    pub fn to_vec(&self) -> Vec<T> {
        self.as_slice().to_vec()
    }

    /// The buffer as a kernel argument (its device pointer).
    pub fn arg(&self) -> Arg {
        Arg {
            word: self.ptr as usize as u64,
            size: std::mem::size_of::<*mut T>(),
        }
    }
}

// SAFETY: a DevBuf owns its mapping exclusively, like a Box<[T]>: shared references only
// read it and writing needs &mut.
unsafe impl<T: Element + Send> Send for DevBuf<T> {}
// SAFETY: as above.
unsafe impl<T: Element + Sync> Sync for DevBuf<T> {}

impl<T: Element> Drop for DevBuf<T> {
    fn drop(&mut self) {
        // SAFETY: ptr came from pk_emu_alloc with the same byte count.
        unsafe { pk_emu_free(self.ptr as *mut c_void, Self::bytes(self.len)) }
    }
}

/// One kernel argument: the bytes of a scalar or of a device pointer.
#[derive(Debug, Clone, Copy)]
pub struct Arg {
    word: u64,
    size: usize,
}

impl Arg {
    /// A 32-bit signed integer (`int`).
    pub fn i32(v: i32) -> Arg {
        Arg {
            word: v as u32 as u64,
            size: 4,
        }
    }
    /// A 32-bit unsigned integer (`u32` / `unsigned`).
    pub fn u32(v: u32) -> Arg {
        Arg {
            word: v as u64,
            size: 4,
        }
    }
    /// A 64-bit signed integer (`i64` / `long long`).
    pub fn i64(v: i64) -> Arg {
        Arg {
            word: v as u64,
            size: 8,
        }
    }
    /// A 64-bit unsigned integer.
    pub fn u64(v: u64) -> Arg {
        Arg { word: v, size: 8 }
    }
    /// A `float`.
    pub fn f32(v: f32) -> Arg {
        Arg {
            word: v.to_bits() as u64,
            size: 4,
        }
    }
    /// A `double`.
    pub fn f64(v: f64) -> Arg {
        Arg {
            word: v.to_bits(),
            size: 8,
        }
    }
}

/// Prefix of the emulator's own test kernels (`cpp/selftest.cu`).
pub const SELFTEST_PREFIX: &str = "pk_emu_selftest_";

/// Names of every emulated kernel of `kernels/*.cu` (the emulator's own test kernels,
/// named with [`SELFTEST_PREFIX`], excluded).
pub fn kernel_names() -> Vec<String> {
    all_kernel_names()
        .into_iter()
        .filter(|n| !n.starts_with(SELFTEST_PREFIX))
        .collect()
}

fn all_kernel_names() -> Vec<String> {
    // SAFETY: the table is static; names are NUL-terminated literals.
    let n = unsafe { pk_emu_kernel_count_get() };
    (0..n)
        .filter_map(|k| {
            // SAFETY: k is in range, so the pointer is a static C string.
            let p = unsafe { pk_emu_kernel_name(k) };
            (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// Sizes in bytes of a kernel's parameters, or `None` for an unknown name.
pub fn kernel_params(kernel: &str) -> Option<Vec<usize>> {
    let name = CString::new(kernel).ok()?;
    let mut sizes = [0usize; 64];
    // SAFETY: sizes has room for 64 entries.
    let n = unsafe { pk_emu_kernel_params(name.as_ptr(), sizes.as_mut_ptr(), 64) };
    (n >= 0).then(|| sizes[..(n as usize).min(64)].to_vec())
}

/// Runs `kernel` over `grid` blocks of `block` threads, like `cuLaunchKernel`.
///
/// The argument count and sizes are checked against the kernel's C++ signature; pointer
/// arguments must come from [`DevBuf::arg`] of buffers that outlive the call and are large
/// enough for what the kernel indexes (an overrun past the end faults).
pub fn launch(
    kernel: &str,
    grid: [u32; 3],
    block: [u32; 3],
    args: &[Arg],
    schedule: Schedule,
) -> Result<(), EmuError> {
    let args_err = |message: String| EmuError::Args {
        kernel: kernel.to_string(),
        message,
    };
    let sizes = kernel_params(kernel).ok_or_else(|| EmuError::Launch {
        kernel: kernel.to_string(),
        message: "no such kernel in kernels/*.cu".into(),
    })?;
    if sizes.len() != args.len() {
        return Err(args_err(format!(
            "{} arguments given, the kernel takes {}",
            args.len(),
            sizes.len()
        )));
    }
    for (i, (a, &s)) in args.iter().zip(&sizes).enumerate() {
        if a.size != s {
            return Err(args_err(format!(
                "argument {i} is {} bytes, the parameter {s}",
                a.size
            )));
        }
    }
    let mut words: Vec<u64> = args.iter().map(|a| a.word).collect();
    let mut ptrs: Vec<*mut c_void> = words
        .iter_mut()
        .map(|w| w as *mut u64 as *mut c_void)
        .collect();
    let name = CString::new(kernel).map_err(|_| args_err("name contains NUL".into()))?;
    let mut err = vec![0 as c_char; 512];
    // SAFETY: every parameter reads its value from one 8-byte word (little-endian, so a
    // 4-byte parameter reads the low half); pointers are live DevBufs per the contract.
    let rc = unsafe {
        pk_emu_launch(
            name.as_ptr(),
            grid.as_ptr(),
            block.as_ptr(),
            ptrs.as_mut_ptr(),
            schedule.code(),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // SAFETY: the runtime wrote a NUL-terminated message into err.
        let message = unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        return Err(EmuError::Launch {
            kernel: kernel.to_string(),
            message,
        });
    }
    Ok(())
}
