//! Adam (Kingma & Ba), with L2 weight decay added to the gradient:
//!
//! ```text
//! m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²
//! p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
//! ```
//!
//! The update runs on the parameter's backend.

use super::{check_pairs, OptimState, Optimizer, ParamUpdate};
use crate::backend::{backend_of, AdamStep};
use crate::error::Result;
use crate::Tensor;
use std::collections::BTreeMap;

/// Adam with configurable betas.
#[derive(Clone, Debug)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    step: u64,
    /// Per parameter: first and second moments and its own step count.
    moments: BTreeMap<String, (Tensor, Tensor, u64)>,
}

impl Adam {
    /// A new optimizer.
    pub fn new(beta1: f32, beta2: f32, eps: f32, weight_decay: f32) -> Self {
        Self {
            beta1,
            beta2,
            eps,
            weight_decay,
            step: 0,
            moments: BTreeMap::new(),
        }
    }
}

impl Default for Adam {
    fn default() -> Self {
        Self::new(0.9, 0.999, 1e-8, 0.0)
    }
}

impl Optimizer for Adam {
    fn step(&mut self, lr: f32, params: &mut [ParamUpdate<'_>]) -> Result<()> {
        check_pairs(params)?;
        self.step += 1;
        for p in params.iter_mut() {
            let backend = backend_of("adam step", &[p.value, p.grad])?;
            let (m, v, t) = match self.moments.entry(p.name.to_string()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((p.grad.zeros_like()?, p.grad.zeros_like()?, 0))
                }
            };
            m.expect_same_shape(p.grad, "adam state")?;
            // each parameter counts its own steps, so one that joins later
            // (e.g. freshly inserted gates) gets the right bias correction
            *t += 1;
            let h = AdamStep {
                lr: lr as f64 * p.lr_mult as f64,
                weight_decay: if p.decay { self.weight_decay } else { 0.0 },
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                bias_correction1: 1.0 - (self.beta1 as f64).powi(*t as i32),
                bias_correction2: 1.0 - (self.beta2 as f64).powi(*t as i32),
            };
            backend.adam_update(p.value, p.grad, m, v, &h)?;
        }
        Ok(())
    }

    fn state(&self) -> OptimState {
        let mut buffers = BTreeMap::new();
        for (name, (m, v, t)) in &self.moments {
            buffers.insert(format!("{name}.m"), m.clone());
            buffers.insert(format!("{name}.v"), v.clone());
            buffers.insert(format!("{name}.step"), Tensor::scalar(*t as f32));
        }
        OptimState {
            step: self.step,
            buffers,
        }
    }

    fn load_state(&mut self, state: OptimState) {
        self.step = state.step;
        self.moments.clear();
        for (key, m) in &state.buffers {
            if let Some(name) = key.strip_suffix(".m") {
                if let Some(v) = state.buffers.get(&format!("{name}.v")) {
                    let t = state
                        .buffers
                        .get(&format!("{name}.step"))
                        .and_then(|t| t.item().ok())
                        .map_or(state.step, |t| t as u64);
                    self.moments
                        .insert(name.to_string(), (m.clone(), v.clone(), t));
                }
            }
        }
    }
}
