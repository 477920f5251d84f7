//! The methods wired into models and training: gate placement, SBP on the
//! autograd tape, the three regularizers and their rules.

pub mod placement;
pub mod regularizers;
pub mod sbp_ops;

pub use placement::{gamma_gates, insert_sbp_gates, insert_scale_gates, sbp_gates};
pub use regularizers::{
    polarization_rule, sbp_masks, slimming_rule, to_channel_masks, PolarizationMethod, SbpMethod,
    SlimmingMethod, SBP_PARAM_CLIP,
};
pub use sbp_ops::{sbp_kl, SbpRuntime};
