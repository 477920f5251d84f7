//! Device API of the kernels the CUDA backend builds on: elementwise maps with broadcasting
//! and dropout ([`elementwise`]), reductions, log-softmax and NLL ([`reduce`]), batch norm,
//! pooling and channel concat / index-select ([`nn`]), fused optimizer steps and the SBP KL
//! ([`update`]).
//!
//! Every function checks its buffers against the sizes it is given and returns a
//! [`KernelError`] (never panics); without CUDA, [`NnKernels::new`] cannot be reached because
//! [`KernelContext::new`] already returns `NoCuda` / `NoDevice`.  The arithmetic is specified
//! in the kernel files and mirrored by [`crate::cpu_ref`].

pub mod elementwise;
pub mod nn;
pub mod reduce;
pub mod update;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, LaunchArgs, LaunchConfig};

use crate::context::{KernelContext, LoadedModule};
use crate::error::KernelError;
use crate::source::KernelFile;
use crate::tiling::{stride_grid, BLOCK};

/// The loaded kernel files of the backend operations, for one [`KernelContext`].
pub struct NnKernels {
    ctx: Arc<CudaContext>,
    elementwise: Arc<LoadedModule>,
    reduce: Arc<LoadedModule>,
    batchnorm: Arc<LoadedModule>,
    pooling: Arc<LoadedModule>,
    channels: Arc<LoadedModule>,
    optim: Arc<LoadedModule>,
    sbp_kl: Arc<LoadedModule>,
    sms: u32,
}

impl NnKernels {
    /// Compiles (once per context) and loads every backend kernel file.
    pub fn new(kc: &KernelContext) -> Result<NnKernels, KernelError> {
        Ok(NnKernels {
            ctx: kc.cuda_context().clone(),
            elementwise: kc.module(KernelFile::Elementwise)?,
            reduce: kc.module(KernelFile::Reduce)?,
            batchnorm: kc.module(KernelFile::BatchNorm)?,
            pooling: kc.module(KernelFile::Pooling)?,
            channels: kc.module(KernelFile::Channels)?,
            optim: kc.module(KernelFile::Optim)?,
            sbp_kl: kc.module(KernelFile::SbpKl)?,
            sms: kc.sms(),
        })
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

/// Launches a builder whose arguments were pushed in the kernel's parameter order.
fn run(name: &'static str, mut b: LaunchArgs<'_>, cfg: LaunchConfig) -> Result<(), KernelError> {
    // SAFETY: every caller pushes exactly the kernel's parameters, in order and of the
    // kernel's types, after checking each buffer holds what the kernel indexes.
    unsafe { b.launch(cfg) }
        .map(|_| ())
        .map_err(KernelError::launch(name))
}

fn function<'a>(m: &'a LoadedModule, name: &str) -> Result<&'a CudaFunction, KernelError> {
    m.function(name)
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
