//! The Structured Bayesian Pruning noise gate (Neklyudov et al. 2017) as tape ops, over
//! the one SBP math of the workspace: the CPU reference of the kernel crate
//! ([`prune_kernels::cpu_ref::sbp`]), re-exported here so that training, the regularizers
//! and the compiler's folding all call the same functions as the CUDA kernels' tests.
//!
//! Train mode draws θ from the noise stream `(seed, layer, step)` (see [`NoiseStream`]),
//! one θ per channel per minibatch ([`NoiseMode::PerChannel`], as the reference
//! implementation does) or one per (example, channel) ([`NoiseMode::PerExample`]);
//! `y = x ⊙ θ` broadcast over the channel dimension of `[N, C, ...]`. Backward:
//!
//! ```text
//! ∂L/∂x      = g ⊙ θ
//! s          = Σ_{spatial} g ⊙ x                 (per channel, or per (n, c))
//! ∂L/∂μ_c    = Σ s · ∂θ/∂μ_c
//! ∂L/∂logσ_c = Σ s · ∂θ/∂logσ_c
//! ```
//! with the pathwise derivatives of [`sample`]. Eval mode multiplies by the constant
//! `E[θ]·1[SNR > 1]` ([`test_time_scale`]).
//!
//! The ops run on the backend of their inputs ([`crate::Backend::sbp_noise_forward`],
//! [`crate::Backend::sbp_stats`], [`crate::Backend::sbp_kl`]); the CPU backend is this
//! same math, so the tape never computes SBP on the host itself.

use crate::autograd::{Binary, CustomOp};
use crate::backend::{backend_of, SbpNoiseArgs, SbpSaved};
use crate::{CoreError, Device, Result, Tape, Tensor, Var};
use std::sync::Arc;

pub use prune_kernels::cpu_ref::sbp::*;
pub use prune_kernels::cpu_ref::{special, truncated};
pub use prune_kernels::{NoiseMode, SbpShape};

/// Where a gate's training noise comes from: the run's seed, the optimizer step, and
/// whether θ is drawn per minibatch or per example. The gate's own index completes the
/// [`NoiseStream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateNoise {
    /// The run's seed.
    pub seed: u64,
    /// The optimizer step this forward pass belongs to.
    pub step: u32,
    /// Per-minibatch or per-example noise.
    pub mode: NoiseMode,
}

impl GateNoise {
    /// Per-minibatch noise of `seed` at `step`.
    pub fn new(seed: u64, step: u32) -> GateNoise {
        GateNoise {
            seed,
            step,
            mode: NoiseMode::PerChannel,
        }
    }

    /// The stream of gate number `layer`.
    pub fn stream(&self, layer: u32) -> NoiseStream {
        NoiseStream::new(self.seed, layer, self.step)
    }
}

/// `(N, C, inner)` of an `[N, C, ...]` tensor and its parameters `[C]`.
fn gate_shape(x: &[usize], mu: &[usize], ls: &[usize]) -> Result<SbpShape> {
    if x.len() < 2 {
        return Err(CoreError::BadShape {
            op: "sbp gate",
            shape: x.to_vec(),
            reason: "expected [N, C, ...]".into(),
        });
    }
    for p in [mu, ls] {
        if p != [x[1]] {
            return Err(CoreError::ShapeMismatch {
                op: "sbp gate",
                lhs: x.to_vec(),
                rhs: p.to_vec(),
            });
        }
    }
    Ok(SbpShape {
        rows: x[0],
        channels: x[1],
        inner: x[2..].iter().product(),
    })
}

/// The fused noise multiply on the inputs' backend; keeps θ and its derivatives.
#[derive(Debug)]
struct SbpNoiseOp {
    saved: SbpSaved,
}

impl CustomOp for SbpNoiseOp {
    fn name(&self) -> &str {
        "SbpNoise"
    }

    fn supports(&self, _device: Device) -> bool {
        true
    }

    fn backward(
        &self,
        inputs: &[&Tensor],
        _output: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let gr = backend_of("sbp gate backward", &[x, g])?.sbp_noise_backward(x, g, &self.saved)?;
        Ok(vec![Some(gr.dx), Some(gr.dmu), Some(gr.dlog_sigma)])
    }
}

/// Train-mode SBP gate: `y = x ⊙ θ`, θ drawn from `stream` (see the module documentation).
pub fn sbp_gate_train(
    tape: &mut Tape<'_>,
    x: Var,
    mu: Var,
    log_sigma: Var,
    stream: NoiseStream,
    mode: NoiseMode,
) -> Result<Var> {
    gate_shape(tape.shape(x)?, tape.shape(mu)?, tape.shape(log_sigma)?)?;
    let (xv, mv, lv) = (tape.value(x)?, tape.value(mu)?, tape.value(log_sigma)?);
    let fwd = backend_of("sbp gate", &[xv, mv, lv])?.sbp_noise_forward(
        xv,
        mv,
        lv,
        &SbpNoiseArgs { stream, mode },
    )?;
    let op = SbpNoiseOp { saved: fwd.saved };
    tape.custom(&[x, mu, log_sigma], fwd.y, Arc::new(op))
}

/// Eval-mode SBP gate: `y = x ⊙ E[θ]·1[SNR > 1]`, a constant per channel.
pub fn sbp_gate_eval(tape: &mut Tape<'_>, x: Var, mu: Var, log_sigma: Var) -> Result<Var> {
    let xs = tape.shape(x)?.to_vec();
    let shape = gate_shape(&xs, tape.shape(mu)?, tape.shape(log_sigma)?)?;
    let (mv, lv) = (tape.value(mu)?, tape.value(log_sigma)?);
    let st = backend_of("sbp gate", &[mv, lv])?.sbp_stats(mv, lv)?;
    let mut s = vec![1; xs.len()];
    s[1] = shape.channels;
    let scale = tape.constant(st.scale.reshape(s)?);
    tape.mul(x, scale)
}

/// Σ KL(q(θ_c) ‖ p(θ_c)) of one gate, as a scalar op on `[μ, log σ]`.
#[derive(Debug)]
struct SbpKlOp {
    d_mu: Tensor,
    d_ls: Tensor,
}

impl CustomOp for SbpKlOp {
    fn name(&self) -> &str {
        "SbpKl"
    }

    fn supports(&self, _device: Device) -> bool {
        true
    }

    fn backward(
        &self,
        _inputs: &[&Tensor],
        _output: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let b = backend_of("sbp kl backward", &[&self.d_mu, g])?;
        Ok(vec![
            Some(b.binary(&self.d_mu, g, Binary::Mul)?),
            Some(b.binary(&self.d_ls, g, Binary::Mul)?),
        ])
    }
}

/// The sum of KL terms of one SBP gate on the tape ([`kl_value_and_grad`] per unit).
pub fn sbp_kl(tape: &mut Tape<'_>, mu: Var, log_sigma: Var) -> Result<Var> {
    let (mv, lv) = (tape.value(mu)?, tape.value(log_sigma)?);
    if mv.shape() != lv.shape() || mv.shape().len() != 1 {
        return Err(CoreError::ShapeMismatch {
            op: "sbp kl",
            lhs: mv.shape().to_vec(),
            rhs: lv.shape().to_vec(),
        });
    }
    let kl = backend_of("sbp kl", &[mv, lv])?.sbp_kl(mv, lv)?;
    let op = Arc::new(SbpKlOp {
        d_mu: kl.dmu,
        d_ls: kl.dlog_sigma,
    });
    tape.custom(&[mu, log_sigma], kl.sum, op)
}
