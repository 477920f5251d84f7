//! The training loop.
//!
//! Each step: forward in train mode, mean cross-entropy plus the
//! regularizer's penalty, backward, a finiteness check of the loss and every
//! gradient, an optimizer step with per-parameter learning-rate multipliers,
//! the regularizer's projection, and the batch-norm running statistics.
//! Each epoch: evaluation on the test set, a checkpoint, and a line of
//! `metrics.jsonl`. Randomness (shuffling, dropout, SBP noise) is reseeded
//! from `(seed, epoch)`, so a resumed run continues exactly as an
//! uninterrupted one would.

use crate::checkpoint::{self, CheckpointState};
use crate::config::TrainConfig;
use crate::device::{host_model, model_device, model_to, onto, state_to};
use crate::error::{Result, TrainError};
use crate::eval::evaluate;
use crate::memory::{available_memory, check_step_memory};
use crate::metrics::{self, EpochRecord};
use crate::resume::{check_resume, TrainSet};
use prune_core::optim::{Optimizer, ParamUpdate};
use prune_core::sbp::{GateNoise, NoiseMode};
use prune_core::{Device, Tape, Tensor};
use prune_data::{Augment, BatchOptions, Dataset};
use prune_graph::interp::apply_bn_updates;
use prune_graph::params::param_specs;
use prune_graph::{forward, Model, ParamKind, Regularizer, RunOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The outcome of [`fit`].
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub history: Vec<EpochRecord>,
    /// Training throughput over all epochs of this call (images/s).
    pub train_images_per_sec: f64,
    /// Test accuracy after the last epoch.
    pub test_accuracy: f64,
}

/// Where a run keeps its files, and whether to continue from a checkpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunFiles<'p> {
    /// The run directory (checkpoints, `metrics.jsonl`); `None` keeps nothing.
    pub dir: Option<&'p Path>,
    /// Continue from `dir/checkpoint`, which must exist and match the
    /// model, settings and training set (see [`crate::resume`]); without
    /// it, a run starts afresh and replaces the directory's metrics.
    pub resume: bool,
}

fn epoch_seed(seed: u64, epoch: usize, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ stream
}

