//! Learning-rate schedule flags → [`LrSchedule`].

use crate::args::ScheduleArgs;
use prune_nn::core::optim::LrSchedule;
use prune_nn::{Error, Result};

/// The schedule of `--milestones/--gammas/--linear-decay-from` over `epochs`.
pub fn build(s: &ScheduleArgs, epochs: usize) -> Result<LrSchedule> {
    from_lists(&s.milestones, &s.gammas, s.linear_decay_from, epochs, "")
}

/// The schedule of milestone and factor lists (`prefix` names the flags).
pub fn from_lists(
    milestones: &[usize],
    gammas: &[f32],
    linear_decay_from: Option<usize>,
    epochs: usize,
    prefix: &str,
) -> Result<LrSchedule> {
    let schedule = match (linear_decay_from, milestones.is_empty(), gammas.len()) {
        (Some(_), false, _) => {
            return Err(Error::Usage(format!(
                "--{prefix}linear-decay-from and --{prefix}milestones exclude each other"
            )))
        }
        (Some(start), true, _) => LrSchedule::LinearDecay {
            start_epoch: start,
            total_epochs: epochs,
        },
        (None, true, 0) => LrSchedule::Constant,
        (None, true, _) => {
            return Err(Error::Usage(format!(
                "--{prefix}gammas needs --{prefix}milestones"
            )))
        }
        (None, false, 0) => LrSchedule::MultiStep {
            milestones: milestones.to_vec(),
            gamma: 0.1,
        },
        (None, false, 1) if milestones.len() > 1 => LrSchedule::MultiStep {
            milestones: milestones.to_vec(),
            gamma: gammas[0],
        },
        (None, false, _) => LrSchedule::Steps {
            milestones: milestones.to_vec(),
            gammas: gammas.to_vec(),
        },
    };
    schedule
        .validate()
        .map_err(|e| Error::Usage(format!("learning-rate schedule: {e}")))?;
    Ok(schedule)
}
