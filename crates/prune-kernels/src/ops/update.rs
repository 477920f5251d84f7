//! Fused optimizer steps (`kernels/optim.cu`) and the SBP KL gradient (`kernels/sbp_kl.cu`).

use super::{as_i64, cfg, NnKernels};
use crate::context::as_i32;
use crate::cpu_ref::optim::adam_bias_corrections;
use crate::error::KernelError;
use crate::runtime::{check_buf, Args, Runtime};

/// Hyper-parameters of one SGD step (prune-core's `Sgd`).
#[derive(Debug, Clone, Copy)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// Hyper-parameters of one Adam step (prune-core's `Adam`); `t` is the 1-based step count
/// of this parameter.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub t: u32,
}

/// Adam hyper-parameters with the bias corrections already computed.
#[derive(Debug, Clone, Copy)]
pub struct AdamCorrected {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `1 − β₁ᵗ`.
    pub bias_correction1: f32,
    /// `1 − β₂ᵗ`.
    pub bias_correction2: f32,
}

impl<R: Runtime> NnKernels<R> {
    /// One SGD step on `n` parameters in place (`velocity` is read and written only with
    /// momentum; pass any buffer of `n` entries).
    pub fn sgd_step(
        &self,
        stream: &R::Stream,
        w: &mut R::Buf<f32>,
        g: &R::Buf<f32>,
        velocity: &mut R::Buf<f32>,
        n: usize,
        s: SgdStep,
    ) -> Result<(), KernelError> {
        const OP: &str = "sgd step";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "w", w, n)?;
        check_buf(&self.ctx, OP, "g", g, n)?;
        check_buf(&self.ctx, OP, "velocity", velocity, n)?;
        if n == 0 {
            return Ok(());
        }
        let (n64, nest) = (as_i64(OP, "n", n)?, s.nesterov as i32);
        let mut b = Args::<R>::new();
        b.output(w).input(g).output(velocity).arg(n64);
        b.arg(s.lr).arg(s.momentum).arg(s.weight_decay).arg(nest);
        b.launch(stream, &self.optim, "sgd_step", self.stride_cfg(n))
    }

    /// The running average `r = (1 − m)·r + m·b` of `n` values in place (batch norm's
    /// running statistics).
    pub fn ema_step(
        &self,
        stream: &R::Stream,
        r: &mut R::Buf<f32>,
        b: &R::Buf<f32>,
        n: usize,
        m: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "running average";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "r", r, n)?;
        check_buf(&self.ctx, OP, "b", b, n)?;
        if n == 0 {
            return Ok(());
        }
        let mut a = Args::<R>::new();
        a.output(r).input(b).arg(as_i64(OP, "n", n)?).arg(m);
        a.launch(stream, &self.optim, "ema_step", self.stride_cfg(n))
    }

    /// One Adam step on `n` parameters in place.
    pub fn adam_step(
        &self,
        stream: &R::Stream,
        w: &mut R::Buf<f32>,
        g: &R::Buf<f32>,
        m: &mut R::Buf<f32>,
        v: &mut R::Buf<f32>,
        n: usize,
        s: AdamStep,
    ) -> Result<(), KernelError> {
        if s.t == 0 {
            return Err(KernelError::invalid(
                "adam step",
                "the step count t starts at 1",
            ));
        }
        let (bc1, bc2) = adam_bias_corrections(s.beta1, s.beta2, s.t);
        let c = AdamCorrected {
            lr: s.lr,
            beta1: s.beta1,
            beta2: s.beta2,
            eps: s.eps,
            weight_decay: s.weight_decay,
            bias_correction1: bc1 as f32,
            bias_correction2: bc2 as f32,
        };
        self.adam_step_corrected(stream, w, g, m, v, n, c)
    }

    /// One Adam step with the bias corrections `1 − βᵢᵗ` given by the caller (an
    /// optimizer that keeps its own step counts).
    pub fn adam_step_corrected(
        &self,
        stream: &R::Stream,
        w: &mut R::Buf<f32>,
        g: &R::Buf<f32>,
        m: &mut R::Buf<f32>,
        v: &mut R::Buf<f32>,
        n: usize,
        s: AdamCorrected,
    ) -> Result<(), KernelError> {
        const OP: &str = "adam step";
        self.ctx.check_stream(OP, stream)?;
        let (bc1, bc2) = (s.bias_correction1, s.bias_correction2);
        if !(bc1 > 0.0 && bc2 > 0.0 && bc1 <= 1.0 && bc2 <= 1.0) {
            return Err(KernelError::invalid(
                OP,
                format!("bias corrections {bc1}, {bc2} outside (0, 1]"),
            ));
        }
        check_buf(&self.ctx, OP, "w", w, n)?;
        check_buf(&self.ctx, OP, "g", g, n)?;
        check_buf(&self.ctx, OP, "m", m, n)?;
        check_buf(&self.ctx, OP, "v", v, n)?;
        if n == 0 {
            return Ok(());
        }
        let n64 = as_i64(OP, "n", n)?;
        let mut b = Args::<R>::new();
        b.output(w).input(g).output(m).output(v).arg(n64);
        b.arg(s.lr)
            .arg(s.beta1)
            .arg(s.beta2)
            .arg(s.eps)
            .arg(s.weight_decay);
        b.arg(bc1).arg(bc2);
        b.launch(stream, &self.optim, "adam_step", self.stride_cfg(n))
    }

    /// Per-channel SBP KL and its gradient w.r.t. mu and log_sigma.
    pub fn sbp_kl_grad(
        &self,
        stream: &R::Stream,
        mu: &R::Buf<f32>,
        log_sigma: &R::Buf<f32>,
        channels: usize,
        kl: &mut R::Buf<f32>,
        dmu: &mut R::Buf<f32>,
        dlog_sigma: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp kl";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "mu", mu, channels)?;
        check_buf(&self.ctx, OP, "log_sigma", log_sigma, channels)?;
        check_buf(&self.ctx, OP, "kl", kl, channels)?;
        check_buf(&self.ctx, OP, "dmu", dmu, channels)?;
        check_buf(&self.ctx, OP, "dlog_sigma", dlog_sigma, channels)?;
        if channels == 0 {
            return Ok(());
        }
        let c32 = as_i32(OP, "channels", channels)?;
        let mut b = Args::<R>::new();
        b.input(mu)
            .input(log_sigma)
            .output(kl)
            .output(dmu)
            .output(dlog_sigma)
            .arg(c32);
        b.launch(
            stream,
            &self.sbp_kl,
            "sbp_kl_grad",
            cfg([channels.div_ceil(256) as u32, 1, 1]),
        )
    }
}
