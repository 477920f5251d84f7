//! Built-in verification: the compiled model must reproduce the masked
//! model — the original model in eval mode with the effective masks applied
//! at its gates (SBP gates at their test-time scale) — on random
//! inputs.
//!
//! The error is relative to the reference's largest magnitude:
//! `max|a − b| / max(1e-6, max|b|)`, with `b` the masked model's logits.

use crate::error::Result;
use prune_core::Tensor;
use prune_graph::{predict, ChannelMasks, Model};
use rand::SeedableRng;

/// `max|a − b| / max(1e-6, max|b|)`; `b` is the reference.
///
/// Any NaN or infinity on either side is an infinite error: a model whose
/// logits are not finite has not reproduced anything, even when both sides
/// are NaN in the same places.
pub fn max_rel_error(a: &Tensor, b: &Tensor) -> Result<f64> {
    if !(a.all_finite() && b.all_finite()) {
        a.max_abs_diff(b)?;
        return Ok(f64::INFINITY);
    }
    let diff = f64::from(a.max_abs_diff(b)?);
    let scale = b
        .data()
        .iter()
        .fold(0.0f64, |m, &v| m.max(f64::from(v.abs())));
    let err = diff / scale.max(1e-6);
    Ok(if err.is_nan() { f64::INFINITY } else { err })
}

/// A batch of standard normal inputs for `model`.
pub fn random_batch(model: &Model, batch: usize, seed: u64) -> Result<Tensor> {
    let mut shape = vec![batch];
    shape.extend_from_slice(model.graph.input_shape()?);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok(Tensor::randn(shape, 0.0, 1.0, &mut rng))
}

/// Runs the masked original and the compiled model on the same random batch
/// and returns the relative error of the compiled logits.
pub fn compare_with_masked(
    original: &Model,
    effective: &ChannelMasks,
    compiled: &Model,
    batch: usize,
    seed: u64,
) -> Result<f64> {
    let x = random_batch(original, batch, seed)?;
    let reference = predict(original, x.clone(), Some(effective))?;
    let got = predict(compiled, x, None)?;
    max_rel_error(&got, &reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_scaled_by_the_reference() {
        let b = Tensor::from_vec([2, 2], vec![1.0, -4.0, 2.0, 0.0]).unwrap();
        let a = Tensor::from_vec([2, 2], vec![1.0, -4.0, 2.0, 0.02]).unwrap();
        let e = max_rel_error(&a, &b).unwrap();
        assert!((e - 0.005).abs() < 1e-9, "{e}");
        // An all-zero reference falls back to the absolute error over 1e-6.
        let z = Tensor::zeros([2]);
        let s = Tensor::from_vec([2], vec![0.0, 1e-6]).unwrap();
        assert!((max_rel_error(&s, &z).unwrap() - 1.0).abs() < 1e-6);
        // Non-finite output against a finite reference is an infinite error.
        let n = Tensor::from_vec([2, 2], vec![f32::NAN, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(max_rel_error(&n, &b).unwrap(), f64::INFINITY);
        // NaN on both sides is a failure too, not "error 0".
        assert_eq!(max_rel_error(&n, &n).unwrap(), f64::INFINITY);
        let inf = Tensor::from_vec([2, 2], vec![f32::INFINITY, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(max_rel_error(&inf, &inf).unwrap(), f64::INFINITY);
        assert!(max_rel_error(&z, &b).is_err());
    }
}
