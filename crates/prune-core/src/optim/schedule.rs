//! Learning-rate schedules, as a function of the (0-based) epoch.

use serde::{Deserialize, Serialize};

/// A learning-rate schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` at each milestone epoch.
    MultiStep { milestones: Vec<usize>, gamma: f32 },
    /// Constant until `start_epoch`, then linear decay reaching zero at `total_epochs`.
    LinearDecay {
        start_epoch: usize,
        total_epochs: usize,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total_epochs`.
    Cosine { total_epochs: usize, min_lr: f32 },
}

impl LrSchedule {
    /// The learning rate at `epoch`.
    pub fn lr(&self, base: f32, epoch: usize) -> f32 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| epoch >= m).count();
                base * gamma.powi(passed as i32)
            }
            LrSchedule::LinearDecay {
                start_epoch,
                total_epochs,
            } => {
                if epoch < *start_epoch {
                    base
                } else if epoch >= *total_epochs {
                    0.0
                } else {
                    let span = (*total_epochs - *start_epoch) as f32;
                    base * (*total_epochs - epoch) as f32 / span
                }
            }
            LrSchedule::Cosine {
                total_epochs,
                min_lr,
            } => {
                let t = (epoch as f32 / (*total_epochs).max(1) as f32).min(1.0);
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}
