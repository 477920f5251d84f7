//! `prune-core`: f32 tensors, CPU kernels and a reverse-mode autograd tape.
//!
//! * [`Tensor`] — contiguous row-major values (NCHW for images) over a
//!   [`storage::Storage`] on a [`Device`].
//! * [`backend`] — the compute seam: the [`Backend`] trait, the CPU backend
//!   and the stand-in CUDA backend; every tape op runs through it.
//! * [`cpu`] — forward/backward kernels: GEMM, convolution, pooling, batch norm.
//! * [`autograd`] — a [`Tape`] of nodes, each an inspectable [`Op`] variant;
//!   `backward` from a scalar returns the gradients of every leaf.
//! * [`optim`] — SGD (momentum, Nesterov, weight decay), Adam, LR schedules.
//! * [`sbp`] — the SBP noise gate and its KL as tape ops, over the one SBP math
//!   (the kernel crate's CPU reference).
//! * [`gradcheck`] — central finite differences, reused by every crate's tests.

pub mod autograd;
pub mod backend;
pub mod cpu;
pub mod error;
pub mod gradcheck;
pub mod optim;
pub mod sbp;
pub mod storage;
pub mod tensor;

pub use autograd::{Gradients, Op, Tape, Var};
pub use backend::{Backend, Device};
pub use error::{CoreError, Result};
pub use storage::Indices;
pub use tensor::Tensor;
