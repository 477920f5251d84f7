//! Training settings.

use crate::error::{Result, TrainError};
use prune_core::optim::{Adam, LrSchedule, Optimizer, Sgd};
use serde::{Deserialize, Serialize};

/// Which optimizer, with its hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd {
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        weight_decay: f32,
    },
}

impl OptimizerKind {
    /// Adam with the usual betas (0.9, 0.999).
    pub fn adam() -> Self {
        OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
        }
    }

    /// SGD with momentum 0.9 and the given weight decay.
    pub fn sgd(weight_decay: f32) -> Self {
        OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
            weight_decay,
        }
    }

    /// A fresh optimizer.
    pub fn build(&self) -> Box<dyn Optimizer> {
        match *self {
            OptimizerKind::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Box::new(Sgd::new(momentum, nesterov, weight_decay)),
            OptimizerKind::Adam {
                beta1,
                beta2,
                weight_decay,
            } => Box::new(Adam::new(beta1, beta2, 1e-8, weight_decay)),
        }
    }
}

/// Everything that determines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub optimizer: OptimizerKind,
    #[serde(default)]
    pub schedule: LrSchedule,
    pub seed: u64,
    /// Random crop + flip (CIFAR-style) on training batches.
    #[serde(default)]
    pub augment: bool,
    /// Stop each epoch after this many batches (short CI budgets).
    #[serde(default)]
    pub max_batches: Option<usize>,
    /// Show a progress bar on stderr.
    #[serde(default)]
    pub progress: bool,
}

impl TrainConfig {
    /// Checks the settings: each degenerate value gets an error naming it.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1 (0 would write an untrained model)".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.max_batches == Some(0) {
            return bad("max batches must be at least 1 (0 trains nothing)".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "learning rate must be a positive number, got {}",
                self.lr
            ));
        }
        self.optimizer.validate()
    }
}

impl OptimizerKind {
    /// Checks the hyperparameters: decay ≥ 0, momentum and betas in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(TrainError::Config(format!(
                    "{name} must lie in [0, 1), got {v}"
                )))
            }
        };
        let decay = |v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(TrainError::Config(format!(
                    "weight decay must be a non-negative number, got {v}"
                )))
            }
        };
        match *self {
            OptimizerKind::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                unit("momentum", momentum)?;
                decay(weight_decay)
            }
            OptimizerKind::Adam {
                beta1,
                beta2,
                weight_decay,
            } => {
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                decay(weight_decay)
            }
        }
    }
}
