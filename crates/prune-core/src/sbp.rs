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

use crate::autograd::CustomOp;
use crate::{CoreError, Result, Tape, Tensor, Var};
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

fn kernel_err(op: &'static str, e: prune_kernels::KernelError) -> CoreError {
    CoreError::InvalidArgument {
        op,
        reason: e.to_string(),
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

/// The fused noise multiply; keeps θ and its derivatives for backward.
#[derive(Debug)]
struct SbpNoiseOp {
    shape: SbpShape,
    /// θ per channel (C entries) or per (n, c) (N·C entries).
    theta: Vec<f32>,
    dtheta_dmu: Vec<f32>,
    dtheta_dls: Vec<f32>,
    per_example: bool,
}

impl SbpNoiseOp {
    fn index(&self, n: usize, c: usize) -> usize {
        if self.per_example {
            n * self.shape.channels + c
        } else {
            c
        }
    }
}

impl CustomOp for SbpNoiseOp {
    fn name(&self) -> &str {
        "SbpNoise"
    }

    fn backward(
        &self,
        inputs: &[&Tensor],
        _output: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let SbpShape {
            rows,
            channels,
            inner,
        } = self.shape;
        let mut dx = vec![0f32; x.numel()];
        let mut dmu = vec![0f64; channels];
        let mut dls = vec![0f64; channels];
        for n in 0..rows {
            for c in 0..channels {
                let k = self.index(n, c);
                let th = self.theta[k];
                let base = (n * channels + c) * inner;
                let (gs, xs) = (&g.data()[base..base + inner], &x.data()[base..base + inner]);
                let mut s = 0f64;
                for ((d, &gv), &xv) in dx[base..base + inner].iter_mut().zip(gs).zip(xs) {
                    *d = gv * th;
                    s += (gv * xv) as f64;
                }
                dmu[c] += s * self.dtheta_dmu[k] as f64;
                dls[c] += s * self.dtheta_dls[k] as f64;
            }
        }
        let to =
            |v: Vec<f64>| Tensor::from_vec([channels], v.into_iter().map(|a| a as f32).collect());
        Ok(vec![
            Some(Tensor::from_vec(x.shape().to_vec(), dx)?),
            Some(to(dmu)?),
            Some(to(dls)?),
        ])
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
    let shape = gate_shape(tape.shape(x)?, tape.shape(mu)?, tape.shape(log_sigma)?)?;
    let smp = samples(
        &shape,
        tape.value(mu)?.data(),
        tape.value(log_sigma)?.data(),
        stream,
        mode,
    )
    .map_err(|e| kernel_err("sbp gate", e))?;
    let op = SbpNoiseOp {
        shape,
        theta: smp.iter().map(|s| s.theta as f32).collect(),
        dtheta_dmu: smp.iter().map(|s| s.dtheta_dmu as f32).collect(),
        dtheta_dls: smp.iter().map(|s| s.dtheta_dlog_sigma as f32).collect(),
        per_example: mode == NoiseMode::PerExample,
    };
    let xv = tape.value(x)?;
    let mut y = xv.data().to_vec();
    for n in 0..shape.rows {
        for c in 0..shape.channels {
            let th = op.theta[op.index(n, c)];
            let base = (n * shape.channels + c) * shape.inner;
            y[base..base + shape.inner]
                .iter_mut()
                .for_each(|v| *v *= th);
        }
    }
    let y = Tensor::from_vec(xv.shape().to_vec(), y)?;
    tape.custom(&[x, mu, log_sigma], y, Arc::new(op))
}

/// Eval-mode SBP gate: `y = x ⊙ E[θ]·1[SNR > 1]`, a constant per channel.
pub fn sbp_gate_eval(tape: &mut Tape<'_>, x: Var, mu: Var, log_sigma: Var) -> Result<Var> {
    let xs = tape.shape(x)?.to_vec();
    let shape = gate_shape(&xs, tape.shape(mu)?, tape.shape(log_sigma)?)?;
    let st = layer_stats(tape.value(mu)?.data(), tape.value(log_sigma)?.data())
        .map_err(|e| kernel_err("sbp gate", e))?;
    let mut s = vec![1; xs.len()];
    s[1] = shape.channels;
    let scale = tape.constant(Tensor::from_vec(s, st.scale)?);
    tape.mul(x, scale)
}

/// Σ KL(q(θ_c) ‖ p(θ_c)) of one gate, as a scalar op on `[μ, log σ]`.
#[derive(Debug)]
struct SbpKlOp {
    d_mu: Vec<f32>,
    d_ls: Vec<f32>,
}

impl CustomOp for SbpKlOp {
    fn name(&self) -> &str {
        "SbpKl"
    }

    fn backward(
        &self,
        _inputs: &[&Tensor],
        _output: &Tensor,
        g: &Tensor,
    ) -> Result<Vec<Option<Tensor>>> {
        let s = g.item()?;
        let scale = |v: &[f32]| Tensor::from_vec([v.len()], v.iter().map(|d| d * s).collect());
        Ok(vec![Some(scale(&self.d_mu)?), Some(scale(&self.d_ls)?)])
    }
}

/// The sum of KL terms of one SBP gate on the tape ([`kl_value_and_grad`] per unit).
pub fn sbp_kl(tape: &mut Tape<'_>, mu: Var, log_sigma: Var) -> Result<Var> {
    let kl = kl_layer_sum_and_grad(tape.value(mu)?.data(), tape.value(log_sigma)?.data())
        .map_err(|e| kernel_err("sbp kl", e))?;
    let op = Arc::new(SbpKlOp {
        d_mu: kl.d_mu,
        d_ls: kl.d_log_sigma,
    });
    tape.custom(&[mu, log_sigma], Tensor::scalar(kl.sum as f32), op)
}
