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
    /// Multiply by `gammas[i]` from epoch `milestones[i]` on (cumulative):
    /// `lr(e) = base · Π_{i: e ≥ milestones[i]} gammas[i]`. The polarization
    /// paper's commands use factors like `10, 0.2, 0.2, 0.2` (a one-epoch
    /// warm-up at a tenth of the rate, then drops).
    Steps {
        milestones: Vec<usize>,
        gammas: Vec<f32>,
    },
    /// Constant until `start_epoch`, then linear decay reaching zero at
    /// `total_epochs`: `lr(e) = base · (T − e)/(T − s)` for `s ≤ e < T` (the
    /// SBP reference code's policy: 200 epochs, decay from epoch 100).
    LinearDecay {
        start_epoch: usize,
        total_epochs: usize,
    },
    /// Cosine annealing from the base rate to `min_lr` over `total_epochs`.
    Cosine { total_epochs: usize, min_lr: f32 },
}

impl LrSchedule {
    /// Checks the schedule's own consistency (one factor per milestone,
    /// finite non-negative factors, a decay window that is not empty).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            LrSchedule::Steps { milestones, gammas } => {
                if milestones.len() != gammas.len() {
                    return Err(format!(
                        "{} milestones but {} factors: give one factor per milestone",
                        milestones.len(),
                        gammas.len()
                    ));
                }
                if let Some(g) = gammas.iter().find(|g| !(g.is_finite() && **g >= 0.0)) {
                    return Err(format!(
                        "learning-rate factor {g} is not a finite number >= 0"
                    ));
                }
                Ok(())
            }
            LrSchedule::LinearDecay {
                start_epoch,
                total_epochs,
            } if start_epoch >= total_epochs => Err(format!(
                "linear decay starts at epoch {start_epoch} but training ends at {total_epochs}"
            )),
            _ => Ok(()),
        }
    }

    /// The learning rate at `epoch`.
    pub fn lr(&self, base: f32, epoch: usize) -> f32 {
        match self {
            LrSchedule::Constant => base,
            LrSchedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|&&m| epoch >= m).count();
                base * gamma.powi(passed as i32)
            }
            LrSchedule::Steps { milestones, gammas } => milestones
                .iter()
                .zip(gammas)
                .filter(|(&m, _)| epoch >= m)
                .fold(base, |lr, (_, &g)| lr * g),
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
