//! `prune-reg`: the regularizers and pruning rules of prune-nn.
//!
//! * [`sbp`] — Structured Bayesian Pruning: truncated log-normal noise per unit,
//!   its KL to the log-uniform prior, reparameterized samples, SNR keep rule.
//! * [`polarization`] — the polarization regularizer over batch-norm scales,
//!   with [`threshold`] (first valley of the scale histogram) and [`search`]
//!   (λ/t search for a FLOPs target).
//! * [`slimming`] — network slimming: L1 on scales and a global percentile cut.
//! * [`masks`] — per-layer keep masks and their JSON file; no layer is ever
//!   emptied.
//! * [`plot`] — SVG histograms.
//! * [`method`] — the methods wired into models and training: gate placement,
//!   SBP on the autograd tape, the regularizers and their rules.

pub mod error;
pub mod masks;
pub mod method;
pub mod plot;
pub mod polarization;
pub mod sbp;
pub mod search;
pub mod slimming;
pub mod threshold;

pub use error::{RegError, Result};
pub use masks::{LayerMask, Masks};
