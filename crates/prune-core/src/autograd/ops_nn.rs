//! Neural-network operations: matmul/linear, conv2d, pooling, batch norm,
//! dropout, log-softmax and cross-entropy. The arithmetic runs on the
//! inputs' [`Backend`](crate::backend::Backend); these wrappers validate
//! shapes and record nodes.

use super::{Binary, Op, Tape, Var};
use crate::cpu::{Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::Indices;
use crate::tensor::Tensor;
use rand::Rng;

impl Tape<'_> {
    /// `a @ b` for 2-D tensors.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let backend = self.backend("matmul", &[a, b])?;
        let y = backend.matmul(self.value(a)?, self.value(b)?, false, false)?;
        Ok(self.push(y, Op::MatMul { a, b }))
    }

    /// Fully connected layer: `x @ wᵀ + b`, `x: [N, in]`, `w: [out, in]`, `b: [out]`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let mut vars = vec![x, w];
        vars.extend(b);
        let backend = self.backend("linear", &vars)?;
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
        let mut y = backend.matmul(xv, wv, false, true)?;
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
            // [N, out] + [out], broadcast over the rows
            y = backend.binary(&y, bv, Binary::Add)?;
        }
        Ok(self.push(y, Op::Linear { x, w, b }))
    }

    /// 2-D convolution, `x: [N, Cin, H, W]`, `w: [Cout, Cin/groups, kh, kw]`.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, params: Conv2dParams) -> Result<Var> {
        let mut vars = vec![x, w];
        vars.extend(b);
        let backend = self.backend("conv2d", &vars)?;
        let bias = match b {
            Some(b) => Some(self.value(b)?),
            None => None,
        };
        let y = backend.conv2d(self.value(x)?, self.value(w)?, bias, &params)?;
        Ok(self.push(y, Op::Conv2d { x, w, b, params }))
    }

    /// Max pooling.
    pub fn max_pool2d(&mut self, x: Var, params: PoolParams) -> Result<Var> {
        let xv = self.value(x)?;
        let (y, argmax) = xv.backend().max_pool2d(xv, &params)?;
        Ok(self.push(y, Op::MaxPool2d { x, params, argmax }))
    }

    /// Average pooling (padding counted in the divisor).
    pub fn avg_pool2d(&mut self, x: Var, params: PoolParams) -> Result<Var> {
        let xv = self.value(x)?;
        let y = xv.backend().avg_pool2d(xv, &params)?;
        Ok(self.push(y, Op::AvgPool2d { x, params }))
    }

    /// Batch norm with batch statistics. Returns the output, the batch mean
    /// and the unbiased batch variance (for the caller's running statistics),
    /// both `[C]` on the input's device.
    pub fn batch_norm_train(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        eps: f32,
    ) -> Result<(Var, Tensor, Tensor)> {
        let backend = self.backend("batch_norm", &[x, gamma, beta])?;
        let out =
            backend.batch_norm_train(self.value(x)?, self.value(gamma)?, self.value(beta)?, eps)?;
        let mean = out.stats.mean.clone();
        let v = self.push(
            out.y,
            Op::BatchNormTrain {
                x,
                gamma,
                beta,
                stats: out.stats,
            },
        );
        Ok((v, mean, out.var))
    }

    /// Batch norm with running statistics (`[C]` each).
    pub fn batch_norm_eval(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
    ) -> Result<Var> {
        let backend = self.backend("batch_norm", &[x, gamma, beta])?;
        crate::backend::backend_of("batch_norm", &[self.value(x)?, running_mean, running_var])?;
        let y = backend.batch_norm_eval(
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
                running_mean: running_mean.clone(),
                running_var: running_var.clone(),
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
        let backend = xv.backend();
        let mut rng = rng;
        let mask = backend.dropout_mask(xv.shape(), p, &mut rng)?;
        let y = backend.binary(xv, &mask, Binary::Mul)?;
        Ok(self.push(y, Op::Dropout { x, mask }))
    }

    /// Log-softmax over the last axis of a `[N, K]` tensor.
    pub fn log_softmax(&mut self, x: Var) -> Result<Var> {
        let xv = self.value(x)?;
        let y = xv.backend().log_softmax(xv)?;
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
        let labels = Indices::from_usize(labels)?.to_device(lv.device())?;
        let loss = lv.backend().cross_entropy(lv, &labels)?;
        Ok(self.push(loss, Op::CrossEntropy { logits, labels }))
    }
}
