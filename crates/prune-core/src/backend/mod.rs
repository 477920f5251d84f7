//! The compute seam: every operation the tape, the optimizers and the
//! regularizers run goes through a [`Backend`].
//!
//! A [`Tensor`] carries its [`Storage`](crate::storage::Storage), and the
//! storage names its [`Device`]; [`Tensor::backend`] returns the backend of
//! that device. Tape ops look the backend up from their inputs (which must
//! share one device), call it, and record tensors — never host vectors — in
//! their [`Op`](crate::Op) variants, so a second backend plugs in here
//! without changes to the tape, the interpreter or the regularizers.
//!
//! * [`cpu::CpuBackend`] — today's [`crate::cpu`] kernels plus the
//!   elementwise, reduction, softmax, gather and optimizer loops.
//! * [`cuda`] — with the `cuda` feature, GPU storage and the CUDA backend
//!   (the kernels of `kernels/*.cu` through prune-kernels, GEMM through
//!   cuBLAS); without it a stand-in whose device, copies and ops return
//!   [`CoreError::Unsupported`](crate::CoreError::Unsupported), never a panic.
//!
//! The interface is f32-first: values are `f32` tensors, indices (labels,
//! pooling argmax) are [`Indices`]. Shape checks that do not depend on the
//! data stay in the tape; a backend may assume its inputs are validated
//! where the method says so.

pub mod cpu;
mod cpu_broadcast;
mod cpu_ops;
mod cpu_sbp;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_stub.rs"]
pub mod cuda;
mod sbp_op;

use crate::autograd::{Binary, Unary};
use crate::cpu::{BnGrads, Conv2dGrads, Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::Indices;
use crate::tensor::Tensor;
use rand::RngCore;

pub use cpu_broadcast::broadcast_shape;
pub use sbp_op::{gate_view, SbpForward, SbpGateGrads, SbpKl, SbpNoiseArgs, SbpSaved, SbpStats};

/// A place where tensors live and ops run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory and the CPU kernels.
    #[default]
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl Device {
    /// The backend that runs ops on this device.
    pub fn backend(self) -> &'static dyn Backend {
        static CPU: cpu::CpuBackend = cpu::CpuBackend;
        match self {
            Device::Cpu => &CPU,
            Device::Cuda(ordinal) => cuda::backend(ordinal),
        }
    }
}

/// Batch statistics of a training-mode batch norm, kept for its backward.
#[derive(Clone, Debug, PartialEq)]
pub struct BnBatchStats {
    /// Batch mean per channel, `[C]`.
    pub mean: Tensor,
    /// `1/√(σ² + ε)` per channel (biased batch variance), `[C]`.
    pub inv_std: Tensor,
}

/// What a training-mode batch norm returns.
#[derive(Clone, Debug, PartialEq)]
pub struct BnTrainOutput {
    /// The normalized, scaled and shifted output.
    pub y: Tensor,
    /// What the backward pass needs.
    pub stats: BnBatchStats,
    /// Unbiased batch variance per channel, for the running statistics.
    pub var: Tensor,
}

/// The residual added before the ReLU of a fused batch norm + ReLU, as its
/// backward pass needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    /// No residual: `y = max(bn(x), 0)`, so `[y > 0]` is a function of `x`
    /// and the forward's coefficients (a backend may read `x` for it instead
    /// of `y`).
    Absent,
    /// A residual whose gradient is not needed.
    NoGrad,
    /// A residual whose gradient (`d = g·[y > 0]`) is returned.
    Grad,
}

/// The statistics a batch norm normalises with: the batch's (training) or
/// the running ones (evaluation).
#[derive(Clone, Debug, PartialEq)]
pub enum BnNorm {
    /// Batch statistics, as returned by the training forward.
    Batch(BnBatchStats),
    /// Running mean and variance (`[C]` each) and `ε`.
    Running { mean: Tensor, var: Tensor, eps: f32 },
}

impl BnNorm {
    /// The running mean, variance and `ε`; an error naming `op` for batch
    /// statistics (the evaluation forms need the running ones).
    pub fn running(&self, op: &'static str) -> Result<(&Tensor, &Tensor, f32)> {
        match self {
            BnNorm::Running { mean, var, eps } => Ok((mean, var, *eps)),
            BnNorm::Batch(_) => Err(CoreError::InvalidArgument {
                op,
                reason: "needs running statistics".into(),
            }),
        }
    }
}

