//! Structured Bayesian Pruning (Neklyudov et al. 2017): one multiplicative
//! noise variable θ per unit with a truncated log-normal posterior and a
//! log-uniform prior.
//!
//! * [`special`] — erf, erfc, erfcx, Φ, log Φ, Φ⁻¹ in f64.
//! * [`truncated`] — stable log-mass and KL pieces of the truncated normal.
//! * [`math`] — KL and its gradient, E\[θ\], E\[θ²\], SNR, the keep rule.
//! * [`sampler`] — reparameterized samples with analytic derivatives.
//! * [`layer`] — the same over a layer's `f32` parameter slices.

pub mod layer;
pub mod math;
pub mod sampler;
pub mod special;
pub mod truncated;

pub use layer::{kl_layer_sum_and_grad, layer_stats, sbp_layer_mask, LayerKl, LayerStats};
pub use math::{
    clip_param, expected_theta, expected_theta_sq, keep, kl, kl_grad, kl_value_and_grad,
    relative_variance, snr, test_time_scale, Clipped, DIRECT_VAR_MIN, LOG_SIGMA_INIT,
    LOG_THETA_MAX, LOG_THETA_MIN, MU_INIT, PARAM_MAX, PARAM_MIN, SNR_VAR_FLOOR,
};
pub use sampler::{
    draw_eps, sample, sample_layer, sample_layer_with_rng, LayerSample, Sample, P_CLIP_HI,
    P_CLIP_LO,
};
