//! SBP with a weight on each layer's KL term.
//!
//! The SGVLB of Neklyudov et al. (2017) is `E[−log p(y|x,θ)] + KL / N`
//! with one KL term per noise layer (weight 1). The authors' `vgglike-sbpa`
//! script scales the KL of early layers up (10 for the first two
//! convolutions) to prune them harder; this regularizer does the same:
//!
//! ```text
//! penalty = Σ_l w_l · Σ_units KL(μ, log σ) / N
//! ```
//!
//! `w_l` is given per SBP gate in graph order; gates past the list get 1.
//! Everything else (learning-rate multipliers, the clip of μ and log σ, the
//! gate runtime) is the wrapped [`SbpMethod`]'s.

use prune_core::sbp::sbp_kl;
use prune_core::{CoreError, Tape, Var};
use prune_graph::{Model, ParamKind};
use prune_reg::method::{sbp_gates, SbpMethod};
use prune_train::Regularizer;
use std::collections::BTreeMap;

/// [`SbpMethod`] with per-layer KL weights.
#[derive(Clone, Debug)]
pub struct WeightedSbp {
    pub inner: SbpMethod,
    /// KL weight of each SBP gate, in graph order (missing ones are 1).
    pub weights: Vec<f32>,
}

impl WeightedSbp {
    /// The weight of the `i`-th gate.
    pub fn weight(&self, i: usize) -> f32 {
        self.weights.get(i).copied().unwrap_or(1.0)
    }
}

impl Regularizer for WeightedSbp {
    fn name(&self) -> &str {
        "sbp (weighted KL)"
    }

    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        model: &Model,
        params: &BTreeMap<String, Var>,
        n_train: usize,
    ) -> prune_core::Result<Option<Var>> {
        let var = |name: String| {
            params
                .get(&name)
                .copied()
                .ok_or(CoreError::InvalidArgument {
                    op: "weighted sbp",
                    reason: format!("parameter {name} is not in the forward pass"),
                })
        };
        let mut total: Option<Var> = None;
        for (i, gate) in sbp_gates(&model.graph).iter().enumerate() {
            let kl = sbp_kl(
                tape,
                var(format!("{gate}.mu"))?,
                var(format!("{gate}.log_sigma"))?,
            )?;
            let term = tape.scale(kl, self.weight(i) / n_train.max(1) as f32)?;
            total = Some(match total {
                Some(t) => tape.add(t, term)?,
                None => term,
            });
        }
        Ok(total)
    }

    fn lr_mult(&self, name: &str, kind: ParamKind) -> f32 {
        self.inner.lr_mult(name, kind)
    }

    fn after_step(&self, model: &mut Model) -> prune_graph::Result<()> {
        self.inner.after_step(model)
    }

    fn noise_mode(&self) -> prune_core::sbp::NoiseMode {
        self.inner.noise_mode()
    }
}
