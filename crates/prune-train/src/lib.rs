//! `prune-train`: the training loop, evaluation, checkpoints and metrics.
//!
//! [`fit()`] trains a [`prune_graph::Model`] on a [`prune_data::Dataset`] with
//! an optional [`Regularizer`] (the hook through which SBP, polarization and
//! network slimming shape training). Runs write `checkpoint/` and
//! `metrics.jsonl` into their run directory and resume exactly.

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod eval;
pub mod fit;
pub mod memory;
pub mod metrics;
pub mod resume;

pub use config::{OptimizerKind, TrainConfig};
pub use device::{host_model, model_device, model_to};
pub use error::{Result, TrainError};
pub use eval::{evaluate, EvalResult};
pub use fit::{fit, RunFiles, TrainSummary};
pub use metrics::EpochRecord;
pub use prune_graph::Regularizer;
