//! The polarization regularizer (Zhuang et al. 2020): scale gates with
//! γ₀ = 0.5 clamped to [0, a], the penalty `λ·Σ(t·|γ| − |γ − γ̄|)`, and the
//! rule "keep γ above the first valley of the γ histogram" (per layer or
//! global). With a FLOPs target the sparse stage is the paper's search over
//! λ and t ([`super::search`]).

use super::{gamma_histograms, Histograms, PruningMethod, Sparse, SparseRun};
use crate::error::Result;
use crate::prune::PruneConfig;
use prune_graph::Model;
use prune_reg::method::{gamma_gates, insert_scale_gates, polarization_rule, PolarizationMethod};
use prune_reg::polarization::{clamp_gammas, GAMMA_INIT};
use prune_reg::threshold::ThresholdMode;
use prune_reg::Masks;
use prune_train::Regularizer;

/// Polarization with one (λ, t) and the run's bound `a` and threshold mode.
pub struct Polarization {
    reg: PolarizationMethod,
    mode: ThresholdMode,
    /// The run's settings, for the FLOPs search's trials.
    cfg: PruneConfig,
}

impl Polarization {
    /// Errors unless `λ ≥ 0` and `t > 0`.
    pub fn new(cfg: &PruneConfig, lambda: f64, t: f64) -> Result<Self> {
        Ok(Self {
            reg: PolarizationMethod {
                reg: prune_reg::polarization::Polarization::new(lambda, t)?,
                upper: cfg.upper,
            },
            mode: if cfg.global_threshold {
                ThresholdMode::Global
            } else {
                ThresholdMode::PerLayer
            },
            cfg: cfg.clone(),
        })
    }

    /// The same method with another (λ, t): one trial of the search.
    pub fn with_strength(&self, lambda: f64, t: f64) -> Result<Self> {
        Self::new(&self.cfg, lambda, t)
    }
}

impl PruningMethod for Polarization {
    /// Scale gates at γ₀ = 0.5, clamped to [0, a] from the start.
    fn add_gates(&self, dense: &Model) -> Result<Model> {
        let mut m = insert_scale_gates(dense, GAMMA_INIT)?;
        for g in gamma_gates(&m.graph) {
            let t = m.params.get_mut(&format!("{g}.weight"))?;
            clamp_gammas(t.data_mut(), self.reg.upper)?;
        }
        Ok(m)
    }

    fn regularizer(&self) -> &dyn Regularizer {
        &self.reg
    }

    fn rule(&self, sparse: &Model) -> prune_reg::Result<Masks> {
        Ok(polarization_rule(sparse, self.mode, self.reg.upper)?.0)
    }

    fn sparsify(&self, run: &SparseRun<'_>) -> Result<Sparse> {
        match run.cfg.target_flops {
            Some(target) => super::search::search(self, run, target),
            None => super::train_once(self, run),
        }
    }

    fn histograms(&self, model: &Model) -> Result<Histograms> {
        gamma_histograms(model)
    }
}
