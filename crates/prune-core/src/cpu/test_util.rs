//! Helpers shared by the kernel tests: seeded random data, f64 reference
//! comparisons and central finite differences.

use crate::tensor::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A deterministic generator for test `seed`.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` values uniform in `[-1, 1)`.
pub(crate) fn rand_vec(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

/// A tensor of values uniform in `[-1, 1)`.
pub(crate) fn rand_tensor(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    Tensor::uniform(shape.to_vec(), -1.0, 1.0, rng)
}

/// Asserts `|got - want| ≤ atol + rtol·|want|` elementwise.
pub(crate) fn assert_close(got: &[f32], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, want {w} (err {err:.3e})"
        );
    }
}

/// Central finite differences of a scalar function of `x`:
/// `∂f/∂x_i ≈ (f(x + eps·e_i) − f(x − eps·e_i)) / (2·eps)`.
pub(crate) fn fd_grad(x: &[f32], eps: f32, f: impl Fn(&[f32]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + eps;
            let hi = f(&xp);
            xp[i] = x[i] - eps;
            let lo = f(&xp);
            xp[i] = x[i];
            (hi - lo) / (2.0 * (eps as f64))
        })
        .collect()
}

/// `Σ_i y_i · r_i` accumulated in f64: a scalar loss whose gradient with
/// respect to `y` is `r`.
pub(crate) fn dot_loss(y: &[f32], r: &[f32]) -> f64 {
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Compares an analytic gradient with finite differences: the error must be
/// below `rtol` relative to the larger magnitude plus `atol`.
pub(crate) fn assert_grad_close(analytic: &[f32], fd: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(analytic.len(), fd.len(), "{what}: length");
    for (i, (&a, &n)) in analytic.iter().zip(fd).enumerate() {
        let scale = (a as f64).abs().max(n.abs());
        let err = (a as f64 - n).abs();
        assert!(
            err <= atol + rtol * scale,
            "{what}: element {i}: analytic {a}, finite difference {n} (err {err:.3e})"
        );
    }
}
