//! The γ penalties of polarization and slimming as tape expressions: the value and its
//! subgradient are computed where the γ live (host or device) by the backend's own ops,
//! so a training step on a device copies no γ to the host and no gradient back.
//!
//! All regularized γ vectors are first concatenated into one vector `γ` of length `n`
//! (the mean of polarization is global over all layers).
//!
//! * Slimming: `λ·Σ|γᵢ|` = `scale(sum(abs(γ)), λ)`.
//! * Polarization: `λ·R(γ)`, `R(γ) = t·Σ|γᵢ| − Σ|γᵢ − γ̄|`, `γ̄ = mean(γ)`, built as
//!   `scale(scale(sum(abs(γ)), t) − sum(abs(γ − γ̄)), λ)` with `γ̄` a `[1]` tensor
//!   broadcast against `γ`.
//!
//! The subgradient is what reverse mode gives for these expressions: the tape's `abs`
//! has derivative `sign(x)` with `sign(0) = 0`, and the mean is differentiated too
//! (the broadcast subtraction sends `−Σ` of its gradient to `γ̄`, the mean spreads it as
//! `1/n`), so
//!
//! ```text
//! ∂(λ·Σ|γ|)/∂γⱼ = λ·sign(γⱼ)
//! ∂(λ·R)/∂γⱼ    = λ·(t·sign(γⱼ) − sign(γⱼ − γ̄) + (1/n)·Σᵢ sign(γᵢ − γ̄))
//! ```
//!
//! with `sign(0) = 0` both at `γⱼ = 0` and at ties `γⱼ = γ̄` — the convention of the f64
//! reference evaluations [`Polarization::value_and_grad`] and
//! [`crate::slimming::l1_value_and_grad`], which the tests compare against.
//!
//! Precision: the sums run in f32 on the backend (the references in f64). The value
//! differs by rounding only; the gradient differs only where `γⱼ − γ̄` is within the f32
//! rounding of the mean (≈ 1e-7·|γ̄|) of zero, where the sign of a tie may flip.
//! Non-finite γ give a non-finite penalty, which the trainer reports after the step's
//! forward pass (checking them here would need a copy to the host).

use crate::polarization::Polarization;
use prune_core::{CoreError, Result, Tape, Var};

/// The γ vectors as one `[n]` vector (one vector is used as it is).
fn flatten_all(tape: &mut Tape<'_>, op: &'static str, gammas: &[Var]) -> Result<Var> {
    let mut flat = Vec::with_capacity(gammas.len());
    let mut n = 0;
    for &g in gammas {
        let len = tape.value(g)?.numel();
        n += len;
        let shape = tape.shape(g)?;
        flat.push(if shape.len() == 1 {
            g
        } else {
            tape.reshape(g, &[len])?
        });
    }
    if n == 0 {
        return Err(CoreError::InvalidArgument {
            op,
            reason: "no scale factors to regularize".into(),
        });
    }
    match flat.as_slice() {
        [one] => Ok(*one),
        _ => tape.concat(&flat, 0),
    }
}

fn check_lambda(op: &'static str, lambda: f64) -> Result<f32> {
    if lambda.is_finite() && lambda >= 0.0 {
        Ok(lambda as f32)
    } else {
        Err(CoreError::InvalidArgument {
            op,
            reason: format!("lambda must be finite and >= 0, got {lambda}"),
        })
    }
}

/// `λ·Σ|γ|` over every vector of `gammas` (network slimming), on the tape.
pub fn l1_penalty(tape: &mut Tape<'_>, gammas: &[Var], lambda: f64) -> Result<Var> {
    const OP: &str = "SlimmingL1";
    let lambda = check_lambda(OP, lambda)?;
    let g = flatten_all(tape, OP, gammas)?;
    let a = tape.abs(g)?;
    let s = tape.sum_all(a)?;
    tape.scale(s, lambda)
}

/// `λ·R(γ)` over every vector of `gammas` with one global mean (polarization), on the
/// tape.
pub fn polarization_penalty(
    tape: &mut Tape<'_>,
    gammas: &[Var],
    reg: &Polarization,
) -> Result<Var> {
    const OP: &str = "Polarization";
    // The fields are public: check them as `Polarization::new` does.
    let reg = Polarization::new(reg.lambda, reg.t).map_err(|e| CoreError::InvalidArgument {
        op: OP,
        reason: e.to_string(),
    })?;
    let g = flatten_all(tape, OP, gammas)?;
    let abs = tape.abs(g)?;
    let l1 = tape.sum_all(abs)?;
    let mean = tape.mean(g, &[0], true)?;
    let centered = tape.sub(g, mean)?;
    let spread = tape.abs(centered)?;
    let spread = tape.sum_all(spread)?;
    let tl1 = tape.scale(l1, reg.t as f32)?;
    let r = tape.sub(tl1, spread)?;
    tape.scale(r, reg.lambda as f32)
}
