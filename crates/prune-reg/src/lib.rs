//! `prune-reg`: the regularizers and pruning rules of prune-nn.
//!
//! * SBP's math (sampler, E\[θ\], SNR, KL) and its gate are core ops
//!   ([`prune_core::sbp`]); here are its gate placement and SNR keep rule.
//! * [`polarization`] — the polarization regularizer over batch-norm scales,
//!   with [`threshold`] (first valley of the scale histogram) and [`search`]
//!   (λ/t search for a FLOPs target).
//! * [`slimming`] — network slimming: L1 on scales and a global percentile cut.
//! * [`masks`] — per-layer keep masks and their JSON file; no layer is ever
//!   emptied.
//! * [`plot`] — SVG histograms.
//! * [`method`] — the methods wired into models and training: gate placement,
//!   the regularizers and their rules.

pub mod error;
pub mod masks;
pub mod method;
pub mod plot;
pub mod polarization;
pub mod search;
pub mod slimming;
pub mod threshold;

pub use error::{RegError, Result};
pub use masks::{LayerMask, Masks};
