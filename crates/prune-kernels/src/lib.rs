//! CUDA kernels for structured pruning, compiled at run time with NVRTC:
//!
//! * [`SbpNoise`]: fused multiplicative truncated log-normal noise of Structured Bayesian
//!   Pruning (sampling with an in-kernel Philox4x32-10 generator, multiply, backward with
//!   per-channel reductions, and per-channel E\[theta\] / SNR / KL);
//! * [`MaskedConv2d`]: 2-D convolution reading only kept input channels and writing only
//!   kept output channels, with input and weight gradients;
//! * [`ChannelGather`]: channel gather / scatter of activations and weights;
//! * [`Baselines`]: the unfused / naive kernels the benchmarks compare against.
//!
//! Every kernel has a CPU reference in [`cpu_ref`].  The crate builds and its CPU code runs
//! without CUDA: [`probe`] and [`KernelContext::new`] report a missing driver, NVRTC or
//! device as a [`KernelError`] instead of panicking.
//!
//! ```no_run
//! use prune_kernels::{KernelContext, NoiseMode, SbpNoise, SbpShape};
//! # fn main() -> Result<(), prune_kernels::KernelError> {
//! let kc = KernelContext::new(0)?;
//! let sbp = SbpNoise::new(&kc)?;
//! let shape = SbpShape::nchw(8, 16, 4, 4);
//! let x = vec![1.0f32; shape.numel()?];
//! let (mu, ls) = (vec![-0.5f32; 16], vec![-2.0f32; 16]);
//! let (y, theta) = sbp.forward_host(kc.stream(), &x, shape, &mu, &ls, 7, NoiseMode::PerChannel)?;
//! # let _ = (y, theta);
//! # Ok(())
//! # }
//! ```

mod baseline;
mod context;
mod conv;
pub mod cpu_ref;
mod error;
mod gather;
pub mod host;
mod keep;
pub mod ops;
mod probe;
pub mod runtime;
#[cfg(feature = "emu")]
pub mod runtime_emu;
mod sbp;
mod shapes;
pub mod source;
pub mod tiling;

pub use baseline::{Baselines, UnfusedWork};
pub use context::KernelContext;
pub use conv::MaskedConv2d;
pub use cpu_ref::sbp::NoiseStream;
pub use cudarc;
pub use error::KernelError;
pub use gather::{ChannelGather, Untouched};
pub use keep::{validate_keep, KeepList};
pub use ops::NnKernels;
pub use probe::{driver_library_present, nvrtc_library_present, probe, probe_device, DeviceInfo};
pub use runtime::{Args, Cuda, Elem, Runtime, Scalar};
#[cfg(feature = "emu")]
pub use runtime_emu::{transfers, Emu, EmuStream, Schedule, Transfers};
pub use sbp::{
    SbpGrads, SbpHostGrads, SbpHostStats, SbpNoise, SbpParams, SbpSamples, SbpStatsBuffers,
};
pub use shapes::{ChannelLayout, ConvShape, NoiseMode, SbpShape};
pub use source::{compile, CompiledKernel, KernelFile};
