//! Training on a device: [`fit`](crate::fit()) and [`evaluate`](crate::evaluate())
//! run on the device of the model's parameters. Batches are copied to it one at a time;
//! the logits come back to the host for accuracy and evaluation loss; checkpoints are
//! written from host copies of the model and the optimizer state. Nothing else crosses.

use crate::error::Result;
use prune_core::optim::OptimState;
use prune_core::{Device, Tensor};
use prune_graph::Model;

/// The device holding the model's parameters (the CPU for a model without any).
pub fn model_device(model: &Model) -> Device {
    model
        .params
        .iter()
        .next()
        .map_or(Device::Cpu, |(_, t)| t.device())
}

/// Moves every parameter and buffer of `model` to `device`.
pub fn model_to(model: &mut Model, device: Device) -> Result<()> {
    for (_, t) in model.params.iter_mut() {
        if t.device() != device {
            *t = t.to_device(device)?;
        }
    }
    Ok(())
}

/// The optimizer state with every buffer on `device`.
pub fn state_to(mut state: OptimState, device: Device) -> Result<OptimState> {
    for t in state.buffers.values_mut() {
        if t.device() != device {
            *t = t.to_device(device)?;
        }
    }
    Ok(state)
}

/// `t` on `device`: itself when it is already there (no copy), else a copy.
pub fn onto(t: Tensor, device: Device) -> Result<Tensor> {
    if t.device() == device {
        Ok(t)
    } else {
        Ok(t.to_device(device)?)
    }
}

/// A host copy of `model` (a clone when it is already there).
pub fn host_model(model: &Model) -> Result<Model> {
    let mut m = model.clone();
    model_to(&mut m, Device::Cpu)?;
    Ok(m)
}
