//! The emulated runtime (feature `emu`): the kernels of `kernels/*.cu` run on the CPU by
//! `prune-kernels-emu`, behind the same [`Runtime`] interface as CUDA, so the wrappers'
//! own code (checks, grids, argument lists, workspaces) runs in CI without a GPU.
//!
//! Buffers are `prune_kernels_emu::DevBuf`s (host memory ending at an inaccessible page, so
//! an overrun faults); "copies" are host copies; a launch checks the argument count and
//! sizes against the kernel's C++ signature and runs every block with its threads as
//! fibers, in the order the stream's [`Schedule`] picks.  Work is synchronous, so there is
//! nothing to wait for.

use std::collections::HashMap;

use cudarc::driver::LaunchConfig;
use prune_kernels_emu::{Arg, DevBuf};

pub use prune_kernels_emu::Schedule;

use crate::error::KernelError;
use crate::runtime::{Elem, Runtime, Scalar};
use crate::source::KernelFile;

/// The emulated device.
#[derive(Debug, Clone, Copy, Default)]
pub struct Emu;

/// The emulated stream: launches run at once, their threads in `schedule`'s order.
#[derive(Debug, Clone, Copy)]
pub struct EmuStream {
    pub schedule: Schedule,
}

/// Host↔device copies the emulated runtime made on one thread (`upload` and `download`
/// calls; copies between device buffers are not counted): tests read the difference
/// across an operation to show that it copies nothing between host and device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Host-to-device copies.
    pub uploads: u64,
    /// Device-to-host copies.
    pub downloads: u64,
}

thread_local! {
    static TRANSFERS: std::cell::Cell<Transfers> = const {
        std::cell::Cell::new(Transfers { uploads: 0, downloads: 0 })
    };
}

/// The host↔device copies the emulated runtime has made on the calling thread so far
/// (every emulated copy runs on the thread that asks for it).
pub fn transfers() -> Transfers {
    TRANSFERS.with(|t| t.get())
}

fn count(upload: bool) {
    TRANSFERS.with(|t| {
        let mut v = t.get();
        if upload {
            v.uploads += 1;
        } else {
            v.downloads += 1;
        }
        t.set(v);
    });
}

fn emu_err(e: prune_kernels_emu::EmuError) -> KernelError {
    KernelError::Emulation(e.to_string())
}

impl Runtime for Emu {
    type Buf<T: Elem> = DevBuf<T>;
    type Stream = EmuStream;
    type Func = &'static str;
    type Arg<'a> = Arg;

    fn check_stream(&self, _op: &'static str, _stream: &EmuStream) -> Result<(), KernelError> {
        Ok(())
    }

    fn check_owner<T: Elem>(
        &self,
        _op: &'static str,
        _name: &str,
        _buf: &DevBuf<T>,
    ) -> Result<(), KernelError> {
        Ok(())
    }

    fn load(
        &self,
        file: KernelFile,
        _arch: &str,
    ) -> Result<HashMap<&'static str, &'static str>, KernelError> {
        file.kernels()
            .iter()
            .map(|&name| {
                prune_kernels_emu::kernel_params(name)
                    .map(|_| (name, name))
                    .ok_or_else(|| {
                        KernelError::Emulation(format!(
                            "{} names kernel {name}, which the emulation does not have",
                            file.file_name()
                        ))
                    })
            })
            .collect()
    }

    fn len<T: Elem>(buf: &DevBuf<T>) -> usize {
        buf.len()
    }

    fn zeros<T: Elem>(_stream: &EmuStream, n: usize) -> Result<DevBuf<T>, KernelError> {
        DevBuf::zeroed(n.max(1)).map_err(emu_err)
    }

    fn alloc<T: Elem>(_stream: &EmuStream, n: usize) -> Result<DevBuf<T>, KernelError> {
        // Uninitialised device memory is modelled by a recognisable pattern (NaN for
        // floats), so a kernel that reads an element before writing it shows.
        let mut b = DevBuf::zeroed(n.max(1)).map_err(emu_err)?;
        let bytes = std::mem::size_of_val(b.as_slice());
        // SAFETY: every Elem type accepts any bit pattern; the buffer is exclusively ours.
        unsafe { std::ptr::write_bytes(b.as_mut_slice().as_mut_ptr() as *mut u8, 0xff, bytes) };
        Ok(b)
    }

    fn fill_zero<T: Elem>(_stream: &EmuStream, buf: &mut DevBuf<T>) -> Result<(), KernelError> {
        buf.as_mut_slice().fill(T::default());
        Ok(())
    }

    fn upload<T: Elem>(_stream: &EmuStream, data: &[T]) -> Result<DevBuf<T>, KernelError> {
        count(true);
        if data.is_empty() {
            return DevBuf::zeroed(1).map_err(emu_err);
        }
        DevBuf::from_slice(data).map_err(emu_err)
    }

    fn download<T: Elem>(
        _stream: &EmuStream,
        buf: &DevBuf<T>,
        len: usize,
    ) -> Result<Vec<T>, KernelError> {
        count(false);
        buf.as_slice().get(..len).map(<[T]>::to_vec).ok_or_else(|| {
            KernelError::shape(
                "download",
                format!("asked for {len} elements of a {}-element buffer", buf.len()),
            )
        })
    }

    fn duplicate<T: Elem>(_stream: &EmuStream, buf: &DevBuf<T>) -> Result<DevBuf<T>, KernelError> {
        DevBuf::from_slice(buf.as_slice()).map_err(emu_err)
    }

    fn arg_in<'a, T: Elem>(buf: &'a DevBuf<T>) -> Self::Arg<'a> {
        buf.arg()
    }

    fn arg_out<'a, T: Elem>(buf: &'a mut DevBuf<T>) -> Self::Arg<'a> {
        buf.arg()
    }

    fn arg_val<'a>(v: Scalar) -> Self::Arg<'a> {
        match v {
            Scalar::I32(x) => Arg::i32(x),
            Scalar::U32(x) => Arg::u32(x),
            Scalar::I64(x) => Arg::i64(x),
            Scalar::U64(x) => Arg::u64(x),
            Scalar::F32(x) => Arg::f32(x),
            Scalar::F64(x) => Arg::f64(x),
        }
    }

    fn launch(
        stream: &EmuStream,
        func: &&'static str,
        name: &'static str,
        cfg: LaunchConfig,
        args: Vec<Arg>,
    ) -> Result<(), KernelError> {
        if cfg.shared_mem_bytes != 0 {
            return Err(KernelError::Emulation(format!(
                "{name}: dynamic shared memory is not emulated"
            )));
        }
        let (g, b) = (cfg.grid_dim, cfg.block_dim);
        prune_kernels_emu::launch(
            func,
            [g.0, g.1, g.2],
            [b.0, b.1, b.2],
            &args,
            stream.schedule,
        )
        .map_err(emu_err)
    }
}
