//! The reverse sweep: each [`Op`] turns its output gradient into input gradients.
//!
//! Only leaves keep their gradients in the returned [`Gradients`]; the
//! gradients of intermediate nodes are dropped once propagated. Every
//! gradient is computed by the backend of the node's value.

use super::ops_shape::keepdim_shape;
use super::{Gradients, Op, Tape, Unary, Var};
use crate::backend::Residual;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

impl Tape<'_> {
    /// Gradients of the scalar `loss` with respect to every leaf that requires one.
    pub fn backward(&self, loss: Var) -> Result<Gradients> {
        if !self.grad_enabled {
            return Err(CoreError::Backward(
                "this tape was built with no_grad".into(),
            ));
        }
        let lv = self.value(loss)?;
        if lv.numel() != 1 {
            return Err(CoreError::Backward(format!(
                "the loss must be a scalar, got shape {:?}",
                lv.shape()
            )));
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        if !self.nodes[loss.0].requires_grad {
            return Ok(Gradients { grads });
        }
        grads[loss.0] = Some(lv.backend().full(lv.shape(), 1.0)?);
        for i in (0..=loss.0).rev() {
            let node = &self.nodes[i];
            if matches!(node.op, Op::Leaf) {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            for (v, gi) in self.input_grads(&node.op, &node.value, &g)? {
                if !self.nodes[v.0].requires_grad {
                    continue;
                }
                match &mut grads[v.0] {
                    Some(acc) => acc.backend().add_assign(acc, &gi)?,
                    slot => *slot = Some(gi),
                }
            }
        }
        Ok(Gradients { grads })
    }

    fn input_grads(&self, op: &Op, y: &Tensor, g: &Tensor) -> Result<Vec<(Var, Tensor)>> {
        let val = |v: Var| self.value(v);
        let needs = |v: Var| self.requires_grad(v);
        let be = y.backend();
        let mut out = Vec::new();
        match op {
            Op::Leaf | Op::NoGrad => {}
            Op::Unary { x, op } => {
                out.push((*x, be.unary_backward(*op, val(*x)?, y, g)?));
            }
            Op::Binary { a, b, op } => {
                let (av, bv) = (val(*a)?, val(*b)?);
                let (ga, gb) = be.binary_backward(*op, av, bv, y, g)?;
                if needs(*a) {
                    out.push((*a, be.sum_to_shape(&ga, av.shape())?));
                }
                if needs(*b) {
                    out.push((*b, be.sum_to_shape(&gb, bv.shape())?));
                }
            }
            Op::MatMul { a, b } => {
                let (av, bv) = (val(*a)?, val(*b)?);
                if needs(*a) {
                    out.push((*a, be.matmul(g, bv, false, true)?));
                }
                if needs(*b) {
                    out.push((*b, be.matmul(av, g, true, false)?));
                }
            }
            Op::Linear { x, w, b } => {
                let (xv, wv) = (val(*x)?, val(*w)?);
                if needs(*x) {
                    out.push((*x, be.matmul(g, wv, false, false)?));
                }
                if needs(*w) {
                    out.push((*w, be.matmul(g, xv, true, false)?));
                }
                if let Some(b) = b {
                    out.push((*b, be.sum_to_shape(g, &[wv.shape()[0]])?));
                }
            }
            Op::Conv2d { x, w, b, params } => {
                let grads =
                    be.conv2d_backward(val(*x)?, val(*w)?, g, params, needs(*x), b.is_some())?;
                if let Some(gx) = grads.x {
                    out.push((*x, gx));
                }
                out.push((*w, grads.w));
                if let Some(b) = b {
                    out.push((*b, grads.bias.ok_or_else(no_bias_grad)?));
                }
            }
            Op::Conv2dRelu {
                x,
                w,
                b,
                params,
                residual,
            } => {
                // d = g·[y > 0], the gradient of the convolution's output
                // and of the residual
                let d = be.unary_backward(Unary::Relu, y, y, g)?;
                let grads =
                    be.conv2d_backward(val(*x)?, val(*w)?, &d, params, needs(*x), b.is_some())?;
                if let Some(gx) = grads.x {
                    out.push((*x, gx));
                }
                out.push((*w, grads.w));
                if let Some(b) = b {
                    out.push((*b, grads.bias.ok_or_else(no_bias_grad)?));
                }
                if let Some(r) = residual {
                    out.push((*r, d));
                }
            }
            Op::MaxPool2d { x, argmax, params } => {
                let dx = be.max_pool2d_backward(g, argmax, val(*x)?.shape(), params)?;
                out.push((*x, dx));
            }
            Op::AvgPool2d { x, params } => {
                out.push((*x, be.avg_pool2d_backward(g, val(*x)?.shape(), params)?));
            }
            Op::BatchNormTrain {
                x,
                gamma,
                beta,
                stats,
            } => {
                let r = be.batch_norm_train_backward(val(*x)?, val(*gamma)?, stats, g)?;
                out.extend([(*x, r.x), (*gamma, r.gamma), (*beta, r.beta)]);
            }
            Op::BatchNormEval {
                x,
                gamma,
                beta,
                running_mean,
                running_var,
                eps,
            } => {
                let r = be.batch_norm_eval_backward(
                    val(*x)?,
                    val(*gamma)?,
                    running_mean,
                    running_var,
                    *eps,
                    g,
                )?;
                out.extend([(*x, r.x), (*gamma, r.gamma), (*beta, r.beta)]);
            }
            Op::BatchNormRelu {
                x,
                gamma,
                beta,
                residual,
                norm,
            } => {
                let res = match residual {
                    None => Residual::Absent,
                    Some(r) if needs(*r) => Residual::Grad,
                    Some(_) => Residual::NoGrad,
                };
                let (xv, gv, bv) = (val(*x)?, val(*gamma)?, val(*beta)?);
                let (r, gr) = be.batch_norm_relu_backward(xv, gv, bv, norm, y, g, res)?;
                out.extend([(*x, r.x), (*gamma, r.gamma), (*beta, r.beta)]);
                if let (Some(res), Some(gr)) = (residual, gr) {
                    out.push((*res, gr));
                }
            }
            Op::Sum { x, axes, .. } | Op::Mean { x, axes, .. } => {
                let xs = val(*x)?.shape().to_vec();
                let kd = keepdim_shape(&xs, axes, "sum backward")?;
                // The mean's scale on the reduced gradient, before it is
                // spread over the input (the same products, fewer of them).
                let scaled;
                let g = if matches!(op, Op::Mean { .. }) {
                    let count: usize = axes.iter().map(|&a| xs[a]).product();
                    let inv = 1.0 / count.max(1) as f32;
                    scaled = be.unary(g, Unary::Scale(inv))?;
                    &scaled
                } else {
                    g
                };
                out.push((*x, be.broadcast_to(&g.reshape(kd)?, &xs)?));
            }
            Op::Reshape { x } => out.push((*x, g.reshape(val(*x)?.shape().to_vec())?)),
            Op::Concat { xs, axis } => {
                let sizes = xs
                    .iter()
                    .map(|v| val(*v).and_then(|t| t.dim(*axis)))
                    .collect::<Result<Vec<usize>>>()?;
                for (v, gi) in xs.iter().zip(be.split(g, *axis, &sizes)?) {
                    out.push((*v, gi));
                }
            }
            Op::IndexSelect { x, axis, indices } => {
                let s = val(*x)?.shape().to_vec();
                out.push((*x, be.index_add(g, &s, *axis, indices)?));
            }
            Op::Dropout { x, mask } => {
                out.push((*x, be.binary(g, mask, super::Binary::Mul)?));
            }
            Op::LogSoftmax { x } => {
                out.push((*x, be.log_softmax_backward(y, g)?));
            }
            Op::CrossEntropy { logits, labels } => {
                out.push((
                    *logits,
                    be.cross_entropy_backward(val(*logits)?, labels, g)?,
                ));
            }
            Op::Custom { inputs, op } => {
                if !op.supports(y.device()) {
                    return Err(CoreError::Unsupported(format!(
                        "custom op {} on {}",
                        op.name(),
                        y.device()
                    )));
                }
                let vals: Vec<&Tensor> = inputs.iter().map(|v| val(*v)).collect::<Result<_>>()?;
                let gs = op.backward(&vals, y, g)?;
                if gs.len() != inputs.len() {
                    return Err(CoreError::Backward(format!(
                        "custom op {} returned {} gradients for {} inputs",
                        op.name(),
                        gs.len(),
                        inputs.len()
                    )));
                }
                for ((v, gi), xv) in inputs.iter().zip(gs).zip(&vals) {
                    if let Some(gi) = gi {
                        xv.expect_same_shape(&gi, "custom op gradient")?;
                        out.push((*v, gi));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A backend asked for a convolution's bias gradient returned none.
fn no_bias_grad() -> crate::error::CoreError {
    crate::error::CoreError::InvalidArgument {
        op: "conv2d backward",
        reason: "the backend returned no bias gradient although one was asked for".into(),
    }
}
