//! The CPU backend: the [`crate::cpu`] kernels (GEMM, convolution, pooling,
//! batch norm) and the loops of [`super::cpu_ops`] and
//! [`super::cpu_broadcast`], on host storage.

use super::{cpu_broadcast, cpu_ops, cpu_sbp};
use super::{AdamStep, Backend, BnBatchStats, BnNorm, BnTrainOutput, Device, Residual, SgdStep};
use super::{SbpForward, SbpGateGrads, SbpKl, SbpNoiseArgs, SbpSaved, SbpStats};
use crate::autograd::{Binary, Unary};
use crate::cpu::{self, BnGrads, BnSaved, Conv2dGrads, Conv2dParams, PoolParams};
use crate::error::Result;
use crate::storage::Indices;
use crate::tensor::Tensor;
use rand::RngCore;

/// Runs every op on the host.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

fn vector(v: Vec<f32>) -> Result<Tensor> {
    Tensor::from_vec([v.len()], v)
}

impl Backend for CpuBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        Ok(Tensor::full(shape.to_vec(), value))
    }

    fn unary(&self, x: &Tensor, op: Unary) -> Result<Tensor> {
        Tensor::from_vec(x.shape().to_vec(), cpu_ops::unary(op, x.data()))
    }

    fn unary_backward(&self, op: Unary, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        x.expect_same_shape(g, "unary backward")?;
        x.expect_same_shape(y, "unary backward")?;
        let d = cpu_ops::unary_backward(op, x.data(), y.data(), g.data());
        Tensor::from_vec(x.shape().to_vec(), d)
    }

    fn binary(&self, a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
        cpu_ops::binary(a, b, op)
    }

    fn binary_backward(
        &self,
        op: Binary,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        cpu_ops::binary_backward(op, a, b, y, g)
    }

    fn add_assign(&self, acc: &mut Tensor, x: &Tensor) -> Result<()> {
        acc.add_assign(x)
    }

    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        cpu_broadcast::reduce_to_shape(x, shape)
    }

    fn broadcast_to(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        cpu_broadcast::broadcast_to(x, shape)
    }

    fn all_finite(&self, xs: &[&Tensor]) -> Result<bool> {
        Ok(xs.iter().all(|x| x.all_finite()))
    }

    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        cpu::matmul(a, b, trans_a, trans_b)
    }

    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        cpu::conv2d_forward(x, w, bias, p)
    }

    fn conv2d_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        p: &Conv2dParams,
        need_x: bool,
        need_bias: bool,
    ) -> Result<Conv2dGrads> {
        cpu::conv2d_backward_with(x, w, g, p, need_x, need_bias)
    }

    fn conv2d_relu(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        cpu::conv2d_relu_forward(x, w, bias, p, residual)
    }

    fn max_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<(Tensor, Indices)> {
        let (y, argmax) = cpu::max_pool2d_forward(x, p)?;
        let idx = Indices::from_vec(y.shape().to_vec(), argmax)?;
        Ok((y, idx))
    }

    fn max_pool2d_backward(
        &self,
        g: &Tensor,
        argmax: &Indices,
        x_shape: &[usize],
        _p: &PoolParams,
    ) -> Result<Tensor> {
        cpu::max_pool2d_backward(g, argmax.data(), x_shape)
    }

    fn avg_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<Tensor> {
        cpu::avg_pool2d_forward(x, p)
    }

    fn avg_pool2d_backward(&self, g: &Tensor, x_shape: &[usize], p: &PoolParams) -> Result<Tensor> {
        cpu::avg_pool2d_backward(g, x_shape, p)
    }

    fn batch_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnTrainOutput> {
        let (y, saved, var) = cpu::batch_norm_train(x, gamma, beta, eps)?;
        Ok(BnTrainOutput {
            y,
            stats: BnBatchStats {
                mean: vector(saved.mean)?,
                inv_std: vector(saved.inv_std)?,
            },
            var: vector(var)?,
        })
    }

    fn batch_norm_train_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        stats: &BnBatchStats,
        g: &Tensor,
    ) -> Result<BnGrads> {
        let saved = BnSaved {
            mean: stats.mean.data().to_vec(),
            inv_std: stats.inv_std.data().to_vec(),
        };
        cpu::batch_norm_train_backward(x, gamma, &saved, g)
    }

    fn batch_norm_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        let (rm, rv) = (running_mean.data(), running_var.data());
        cpu::batch_norm_eval(x, gamma, beta, rm, rv, eps)
    }

    fn batch_norm_eval_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        g: &Tensor,
    ) -> Result<BnGrads> {
        let (rm, rv) = (running_mean.data(), running_var.data());
        cpu::batch_norm_eval_backward(gamma, rv, eps, x, rm, g)
    }

    fn batch_norm_relu_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        residual: Option<&Tensor>,
        eps: f32,
    ) -> Result<BnTrainOutput> {
        let (y, saved, var) = cpu::batch_norm_relu_train(x, gamma, beta, residual, eps)?;
        Ok(BnTrainOutput {
            y,
            stats: BnBatchStats {
                mean: vector(saved.mean)?,
                inv_std: vector(saved.inv_std)?,
            },
            var: vector(var)?,
        })
    }

    fn conv2d_batch_norm_train(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
        gamma: &Tensor,
        beta: &Tensor,
        relu: Option<Option<&Tensor>>,
        eps: f32,
    ) -> Result<(Tensor, BnTrainOutput)> {
        let out = cpu::conv2d_batch_norm_train(x, w, bias, p, gamma, beta, relu, eps)?;
        Ok((
            out.z,
            BnTrainOutput {
                y: out.y,
                stats: BnBatchStats {
                    mean: vector(out.saved.mean)?,
                    inv_std: vector(out.saved.inv_std)?,
                },
                var: vector(out.var)?,
            },
        ))
    }

    fn batch_norm_relu_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        residual: Option<&Tensor>,
        running: &BnNorm,
    ) -> Result<Tensor> {
        let (mean, var, eps) = running.running("batch_norm_relu_eval")?;
        cpu::batch_norm_relu_eval(x, gamma, beta, residual, mean.data(), var.data(), eps)
    }

    fn batch_norm_relu_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        norm: &BnNorm,
        y: &Tensor,
        g: &Tensor,
        residual: Residual,
    ) -> Result<(BnGrads, Option<Tensor>)> {
        match norm {
            BnNorm::Batch(stats) => {
                let saved = BnSaved {
                    mean: stats.mean.data().to_vec(),
                    inv_std: stats.inv_std.data().to_vec(),
                };
                cpu::batch_norm_relu_train_backward(x, gamma, beta, &saved, y, g, residual)
            }
            BnNorm::Running { mean, var, eps } => {
                let (rm, rv) = (mean.data(), var.data());
                let need_residual = residual == Residual::Grad;
                cpu::batch_norm_relu_eval_backward(x, gamma, rm, rv, *eps, y, g, need_residual)
            }
        }
    }

    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        cpu_ops::log_softmax_rows(x)
    }

    fn log_softmax_backward(&self, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        cpu_ops::log_softmax_backward(y, g)
    }

    fn cross_entropy(&self, logits: &Tensor, labels: &Indices) -> Result<Tensor> {
        cpu_ops::cross_entropy(logits, labels.data())
    }

    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        labels: &Indices,
        g: &Tensor,
    ) -> Result<Tensor> {
        cpu_ops::cross_entropy_backward(logits, labels.data(), g)
    }

    fn index_select(&self, x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
        cpu_ops::index_select(x, axis, indices)
    }

    fn index_add(
        &self,
        g: &Tensor,
        shape: &[usize],
        axis: usize,
        indices: &[usize],
    ) -> Result<Tensor> {
        cpu_ops::index_add(g, shape, axis, indices)
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        cpu_ops::concat(xs, axis)
    }

    fn split(&self, g: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        cpu_ops::split(g, axis, sizes)
    }

    fn dropout_mask(&self, shape: &[usize], p: f32, rng: &mut dyn RngCore) -> Result<Tensor> {
        cpu_ops::dropout_mask(shape, p, rng)
    }

    fn sbp_noise_forward(
        &self,
        x: &Tensor,
        mu: &Tensor,
        log_sigma: &Tensor,
        noise: &SbpNoiseArgs,
    ) -> Result<SbpForward> {
        cpu_sbp::forward(x, mu, log_sigma, noise)
    }

    fn sbp_noise_backward(&self, x: &Tensor, g: &Tensor, saved: &SbpSaved) -> Result<SbpGateGrads> {
        cpu_sbp::backward(x, g, saved)
    }

    fn sbp_stats(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpStats> {
        cpu_sbp::stats(mu, log_sigma)
    }

    fn sbp_kl(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpKl> {
        cpu_sbp::kl(mu, log_sigma)
    }

    fn sgd_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        velocity: Option<&mut Tensor>,
        h: &SgdStep,
    ) -> Result<()> {
        cpu_ops::sgd_update(w, g, velocity, h)
    }

    fn ema_update(&self, r: &mut Tensor, b: &Tensor, m: f32) -> Result<()> {
        cpu_ops::ema_update(r, b, m)
    }

    fn adam_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        h: &AdamStep,
    ) -> Result<()> {
        cpu_ops::adam_update(w, g, m, v, h)
    }
}
