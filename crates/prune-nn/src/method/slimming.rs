//! Network slimming (Liu et al. 2017): an L1 penalty λ·Σ|γ| on scale gates
//! (γ₀ = 1), then prune the `percent`% smallest |γ| over the whole network.
//! With a FLOPs target the percentage is chosen by bisection on the compiled
//! FLOPs instead (no retraining needed).

use super::{compiled_flops, gamma_histograms, Histograms, PruningMethod, SparseRun};
use crate::error::Result;
use crate::prune::PruneConfig;
use prune_graph::Model;
use prune_reg::method::{insert_scale_gates, slimming_rule, SlimmingMethod};
use prune_reg::Masks;
use prune_train::Regularizer;

/// Network slimming with the run's λ and percentage.
pub struct Slimming {
    reg: SlimmingMethod,
    percent: f64,
}

impl Slimming {
    pub fn new(cfg: &PruneConfig) -> Self {
        Self {
            reg: SlimmingMethod {
                lambda: cfg.slim_lambda,
            },
            percent: cfg.percent,
        }
    }
}

impl PruningMethod for Slimming {
    fn add_gates(&self, dense: &Model) -> Result<Model> {
        Ok(insert_scale_gates(dense, 1.0)?)
    }

    fn regularizer(&self) -> &dyn Regularizer {
        &self.reg
    }

    fn rule(&self, sparse: &Model) -> prune_reg::Result<Masks> {
        slimming_rule(sparse, self.percent)
    }

    /// With a target reduction `r` (dense / pruned FLOPs): the smallest
    /// percentage in [0, 100) whose compiled model reaches `r`, by 30
    /// bisection steps (0 % if none does).
    fn choose_masks(&self, sparse: &Model, run: &SparseRun<'_>) -> Result<Masks> {
        let Some(target) = run.cfg.target_flops else {
            return Ok(self.rule(sparse)?);
        };
        let (mut lo, mut hi) = (0.0f64, 100.0f64);
        let mut best = slimming_rule(sparse, 0.0)?;
        for _ in 0..30 {
            let mid = 0.5 * (lo + hi);
            let m = slimming_rule(sparse, mid)?;
            let f = compiled_flops(sparse, &m)?;
            let reduction = run.flops_before as f64 / f.max(1) as f64;
            if reduction < target {
                lo = mid;
            } else {
                hi = mid;
                best = m;
            }
        }
        Ok(best)
    }

    fn histograms(&self, model: &Model) -> Result<Histograms> {
        gamma_histograms(model)
    }
}
