//! Adam (Kingma & Ba), with L2 weight decay added to the gradient:
//!
//! ```text
//! m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²
//! p ← p − lr · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)
//! ```

use super::{check_pair, OptimState, Optimizer, ParamUpdate};
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
        for p in params.iter() {
            check_pair(p)?;
        }
        self.step += 1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        for p in params.iter_mut() {
            let lr = lr as f64 * p.lr_mult as f64;
            let wd = if p.decay { self.weight_decay } else { 0.0 };
            let (m, v, t) = match self.moments.entry(p.name.to_string()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((zeros_like(p.grad), zeros_like(p.grad), 0))
                }
            };
            m.expect_same_shape(p.grad, "adam state")?;
            // each parameter counts its own steps, so one that joins later
            // (e.g. freshly inserted gates) gets the right bias correction
            *t += 1;
            let bc1 = 1.0 - (b1 as f64).powi(*t as i32);
            let bc2 = 1.0 - (b2 as f64).powi(*t as i32);
            for (((w, &g), m), v) in p
                .value
                .data_mut()
                .iter_mut()
                .zip(p.grad.data())
                .zip(m.data_mut())
                .zip(v.data_mut())
            {
                let g = g + wd * *w;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let mh = *m as f64 / bc1;
                let vh = *v as f64 / bc2;
                *w -= (lr * mh / (vh.sqrt() + eps as f64)) as f32;
            }
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

fn zeros_like(t: &Tensor) -> Tensor {
    Tensor::zeros(t.shape().to_vec())
}
