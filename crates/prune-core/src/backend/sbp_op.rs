//! The arguments and results of the SBP noise op on a [`Backend`](super::Backend).
//!
//! One gate multiplies an `[N, C, ...]` activation by θ, one sample per channel
//! ([`NoiseMode::PerChannel`]) or per (example, channel) ([`NoiseMode::PerExample`]),
//! drawn from the noise stream `(seed, layer, step)`:
//!
//! ```text
//! log θ ~ N(μ, σ²) truncated to [−20, 0],   y = x ⊙ θ
//! ∂L/∂x      = g ⊙ θ
//! s_k        = Σ_{spatial (and rows, per channel)} g ⊙ x      per θ entry k
//! ∂L/∂μ_c    = Σ_{k of c} s_k · ∂θ_k/∂μ_c
//! ∂L/∂logσ_c = Σ_{k of c} s_k · ∂θ_k/∂logσ_c
//! ```
//!
//! The forward pass keeps θ (and on the CPU its two pathwise derivatives, so each θ is
//! sampled once) in [`SbpSaved`] for the backward pass. The statistics and the KL term are
//! per-channel closed forms of `(μ, log σ)` (see `prune_kernels::cpu_ref::sbp_closed`).

use crate::tensor::Tensor;
use prune_kernels::{NoiseMode, NoiseStream, SbpShape};

/// Where the training noise of one gate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SbpNoiseArgs {
    /// The gate's Philox stream: run seed, gate index, optimizer step.
    pub stream: NoiseStream,
    /// One θ per channel or per (example, channel).
    pub mode: NoiseMode,
}

/// What the forward pass keeps for the backward pass, on the device of the activation:
/// the noise and parameters it sampled from, θ (`[C]` per channel, `[N, C]` per example)
/// and, where the backend computes them in the forward pass, the pathwise derivatives.
#[derive(Clone, Debug, PartialEq)]
pub struct SbpSaved {
    /// The gate's `(N, C, inner)` view of the activation.
    pub shape: SbpShape,
    /// The stream and mode the samples were drawn from.
    pub noise: SbpNoiseArgs,
    /// μ at the forward pass, `[C]`.
    pub mu: Tensor,
    /// log σ at the forward pass, `[C]`.
    pub log_sigma: Tensor,
    /// θ per entry.
    pub theta: Tensor,
    /// `(∂θ/∂μ, ∂θ/∂log σ)` per entry, in the layout of the backend that drew θ, so
    /// that each θ is sampled once: the CPU backend keeps two tensors shaped like θ;
    /// the CUDA backend keeps, per example, one `[n, 2]` tensor of interleaved pairs
    /// (given as both entries) and `None` per channel, where its finalize kernel
    /// re-derives the C samples' derivatives from `(μ, log σ, noise)`.
    pub dtheta: Option<(Tensor, Tensor)>,
}

/// What [`Backend::sbp_noise_forward`](super::Backend::sbp_noise_forward) returns.
#[derive(Clone, Debug, PartialEq)]
pub struct SbpForward {
    /// `x ⊙ θ`, shaped like `x`.
    pub y: Tensor,
    /// The samples, for the backward pass.
    pub saved: SbpSaved,
}

/// Gradients of one SBP gate.
#[derive(Clone, Debug, PartialEq)]
pub struct SbpGateGrads {
    /// `g ⊙ θ`, shaped like `x`.
    pub dx: Tensor,
    /// `[C]`.
    pub dmu: Tensor,
    /// `[C]`.
    pub dlog_sigma: Tensor,
}

/// Test-time statistics of one gate, each `[C]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SbpStats {
    /// E\[θ\].
    pub expected_theta: Tensor,
    /// E\[θ\]/√Var\[θ\] (capped at `SNR_MAX`).
    pub snr: Tensor,
    /// `E[θ]·1[SNR > 1]`: the test-time multiplier.
    pub scale: Tensor,
}

/// `Σ_c KL(q(θ_c) ‖ p(θ_c))` of one gate and its gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct SbpKl {
    /// The sum, a scalar (accumulated in f64).
    pub sum: Tensor,
    /// ∂sum/∂μ, `[C]`.
    pub dmu: Tensor,
    /// ∂sum/∂log σ, `[C]`.
    pub dlog_sigma: Tensor,
}

/// The `(N, C, inner)` view of an `[N, C, ...]` activation (rank checked by the caller).
pub fn gate_view(x_shape: &[usize]) -> SbpShape {
    SbpShape {
        rows: x_shape.first().copied().unwrap_or(0),
        channels: x_shape.get(1).copied().unwrap_or(0),
        inner: x_shape.iter().skip(2).product(),
    }
}
