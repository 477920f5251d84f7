//! Optimizers and learning-rate schedules.
//!
//! Optimizers update parameters in place from gradients, one
//! [`ParamUpdate`] per parameter. Each parameter carries a learning-rate
//! multiplier (so a parameter group, such as the SBP noise parameters, can
//! train at 10x the network's rate) and a flag for weight decay. The state
//! (momentum buffers, Adam moments, the step count) is exported as named
//! tensors for checkpoints. The arithmetic of each update runs on the
//! parameter's [`Backend`](crate::backend::Backend).

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::LrSchedule;
pub use sgd::Sgd;

use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// One parameter to update.
pub struct ParamUpdate<'a> {
    /// Stable name (keys the optimizer state).
    pub name: &'a str,
    /// The parameter, updated in place.
    pub value: &'a mut Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// Multiplier of the learning rate for this parameter's group.
    pub lr_mult: f32,
    /// Whether weight decay applies (usually not to biases, BN and gates).
    pub decay: bool,
}

/// Serializable optimizer state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimState {
    /// Number of steps taken.
    pub step: u64,
    /// Named buffers, e.g. `conv1.weight.m`.
    pub buffers: BTreeMap<String, Tensor>,
}

/// A first-order optimizer.
pub trait Optimizer: Send {
    /// Applies one update with base learning rate `lr`.
    fn step(&mut self, lr: f32, params: &mut [ParamUpdate<'_>]) -> Result<()>;
    /// The current state, for checkpoints.
    fn state(&self) -> OptimState;
    /// Restores a state saved by [`Optimizer::state`].
    fn load_state(&mut self, state: OptimState);
}

/// Checks the parameter/gradient pairs before an update, so that a bad pair leaves every
/// parameter untouched: shapes, then the gradients' finiteness, tested together (on a GPU
/// one scalar crosses to the host per step rather than one per parameter); the error names
/// the first non-finite gradient.
pub(crate) fn check_pairs(ps: &[ParamUpdate<'_>]) -> Result<()> {
    for p in ps {
        p.value.expect_same_shape(p.grad, "optimizer step")?;
    }
    let grads: Vec<&crate::Tensor> = ps.iter().map(|p| p.grad).collect();
    if let Some(i) = crate::backend::first_non_finite(&grads)? {
        return Err(CoreError::NonFinite {
            what: format!("gradient of {}", ps[i].name),
        });
    }
    Ok(())
}

/// The buffer `name.suffix`, created as zeros shaped like `like` when absent.
pub(crate) fn buffer<'s>(
    buffers: &'s mut BTreeMap<String, Tensor>,
    name: &str,
    suffix: &str,
    like: &Tensor,
) -> Result<&'s mut Tensor> {
    let key = format!("{name}.{suffix}");
    let t = match buffers.entry(key) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => e.insert(like.zeros_like()?),
    };
    t.expect_same_shape(like, "optimizer state")?;
    Ok(t)
}