/// Trains `model` in place on `train`, evaluating on `test` after each epoch.
pub fn fit(
    model: &mut Model,
    train: &Dataset,
    test: &Dataset,
    cfg: &TrainConfig,
    reg: Option<&dyn Regularizer>,
    files: RunFiles<'_>,
) -> Result<TrainSummary> {
    cfg.validate()?;
    model.validate()?;
    if train.is_empty() {
        return Err(TrainError::Config("the training set is empty".into()));
    }
    check_step_memory(
        &model.graph,
        cfg.batch_size.min(train.len()),
        available_memory(),
    )?;
    let mut opt = cfg.optimizer.build();
    let device = model_device(model);
    let mut history = Vec::new();
    let mut start = 0;
    let train_set = TrainSet {
        name: train.kind.name(),
        examples: train.len(),
    };
    match (files.dir, files.resume) {
        (Some(dir), true) => {
            let ck = checkpoint::load(dir)?.ok_or_else(|| TrainError::Resume {
                dir: dir.to_path_buf(),
                field: "--resume".into(),
                reason: "was given but the directory holds no checkpoint/ to continue from".into(),
            })?;
            check_resume(dir, &ck, model, cfg, &train_set)?;
            *model = ck.model;
            model_to(model, device)?;
            opt.load_state(state_to(ck.optimizer, device)?);
            history = ck.state.history;
            start = ck.state.epochs_done;
            rewrite_metrics(dir, &history)?;
        }
        (None, true) => return Err(TrainError::Config("resuming needs a run directory".into())),
        (Some(dir), false) => rewrite_metrics(dir, &[])?,
        (None, false) => {}
    }
    let phase = files
        .dir
        .and_then(|d| d.file_name())
        .map(|n| format!("{}: ", n.to_string_lossy()))
        .unwrap_or_default();
    let kinds: BTreeMap<String, ParamKind> = param_specs(&model.graph)
        .into_iter()
        .map(|s| (s.name, s.kind))
        .collect();
    let noise_mode = reg.map_or(NoiseMode::PerChannel, |r| r.noise_mode());
    // Gate noise comes from (seed, gate, optimizer step): a resumed run continues the
    // step count from its checkpoint, so no step replays another's noise.
    let mut global_step = opt.state().step;
    let (mut images, mut seconds) = (0usize, 0f64);
    for epoch in start..cfg.epochs {
        let lr = cfg.schedule.lr(cfg.lr, epoch);
        let mut opts = BatchOptions::new(cfg.batch_size).shuffle(epoch_seed(cfg.seed, epoch, 1));
        if cfg.augment {
            opts = opts.augment(Augment::cifar(epoch_seed(cfg.seed, epoch, 2)));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(cfg.seed, epoch, 3));
        let batches = train.batches_with(&opts, epoch as u64)?;
        let total = cfg
            .max_batches
            .map_or(batches.len(), |m| m.min(batches.len()));
        let bar = progress_bar(cfg.progress, &phase, total, epoch, cfg.epochs);
        let t0 = Instant::now();
        let (mut loss_sum, mut pen_sum, mut correct, mut seen) = (0f64, 0f64, 0usize, 0usize);
        for (bi, batch) in batches.take(total).enumerate() {
            let (x, labels) = batch?;
            let n = labels.len();
            let noise = GateNoise {
                seed: cfg.seed,
                step: u32::try_from(global_step).map_err(|_| {
                    TrainError::Config("more than 2^32 optimizer steps in one run".into())
                })?,
                mode: noise_mode,
            };
            global_step += 1;
            let stats = step(
                model,
                &mut *opt,
                &kinds,
                x,
                &labels,
                lr,
                reg,
                noise,
                train.len(),
                &mut rng,
            )
            .map_err(|e| match e {
                TrainError::NonFinite { what, .. } => TrainError::NonFinite {
                    epoch,
                    batch: bi,
                    what,
                },
                e => e,
            })?;
            loss_sum += stats.loss * n as f64;
            pen_sum += stats.penalty * n as f64;
            correct += stats.correct;
            seen += n;
            bar.set_message(format!(
                "loss {:.4} acc {:.4} {:.0} img/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                seen as f64 / t0.elapsed().as_secs_f64().max(1e-9)
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let dt = t0.elapsed().as_secs_f64();
        images += seen;
        seconds += dt;
        let ev = evaluate(model, test, None, 500)?;
        let rec = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            penalty: pen_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss: ev.loss,
            test_accuracy: ev.accuracy,
            images_per_sec: seen as f64 / dt.max(1e-9),
            seconds: dt,
        };
        history.push(rec.clone());
        if let Some(dir) = files.dir {
            let st = opt.state();
            let state = CheckpointState {
                epochs_done: epoch + 1,
                optimizer_step: st.step,
                config: cfg.clone(),
                history: history.clone(),
                dataset: Some(train_set.name.to_string()),
                train_examples: Some(train_set.examples),
            };
            if device == Device::Cpu {
                checkpoint::save(dir, model, &st, &state)?;
            } else {
                let st = state_to(st, Device::Cpu)?;
                checkpoint::save(dir, &host_model(model)?, &st, &state)?;
            }
            metrics::append(dir, &rec)?;
        }
        if cfg.progress {
            eprintln!(
                "{phase}epoch {}/{}: loss {:.4} train acc {:.4} test acc {:.4} ({:.0} img/s)",
                rec.epoch,
                cfg.epochs,
                rec.train_loss,
                rec.train_accuracy,
                rec.test_accuracy,
                rec.images_per_sec
            );
        }
    }
    let test_accuracy = match history.last() {
        Some(r) if start < cfg.epochs => r.test_accuracy,
        _ => evaluate(model, test, None, 500)?.accuracy,
    };
    Ok(TrainSummary {
        train_images_per_sec: images as f64 / seconds.max(1e-9),
        test_accuracy,
        history,
    })
}

fn rewrite_metrics(dir: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut text = String::new();
    for r in history {
        let line = serde_json::to_string(r).map_err(|e| TrainError::io(dir, e))?;
        text.push_str(&line);
        text.push('\n');
    }
    prune_graph::io::atomic_write(&dir.join("metrics.jsonl"), text.as_bytes())?;
    Ok(())
}

fn progress_bar(
    show: bool,
    phase: &str,
    total: usize,
    epoch: usize,
    epochs: usize,
) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("{phase}epoch {}/{}", epoch + 1, epochs));
    bar
}

