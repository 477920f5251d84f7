//! Neural-network operations: matmul/linear, conv2d, pooling, batch norm,
//! dropout, log-softmax and cross-entropy. The arithmetic lives in
//! [`crate::cpu`]; these wrappers validate shapes and record nodes.

use super::{Op, Tape, Var};
use crate::cpu::{self, Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;
use rand::Rng;

/// Row-wise log-softmax of a `[rows, cols]` tensor (max-shifted for stability).
pub(crate) fn log_softmax_rows(x: &Tensor) -> Result<Tensor> {
    x.expect_rank(2, "log_softmax")?;
    let cols = x.shape()[1];
    let mut out = x.clone();
    if cols == 0 {
        return Ok(out);
    }
    for row in out.data_mut().chunks_mut(cols) {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
        row.iter_mut().for_each(|v| *v -= lse);
    }
    Ok(out)
}

impl Tape<'_> {
    /// `a @ b` for 2-D tensors.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = cpu::matmul(self.value(a)?, self.value(b)?, false, false)?;
        Ok(self.push(y, Op::MatMul { a, b }))
    }

    /// Fully connected layer: `x @ wᵀ + b`, `x: [N, in]`, `w: [out, in]`, `b: [out]`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xv, wv) = (self.value(x)?, self.value(w)?);
        xv.expect_rank(2, "linear (input)")?;
        wv.expect_rank(2, "linear (weight)")?;
        if xv.shape()[1] != wv.shape()[1] {
            return Err(CoreError::ShapeMismatch {
                op: "linear",
                lhs: xv.shape().to_vec(),
                rhs: wv.shape().to_vec(),
            });
        }
        let mut y = cpu::matmul(xv, wv, false, true)?;
        if let Some(b) = b {
            let bv = self.value(b)?;
            let out = wv.shape()[0];
            if bv.shape() != [out] {
                return Err(CoreError::ShapeMismatch {
                    op: "linear (bias)",
                    lhs: vec![out],
                    rhs: bv.shape().to_vec(),
                });
            }
            let bd = bv.data().to_vec();
            for row in y.data_mut().chunks_mut(out.max(1)) {
                row.iter_mut().zip(&bd).for_each(|(v, b)| *v += b);
            }
        }
        Ok(self.push(y, Op::Linear { x, w, b }))
    }

    /// 2-D convolution, `x: [N, Cin, H, W]`, `w: [Cout, Cin/groups, kh, kw]`.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, params: Conv2dParams) -> Result<Var> {
        let bias = match b {
            Some(b) => Some(self.value(b)?),
            None => None,
        };
        let y = cpu::conv2d_forward(self.value(x)?, self.value(w)?, bias, &params)?;
        Ok(self.push(y, Op::Conv2d { x, w, b, params }))
    }

    /// Max pooling.
    pub fn max_pool2d(&mut self, x: Var, params: PoolParams) -> Result<Var> {
        let (y, argmax) = cpu::max_pool2d_forward(self.value(x)?, &params)?;
        Ok(self.push(y, Op::MaxPool2d { x, params, argmax }))
    }

    /// Average pooling (padding counted in the divisor).
    pub fn avg_pool2d(&mut self, x: Var, params: PoolParams) -> Result<Var> {
        let y = cpu::avg_pool2d_forward(self.value(x)?, &params)?;
        Ok(self.push(y, Op::AvgPool2d { x, params }))
    }

    /// Batch norm with batch statistics. Returns the output, the batch mean
    /// and the unbiased batch variance (for the caller's running statistics).
    pub fn batch_norm_train(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f32,
    ) -> Result<(Var, Vec<f32>, Vec<f32>)> {
        let (y, saved, var) =
            cpu::batch_norm_train(self.value(x)?, self.value(gamma)?, self.value(beta)?, eps)?;
        let mean = saved.mean.clone();
        let v = self.push(
            y,
            Op::BatchNormTrain {
                x,
                gamma,
                beta,
                saved,
            },
        );
        Ok((v, mean, var))
    }

    /// Batch norm with running statistics.
    pub fn batch_norm_eval(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        running_mean: &[f32],
        running_var: &[f32],
        eps: f32,
    ) -> Result<Var> {
        let y = cpu::batch_norm_eval(
            self.value(x)?,
            self.value(gamma)?,
            self.value(beta)?,
            running_mean,
            running_var,
            eps,
        )?;
        Ok(self.push(
            y,
            Op::BatchNormEval {
                x,
                gamma,
                beta,
                running_mean: running_mean.to_vec(),
                running_var: running_var.to_vec(),
                eps,
            },
        ))
    }

    /// Inverted dropout with drop probability `p` (identity when `p == 0`).
    pub fn dropout<R: Rng + ?Sized>(&mut self, x: Var, p: f32, rng: &mut R) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(CoreError::InvalidArgument {
                op: "dropout",
                reason: format!("probability must be in [0, 1), got {p}"),
            });
        }
        let xv = self.value(x)?;
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..xv.numel())
            .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
            .collect();
        let y = Tensor::from_vec(
            xv.shape().to_vec(),
            xv.data().iter().zip(&mask).map(|(a, m)| a * m).collect(),
        )?;
        Ok(self.push(y, Op::Dropout { x, mask }))
    }

    /// Log-softmax over the last axis of a `[N, K]` tensor.
    pub fn log_softmax(&mut self, x: Var) -> Result<Var> {
        let y = log_softmax_rows(self.value(x)?)?;
        Ok(self.push(y, Op::LogSoftmax { x }))
    }

    /// Mean cross-entropy of `[N, K]` logits against `labels` (a scalar).
    pub fn cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Result<Var> {
        let lv = self.value(logits)?;
        lv.expect_rank(2, "cross_entropy")?;
        let (n, k) = (lv.shape()[0], lv.shape()[1]);
        if labels.len() != n || n == 0 {
            return Err(CoreError::ShapeMismatch {
                op: "cross_entropy (labels)",
                lhs: lv.shape().to_vec(),
                rhs: vec![labels.len()],
            });
        }
        if let Some(&bad) = labels.iter().find(|&&l| l >= k) {
            return Err(CoreError::InvalidArgument {
                op: "cross_entropy",
                reason: format!("label {bad} out of range for {k} classes"),
            });
        }
        let lp = log_softmax_rows(lv)?;
        let loss: f64 = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| -(lp.data()[i * k + l] as f64))
            .sum::<f64>()
            / n as f64;
        Ok(self.push(
            Tensor::scalar(loss as f32),
            Op::CrossEntropy {
                logits,
                labels: labels.to_vec(),
            },
        ))
    }
}
