//! `prune-compiler`: turns a model plus per-gate keep masks into a physically
//! smaller model.
//!
//! [`compile`] is a pure function `(IR, params, masks) -> (smaller IR, sliced
//! params, report)`:
//!
//! 1. [`groups`] — dependency analysis: the channel groups that must be
//!    removed together (producers, gates, passthrough layers, consumers;
//!    residual sums, concatenations, flatten, depthwise convolutions).
//! 2. [`masks`] — the masks are unioned over each group and checked for
//!    exactness, giving the effective mask at every gate.
//! 3. `surgery` — weights, biases, batch-norm statistics and gate
//!    parameters are sliced and channel counts updated.
//! 4. `fold` — SBP gates (`E[θ]·1[SNR > 1]`) and scale gates are folded
//!    into neighbouring linear maps; optionally batch norm too.
//! 5. `select` — linear layers drop input features whose weight columns
//!    are all zero (masked single features), through a `Select` gather.
//! 6. [`verify`] — the result is run against the masked original on random
//!    inputs; compilation fails if they differ by more than the tolerance.
//! 7. [`report`] — channels, parameters and FLOPs before and after, and
//!    (separately) measured CPU speed.
//!
//! What these steps need to know about a layer type — how its channels
//! couple, how zeros pass through it, how to slice and lower it, how a
//! per-channel factor folds through or into it — is one description per
//! layer type in `layers` (see `layers::LayerDesc`).

pub mod error;
mod fold;
pub mod groups;
mod layers;
pub mod masks;
pub mod report;
mod select;
mod slice;
mod surgery;
pub mod verify;

pub use error::{CompileError, Result};
pub use groups::{analyze, ChannelGroup, Consumer, ConsumerKind, Member};
pub use masks::effective_masks;
pub use report::{measure_speed, CompileReport, LayerReport, SpeedReport};

use prune_graph::{ChannelMasks, Model};

/// Options of [`compile`].
#[derive(Clone, Debug, PartialEq)]
pub struct CompileOptions {
    /// Fold batch norm into the preceding convolution/linear layer.
    pub fold_bn: bool,
    /// Check the compiled model against the masked model.
    pub verify: bool,
    /// Largest accepted relative error `max|a−b| / max(1e-6, max|b|)`.
    pub tolerance: f32,
    /// Batch size of the verification run.
    pub verify_batch: usize,
    /// Seed of the verification inputs.
    pub verify_seed: u64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            fold_bn: false,
            verify: true,
            tolerance: 1e-5,
            verify_batch: 8,
            verify_seed: 0,
        }
    }
}

/// A compiled model and its report.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub model: Model,
    pub report: CompileReport,
    /// The masks the compiled model reproduces (see [`effective_masks`]).
    pub effective_masks: ChannelMasks,
}

/// Compiles `model` under `masks` (gate node name → keep flag per channel).
///
/// The compiled model has the same node names minus folded nodes, no SBP
/// gates, and reproduces the masked model (the original in eval mode with
/// the effective masks applied) to `opts.tolerance`; otherwise this returns
/// [`CompileError::Verify`] with the measured error.
pub fn compile(model: &Model, masks: &ChannelMasks, opts: &CompileOptions) -> Result<Compiled> {
    if opts.verify && opts.verify_batch == 0 {
        return Err(CompileError::Options(
            "verify_batch must be at least 1".into(),
        ));
    }
    if !(opts.tolerance.is_finite() && opts.tolerance > 0.0) {
        return Err(CompileError::Options(format!(
            "tolerance must be finite and positive, got {}",
            opts.tolerance
        )));
    }
    model.validate()?;
    let an = groups::Analysis::new(&model.graph)?;
    let plan = masks::plan(&model.graph, &an, masks)?;
    let mut compiled = surgery::slice_model(model, &an, &plan)?;
    let mut log = fold::FoldLog::default();
    fold::fold_gates(&mut compiled, &mut log)?;
    if opts.fold_bn {
        fold::fold_batch_norms(&mut compiled, &mut log)?;
    }
    for name in select::drop_zero_columns(&mut compiled)? {
        log.notes.push(format!(
            "'{name}' reads only its live input features through '{name}.select'"
        ));
    }
    compiled.validate()?;
    let err = if opts.verify {
        let e = verify::compare_with_masked(
            model,
            &plan.effective,
            &compiled,
            opts.verify_batch,
            opts.verify_seed,
        )?;
        if e > f64::from(opts.tolerance) {
            return Err(CompileError::Verify {
                max_rel_error: e,
                tolerance: f64::from(opts.tolerance),
                batch: opts.verify_batch,
            });
        }
        Some(e)
    } else {
        None
    };
    let mut notes = plan.notes.clone();
    notes.extend(log.notes);
    let report = report::build_report(
        model,
        &compiled,
        &plan.kept,
        &plan.zeroed,
        &log.folded,
        err,
        notes,
    )?;
    Ok(Compiled {
        model: compiled,
        report,
        effective_masks: plan.effective,
    })
}
