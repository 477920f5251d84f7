//! Structured Bayesian Pruning (Neklyudov et al. 2017): a multiplicative
//! log-normal noise gate θ on every prunable layer's output, trained by the
//! SGVLB (data term + KL to the log-uniform prior), and the rule "keep the
//! units whose SNR = E[θ]/√Var[θ] exceeds 1".

use super::{Histograms, PruningMethod};
use crate::error::Result;
use crate::prune::PruneConfig;
use crate::sbp_weights::WeightedSbp;
use prune_core::sbp::NoiseMode;
use prune_graph::Model;
use prune_reg::method::{insert_sbp_gates, sbp_gates, sbp_layer_mask, sbp_masks, SbpMethod};
use prune_reg::Masks;
use prune_train::{OptimizerKind, Regularizer};

/// SBP with the run's settings.
pub struct Sbp {
    /// The SGVLB's KL term with one weight per gate (all 1 unless
    /// `sbp_kl_weights` is given).
    reg: WeightedSbp,
}

impl Sbp {
    /// μ and log σ learn `cfg.sbp_lr_mult` times faster; the noise is drawn
    /// per minibatch or per example (`cfg.sbp_per_example`).
    pub fn new(cfg: &PruneConfig) -> Self {
        let inner = SbpMethod {
            param_lr_mult: cfg.sbp_lr_mult,
            noise: if cfg.sbp_per_example {
                NoiseMode::PerExample
            } else {
                NoiseMode::PerChannel
            },
        };
        Self {
            reg: WeightedSbp {
                inner,
                weights: cfg.sbp_kl_weights.clone(),
            },
        }
    }

    /// Adam with β1 = 0.95 and lr 1e-3, as in the paper.
    pub fn paper_optimizer() -> OptimizerKind {
        OptimizerKind::Adam {
            beta1: 0.95,
            beta2: 0.999,
            weight_decay: 0.0,
        }
    }
}

impl PruningMethod for Sbp {
    fn add_gates(&self, dense: &Model) -> Result<Model> {
        Ok(insert_sbp_gates(dense)?)
    }

    fn regularizer(&self) -> &dyn Regularizer {
        // Without per-layer weights the plain SGVLB regularizer runs
        // (identical to weights of 1).
        if self.reg.weights.is_empty() {
            &self.reg.inner
        } else {
            &self.reg
        }
    }

    fn rule(&self, sparse: &Model) -> prune_reg::Result<Masks> {
        sbp_masks(sparse)
    }

    fn histograms(&self, model: &Model) -> Result<Histograms> {
        let mut layers = Vec::new();
        for g in sbp_gates(&model.graph) {
            let mu = model.params.get(&format!("{g}.mu"))?;
            let ls = model.params.get(&format!("{g}.log_sigma"))?;
            let snr = sbp_layer_mask(&g, mu.data(), ls.data())?.scores;
            let log_snr = snr.iter().map(|s| s.max(1e-12).log10()).collect();
            layers.push((g, log_snr));
        }
        Ok(Histograms {
            title: "SBP signal-to-noise ratio per unit",
            x_label: "log10 SNR (units with SNR > 1 are kept)",
            threshold_label: "SNR = 1",
            threshold: Some(0.0),
            layers,
        })
    }
}
