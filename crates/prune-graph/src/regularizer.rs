//! The hook through which a pruning method shapes training. It sits here, below both
//! the methods (prune-reg) and the training loop (prune-train), so that neither depends
//! on the other.

use crate::error::Result;
use crate::model::Model;
use crate::params::ParamKind;
use prune_core::sbp::NoiseMode;
use prune_core::{Tape, Var};
use std::collections::BTreeMap;

/// A sparsity-inducing training objective.
///
/// The training loop adds [`Regularizer::penalty`] to the mean cross-entropy
/// of every minibatch, scales each parameter's learning rate by
/// [`Regularizer::lr_mult`], calls [`Regularizer::after_step`] after every
/// optimizer step (projections such as clamping γ to `[0, a]`), and draws the
/// noise of stochastic gates as [`Regularizer::noise_mode`] says.
pub trait Regularizer: Sync {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// The penalty added to the minibatch loss, built on `tape` from the
    /// parameter variables of the forward pass. `n_train` is the size of the
    /// training set (the SGVLB divides the KL by it).
    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        model: &Model,
        params: &BTreeMap<String, Var>,
        n_train: usize,
    ) -> prune_core::Result<Option<Var>>;

    /// Learning-rate multiplier of a parameter (1 by default).
    fn lr_mult(&self, _name: &str, _kind: ParamKind) -> f32 {
        1.0
    }

    /// Projection applied after every optimizer step.
    fn after_step(&self, _model: &mut Model) -> Result<()> {
        Ok(())
    }

    /// Whether the method's noise gates draw per minibatch (the default) or per example.
    fn noise_mode(&self) -> NoiseMode {
        NoiseMode::PerChannel
    }
}
