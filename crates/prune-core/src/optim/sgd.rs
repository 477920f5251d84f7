//! Stochastic gradient descent with momentum, Nesterov and weight decay
//! (the PyTorch formulation):
//!
//! ```text
//! g ← g + wd·p                      (when the parameter decays)
//! v ← μ·v + g
//! p ← p − lr·(g + μ·v)   (Nesterov)   or   p ← p − lr·v
//! ```
//!
//! The update runs on the parameter's backend.

use super::{buffer, check_pairs, OptimState, Optimizer, ParamUpdate};
use crate::backend::{backend_of, SgdStep};
use crate::error::Result;
use std::collections::BTreeMap;

/// SGD with optional momentum, Nesterov momentum and L2 weight decay.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    step: u64,
    buffers: BTreeMap<String, crate::Tensor>,
}

impl Sgd {
    /// A new optimizer.
    pub fn new(momentum: f32, nesterov: bool, weight_decay: f32) -> Self {
        Self {
            momentum,
            nesterov,
            weight_decay,
            step: 0,
            buffers: BTreeMap::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, lr: f32, params: &mut [ParamUpdate<'_>]) -> Result<()> {
        check_pairs(params)?;
        for p in params.iter_mut() {
            let h = SgdStep {
                lr: lr * p.lr_mult,
                weight_decay: if p.decay { self.weight_decay } else { 0.0 },
                momentum: self.momentum,
                nesterov: self.nesterov,
            };
            let backend = backend_of("sgd step", &[p.value, p.grad])?;
            let velocity = if self.momentum == 0.0 {
                None
            } else {
                Some(buffer(&mut self.buffers, p.name, "momentum", p.grad)?)
            };
            backend.sgd_update(p.value, p.grad, velocity, &h)?;
        }
        self.step += 1;
        Ok(())
    }

    fn state(&self) -> OptimState {
        OptimState {
            step: self.step,
            buffers: self.buffers.clone(),
        }
    }

    fn load_state(&mut self, state: OptimState) {
        self.step = state.step;
        self.buffers = state.buffers;
    }
}
