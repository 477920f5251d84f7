//! The hook through which a pruning method shapes training.

use crate::error::Result;
use prune_core::{Tape, Var};
use prune_graph::{GateRuntime, Model, ParamKind};
use std::collections::BTreeMap;

/// A sparsity-inducing training objective.
///
/// The training loop adds [`Regularizer::penalty`] to the mean cross-entropy
/// of every minibatch, scales each parameter's learning rate by
/// [`Regularizer::lr_mult`], calls [`Regularizer::after_step`] after every
/// optimizer step (projections such as clamping γ to `[0, a]`), and runs
/// gate layers through [`Regularizer::gates`].
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

    /// The runtime of gate layers this method adds (SBP noise).
    fn gates(&self) -> Option<&dyn GateRuntime> {
        None
    }
}
