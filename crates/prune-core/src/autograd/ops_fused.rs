//! Fused operations: several layers recorded as one node, so the values in
//! between are neither written to memory nor kept on the tape. Each gives
//! the same values as the chain of single ops it replaces (see the
//! backend's implementation for how closely).

use super::{Op, Tape, Var};
use crate::backend::BnNorm;
use crate::cpu::Conv2dParams;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

impl Tape<'_> {
    /// Checks that `residual`, when given, has the shape of `x`.
    fn check_residual(&self, op: &'static str, x: Var, residual: Option<Var>) -> Result<()> {
        if let Some(r) = residual {
            let (xs, rs) = (self.shape(x)?, self.shape(r)?);
            if xs != rs {
                return Err(CoreError::ShapeMismatch {
                    op,
                    lhs: xs.to_vec(),
                    rhs: rs.to_vec(),
                });
            }
        }
        Ok(())
    }

    /// `relu(batch_norm(x) + residual)` with batch statistics (training):
    /// [`Tape::batch_norm_train`], the residual add of a ResNet block
    /// (`residual` shaped like `x`; statistics of `x` alone) and the ReLU as
    /// one node. Returns the output, the batch mean and the unbiased batch
    /// variance of `x` (for the running statistics).
    pub fn batch_norm_relu_train(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        residual: Option<Var>,
        eps: f32,
    ) -> Result<(Var, Tensor, Tensor)> {
        let op = "batch_norm_relu";
        let mut vars = vec![x, gamma, beta];
        vars.extend(residual);
        let backend = self.backend(op, &vars)?;
        self.check_residual(op, x, residual)?;
        let r = residual.map(|r| self.value(r)).transpose()?;
        let (xv, gv, bv) = (self.value(x)?, self.value(gamma)?, self.value(beta)?);
        let out = backend.batch_norm_relu_train(xv, gv, bv, r, eps)?;
        let mean = out.stats.mean.clone();
        let v = self.push(
            out.y,
            Op::BatchNormRelu {
                x,
                gamma,
                beta,
                residual,
                norm: BnNorm::Batch(out.stats),
            },
        );
        Ok((v, mean, out.var))
    }

    /// `batch_norm_train(conv2d(x, w, b))`, then `relu(· + residual)` when
    /// `relu` is `Some(residual)`, recorded as the two nodes of
    /// [`Tape::conv2d`] followed by [`Tape::batch_norm_train`] or
    /// [`Tape::batch_norm_relu_train`] (same values, same backward passes)
    /// but computed together, so that the backend can form the batch
    /// statistics while it writes the convolution's output. Returns the
    /// output, the convolution's output, and the batch mean and unbiased
    /// batch variance of the latter (for the running statistics).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_batch_norm_train(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        params: Conv2dParams,
        gamma: Var,
        beta: Var,
        relu: Option<Option<Var>>,
        eps: f32,
    ) -> Result<(Var, Var, Tensor, Tensor)> {
        let op = "conv2d_batch_norm";
        let residual = relu.flatten();
        let mut vars = vec![x, w, gamma, beta];
        vars.extend(b.iter().chain(&residual));
        let backend = self.backend(op, &vars)?;
        if let Some(r) = residual {
            let (xs, ws, rs) = (self.shape(x)?, self.shape(w)?, self.shape(r)?);
            let fits = crate::cpu::conv2d_out_shape(xs, ws, &params).is_ok_and(|o| rs == o);
            if !fits {
                return Err(CoreError::ShapeMismatch {
                    op: "conv2d_batch_norm (residual vs output)",
                    lhs: xs.to_vec(),
                    rhs: rs.to_vec(),
                });
            }
        }
        let bias = b.map(|b| self.value(b)).transpose()?;
        let r = residual.map(|r| self.value(r)).transpose()?;
        let (xv, wv) = (self.value(x)?, self.value(w)?);
        let (gv, bv) = (self.value(gamma)?, self.value(beta)?);
        let (z, out) =
            backend.conv2d_batch_norm_train(xv, wv, bias, &params, gv, bv, relu.map(|_| r), eps)?;
        let mean = out.stats.mean.clone();
        let zv = self.push(z, Op::Conv2d { x, w, b, params });
        let y = match relu {
            Some(residual) => Op::BatchNormRelu {
                x: zv,
                gamma,
                beta,
                residual,
                norm: BnNorm::Batch(out.stats),
            },
            None => Op::BatchNormTrain {
                x: zv,
                gamma,
                beta,
                stats: out.stats,
            },
        };
        Ok((self.push(out.y, y), zv, mean, out.var))
    }

    /// `relu(batch_norm(x) + residual)` with running statistics
    /// (evaluation), as one node; see [`Tape::batch_norm_relu_train`].
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_relu_eval(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        residual: Option<Var>,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
    ) -> Result<Var> {
        let op = "batch_norm_relu";
        let mut vars = vec![x, gamma, beta];
        vars.extend(residual);
        let backend = self.backend(op, &vars)?;
        crate::backend::backend_of(op, &[self.value(x)?, running_mean, running_var])?;
        self.check_residual(op, x, residual)?;
        let norm = BnNorm::Running {
            mean: running_mean.clone(),
            var: running_var.clone(),
            eps,
        };
        let r = residual.map(|r| self.value(r)).transpose()?;
        let (xv, gv, bv) = (self.value(x)?, self.value(gamma)?, self.value(beta)?);
        let y = backend.batch_norm_relu_eval(xv, gv, bv, r, &norm)?;
        Ok(self.push(
            y,
            Op::BatchNormRelu {
                x,
                gamma,
                beta,
                residual,
                norm,
            },
        ))
    }

    /// `relu(conv2d(x, w, b) + residual)` as one node (`residual`, when
    /// given, shaped like the convolution's output): the bias, the residual
    /// add and the ReLU are applied to the convolution's output while it is
    /// in cache.
    pub fn conv2d_relu(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        params: Conv2dParams,
        residual: Option<Var>,
    ) -> Result<Var> {
        let mut vars = vec![x, w];
        vars.extend(b.iter().chain(&residual));
        let backend = self.backend("conv2d_relu", &vars)?;
        let bias = b.map(|b| self.value(b)).transpose()?;
        let r = residual.map(|r| self.value(r)).transpose()?;
        let y = backend.conv2d_relu(self.value(x)?, self.value(w)?, bias, &params, r)?;
        if let Some(r) = r {
            if r.shape() != y.shape() {
                return Err(CoreError::ShapeMismatch {
                    op: "conv2d_relu (residual vs output)",
                    lhs: r.shape().to_vec(),
                    rhs: y.shape().to_vec(),
                });
            }
        }
        Ok(self.push(
            y,
            Op::Conv2dRelu {
                x,
                w,
                b,
                params,
                residual,
            },
        ))
    }
}
