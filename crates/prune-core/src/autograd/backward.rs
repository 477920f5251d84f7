//! The reverse sweep: each [`Op`] turns its output gradient into input gradients.
//!
//! Only leaves keep their gradients in the returned [`Gradients`]; the
//! gradients of intermediate nodes are dropped once propagated.

use super::broadcast::{broadcast_zip, reduce_to_shape};
use super::ops_nn::log_softmax_rows;
use super::ops_shape::{index_scatter_add, keepdim_shape, split_at_axis};
use super::{Binary, Gradients, Op, Tape, Var};
use crate::cpu;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

/// Broadcasts `g` (with size-1 dims) up to `shape`.
fn broadcast_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    broadcast_zip(&Tensor::zeros(shape.to_vec()), g, "broadcast_to", |_, y| y)
}

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
        grads[loss.0] = Some(Tensor::ones(lv.shape().to_vec()));
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
                    Some(acc) => acc.add_assign(&gi)?,
                    slot => *slot = Some(gi),
                }
            }
        }
        Ok(Gradients { grads })
    }

    fn input_grads(&self, op: &Op, y: &Tensor, g: &Tensor) -> Result<Vec<(Var, Tensor)>> {
        let val = |v: Var| self.value(v);
        let needs = |v: Var| self.requires_grad(v);
        let mut out = Vec::new();
        match op {
            Op::Leaf | Op::NoGrad => {}
            Op::Unary {
                x,
                op: super::Unary::Relu,
            } => {
                let xv = val(*x)?;
                let d: Vec<f32> = xv
                    .data()
                    .iter()
                    .zip(g.data())
                    .map(|(&a, &gg)| if a > 0.0 { gg } else { 0.0 })
                    .collect();
                out.push((*x, Tensor::from_vec(xv.shape().to_vec(), d)?));
            }
            Op::Unary { x, op } => {
                let xv = val(*x)?;
                let d: Vec<f32> = xv
                    .data()
                    .iter()
                    .zip(y.data())
                    .zip(g.data())
                    .map(|((&a, &b), &gg)| gg * op.derivative(a, b))
                    .collect();
                out.push((*x, Tensor::from_vec(xv.shape().to_vec(), d)?));
            }
            Op::Binary { a, b, op } => {
                let (av, bv) = (val(*a)?, val(*b)?);
                let (ga, gb) = match op {
                    Binary::Add => (g.clone(), g.clone()),
                    Binary::Sub => (g.clone(), g.map(|v| -v)),
                    Binary::Mul => (
                        broadcast_zip(g, bv, "mul backward", |x, y| x * y)?,
                        broadcast_zip(g, av, "mul backward", |x, y| x * y)?,
                    ),
                    Binary::Div => {
                        let ga = broadcast_zip(g, bv, "div backward", |x, y| x / y)?;
                        // d(a/b)/db = -(a/b)/b = -y/b
                        let gy = g.zip_map(y, "div backward", |x, q| x * q)?;
                        let gb = broadcast_zip(&gy, bv, "div backward", |x, y| -x / y)?;
                        (ga, gb)
                    }
                };
                if needs(*a) {
                    out.push((*a, reduce_to_shape(&ga, av.shape())?));
                }
                if needs(*b) {
                    out.push((*b, reduce_to_shape(&gb, bv.shape())?));
                }
            }
            Op::MatMul { a, b } => {
                let (av, bv) = (val(*a)?, val(*b)?);
                if needs(*a) {
                    out.push((*a, cpu::matmul(g, bv, false, true)?));
                }
                if needs(*b) {
                    out.push((*b, cpu::matmul(av, g, true, false)?));
                }
            }
            Op::Linear { x, w, b } => {
                let (xv, wv) = (val(*x)?, val(*w)?);
                if needs(*x) {
                    out.push((*x, cpu::matmul(g, wv, false, false)?));
                }
                if needs(*w) {
                    out.push((*w, cpu::matmul(g, xv, true, false)?));
                }
                if let Some(b) = b {
                    out.push((*b, reduce_to_shape(g, &[wv.shape()[0]])?));
                }
            }
            Op::Conv2d { x, w, b, params } => {
                let grads = cpu::conv2d_backward(val(*x)?, val(*w)?, g, params, needs(*x))?;
                if let Some(gx) = grads.x {
                    out.push((*x, gx));
                }
                out.push((*w, grads.w));
                if let Some(b) = b {
                    out.push((*b, grads.bias));
                }
            }
            Op::MaxPool2d { x, argmax, .. } => {
                out.push((*x, cpu::max_pool2d_backward(g, argmax, val(*x)?.shape())?));
            }
            Op::AvgPool2d { x, params } => {
                out.push((*x, cpu::avg_pool2d_backward(g, val(*x)?.shape(), params)?));
            }
            Op::BatchNormTrain {
                x,
                gamma,
                beta,
                saved,
            } => {
                let r = cpu::batch_norm_train_backward(val(*x)?, val(*gamma)?, saved, g)?;
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
                let r = cpu::batch_norm_eval_backward(
                    val(*gamma)?,
                    running_var,
                    *eps,
                    val(*x)?,
                    running_mean,
                    g,
                )?;
                out.extend([(*x, r.x), (*gamma, r.gamma), (*beta, r.beta)]);
            }
            Op::Sum { x, axes, .. } | Op::Mean { x, axes, .. } => {
                let xs = val(*x)?.shape().to_vec();
                let kd = keepdim_shape(&xs, axes, "sum backward")?;
                let mut gx = broadcast_to(&g.reshape(kd)?, &xs)?;
                if matches!(op, Op::Mean { .. }) {
                    let count: usize = axes.iter().map(|&a| xs[a]).product();
                    let inv = 1.0 / count.max(1) as f32;
                    gx.data_mut().iter_mut().for_each(|v| *v *= inv);
                }
                out.push((*x, gx));
            }
            Op::Reshape { x } => out.push((*x, g.reshape(val(*x)?.shape().to_vec())?)),
            Op::Concat { xs, axis } => {
                let (outer, total, inner) = split_at_axis(g.shape(), *axis);
                let mut offset = 0;
                for v in xs {
                    let s = val(*v)?.shape().to_vec();
                    let len = s[*axis];
                    let mut d = Vec::with_capacity(outer * len * inner);
                    for o in 0..outer {
                        let start = (o * total + offset) * inner;
                        d.extend_from_slice(&g.data()[start..start + len * inner]);
                    }
                    offset += len;
                    out.push((*v, Tensor::from_vec(s, d)?));
                }
            }
            Op::IndexSelect { x, axis, indices } => {
                let s = val(*x)?.shape().to_vec();
                out.push((*x, index_scatter_add(g, &s, *axis, indices)?));
            }
            Op::Dropout { x, mask } => {
                let d = g.data().iter().zip(mask).map(|(a, m)| a * m).collect();
                out.push((*x, Tensor::from_vec(g.shape().to_vec(), d)?));
            }
            Op::LogSoftmax { x } => {
                // dx = g - softmax · Σ_row g, with softmax = exp(y)
                let cols = y.shape()[1].max(1);
                let mut d = g.clone();
                for (dr, yr) in d.data_mut().chunks_mut(cols).zip(y.data().chunks(cols)) {
                    let s: f32 = dr.iter().sum();
                    dr.iter_mut().zip(yr).for_each(|(v, &l)| *v -= l.exp() * s);
                }
                out.push((*x, d));
            }
            Op::CrossEntropy { logits, labels } => {
                // d/dlogits of mean NLL = (softmax - onehot) / N
                let lv = val(*logits)?;
                let k = lv.shape()[1];
                let mut d = log_softmax_rows(lv)?;
                let scale = g.data()[0] / labels.len() as f32;
                for (row, &l) in d.data_mut().chunks_mut(k).zip(labels) {
                    row.iter_mut().for_each(|v| *v = v.exp());
                    row[l] -= 1.0;
                    row.iter_mut().for_each(|v| *v *= scale);
                }
                out.push((*logits, d));
            }
            Op::Custom { inputs, op } => {
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
