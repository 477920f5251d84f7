//! Device API of the kernels the CUDA backend builds on: elementwise maps with broadcasting
//! and dropout ([`elementwise`]), reductions, log-softmax and NLL ([`reduce`]), batch norm,
//! pooling and channel concat / index-select ([`nn`]), fused optimizer steps and the SBP KL
//! ([`update`]).
//!
//! Every function checks its buffers against the sizes it is given and returns a
//! [`KernelError`] (never panics); without CUDA, [`NnKernels::new`] cannot be reached because
//! [`KernelContext::new`] already returns `NoCuda` / `NoDevice`.  The arithmetic is specified
//! in the kernel files and mirrored by [`crate::cpu_ref`].

mod constants;
pub mod elementwise;
pub mod nn;
pub mod reduce;
pub mod update;

pub use constants::MAX_LISTS;

use std::sync::Arc;

use cudarc::driver::LaunchConfig;

use crate::context::{KernelContext, LoadedModule};
use crate::error::KernelError;
use crate::runtime::{Cuda, Runtime};
use crate::source::KernelFile;
use crate::tiling::{stride_grid, BLOCK};

/// The loaded kernel files of the backend operations, for one [`KernelContext`] (a GPU,
/// or with the `emu` feature the CPU emulation of the kernels).
pub struct NnKernels<R: Runtime = Cuda> {
    ctx: R,
    elementwise: Arc<LoadedModule<R>>,
    reduce: Arc<LoadedModule<R>>,
    batchnorm: Arc<LoadedModule<R>>,
    pooling: Arc<LoadedModule<R>>,
    channels: Arc<LoadedModule<R>>,
    optim: Arc<LoadedModule<R>>,
    sbp_kl: Arc<LoadedModule<R>>,
    sms: u32,
    /// Index lists and broadcast geometry, uploaded once per content.
    lists: constants::ConstantLists<R>,
}

impl<R: Runtime> NnKernels<R> {
    /// Compiles (once per context) and loads every backend kernel file.
    pub fn new(kc: &KernelContext<R>) -> Result<NnKernels<R>, KernelError> {
        Ok(NnKernels {
            ctx: kc.runtime().clone(),
            elementwise: kc.module(KernelFile::Elementwise)?,
            reduce: kc.module(KernelFile::Reduce)?,
            batchnorm: kc.module(KernelFile::BatchNorm)?,
            pooling: kc.module(KernelFile::Pooling)?,
            channels: kc.module(KernelFile::Channels)?,
            optim: kc.module(KernelFile::Optim)?,
            sbp_kl: kc.module(KernelFile::SbpKl)?,
            sms: kc.sms(),
            lists: constants::ConstantLists::default(),
        })
    }

    /// Number of read-only lists (index lists, broadcast geometry) held on the device
    /// for reuse (at most [`MAX_LISTS`] per element type).
    pub fn cached_lists(&self) -> usize {
        self.lists.len()
    }

    /// Grid of a grid-stride loop over `n` items.
    fn stride_cfg(&self, n: usize) -> LaunchConfig {
        cfg([stride_grid(n, self.sms), 1, 1])
    }
}

fn cfg(grid: [u32; 3]) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid[0], grid[1], grid[2]),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `n` as an i64 kernel argument.
fn as_i64(op: &'static str, name: &str, n: usize) -> Result<i64, KernelError> {
    i64::try_from(n).map_err(|_| KernelError::invalid(op, format!("{name} = {n} exceeds i64")))
}

/// Product of dimensions, checked.
fn numel(op: &'static str, dims: &[usize]) -> Result<usize, KernelError> {
    dims.iter().try_fold(1usize, |a, &d| {
        a.checked_mul(d)
            .ok_or_else(|| KernelError::invalid(op, format!("shape {dims:?} overflows usize")))
    })
}
