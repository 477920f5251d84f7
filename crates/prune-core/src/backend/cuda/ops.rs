//! The CUDA backend: the [`Backend`] trait on a device, each op delegating to the file
//! that composes it from the prune-kernels wrappers:
//!
//! | op | file | kernels |
//! | --- | --- | --- |
//! | unary, its backward | `elementwise.rs` | `ew_unary`; backward as `ew_binary` products (ReLU: `ReluGrad`; abs, clamp: two `ReluGrad` masks) |
//! | binary, backward, broadcast | `elementwise.rs` | `ew_binary` with NumPy broadcasting |
//! | sum to shape, all-finite | `elementwise.rs` | `reduce_axes` (all-finite: `Σ x·0` is NaN iff some `x` is not finite) |
//! | dropout mask | `elementwise.rs` | `dropout_fwd` on ones (Philox keyed by two draws of the caller's RNG) |
//! | log-softmax, cross-entropy | `loss.rs` | `log_softmax_fwd/bwd`, `nll_fwd/bwd`, a mean by `reduce_rows` |
//! | index-select / add, concat / split | `channels.rs` | `index_select_channels`, `index_add_channels`, `copy_channels` on `[outer, C, inner]` views |
//! | SGD, Adam | `update.rs` | `sgd_step`, `adam_step` |
//! | SBP noise, statistics, KL | `sbp.rs` | `sbp_forward`, `sbp_backward_tiles/finalize`, `sbp_stats`, `sbp_kl_grad` |
//! | GEMM, convolution, pooling, batch norm | `nn.rs` | cuBLAS, `masked_conv.cu`, `pooling.cu`, `batchnorm.cu` |
//!
//! `buffers.rs` holds the tensor ↔ device-buffer glue they share.

