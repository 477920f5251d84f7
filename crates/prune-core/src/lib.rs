//! `prune-core`: f32 tensors, CPU kernels and a reverse-mode autograd tape.
//!
//! * [`Tensor`] — contiguous row-major storage (NCHW for images).
//! * [`cpu`] — forward/backward kernels: GEMM, convolution, pooling, batch norm.
//! * [`autograd`] — a [`Tape`] of nodes, each an inspectable [`Op`] variant;
//!   `backward` from a scalar returns the gradients of every leaf.
//! * [`optim`] — SGD (momentum, Nesterov, weight decay), Adam, LR schedules.
//! * [`sbp`] — the SBP noise gate and its KL as tape ops, over the one SBP math
//!   (the kernel crate's CPU reference).
//! * [`gradcheck`] — central finite differences, reused by every crate's tests.

pub mod autograd;
pub mod cpu;
pub mod error;
pub mod gradcheck;
pub mod optim;
pub mod sbp;
pub mod tensor;

pub use autograd::{Gradients, Op, Tape, Var};
pub use error::{CoreError, Result};
pub use tensor::Tensor;
