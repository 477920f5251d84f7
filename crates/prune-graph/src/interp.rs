//! The interpreter: runs a [`Model`]'s IR on a prune-core [`Tape`].
//!
//! Train mode uses batch statistics in batch norm (returned as
//! [`BnUpdate`]s for the caller to fold into the running statistics),
//! dropout, and stochastic gates; eval mode is deterministic. Every layer,
//! gates included, runs as prune-core ops: the SBP noise gate draws its noise
//! from the stream `(seed, node index, step)` that train mode must be given
//! ([`RunOptions::train`]). Optional channel masks zero chosen channels at the
//! output of chosen nodes: the "masked model" the pruning compiler verifies
//! against. A batch norm or convolution that only a ReLU reads, directly or
//! through a residual add, runs fused with it as one tape op (see
//! [`crate::fuse`]); in eval mode on a tape without gradients, on the CPU, a
//! convolution that only a batch norm reads is folded into it when its output
//! is large enough for that to pay (`bn_node.rs`), and in train mode it runs
//! together with that batch norm
//! ([`Tape::conv2d_batch_norm_train`](prune_core::Tape::conv2d_batch_norm_train):
//! two tape nodes, the batch statistics formed while the convolution writes
//! its output).

use crate::bn_node::{conv_relu, worth_folding, BnArgs, ConvIn};
use crate::error::{GraphError, Result};
use crate::fuse;
use crate::ir::Layer;
use crate::model::Model;
use crate::params::param_specs;
use crate::release::Release;
use prune_core::cpu::{Conv2dParams, PoolParams};
use prune_core::sbp::{sbp_gate_eval, sbp_gate_train, GateNoise};
use prune_core::{Tape, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Training or evaluation semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Channel masks: node name → keep flag per output channel of that node.
pub type ChannelMasks = BTreeMap<String, Vec<bool>>;

/// How to run a forward pass.
#[derive(Clone, Copy)]
pub struct RunOptions<'r> {
    mode: Mode,
    /// The noise of stochastic gates; present exactly in train mode.
    noise: Option<GateNoise>,
    pub masks: Option<&'r ChannelMasks>,
}

impl<'r> RunOptions<'r> {
    /// Evaluation mode: deterministic, gates multiply by their test-time scale.
    pub fn eval() -> Self {
        Self {
            mode: Mode::Eval,
            noise: None,
            masks: None,
        }
    }
    /// Training mode; stochastic gates draw from `noise` (seed, step, per-minibatch or
    /// per-example), each gate from its own stream.
    pub fn train(noise: GateNoise) -> Self {
        Self {
            mode: Mode::Train,
            noise: Some(noise),
            masks: None,
        }
    }
    /// The same options with channel masks applied at node outputs.
    pub fn with_masks(mut self, masks: Option<&'r ChannelMasks>) -> Self {
        self.masks = masks;
        self
    }
    /// Training or evaluation.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Batch statistics of one batch-norm node, for the running averages.
#[derive(Clone, Debug)]
pub struct BnUpdate {
    pub node: String,
    pub mean: Tensor,
    pub var: Tensor,
    pub momentum: f32,
}

/// The result of a forward pass.
pub struct Forward {
    /// The output node's value (logits).
    pub output: Var,
    /// Tape variables of every stored tensor the pass read, by name.
    pub params: BTreeMap<String, Var>,
    /// Variables of every node's output, in node order. A node listed in
    /// `fused` ran inside the ReLU after it and has no value of its own:
    /// its entry is that ReLU's output.
    pub nodes: Vec<Var>,
    /// Indices of the nodes (batch norms, convolutions and residual adds)
    /// computed fused into the ReLU that reads them, and in inference
    /// without gradients the convolutions folded into the batch norm after
    /// them, in node order.
    pub fused: Vec<usize>,
    /// Batch statistics to fold into running statistics (train mode).
    pub bn_updates: Vec<BnUpdate>,
}

pub(crate) fn pair(a: [usize; 2]) -> (usize, usize) {
    (a[0], a[1])
}

/// A convolution layer's settings as the tape takes them.
pub(crate) fn conv_params(stride: [usize; 2], padding: [usize; 2], groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride: pair(stride),
        padding: pair(padding),
        groups,
    }
}

