//! Central finite-difference gradient checks, reusable by every crate's tests.
//!
//! For a function `f` of several tensors the check contracts the output with
//! a fixed random tensor `R`, `L = Σ f(x) ⊙ R`, and compares the tape's
//! `∂L/∂x` with `(L(x + εe_j) − L(x − εe_j)) / 2ε` element by element
//! (accumulated in f64). Large inputs are checked on an evenly spaced subset
//! of elements so the cost stays bounded.

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;
use rand::SeedableRng;

/// Tolerances and sizes of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckConfig {
    /// Finite-difference step.
    pub eps: f32,
    /// Relative tolerance.
    pub rtol: f32,
    /// Absolute tolerance.
    pub atol: f32,
    /// At most this many elements per input are perturbed.
    pub max_checks: usize,
    /// Seed of the projection tensor.
    pub seed: u64,
}

impl Default for GradcheckConfig {
    fn default() -> Self {
        Self {
            eps: 1e-2,
            rtol: 2e-2,
            atol: 2e-3,
            max_checks: 64,
            seed: 7,
        }
    }
}

/// The outcome of a gradient check.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// True when every checked element is within tolerance.
    pub passed: bool,
    /// The worst `|analytic − numeric| / (atol + rtol·max(|a|,|n|))` seen (≤ 1 passes).
    pub worst_ratio: f32,
    /// A description of the worst element.
    pub worst: String,
    /// Number of elements compared.
    pub checked: usize,
}

fn projected_loss<F>(f: &F, inputs: &[Tensor], proj: &mut Option<Tensor>, seed: u64) -> Result<f64>
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone(), false)).collect();
    let y = f(&mut tape, &vars)?;
    let yv = tape.value(y)?;
    let r = proj.get_or_insert_with(|| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Tensor::uniform(yv.shape().to_vec(), -1.0, 1.0, &mut rng)
    });
    yv.expect_same_shape(r, "gradcheck projection")?;
    Ok(yv
        .data()
        .iter()
        .zip(r.data())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum())
}

/// Checks the tape's gradients of `f` against central differences at `inputs`.
pub fn check_gradients<F>(inputs: &[Tensor], f: F, cfg: GradcheckConfig) -> Result<GradcheckReport>
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    // analytic
    let mut proj = None;
    projected_loss(&f, inputs, &mut proj, cfg.seed)?;
    let r = proj.clone().unwrap_or_else(|| Tensor::zeros([0]));
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let y = f(&mut tape, &vars)?;
    let rv = tape.constant(r);
    let m = tape.mul(y, rv)?;
    let l = tape.sum_all(m)?;
    let grads = tape.backward(l)?;

    let mut report = GradcheckReport {
        passed: true,
        worst_ratio: 0.0,
        worst: String::new(),
        checked: 0,
    };
    let mut work: Vec<Tensor> = inputs.to_vec();
    for (i, v) in vars.iter().enumerate() {
        let n = inputs[i].numel();
        let zeros = Tensor::zeros(inputs[i].shape().to_vec());
        let analytic = grads.get(*v).unwrap_or(&zeros);
        let step = n.div_ceil(cfg.max_checks.max(1)).max(1);
        for j in (0..n).step_by(step) {
            let orig = work[i].data()[j];
            work[i].data_mut()[j] = orig + cfg.eps;
            let lp = projected_loss(&f, &work, &mut proj, cfg.seed)?;
            work[i].data_mut()[j] = orig - cfg.eps;
            let lm = projected_loss(&f, &work, &mut proj, cfg.seed)?;
            work[i].data_mut()[j] = orig;
            let numeric = ((lp - lm) / (2.0 * cfg.eps as f64)) as f32;
            let a = analytic.data()[j];
            let ratio = (a - numeric).abs() / (cfg.atol + cfg.rtol * a.abs().max(numeric.abs()));
            report.checked += 1;
            if ratio > report.worst_ratio || ratio.is_nan() {
                report.worst_ratio = ratio;
                report.worst =
                    format!("input {i} element {j}: analytic {a:.6e}, numeric {numeric:.6e}");
            }
            if ratio.is_nan() || ratio > 1.0 {
                report.passed = false;
            }
        }
    }
    Ok(report)
}
