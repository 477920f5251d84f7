//! The methods wired into models and training: gate placement, the three
//! regularizers and their rules. The SBP gate and KL ops themselves are core ops
//! ([`prune_core::sbp`]).

pub mod gamma_penalty;
pub mod placement;
pub mod regularizers;

pub use placement::{gamma_gates, insert_sbp_gates, insert_scale_gates, sbp_gates};
pub use regularizers::{
    polarization_rule, sbp_layer_mask, sbp_masks, slimming_rule, to_channel_masks,
    PolarizationMethod, SbpMethod, SlimmingMethod,
};