/// Reshapes a per-channel vector to broadcast over `[N, C, ...]` of rank `rank`.
fn channel_shape(c: usize, rank: usize) -> Vec<usize> {
    let mut s = vec![1; rank];
    if rank > 1 {
        s[1] = c;
    }
    s
}

/// Runs a batch-norm node ([`BnArgs::run`]); in training the convolution
/// it absorbed gets its own output as its node's value.
fn run_bn(
    bn: &BnArgs<'_>,
    model: &Model,
    tape: &mut Tape<'_>,
    mode: Mode,
    relu: Option<Option<Var>>,
    bn_updates: &mut Vec<BnUpdate>,
    vars: &mut [Var],
) -> Result<Var> {
    let (y, z) = bn.run(model, tape, mode, relu, bn_updates)?;
    if let (Some(c), Some(z)) = (&bn.conv, z) {
        vars[c.node] = z;
    }
    Ok(y)
}

/// Runs `model` on the batch `input` (`[N, ...input shape]`).
pub fn forward<'a>(
    model: &'a Model,
    tape: &mut Tape<'a>,
    input: Var,
    opts: &RunOptions<'_>,
    rng: &mut ChaCha8Rng,
) -> Result<Forward> {
    run(model, tape, input, opts, rng, false)
}

/// [`forward`]; with `release`, every node's value is dropped from the
/// tape as soon as no node still to run reads it (see [`crate::release`]),
/// so only the output's value is left.
pub(crate) fn run<'a>(
    model: &'a Model,
    tape: &mut Tape<'a>,
    input: Var,
    opts: &RunOptions<'_>,
    rng: &mut ChaCha8Rng,
    release: bool,
) -> Result<Forward> {
    let graph = &model.graph;
    let inputs = graph.input_indices()?;
    let mut params = BTreeMap::new();
    for spec in param_specs(graph) {
        if spec.kind.trainable() {
            params.insert(spec.name.clone(), tape.param(model.params.get(&spec.name)?));
        }
    }
    let p = |name: &str, field: &str| -> Result<Var> {
        let key = format!("{name}.{field}");
        params.get(&key).copied().ok_or(GraphError::Param {
            name: key,
            reason: "missing".into(),
        })
    };
    let mut vars: Vec<Var> = Vec::with_capacity(graph.nodes.len());
    let mut bn_updates = Vec::new();
    // Inference without gradients folds convolutions into the batch norms
    // after them; training computes them together, so that the batch
    // statistics are formed while the convolution's output is written
    // (fuse.rs).
    let train = opts.mode == Mode::Train;
    let absorb = train || !tape.grad_enabled();
    let plan = fuse::plan(graph, &inputs, opts.masks, absorb);
    let folded_convs: std::collections::BTreeSet<usize> = plan.folded.values().copied().collect();
    let mut dead = release.then(|| Release::new(&plan, &inputs));
    // Folded convolutions that run on their own after all (`worth_folding`).
    let mut declined = std::collections::BTreeSet::new();
    let conv_of = |bn: usize, vars: &[Var], declined: &std::collections::BTreeSet<usize>| {
        let Some(&c) = plan.folded.get(&bn).filter(|c| !declined.contains(*c)) else {
            return Ok(None);
        };
        let node = &graph.nodes[c];
        let Layer::Conv2d {
            stride,
            padding,
            groups,
            bias,
            ..
        } = &node.layer
        else {
            return Err(GraphError::Invalid(format!(
                "folded node '{}' is not a convolution",
                node.name
            )));
        };
        Result::Ok(Some(ConvIn {
            node: c,
            x: vars[inputs[c][0]],
            w: p(&node.name, "weight")?,
            b: if *bias {
                Some(p(&node.name, "bias")?)
            } else {
                None
            },
            params: conv_params(*stride, *padding, *groups),
        }))
    };
    for (i, node) in graph.nodes.iter().enumerate() {
        if plan.absorbed[i] {
            if !folded_convs.contains(&i)
                || train
                || worth_folding(model, tape, node, vars[inputs[i][0]])?
            {
                // computed by the node that reads it; the entry is replaced then
                vars.push(input);
                continue;
            }
            declined.insert(i);
        }
        let x = inputs[i].first().map(|&j| vars[j]);
        let at = |e: prune_core::CoreError| GraphError::Shape {
            node: node.name.clone(),
            reason: e.to_string(),
        };
        let xin =
            || x.ok_or_else(|| GraphError::Invalid(format!("node '{}' has no input", node.name)));
        let n = &node.name;
        let y = match &node.layer {
            Layer::Input { shape } => {
                let got = tape.shape(input)?;
                if got.len() != shape.len() + 1 || got[1..] != shape[..] {
                    return Err(GraphError::Shape {
                        node: n.clone(),
                        reason: format!("expects batches of {shape:?}, got {got:?}"),
                    });
                }
                input
            }
            Layer::Linear { bias, .. } => {
                let b = if *bias { Some(p(n, "bias")?) } else { None };
                tape.linear(xin()?, p(n, "weight")?, b).map_err(at)?
            }
            Layer::Conv2d {
                stride,
                padding,
                groups,
                bias,
                ..
            } => {
                let b = if *bias { Some(p(n, "bias")?) } else { None };
                let cp = conv_params(*stride, *padding, *groups);
                tape.conv2d(xin()?, p(n, "weight")?, b, cp).map_err(at)?
            }
            Layer::BatchNorm { eps, momentum, .. } => {
                let bn = BnArgs {
                    name: n,
                    x: xin()?,
                    gamma: p(n, "weight")?,
                    beta: p(n, "bias")?,
                    eps: *eps,
                    momentum: *momentum,
                    conv: conv_of(i, &vars, &declined)?,
                };
                run_bn(
                    &bn,
                    model,
                    tape,
                    opts.mode,
                    None,
                    &mut bn_updates,
                    &mut vars,
                )?
            }
            Layer::Relu => match plan.at.get(&i) {
                Some(f) => {
                    let head = &graph.nodes[f.head];
                    let hx = vars[inputs[f.head][0]];
                    let residual = f.add.map(|(_, r)| vars[r]);
                    let y = match &head.layer {
                        Layer::BatchNorm { eps, momentum, .. } => {
                            let bn = BnArgs {
                                name: &head.name,
                                x: hx,
                                gamma: p(&head.name, "weight")?,
                                beta: p(&head.name, "bias")?,
                                eps: *eps,
                                momentum: *momentum,
                                conv: conv_of(f.head, &vars, &declined)?,
                            };
                            let relu = Some(residual);
                            run_bn(
                                &bn,
                                model,
                                tape,
                                opts.mode,
                                relu,
                                &mut bn_updates,
                                &mut vars,
                            )?
                        }
                        Layer::Conv2d {
                            stride,
                            padding,
                            groups,
                            bias,
                            ..
                        } => {
                            let b = if *bias {
                                Some(p(&head.name, "bias")?)
                            } else {
                                None
                            };
                            let cp = conv_params(*stride, *padding, *groups);
                            let w = p(&head.name, "weight")?;
                            conv_relu(tape, hx, w, b, cp, residual).map_err(|e| {
                                GraphError::Shape {
                                    node: head.name.clone(),
                                    reason: e.to_string(),
                                }
                            })?
                        }
                        _ => {
                            return Err(GraphError::Invalid(format!(
                                "fused node '{}' is not a batch norm or convolution",
                                head.name
                            )))
                        }
                    };
                    vars[f.head] = y;
                    if let Some((add, _)) = f.add {
                        vars[add] = y;
                    }
                    y
                }
                None => tape.relu(xin()?).map_err(at)?,
            },
            Layer::Relu6 => tape.clamp(xin()?, 0.0, 6.0).map_err(at)?,
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            } => {
                let pp = PoolParams {
                    kernel: pair(*kernel),
                    stride: pair(*stride),
                    padding: pair(*padding),
                };
                tape.max_pool2d(xin()?, pp).map_err(at)?
            }
            Layer::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let pp = PoolParams {
                    kernel: pair(*kernel),
                    stride: pair(*stride),
                    padding: pair(*padding),
                };
                tape.avg_pool2d(xin()?, pp).map_err(at)?
            }
            Layer::GlobalAvgPool => tape.global_avg_pool(xin()?).map_err(at)?,
            Layer::Flatten => tape.flatten(xin()?).map_err(at)?,
            Layer::Select { indices } => tape.index_select(xin()?, 1, indices).map_err(at)?,
            Layer::Dropout { p: prob } => match opts.mode {
                Mode::Train if *prob > 0.0 => tape.dropout(xin()?, *prob, rng).map_err(at)?,
                _ => xin()?,
            },
            Layer::Add => {
                let mut acc = vars[inputs[i][0]];
                for &j in &inputs[i][1..] {
                    acc = tape.add(acc, vars[j]).map_err(at)?;
                }
                acc
            }
            Layer::Concat => {
                let xs: Vec<Var> = inputs[i].iter().map(|&j| vars[j]).collect();
                tape.concat(&xs, 1).map_err(at)?
            }
            Layer::SbpGate { .. } => {
                let (x, mu, ls) = (xin()?, p(n, "mu")?, p(n, "log_sigma")?);
                match opts.noise {
                    Some(noise) => {
                        let layer = u32::try_from(i)
                            .ok()
                            .filter(|&l| l < 1 << 31)
                            .ok_or_else(|| GraphError::Invalid("too many nodes".into()))?;
                        sbp_gate_train(tape, x, mu, ls, noise.stream(layer), noise.mode)
                            .map_err(at)?
                    }
                    None => sbp_gate_eval(tape, x, mu, ls).map_err(at)?,
                }
            }
            Layer::Scale { units } => {
                let x = xin()?;
                let rank = tape.shape(x)?.len();
                let g = tape
                    .reshape(p(n, "weight")?, &channel_shape(*units, rank))
                    .map_err(at)?;
                tape.mul(x, g).map_err(at)?
            }
        };
        let y = match opts.masks.and_then(|m| m.get(n)) {
            Some(keep) => apply_mask(tape, y, keep).map_err(|e| GraphError::Shape {
                node: n.clone(),
                reason: format!("mask: {e}"),
            })?,
            None => y,
        };
        vars.push(y);
        if let Some(d) = dead.as_mut() {
            d.after(i, &vars, tape)?;
        }
    }
    let output = *vars
        .last()
        .ok_or_else(|| GraphError::Invalid("empty graph".into()))?;
    Ok(Forward {
        output,
        params,
        nodes: vars,
        // in training an absorbed convolution has its own value
        fused: (0..graph.nodes.len())
            .filter(|&i| plan.absorbed[i] && !declined.contains(&i))
            .filter(|i| !(train && folded_convs.contains(i)))
            .collect(),
        bn_updates,
    })
}

