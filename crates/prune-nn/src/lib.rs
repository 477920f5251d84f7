//! prune-nn
