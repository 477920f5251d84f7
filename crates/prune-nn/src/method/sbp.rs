//! Structured Bayesian Pruning (Neklyudov et al. 2017): a multiplicative
//! log-normal noise gate θ on every prunable layer's output, trained by the
//! SGVLB (data term + KL to the log-uniform prior), and the rule "keep the
//! units whose SNR = E[θ]/√Var[θ] exceeds 1".
//!
//! With a FLOPs target (`--target-flops r`) the SNR threshold moves instead:
//! the units are ranked by SNR over the whole network (the rule's own score,
//! comparable across layers because θ is dimensionless) and the threshold is
//! the smallest SNR value `s` such that keeping the units with SNR ≥ `s`
//! compiles to at least `r` times fewer FLOPs. It lands below 1 when the rule
//! alone prunes more than the target asks, above 1 when less; the compiled
//! FLOPs are monotone in `s`, so a bisection over the sorted distinct scores
//! finds it exactly.

use super::{compiled_flops, Histograms, PruningMethod, SparseRun};
use crate::error::Result;
use crate::prune::PruneConfig;
use prune_core::sbp::NoiseMode;
use prune_graph::Model;
use prune_reg::method::{insert_sbp_gates, sbp_gates, sbp_layer_mask, sbp_masks, SbpMethod};
use prune_reg::{LayerMask, Masks};
use prune_train::{OptimizerKind, Regularizer};

/// SBP with the run's settings.
pub struct Sbp {
    /// The SGVLB's KL term, with one weight per gate (all 1 unless
    /// `sbp_kl_weights` is given).
    reg: SbpMethod,
}

impl Sbp {
    /// μ and log σ learn `cfg.sbp_lr_mult` times faster; the noise is drawn
    /// per minibatch or per example (`cfg.sbp_per_example`); the KL term of
    /// gate `l` is weighted by `cfg.sbp_kl_weights[l]`.
    pub fn new(cfg: &PruneConfig) -> Self {
        Self {
            reg: SbpMethod {
                param_lr_mult: cfg.sbp_lr_mult,
                noise: if cfg.sbp_per_example {
                    NoiseMode::PerExample
                } else {
                    NoiseMode::PerChannel
                },
                kl_weights: cfg.sbp_kl_weights.clone(),
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
        &self.reg
    }

    fn rule(&self, sparse: &Model) -> prune_reg::Result<Masks> {
        sbp_masks(sparse)
    }

    /// With a target reduction `r`: the smallest global SNR threshold whose
    /// compiled model reaches `r` (see the module docs); the largest
    /// threshold (every layer down to its best unit) if none does.
    fn choose_masks(&self, sparse: &Model, run: &SparseRun<'_>) -> Result<Masks> {
        let rule = self.rule(sparse)?;
        let Some(target) = run.cfg.target_flops else {
            return Ok(rule);
        };
        let mut scores: Vec<f32> = rule
            .layers
            .iter()
            .flat_map(|l| l.scores.iter().copied())
            .collect();
        scores.sort_by(f32::total_cmp);
        scores.dedup();
        let reduction = |m: &Masks| -> Result<f64> {
            let f = compiled_flops(sparse, m)?;
            Ok(run.flops_before as f64 / f.max(1) as f64)
        };
        // Invariant: thresholds below scores[lo] miss the target (or lo = 0),
        // scores[hi] meets it (or hi is the last index).
        let (mut lo, mut hi) = (0usize, scores.len().saturating_sub(1));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let m = snr_threshold_masks(&rule, scores[mid])?;
            if reduction(&m)? >= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        match scores.get(lo) {
            Some(&s) => snr_threshold_masks(&rule, s),
            None => Ok(rule),
        }
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

/// The masks keeping every unit whose SNR (the rule's score) is at least
/// `threshold`; a layer left empty keeps its best unit.
fn snr_threshold_masks(rule: &Masks, threshold: f32) -> Result<Masks> {
    let layers = rule
        .layers
        .iter()
        .map(|l| {
            let keep = l.scores.iter().map(|&s| s >= threshold).collect();
            LayerMask::from_decision(&l.name, keep, l.scores.clone())
        })
        .collect::<prune_reg::Result<Vec<_>>>()?;
    Ok(Masks::new(layers))
}
