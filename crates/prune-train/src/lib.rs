//! prune-train