/// Multiplies channel `c` of `y` by `keep[c]` (0 or 1).
fn apply_mask(tape: &mut Tape<'_>, y: Var, keep: &[bool]) -> prune_core::Result<Var> {
    let shape = tape.shape(y)?.to_vec();
    if shape.len() < 2 || shape[1] != keep.len() {
        return Err(prune_core::CoreError::ShapeMismatch {
            op: "channel mask",
            lhs: shape,
            rhs: vec![keep.len()],
        });
    }
    let m = Tensor::from_vec(
        channel_shape(keep.len(), shape.len()),
        keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect(),
    )?
    .to_device(tape.value(y)?.device())?;
    let mv = tape.constant(m);
    tape.mul(y, mv)
}

/// Folds batch statistics into the running statistics:
/// `running ← (1 − m)·running + m·batch` (PyTorch's convention).
pub fn apply_bn_updates(model: &mut Model, updates: &[BnUpdate]) -> Result<()> {
    for u in updates {
        for (field, batch) in [("running_mean", &u.mean), ("running_var", &u.var)] {
            let t = model.params.get_mut(&format!("{}.{field}", u.node))?;
            // in place, on the statistics' device (one launch on a GPU)
            t.backend().ema_update(t, batch, u.momentum)?;
        }
    }
    Ok(())
}

/// Evaluation-mode logits of `model` on a batch, recording nothing and
/// keeping each intermediate value only while a node still to run reads it.
pub fn predict(model: &Model, x: Tensor, masks: Option<&ChannelMasks>) -> Result<Tensor> {
    let mut tape = Tape::no_grad();
    let input = tape.constant(x);
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let opts = RunOptions::eval().with_masks(masks);
    let out = run(model, &mut tape, input, &opts, &mut rng, true)?;
    Ok(tape.take_value(out.output)?)
}
