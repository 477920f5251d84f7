//! SBP on the autograd tape: the noise gate as a fused custom op, the KL
//! term as a custom op, and the [`GateRuntime`] that the interpreter calls.
//!
//! Train mode draws one θ per channel per minibatch (shared by all
//! examples, as the reference implementation does) or, optionally, one per
//! example; `y = x ⊙ θ` broadcast over the channel dimension. Backward:
//!
//! ```text
//! ∂L/∂x      = g ⊙ θ
//! s_c        = Σ_{n, spatial} g ⊙ x            (per channel, or per (n, c))
//! ∂L/∂μ_c    = Σ s_c · ∂θ_c/∂μ_c
//! ∂L/∂logσ_c = Σ s_c · ∂θ_c/∂logσ_c
//! ```
//! with the reparameterization derivatives from [`crate::sbp::sample`].
//! Eval mode multiplies by the constant `E[θ]·1[SNR > 1]`.

use crate::sbp::{kl_layer_sum_and_grad, layer_stats, sample_layer};
use prune_core::autograd::CustomOp;
use prune_core::{CoreError, Tape, Tensor, Var};
use prune_graph::{GateRuntime, Mode};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

fn reg_err(op: &'static str, e: crate::error::RegError) -> CoreError {
    CoreError::InvalidArgument {
        op,
        reason: e.to_string(),
    }
}

/// `(N, C, inner)` of an `[N, C, ...]` tensor.
fn nci(shape: &[usize]) -> prune_core::Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(CoreError::BadShape {
            op: "sbp gate",
            shape: shape.to_vec(),
            reason: "expected [N, C, ...]".into(),
        });
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

/// The fused noise multiply; keeps θ and its derivatives for backward.
#[derive(Debug)]
struct SbpNoiseOp {
    /// θ per channel (`per_example == false`, length C) or per (n, c).
    theta: Vec<f32>,
    dtheta_dmu: Vec<f32>,
    dtheta_dls: Vec<f32>,
    per_example: bool,
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
    ) -> prune_core::Result<Vec<Option<Tensor>>> {
        let x = inputs[0];
        let (n, c, inner) = nci(x.shape())?;
        let mut dx = vec![0f32; x.numel()];
        let mut dmu = vec![0f64; c];
        let mut dls = vec![0f64; c];
        for ni in 0..n {
            for ci in 0..c {
                let k = if self.per_example { ni * c + ci } else { ci };
                let th = self.theta[k];
                let base = (ni * c + ci) * inner;
                let (gs, xs) = (&g.data()[base..base + inner], &x.data()[base..base + inner]);
                let mut s = 0f64;
                for ((d, &gv), &xv) in dx[base..base + inner].iter_mut().zip(gs).zip(xs) {
                    *d = gv * th;
                    s += (gv * xv) as f64;
                }
                dmu[ci] += s * self.dtheta_dmu[k] as f64;
                dls[ci] += s * self.dtheta_dls[k] as f64;
            }
        }
        let to = |v: Vec<f64>| Tensor::from_vec([c], v.into_iter().map(|a| a as f32).collect());
        Ok(vec![
            Some(Tensor::from_vec(x.shape().to_vec(), dx)?),
            Some(to(dmu)?),
            Some(to(dls)?),
        ])
    }
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
    ) -> prune_core::Result<Vec<Option<Tensor>>> {
        let s = g.item()?;
        let scale = |v: &[f32]| Tensor::from_vec([v.len()], v.iter().map(|d| d * s).collect());
        Ok(vec![Some(scale(&self.d_mu)?), Some(scale(&self.d_ls)?)])
    }
}

/// The sum of KL terms of one SBP gate on the tape.
pub fn sbp_kl(tape: &mut Tape<'_>, mu: Var, log_sigma: Var) -> prune_core::Result<Var> {
    let kl = kl_layer_sum_and_grad(tape.value(mu)?.data(), tape.value(log_sigma)?.data())
        .map_err(|e| reg_err("sbp kl", e))?;
    let op = Arc::new(SbpKlOp {
        d_mu: kl.d_mu,
        d_ls: kl.d_log_sigma,
    });
    tape.custom(&[mu, log_sigma], Tensor::scalar(kl.sum as f32), op)
}

/// Runs SBP gates for the interpreter.
#[derive(Clone, Copy, Debug, Default)]
pub struct SbpRuntime {
    /// Draw θ per example instead of once per minibatch.
    pub per_example: bool,
}

impl GateRuntime for SbpRuntime {
    fn sbp_forward(
        &self,
        tape: &mut Tape<'_>,
        x: Var,
        mu: Var,
        log_sigma: Var,
        mode: Mode,
        rng: &mut ChaCha8Rng,
    ) -> prune_core::Result<Var> {
        let (n, c, inner) = nci(tape.value(x)?.shape())?;
        let (m, ls) = (
            tape.value(mu)?.data().to_vec(),
            tape.value(log_sigma)?.data().to_vec(),
        );
        if m.len() != c || ls.len() != c {
            return Err(CoreError::ShapeMismatch {
                op: "sbp gate",
                lhs: tape.value(x)?.shape().to_vec(),
                rhs: vec![m.len()],
            });
        }
        if mode == Mode::Eval {
            let stats = layer_stats(&m, &ls).map_err(|e| reg_err("sbp gate", e))?;
            let rank = tape.value(x)?.rank();
            let mut shape = vec![1; rank];
            shape[1] = c;
            let s = tape.constant(Tensor::from_vec(shape, stats.scale)?);
            return tape.mul(x, s);
        }
        let draws = if self.per_example { n } else { 1 };
        let mut theta = Vec::with_capacity(draws * c);
        let (mut dmu, mut dls) = (Vec::with_capacity(draws * c), Vec::with_capacity(draws * c));
        for _ in 0..draws {
            let eps: Vec<f32> = (0..c).map(|_| rng.random::<f32>()).collect();
            let s = sample_layer(&m, &ls, &eps).map_err(|e| reg_err("sbp gate", e))?;
            theta.extend(s.theta);
            dmu.extend(s.dtheta_dmu);
            dls.extend(s.dtheta_dlog_sigma);
        }
        let xv = tape.value(x)?;
        let mut y = xv.data().to_vec();
        for ni in 0..n {
            for ci in 0..c {
                let th = theta[if self.per_example { ni * c + ci } else { ci }];
                let base = (ni * c + ci) * inner;
                y[base..base + inner].iter_mut().for_each(|v| *v *= th);
            }
        }
        let y = Tensor::from_vec(xv.shape().to_vec(), y)?;
        let op = Arc::new(SbpNoiseOp {
            theta,
            dtheta_dmu: dmu,
            dtheta_dls: dls,
            per_example: self.per_example,
        });
        tape.custom(&[x, mu, log_sigma], y, op)
    }
}
