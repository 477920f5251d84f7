//! prune-data