struct StepStats {
    loss: f64,
    penalty: f64,
    correct: usize,
}

fn non_finite(what: String) -> TrainError {
    TrainError::NonFinite {
        epoch: 0,
        batch: 0,
        what,
    }
}

/// One optimizer step on one batch.
#[allow(clippy::too_many_arguments)]
fn step(
    model: &mut Model,
    opt: &mut dyn Optimizer,
    kinds: &BTreeMap<String, ParamKind>,
    x: Tensor,
    labels: &[usize],
    lr: f32,
    reg: Option<&dyn Regularizer>,
    noise: GateNoise,
    n_train: usize,
    rng: &mut ChaCha8Rng,
) -> Result<StepStats> {
    let (grads, bn_updates, stats) = {
        let mut tape = Tape::new();
        let input = tape.constant(onto(x, model_device(model))?);
        let fwd = forward(model, &mut tape, input, &RunOptions::train(noise), rng)?;
        let correct = onto(tape.value(fwd.output)?.clone(), Device::Cpu)?
            .argmax_rows()?
            .iter()
            .zip(labels)
            .filter(|(p, l)| p == l)
            .count();
        let ce = tape.cross_entropy(fwd.output, labels)?;
        let ce_v = tape.value(ce)?.item()? as f64;
        let (loss, penalty) = match reg {
            Some(r) => match r.penalty(&mut tape, model, &fwd.params, n_train)? {
                Some(p) => {
                    let pv = tape.value(p)?.item()? as f64;
                    (tape.add(ce, p)?, pv)
                }
                None => (ce, 0.0),
            },
            None => (ce, 0.0),
        };
        if !(ce_v.is_finite() && penalty.is_finite()) {
            return Err(non_finite(format!("the loss ({ce_v} + {penalty})")));
        }
        let mut g = tape.backward(loss)?;
        let mut named = BTreeMap::new();
        for (name, v) in &fwd.params {
            if let Some(t) = g.take(*v) {
                named.insert(name.clone(), t);
            }
        }
        (
            named,
            fwd.bn_updates,
            StepStats {
                loss: ce_v,
                penalty,
                correct,
            },
        )
    };
    // All gradients tested together: on a GPU one scalar crosses to the host per step.
    let (names, tensors): (Vec<&String>, Vec<&Tensor>) = grads.iter().unzip();
    if let Some(i) = prune_core::backend::first_non_finite(&tensors)? {
        return Err(non_finite(format!("the gradient of {}", names[i])));
    }
    {
        let mut updates: Vec<ParamUpdate<'_>> = Vec::with_capacity(grads.len());
        for (name, value) in model.params.iter_mut() {
            let Some(grad) = grads.get(name) else {
                continue;
            };
            let kind = kinds.get(name).copied().unwrap_or(ParamKind::Weight);
            updates.push(ParamUpdate {
                name,
                value,
                grad,
                lr_mult: reg.map_or(1.0, |r| r.lr_mult(name, kind)),
                decay: kind.decays(),
            });
        }
        opt.step(lr, &mut updates)?;
    }
    apply_bn_updates(model, &bn_updates)?;
    if let Some(r) = reg {
        r.after_step(model)?;
    }
    Ok(stats)
}
