//! How the interpreter runs a batch-norm node: alone, fused with the ReLU
//! after it (and the residual added before that ReLU), or — in inference
//! without gradients — with the convolution before it folded in (see
//! `fuse.rs` for which nodes fuse and fold); and a convolution fused with
//! its ReLU.

use crate::error::{GraphError, Result};
use crate::interp::{conv_params, BnUpdate, Mode};
use crate::ir::{Layer, Node};
use crate::model::Model;
use prune_core::cpu::Conv2dParams;
use prune_core::{Tape, Tensor, Var};

/// `relu(conv2d(x) + residual)` as one tape node, or as the unfused chain
/// (which broadcasts) when the residual's shape is not the output's.
pub(crate) fn conv_relu(
    tape: &mut Tape<'_>,
    x: Var,
    w: Var,
    b: Option<Var>,
    cp: Conv2dParams,
    residual: Option<Var>,
) -> prune_core::Result<Var> {
    if let Some(r) = residual {
        let (xs, ws, rs) = (tape.shape(x)?, tape.shape(w)?, tape.shape(r)?);
        let fits = prune_core::cpu::conv2d_out_shape(xs, ws, &cp).is_ok_and(|o| rs == o);
        if !fits {
            let y = tape.conv2d(x, w, b, cp)?;
            let s = tape.add(y, r)?;
            return tape.relu(s);
        }
    }
    tape.conv2d_relu(x, w, b, cp, residual)
}

/// Whether folding convolution `name` (input `x`) into the batch norm after
/// it saves work: scaling the weights is a pass over them (and a few small
/// ops), the batch norm it replaces a pass over the output. Folded when
/// the output has more than 2¹⁷ values and, per output channel, at least 4
/// times as many values as the weights (ResNet-20 at batch 128 throughout,
/// and a compiled one's 33-channel 7×7 layers: 0.02 more of its FLOPs
/// ratio than from 2¹⁸; not at batch 1; VGG-like at batch 64 up to its
/// 16×16 layers, not its 256- and 512-channel layers on 8×8 maps and
/// smaller, whose weights outweigh their outputs). Only on the CPU: on a GPU, where a step is
/// bound by the number of kernel launches rather than by passes over
/// memory, the seven small ops that scale the weights would cost more
/// than the batch norm's two launches they replace.
pub(crate) fn worth_folding(model: &Model, tape: &Tape<'_>, node: &Node, x: Var) -> Result<bool> {
    if tape.value(x)?.device() != prune_core::Device::Cpu {
        return Ok(false);
    }
    let Layer::Conv2d {
        stride,
        padding,
        groups,
        ..
    } = &node.layer
    else {
        return Ok(false);
    };
    let w = model
        .params
        .get(&format!("{}.weight", node.name))?
        .shape()
        .to_vec();
    let xs = tape.shape(x)?.to_vec();
    if xs.len() != 4 || w.len() != 4 {
        return Ok(false);
    }
    let cp = conv_params(*stride, *padding, *groups);
    let Ok((oh, ow)) = prune_core::cpu::conv2d_out_hw(xs[2], xs[3], w[2], w[3], &cp) else {
        return Ok(false);
    };
    let per_channel = xs[0] * oh * ow;
    Ok(per_channel * w[0] > 1 << 17 && per_channel >= 4 * w[1] * w[2] * w[3])
}

/// A batch-norm node's inputs and settings.
pub(crate) struct BnArgs<'n> {
    pub(crate) name: &'n str,
    pub(crate) x: Var,
    pub(crate) gamma: Var,
    pub(crate) beta: Var,
    pub(crate) eps: f32,
    pub(crate) momentum: f32,
    /// The convolution absorbed by it (`x` is then not computed before):
    /// folded into it in evaluation without gradients, computed with it in
    /// training.
    pub(crate) conv: Option<ConvIn>,
}

/// A convolution's input, parameters and settings.
pub(crate) struct ConvIn {
    /// The convolution's node.
    pub(crate) node: usize,
    pub(crate) x: Var,
    pub(crate) w: Var,
    pub(crate) b: Option<Var>,
    pub(crate) params: Conv2dParams,
}

