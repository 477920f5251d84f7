//! prune-kernels
