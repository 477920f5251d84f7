//! prune-compiler