use super::buffers::idx;
use super::{channels, elementwise, loss, nn, sbp, update, GpuBackend, GpuDevice, GpuRuntime};
use crate::autograd::{Binary, Unary};
use crate::backend::{
    AdamStep, Backend, BnBatchStats, BnTrainOutput, Device, SbpForward, SbpGateGrads, SbpKl,
    SbpNoiseArgs, SbpSaved, SbpStats, SgdStep,
};
use crate::cpu::{BnGrads, Conv2dGrads, Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::{Indices, Storage};
use crate::tensor::Tensor;
use rand::RngCore;
use std::sync::Arc;

use super::elementwise::full;
// The helpers `nn.rs` composes its ops from, under their former paths.
pub(super) use super::buffers::{sl, wrap};
pub(super) use super::elementwise::{bin, reduce};

impl<R: GpuRuntime> GpuBackend<R> {
    /// The device of the first tensor (the tape checked they share one), or this
    /// backend's device when there is none.
    fn dev_of(&self, ts: &[&Tensor]) -> Result<Arc<GpuDevice<R>>> {
        match ts.first().map(|t| t.storage()) {
            Some(Storage::Cuda(s)) => Ok(s.gpu_device::<R>()?.clone()),
            // A missing device is reported first, then the misplaced tensor.
            Some(Storage::Cpu(_)) => {
                self.dev()?;
                Err(CoreError::InvalidArgument {
                    op: "cuda backend",
                    reason: "a host tensor was given to the CUDA backend".into(),
                })
            }
            None => self.dev(),
        }
    }
}

impl<R: GpuRuntime> Backend for GpuBackend<R> {
    fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    fn full(&self, shape: &[usize], value: f32) -> Result<Tensor> {
        full(&self.dev()?, shape, value)
    }

    fn unary(&self, x: &Tensor, op: Unary) -> Result<Tensor> {
        elementwise::unary(&self.dev_of(&[x])?, x, op)
    }

    fn unary_backward(&self, op: Unary, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        elementwise::unary_backward(&self.dev_of(&[x, y, g])?, op, x, y, g)
    }

    fn binary(&self, a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
        elementwise::binary(&self.dev_of(&[a, b])?, a, b, op)
    }

    fn binary_backward(
        &self,
        op: Binary,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        elementwise::binary_backward(&self.dev_of(&[a, b, g])?, op, a, b, y, g)
    }

    fn add_assign(&self, acc: &mut Tensor, x: &Tensor) -> Result<()> {
        acc.expect_same_shape(x, "add_assign")?;
        *acc = elementwise::binary(&self.dev_of(&[acc, x])?, acc, x, Binary::Add)?;
        Ok(())
    }

    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        elementwise::sum_to_shape(&self.dev_of(&[x])?, x, shape)
    }

    fn broadcast_to(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
        elementwise::broadcast_to(&self.dev_of(&[x])?, x, shape)
    }

    fn all_finite(&self, xs: &[&Tensor]) -> Result<bool> {
        elementwise::all_finite(&self.dev_of(xs)?, xs)
    }

    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        nn::matmul(&self.dev_of(&[a, b])?, a, b, trans_a, trans_b)
    }

    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor> {
        nn::conv2d(&self.dev_of(&[x, w])?, x, w, bias, p)
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
        nn::conv2d_backward(&self.dev_of(&[x, w, g])?, x, w, g, p, need_x, need_bias)
    }

    fn max_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<(Tensor, Indices)> {
        nn::max_pool2d(&self.dev_of(&[x])?, x, p)
    }

    fn max_pool2d_backward(
        &self,
        g: &Tensor,
        argmax: &Indices,
        x_shape: &[usize],
        p: &PoolParams,
    ) -> Result<Tensor> {
        let d = self.dev_of(&[g])?;
        let am = idx(&d, argmax)?;
        nn::max_pool2d_backward(&d, g, &am, x_shape, p)
    }

    fn avg_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<Tensor> {
        nn::avg_pool2d(&self.dev_of(&[x])?, x, x.shape(), p, false)
    }

    fn avg_pool2d_backward(&self, g: &Tensor, x_shape: &[usize], p: &PoolParams) -> Result<Tensor> {
        nn::avg_pool2d(&self.dev_of(&[g])?, g, x_shape, p, true)
    }

    fn batch_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnTrainOutput> {
        nn::batch_norm_train(&self.dev_of(&[x, gamma, beta])?, x, gamma, beta, eps)
    }

    fn batch_norm_train_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        stats: &BnBatchStats,
        g: &Tensor,
    ) -> Result<BnGrads> {
        let d = self.dev_of(&[x, gamma, g])?;
        nn::batch_norm_backward(&d, x, gamma, &stats.mean, &stats.inv_std, g, true)
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
        let d = self.dev_of(&[x, gamma, beta, running_mean, running_var])?;
        let inv_std = nn::inv_std(&d, running_var, eps)?;
        nn::batch_norm_apply(&d, x, gamma, beta, running_mean, &inv_std)
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
        let d = self.dev_of(&[x, gamma, running_mean, running_var, g])?;
        let inv_std = nn::inv_std(&d, running_var, eps)?;
        nn::batch_norm_backward(&d, x, gamma, running_mean, &inv_std, g, false)
    }

    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        loss::log_softmax(&self.dev_of(&[x])?, x)
    }

    fn log_softmax_backward(&self, y: &Tensor, g: &Tensor) -> Result<Tensor> {
        loss::log_softmax_backward(&self.dev_of(&[y, g])?, y, g)
    }

    fn cross_entropy(&self, logits: &Tensor, labels: &Indices) -> Result<Tensor> {
        loss::cross_entropy(&self.dev_of(&[logits])?, logits, labels)
    }

    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        labels: &Indices,
        g: &Tensor,
    ) -> Result<Tensor> {
        loss::cross_entropy_backward(&self.dev_of(&[logits, g])?, logits, labels, g)
    }

    fn index_select(&self, x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
        channels::index_select(&self.dev_of(&[x])?, x, axis, indices)
    }

    fn index_add(
        &self,
        g: &Tensor,
        shape: &[usize],
        axis: usize,
        indices: &[usize],
    ) -> Result<Tensor> {
        channels::index_add(&self.dev_of(&[g])?, g, shape, axis, indices)
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        channels::concat(&self.dev_of(xs)?, xs, axis)
    }

    fn split(&self, g: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
        channels::split(&self.dev_of(&[g])?, g, axis, sizes)
    }

    fn dropout_mask(&self, shape: &[usize], p: f32, rng: &mut dyn RngCore) -> Result<Tensor> {
        elementwise::dropout_mask(&self.dev()?, shape, p, rng)
    }

    fn sbp_noise_forward(
        &self,
        x: &Tensor,
        mu: &Tensor,
        log_sigma: &Tensor,
        noise: &SbpNoiseArgs,
    ) -> Result<SbpForward> {
        sbp::noise_forward(&self.dev_of(&[x, mu, log_sigma])?, x, mu, log_sigma, noise)
    }

    fn sbp_noise_backward(&self, x: &Tensor, g: &Tensor, saved: &SbpSaved) -> Result<SbpGateGrads> {
        sbp::noise_backward(&self.dev_of(&[x, g])?, x, g, saved)
    }

    fn sbp_stats(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpStats> {
        sbp::stats(&self.dev_of(&[mu, log_sigma])?, mu, log_sigma)
    }

    fn sbp_kl(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpKl> {
        sbp::kl(&self.dev_of(&[mu, log_sigma])?, mu, log_sigma)
    }

    fn sgd_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        velocity: Option<&mut Tensor>,
        h: &SgdStep,
    ) -> Result<()> {
        let d = self.dev_of(&[w, g])?;
        update::sgd(&d, w, g, velocity, h)
    }

    fn ema_update(&self, r: &mut Tensor, b: &Tensor, m: f32) -> Result<()> {
        let d = self.dev_of(&[r, b])?;
        update::ema(&d, r, b, m)
    }

    fn adam_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        h: &AdamStep,
    ) -> Result<()> {
        let d = self.dev_of(&[w, g])?;
        update::adam(&d, w, g, m, v, h)
    }
}