impl ConvIn {
    /// `bn(conv(x))` in evaluation mode as one convolution: with
    /// `a = γ/√(σ²_run + ε)` per channel, weights `a·w` and bias
    /// `a·b + β − a·μ_run` (see fuse.rs); then `relu(· + residual)` when
    /// `relu` is `Some(residual)`.
    #[allow(clippy::too_many_arguments)]
    fn folded(
        &self,
        tape: &mut Tape<'_>,
        gamma: Var,
        beta: Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        relu: Option<Option<Var>>,
    ) -> prune_core::Result<Var> {
        let (rm, rv) = (
            tape.constant(running_mean.clone()),
            tape.constant(running_var.clone()),
        );
        let sd = tape.shift(rv, eps)?;
        let sd = tape.sqrt(sd)?;
        let a = tape.div(gamma, sd)?;
        let ws = tape.shape(self.w)?.to_vec();
        let mut per_out = vec![1; ws.len()];
        per_out[0] = ws[0];
        let ar = tape.reshape(a, &per_out)?;
        let w = tape.mul(self.w, ar)?;
        let am = tape.mul(a, rm)?;
        let mut b = tape.sub(beta, am)?;
        if let Some(cb) = self.b {
            let acb = tape.mul(a, cb)?;
            b = tape.add(acb, b)?;
        }
        match relu {
            Some(residual) => conv_relu(tape, self.x, w, Some(b), self.params, residual),
            None => tape.conv2d(self.x, w, Some(b), self.params),
        }
    }

    /// The shape of the convolution's output.
    fn out_shape(&self, tape: &Tape<'_>) -> prune_core::Result<[usize; 4]> {
        let (xs, ws) = (tape.shape(self.x)?, tape.shape(self.w)?);
        prune_core::cpu::conv2d_out_shape(xs, ws, &self.params)
    }
}

impl BnArgs<'_> {
    /// Runs the batch norm alone (`relu` is `None`) or fused with the ReLU
    /// after it and the residual added before that ReLU (`Some(residual)`),
    /// computing the absorbed convolution first when there is one. A
    /// residual of another shape than the batch norm's output runs as the
    /// unfused chain, which broadcasts. Returns the output and, in
    /// training, the absorbed convolution's.
    pub(crate) fn run(
        &self,
        model: &Model,
        tape: &mut Tape<'_>,
        mode: Mode,
        relu: Option<Option<Var>>,
        bn_updates: &mut Vec<BnUpdate>,
    ) -> Result<(Var, Option<Var>)> {
        let at = |e: prune_core::CoreError| GraphError::Shape {
            node: self.name.to_string(),
            reason: e.to_string(),
        };
        let (x, g, b, eps) = (self.x, self.gamma, self.beta, self.eps);
        let x_shape = match &self.conv {
            Some(c) => c.out_shape(tape).map_err(at)?.to_vec(),
            None => tape.shape(x)?.to_vec(),
        };
        let fused = match relu {
            Some(Some(r)) if tape.shape(r)? != x_shape => None,
            other => other,
        };
        let mut conv_out = None;
        let y = match mode {
            Mode::Train => {
                let (y, mean, var) = match (&self.conv, fused) {
                    (Some(c), relu) => tape
                        .conv2d_batch_norm_train(c.x, c.w, c.b, c.params, g, b, relu, eps)
                        .map(|(y, z, mean, var)| {
                            conv_out = Some(z);
                            (y, mean, var)
                        }),
                    (None, Some(r)) => tape.batch_norm_relu_train(x, g, b, r, eps),
                    (None, None) => tape.batch_norm_train(x, g, b, eps),
                }
                .map_err(at)?;
                bn_updates.push(BnUpdate {
                    node: self.name.to_string(),
                    mean,
                    var,
                    momentum: self.momentum,
                });
                y
            }
            Mode::Eval => {
                let rm = model.params.get(&format!("{}.running_mean", self.name))?;
                let rv = model.params.get(&format!("{}.running_var", self.name))?;
                if let Some(c) = &self.conv {
                    return Ok((c.folded(tape, g, b, rm, rv, eps, relu).map_err(at)?, None));
                }
                match fused {
                    Some(r) => tape.batch_norm_relu_eval(x, g, b, r, rm, rv, eps),
                    None => tape.batch_norm_eval(x, g, b, rm, rv, eps),
                }
                .map_err(at)?
            }
        };
        let y = match (relu, fused) {
            // the unfused chain for a residual of another shape
            (Some(Some(r)), None) => {
                let s = tape.add(y, r).map_err(at)?;
                tape.relu(s).map_err(at)?
            }
            _ => y,
        };
        Ok((y, conv_out))
    }
}
