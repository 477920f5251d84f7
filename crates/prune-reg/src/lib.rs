//! prune-reg
