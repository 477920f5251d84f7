//! Checks of a pruning run's settings, before any work: each degenerate
//! value gets an error naming the flag.

use crate::error::{Error, Result};
use crate::prune::PruneConfig;

fn usage(m: String) -> Error {
    Error::Usage(m)
}

fn positive(flag: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(usage(format!("{flag} must be a positive number, got {v}")))
    }
}

fn non_negative(flag: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(usage(format!(
            "{flag} must be a non-negative number, got {v}"
        )))
    }
}

impl PruneConfig {
    /// Checks every setting (the training ones through
    /// [`prune_train::TrainConfig::validate`]).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(usage(
                "--epochs (sparse training) must be at least 1".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(usage("--batch-size must be at least 1".into()));
        }
        if self.max_batches == Some(0) {
            return Err(usage(
                "--max-batches must be at least 1 (0 trains nothing)".into(),
            ));
        }
        positive("--lr", f64::from(self.lr))?;
        if self.finetune_epochs > 0 {
            positive("--finetune-lr", f64::from(self.finetune_lr))?;
        }
        self.optimizer.validate()?;
        positive("--sbp-lr-mult", f64::from(self.sbp_lr_mult))?;
        non_negative("--lambda", self.lambda)?;
        positive("--t", self.t)?;
        positive("--a", f64::from(self.upper))?;
        non_negative("--slim-lambda", self.slim_lambda)?;
        if !(0.0..100.0).contains(&self.percent) {
            return Err(usage(format!(
                "--percent must lie in [0, 100), got {}",
                self.percent
            )));
        }
        if let Some(t) = self.target_flops {
            if !(t.is_finite() && t > 1.0) {
                return Err(usage(format!(
                    "--target-flops is the FLOPs reduction to reach (dense / pruned) and must \
                     exceed 1, got {t}"
                )));
            }
        }
        Ok(())
    }
}
