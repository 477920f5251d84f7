//! CPU kernels: plain functions on tensors, forward and backward.
//! The autograd tape calls these; they know nothing of the tape.
//!
//! * [`gemm`] — packed, cache-blocked SGEMM with AVX-512 / AVX2 / scalar
//!   micro-kernels chosen at run time, multithreaded with rayon.
//! * [`conv`] — 2-D convolution (stride, padding, groups, depthwise) by
//!   im2col + GEMM, or by direct loops when each group has one input channel.
//! * [`pool`] — max and average pooling.
//! * [`batchnorm`] — batch normalisation over `[N, C]` and `[N, C, H, W]`;
//!   [`batchnorm_relu`] — batch norm, residual add and ReLU in one pass;
//!   [`conv2d_batch_norm_train`] — a convolution and the training-mode batch
//!   norm after it, the batch statistics formed as the output is written.
//! * [`elementwise`] — ReLU, addition and accumulation split across threads.
//!
//! All kernels are deterministic: the same inputs give bit-identical
//! results whatever the number of rayon threads.

pub mod batchnorm;
pub mod batchnorm_relu;
pub mod conv;
mod conv_backward;
mod conv_batched;
mod conv_bn;
mod conv_columns;
mod conv_direct;
mod conv_flat;
mod conv_flat_grad;
mod conv_flat_kernel;
mod conv_grad;
mod conv_phase;
mod conv_phase_grad;
mod conv_plane;
mod conv_tune;
mod conv_wino;
mod conv_wino2;
mod conv_wino_grad;
mod conv_wino_kernels;
mod dispatch;
pub mod elementwise;
pub mod gemm;
mod gemm_driver;
pub mod gemm_kernels;
mod gemm_pack;
mod im2col;
mod pad;
pub mod pool;
mod pool_plane;
pub(crate) mod reduce;
#[cfg(target_arch = "x86_64")]
mod reduce_avx512;
mod scratch;
mod shape;

pub use batchnorm::*;
pub use batchnorm_relu::*;
pub use conv::*;
pub use conv_bn::*;
pub use gemm::*;
pub use gemm_kernels::{active_kernel, available_kernels, Kernel};
pub use pool::*;

#[cfg(test)]
mod batchnorm_tests;
#[cfg(test)]
mod conv_flat_tests;
#[cfg(test)]
mod conv_phase_grad_tests;
#[cfg(test)]
mod conv_phase_tests;
#[cfg(test)]
mod conv_tests;
#[cfg(test)]
mod conv_wino2_tests;
#[cfg(test)]
mod conv_wino_tests;
#[cfg(test)]
mod gemm_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod test_util;