/// Hyper-parameters of one SGD update of one parameter (see [`crate::optim::Sgd`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdStep {
    /// Learning rate, already multiplied by the group's multiplier.
    pub lr: f32,
    /// L2 weight decay (0 when the parameter does not decay).
    pub weight_decay: f32,
    /// Momentum μ; 0 means plain SGD and no velocity buffer.
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Hyper-parameters of one Adam update of one parameter (see [`crate::optim::Adam`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// Learning rate, already multiplied by the group's multiplier.
    pub lr: f64,
    /// L2 weight decay (0 when the parameter does not decay).
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `1 − β₁ᵗ` for this parameter's step count `t`.
    pub bias_correction1: f64,
    /// `1 − β₂ᵗ`.
    pub bias_correction2: f64,
}

/// The operations of the tape, the optimizers and the regularizers on one device.
///
/// Every tensor argument lives on [`Backend::device`]; every returned tensor
/// too. Methods return errors (never panic) on shapes they cannot handle.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The device this backend runs on.
    fn device(&self) -> Device;

    /// A tensor of `shape` filled with `value`.
    fn full(&self, shape: &[usize], value: f32) -> Result<Tensor>;

    // ---- elementwise ----
    /// `op(x)` elementwise.
    fn unary(&self, x: &Tensor, op: Unary) -> Result<Tensor>;
    /// `g · op'(x)` elementwise, given the forward output `y`.
    fn unary_backward(&self, op: Unary, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor>;
    /// `a op b` with NumPy broadcasting.
    fn binary(&self, a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor>;
    /// The gradients of `y = a op b` w.r.t. `a` and `b`, at the broadcast
    /// shape of `g` (the caller sums them down with [`Backend::sum_to_shape`]).
    fn binary_backward(
        &self,
        op: Binary,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor)>;
    /// `acc += x` for tensors of one shape (gradient accumulation).
    fn add_assign(&self, acc: &mut Tensor, x: &Tensor) -> Result<()>;

    // ---- reductions ----
    /// Sums `x` down to `shape`, which must broadcast to `x`'s shape (the
    /// adjoint of broadcasting; sums accumulate in f64).
    fn sum_to_shape(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor>;
    /// Broadcasts `x` up to `shape`.
    fn broadcast_to(&self, x: &Tensor, shape: &[usize]) -> Result<Tensor>;
    /// True when every element of every tensor in `xs` is finite: one answer for all of
    /// them, so a device copies one scalar to the host (and waits once) however many
    /// tensors are tested.
    fn all_finite(&self, xs: &[&Tensor]) -> Result<bool>;

    // ---- linear algebra and convolution ----
    /// `op(a) @ op(b)` of 2-D tensors, `op` transposing when asked.
    fn matmul(&self, a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor>;
    /// 2-D convolution, `x: [N, Cin, H, W]`, `w: [Cout, Cin/groups, kh, kw]`.
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
    ) -> Result<Tensor>;
    /// Gradients of a convolution (`x`'s only when `need_x`, the bias's only when
    /// `need_bias`: a device makes no launch for what is not needed).
    fn conv2d_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        g: &Tensor,
        p: &Conv2dParams,
        need_x: bool,
        need_bias: bool,
    ) -> Result<Conv2dGrads>;

    /// `relu(conv2d(x) + residual)` (`residual` shaped like the output,
    /// checked by the caller); the default runs the unfused ops.
    fn conv2d_relu(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        p: &Conv2dParams,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let y = self.conv2d(x, w, bias, p)?;
        let pre = match residual {
            Some(r) => self.binary(&y, r, Binary::Add)?,
            None => y,
        };
        self.unary(&pre, Unary::Relu)
    }

    // ---- pooling ----
    /// Max pooling; also returns the flat input index of each maximum.
    fn max_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<(Tensor, Indices)>;
    /// Routes `g` to the maxima recorded by [`Backend::max_pool2d`] with the same `p`.
    fn max_pool2d_backward(
        &self,
        g: &Tensor,
        argmax: &Indices,
        x_shape: &[usize],
        p: &PoolParams,
    ) -> Result<Tensor>;
    /// Average pooling (padding counted in the divisor).
    fn avg_pool2d(&self, x: &Tensor, p: &PoolParams) -> Result<Tensor>;
    /// Gradient of average pooling.
    fn avg_pool2d_backward(&self, g: &Tensor, x_shape: &[usize], p: &PoolParams) -> Result<Tensor>;

    // ---- batch norm ----
    /// Batch norm with batch statistics.
    fn batch_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<BnTrainOutput>;
    /// Gradients of [`Backend::batch_norm_train`].
    fn batch_norm_train_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        stats: &BnBatchStats,
        g: &Tensor,
    ) -> Result<BnGrads>;
    /// Batch norm with running statistics.
    fn batch_norm_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
    ) -> Result<Tensor>;
    /// Gradients of [`Backend::batch_norm_eval`].
    fn batch_norm_eval_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f32,
        g: &Tensor,
    ) -> Result<BnGrads>;

    // ---- batch norm fused with ReLU (defaults: the unfused ops) ----
    /// `relu(batch_norm_train(x) + residual)`, statistics of `x` alone;
    /// `residual` has `x`'s shape (checked by the caller).
    fn batch_norm_relu_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        residual: Option<&Tensor>,
        eps: f32,
    ) -> Result<BnTrainOutput> {
        let out = self.batch_norm_train(x, gamma, beta, eps)?;
        let pre = match residual {
            Some(r) => self.binary(&out.y, r, Binary::Add)?,
            None => out.y,
        };
        let y = self.unary(&pre, Unary::Relu)?;
        Ok(BnTrainOutput { y, ..out })
    }
    /// `batch_norm_train(conv2d(x, w, bias))`, then `relu(· + residual)`
    /// when `relu` is `Some(residual)` (`residual` shaped like the output,
    /// checked by the caller): the convolution's output (the batch norm's
    /// input, which its backward pass reads) and the batch norm's. The
    /// default runs the ops one after the other; the CPU forms the batch
    /// statistics while the convolution writes its output.
    #[allow(clippy::too_many_arguments)]
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
        let z = self.conv2d(x, w, bias, p)?;
        let out = match relu {
            Some(residual) => self.batch_norm_relu_train(&z, gamma, beta, residual, eps)?,
            None => self.batch_norm_train(&z, gamma, beta, eps)?,
        };
        Ok((z, out))
    }
    /// `relu(batch_norm_eval(x) + residual)` with the [`BnNorm::Running`]
    /// statistics `running` (an error for [`BnNorm::Batch`]).
    fn batch_norm_relu_eval(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        residual: Option<&Tensor>,
        running: &BnNorm,
    ) -> Result<Tensor> {
        let (mean, var, eps) = running.running("batch_norm_relu_eval")?;
        let bn = self.batch_norm_eval(x, gamma, beta, mean, var, eps)?;
        let pre = match residual {
            Some(r) => self.binary(&bn, r, Binary::Add)?,
            None => bn,
        };
        self.unary(&pre, Unary::Relu)
    }
    /// Gradients of the fused batch norm + ReLU from its output `y` and
    /// output gradient `g`: batch norm's for `d = g·[y > 0]`, and `d` itself
    /// (the residual's gradient) when `residual` is [`Residual::Grad`].
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_relu_backward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        norm: &BnNorm,
        y: &Tensor,
        g: &Tensor,
        residual: Residual,
    ) -> Result<(BnGrads, Option<Tensor>)> {
        let need_residual = residual == Residual::Grad;
        let d = self.unary_backward(Unary::Relu, y, y, g)?;
        let grads = match norm {
            BnNorm::Batch(stats) => self.batch_norm_train_backward(x, gamma, stats, &d)?,
            BnNorm::Running { mean, var, eps } => {
                self.batch_norm_eval_backward(x, gamma, mean, var, *eps, &d)?
            }
        };
        Ok((grads, need_residual.then_some(d)))
    }

    // ---- softmax and loss ----
    /// Row-wise log-softmax of a `[rows, cols]` tensor.
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor>;
    /// `g − softmax · Σ_row g`, with `softmax = exp(y)` of the forward output.
    fn log_softmax_backward(&self, y: &Tensor, g: &Tensor) -> Result<Tensor>;
    /// Mean cross-entropy (a scalar) of `[N, K]` logits against `N` labels,
    /// which the caller has checked to lie in `0..K`.
    fn cross_entropy(&self, logits: &Tensor, labels: &Indices) -> Result<Tensor>;
    /// `(softmax − onehot) · g / N`, with `g` the scalar output gradient.
    fn cross_entropy_backward(
        &self,
        logits: &Tensor,
        labels: &Indices,
        g: &Tensor,
    ) -> Result<Tensor>;

    // ---- gather and concatenation ----
    /// Gathers `indices` along `axis` (indices checked by the caller).
    fn index_select(&self, x: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor>;
    /// Scatter-adds `g` (shaped like an index-select result) into zeros of
    /// `shape`: the adjoint of [`Backend::index_select`].
    fn index_add(
        &self,
        g: &Tensor,
        shape: &[usize],
        axis: usize,
        indices: &[usize],
    ) -> Result<Tensor>;
    /// Concatenates along `axis` (shapes checked by the caller).
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor>;
    /// Splits `g` along `axis` into pieces of the given sizes: the adjoint of
    /// [`Backend::concat`].
    fn split(&self, g: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>>;

    // ---- randomness ----
    /// An inverted-dropout mask: each element 0 with probability `p`, else
    /// `1/(1−p)`, drawn from `rng`.
    fn dropout_mask(&self, shape: &[usize], p: f32, rng: &mut dyn RngCore) -> Result<Tensor>;

    // ---- structured Bayesian pruning (see [`sbp_op`] for the math) ----
    /// Train-mode SBP noise: samples θ once per entry from `noise` and returns `x ⊙ θ`
    /// with what the backward pass needs. `x` is `[N, C, ...]` and `mu`, `log_sigma`
    /// are `[C]` (checked by the caller).
    fn sbp_noise_forward(
        &self,
        x: &Tensor,
        mu: &Tensor,
        log_sigma: &Tensor,
        noise: &SbpNoiseArgs,
    ) -> Result<SbpForward>;
    /// Gradients of [`Backend::sbp_noise_forward`] for the output gradient `g`.
    fn sbp_noise_backward(&self, x: &Tensor, g: &Tensor, saved: &SbpSaved) -> Result<SbpGateGrads>;
    /// E\[θ\], SNR and the test-time scale `E[θ]·1[SNR > 1]` of every channel.
    fn sbp_stats(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpStats>;
    /// `Σ_c KL(q(θ_c) ‖ p(θ_c))` and its gradient w.r.t. `mu` and `log_sigma`.
    fn sbp_kl(&self, mu: &Tensor, log_sigma: &Tensor) -> Result<SbpKl>;

    // ---- optimizer updates (in place) ----
    /// One SGD update of `w` from `g`; `velocity` is required when `h.momentum != 0`.
    fn sgd_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        velocity: Option<&mut Tensor>,
        h: &SgdStep,
    ) -> Result<()>;
    /// The running average `r ← (1 − m)·r + m·b` in place (batch norm's running
    /// statistics, PyTorch's convention): one pass, one launch on a device.
    fn ema_update(&self, r: &mut Tensor, b: &Tensor, m: f32) -> Result<()>;
    /// One Adam update of `w` from `g` with moment buffers `m`, `v`.
    fn adam_update(
        &self,
        w: &mut Tensor,
        g: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        h: &AdamStep,
    ) -> Result<()>;
}

/// The position in `xs` of the first tensor holding a non-finite element, if any.
///
/// The tensors of each device are tested together ([`Backend::all_finite`]: on a GPU one
/// scalar crosses to the host per device, not one per tensor); only when a device's test
/// fails are its tensors tested one by one, to name the culprit.
pub fn first_non_finite(xs: &[&Tensor]) -> Result<Option<usize>> {
    let mut devices: Vec<Device> = Vec::new();
    for t in xs {
        if !devices.contains(&t.device()) {
            devices.push(t.device());
        }
    }
    let mut first: Option<usize> = None;
    for device in devices {
        let at: Vec<usize> = (0..xs.len())
            .filter(|&i| xs[i].device() == device)
            .collect();
        let group: Vec<&Tensor> = at.iter().map(|&i| xs[i]).collect();
        let be = device.backend();
        if be.all_finite(&group)? {
            continue;
        }
        for i in at {
            if !be.all_finite(&[xs[i]])? {
                first = Some(first.map_or(i, |f| f.min(i)));
                break;
            }
        }
    }
    Ok(first)
}

/// The backend shared by `tensors`, or an error naming the op and the devices.
pub fn backend_of(op: &'static str, tensors: &[&Tensor]) -> Result<&'static dyn Backend> {
    let device = tensors.first().map_or(Device::Cpu, |t| t.device());
    if let Some(other) = tensors.iter().find(|t| t.device() != device) {
        return Err(CoreError::InvalidArgument {
            op,
            reason: format!(
                "tensors on different devices: {device} and {}",
                other.device()
            ),
        });
    }
    Ok(device.backend())
}
