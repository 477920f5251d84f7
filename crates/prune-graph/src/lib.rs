//! prune-graph
