//! CPU kernels: plain functions on tensors, forward and backward.
//! The autograd tape calls these; they know nothing of the tape.
