//! Device API of the fused SBP noise kernels (`kernels/sbp_noise.cu`).

use std::sync::Arc;

use cudarc::driver::LaunchConfig;

use crate::context::{as_i32, KernelContext, LoadedModule};
use crate::cpu_ref::sbp::NoiseStream;
use crate::error::KernelError;
use crate::runtime::{check_buf, poisoned, Args, Cuda, Runtime};
use crate::shapes::{NoiseMode, SbpShape};
use crate::source::KernelFile;
use crate::tiling::{stride_grid, SbpPlan, BLOCK};

/// Noise parameters of one SBP layer.
pub struct SbpParams<'a, R: Runtime = Cuda> {
    /// Per-channel mean of log theta (C entries).
    pub mu: &'a R::Buf<f32>,
    /// Per-channel log standard deviation of log theta (C entries).
    pub log_sigma: &'a R::Buf<f32>,
    /// Philox key (seed) and counter words (layer, step): the same stream reproduces the
    /// same noise; see [`crate::cpu_ref::sbp`].
    pub stream: NoiseStream,
    /// One sample per channel or per (example, channel).
    pub mode: NoiseMode,
}

impl<R: Runtime> Clone for SbpParams<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<R: Runtime> Copy for SbpParams<'_, R> {}

/// The buffers of a forward pass: the output, the samples and, per example, their
/// derivatives (see [`SbpNoise::forward_into`]).
pub struct SbpSamples<R: Runtime = Cuda> {
    pub y: R::Buf<f32>,
    pub theta: R::Buf<f32>,
    pub dth: Option<R::Buf<f32>>,
}

/// Device gradients of an SBP layer.
pub struct SbpGrads<R: Runtime = Cuda> {
    /// Gradient w.r.t. the input, same shape as x.
    pub dx: R::Buf<f32>,
    /// Gradient w.r.t. mu (C entries).
    pub dmu: R::Buf<f32>,
    /// Gradient w.r.t. log_sigma (C entries).
    pub dlog_sigma: R::Buf<f32>,
    /// Gradient w.r.t. theta (C or rows*C entries).
    pub dtheta: R::Buf<f32>,
}

/// Host copies of [`SbpGrads`].
#[derive(Debug, Clone, PartialEq)]
pub struct SbpHostGrads {
    pub dx: Vec<f32>,
    pub dmu: Vec<f32>,
    pub dlog_sigma: Vec<f32>,
    pub dtheta: Vec<f32>,
}

/// Per-channel statistics on the device.
pub struct SbpStatsBuffers<R: Runtime = Cuda> {
    /// E\[theta\]
    pub mean: R::Buf<f32>,
    /// E\[theta\] / std\[theta\], capped at 1e30
    pub snr: R::Buf<f32>,
    /// KL(q(theta) || log-uniform on [e^-20, 1])
    pub kl: R::Buf<f32>,
}

/// Host copies of [`SbpStatsBuffers`].
#[derive(Debug, Clone, PartialEq)]
pub struct SbpHostStats {
    pub mean: Vec<f32>,
    pub snr: Vec<f32>,
    pub kl: Vec<f32>,
}

/// The fused SBP noise operations of one [`KernelContext`].
pub struct SbpNoise<R: Runtime = Cuda> {
    ctx: R,
    module: Arc<LoadedModule<R>>,
    sms: u32,
}

/// `(seed_lo, seed_hi, step, 2·layer)`: the kernel arguments of a noise stream.
pub(crate) fn stream_words(s: &NoiseStream) -> (u32, u32, u32, u32) {
    (s.seed as u32, (s.seed >> 32) as u32, s.step, s.layer << 1)
}

/// (ch_per_tile, chunks, chunk_cols, rows_per_tile) as kernel arguments; all are bounded
/// by the tile width or the row count, which were checked to fit 32 bits.
fn plan_args(plan: &SbpPlan) -> (i32, i32, i32, i32) {
    (
        plan.ch_per_tile as i32,
        plan.chunks as i32,
        plan.chunk_cols as i32,
        plan.rows_per_tile as i32,
    )
}

struct Dims {
    rows: i32,
    channels: i32,
    inner: i32,
    numel: usize,
    theta_len: usize,
}

fn dims(op: &'static str, shape: &SbpShape, mode: NoiseMode) -> Result<Dims, KernelError> {
    if shape.rows >= 1 << 30 {
        return Err(KernelError::invalid(
            op,
            format!("{} rows exceed 2^30", shape.rows),
        ));
    }
    Ok(Dims {
        rows: as_i32(op, "rows", shape.rows)?,
        channels: as_i32(op, "channels", shape.channels)?,
        inner: as_i32(op, "inner", shape.inner)?,
        numel: shape.numel()?,
        theta_len: shape.theta_len(mode)?,
    })
}

impl<R: Runtime> SbpNoise<R> {
    /// Compiles (once per context) and loads `sbp_noise.cu`.
    pub fn new(kc: &KernelContext<R>) -> Result<SbpNoise<R>, KernelError> {
        Ok(SbpNoise {
            ctx: kc.runtime().clone(),
            module: kc.module(KernelFile::SbpNoise)?,
            sms: kc.sms(),
        })
    }

    fn check_params(
        &self,
        op: &'static str,
        shape: &SbpShape,
        p: &SbpParams<R>,
    ) -> Result<(), KernelError> {
        if p.stream.layer >= 1 << 31 {
            return Err(KernelError::invalid(
                op,
                "noise stream layer must be below 2^31",
            ));
        }
        check_buf(&self.ctx, op, "mu", p.mu, shape.channels)?;
        check_buf(&self.ctx, op, "log_sigma", p.log_sigma, shape.channels)
    }

    /// y = x * theta; theta (C entries per-channel, rows*C per-example) is written for
    /// the backward pass.  Per channel, theta is sampled in the same pass.  Per example,
    /// a sampling step first draws each theta once together with its pathwise
    /// derivatives, written to `dth` (2 rows*C entries: d theta/d mu, d theta/d log_sigma
    /// interleaved), which the backward pass takes; `dth` is required then and unused
    /// per channel.
    pub fn forward_into(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        shape: SbpShape,
        p: &SbpParams<R>,
        y: &mut R::Buf<f32>,
        theta: &mut R::Buf<f32>,
        dth: Option<&mut R::Buf<f32>>,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp forward";
        self.ctx.check_stream(OP, stream)?;
        let d = dims(OP, &shape, p.mode)?;
        self.check_params(OP, &shape, p)?;
        check_buf(&self.ctx, OP, "x", x, d.numel)?;
        check_buf(&self.ctx, OP, "y", y, d.numel)?;
        check_buf(&self.ctx, OP, "theta", theta, d.theta_len)?;
        let dth = self.check_dth(OP, p.mode, dth, d.theta_len)?;
        if d.theta_len == 0 {
            return Ok(());
        }
        let plan = SbpPlan::new(shape.rows, shape.channels, shape.inner, self.sms)?;
        let (cpt, chunks, ccols, rpt) = plan_args(&plan);
        let (seed_lo, seed_hi, step, layer2) = stream_words(&p.stream);
        let per_example = p.mode.counter_tag() as i32;
        if let Some(dth) = dth {
            // The sampling kernel indexes rows*C in 32 bits.
            as_i32(OP, "rows x channels", d.theta_len)?;
            let mut b = Args::<R>::new();
            b.input(p.mu)
                .input(p.log_sigma)
                .output(&mut *theta)
                .output(dth);
            b.arg(d.rows).arg(d.channels);
            b.arg(seed_lo).arg(seed_hi).arg(step).arg(layer2);
            let cfg = LaunchConfig {
                grid_dim: (stride_grid(d.theta_len, self.sms), 1, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            b.launch(stream, &self.module, "sbp_sample_per_example", cfg)?;
        }
        let cfg = LaunchConfig {
            grid_dim: (plan.grid_x as u32, plan.grid_y as u32, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = Args::<R>::new();
        b.input(x)
            .output(y)
            .output(theta)
            .input(p.mu)
            .input(p.log_sigma);
        b.arg(d.rows)
            .arg(d.channels)
            .arg(d.inner)
            .arg(cpt)
            .arg(chunks)
            .arg(ccols)
            .arg(rpt);
        b.arg(seed_lo)
            .arg(seed_hi)
            .arg(step)
            .arg(layer2)
            .arg(per_example);
        b.launch(stream, &self.module, "sbp_forward", cfg)
    }

    /// Allocating form of [`SbpNoise::forward_into`].
    pub fn forward(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        shape: SbpShape,
        p: &SbpParams<R>,
    ) -> Result<SbpSamples<R>, KernelError> {
        let t = shape.theta_len(p.mode)?;
        let mut y = R::alloc::<f32>(stream, shape.numel()?)?;
        let mut theta = R::alloc::<f32>(stream, t)?;
        let mut dth = match p.mode {
            NoiseMode::PerChannel => None,
            NoiseMode::PerExample => Some(R::alloc::<f32>(stream, 2 * t)?),
        };
        self.forward_into(stream, x, shape, p, &mut y, &mut theta, dth.as_mut())?;
        Ok(SbpSamples { y, theta, dth })
    }

    /// Checks the derivative buffer of the per-example samples: required (2·`theta_len`
    /// entries) per example, ignored per channel.
    fn check_dth<'b, B>(
        &self,
        op: &'static str,
        mode: NoiseMode,
        dth: Option<B>,
        theta_len: usize,
    ) -> Result<Option<B>, KernelError>
    where
        B: std::ops::Deref<Target = R::Buf<f32>> + 'b,
    {
        match (mode, dth) {
            (NoiseMode::PerChannel, _) => Ok(None),
            (NoiseMode::PerExample, None) => Err(KernelError::invalid(
                op,
                "per-example noise needs the buffer of the samples' derivatives (dth)",
            )),
            (NoiseMode::PerExample, Some(b)) => {
                check_buf(&self.ctx, op, "dth", &*b, 2 * theta_len)?;
                Ok(Some(b))
            }
        }
    }

    /// Backward: dx = dy * theta, dtheta = sum dy * x per theta entry, and dmu,
    /// dlog_sigma through the pathwise derivative of the sample.  `theta` (and, per
    /// example, `dth`) are the buffers the forward pass wrote with the same parameters.
    pub fn backward_into(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        x: &R::Buf<f32>,
        theta: &R::Buf<f32>,
        dth: Option<&R::Buf<f32>>,
        shape: SbpShape,
        p: &SbpParams<R>,
        grads: &mut SbpGrads<R>,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp backward";
        self.ctx.check_stream(OP, stream)?;
        let d = dims(OP, &shape, p.mode)?;
        self.check_params(OP, &shape, p)?;
        check_buf(&self.ctx, OP, "dy", dy, d.numel)?;
        check_buf(&self.ctx, OP, "x", x, d.numel)?;
        check_buf(&self.ctx, OP, "theta", theta, d.theta_len)?;
        check_buf(&self.ctx, OP, "dx", &grads.dx, d.numel)?;
        check_buf(&self.ctx, OP, "dmu", &grads.dmu, shape.channels)?;
        check_buf(
            &self.ctx,
            OP,
            "dlog_sigma",
            &grads.dlog_sigma,
            shape.channels,
        )?;
        check_buf(&self.ctx, OP, "dtheta", &grads.dtheta, d.theta_len)?;
        let dth = self.check_dth(OP, p.mode, dth, d.theta_len)?;
        if shape.channels == 0 {
            return Ok(());
        }
        let plan = SbpPlan::new(shape.rows, shape.channels, shape.inner, self.sms)?;
        let per_example = p.mode.counter_tag() as i32;
        let parts = match p.mode {
            NoiseMode::PerChannel => plan.grid_y,
            NoiseMode::PerExample => shape.rows,
        };
        let part_len = parts * shape.channels * plan.chunks;
        // Every entry of the workspace is written by sbp_backward_tiles before
        // sbp_backward_finalize reads it (one (part, channel, chunk) per block slot).
        let mut partial = R::alloc::<f32>(stream, part_len)?;
        let (cpt, chunks, ccols, rpt) = plan_args(&plan);
        if parts > 0 {
            let cfg = LaunchConfig {
                grid_dim: (plan.grid_x as u32, plan.grid_y as u32, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = Args::<R>::new();
            b.input(dy)
                .input(x)
                .input(theta)
                .output(&mut grads.dx)
                .output(&mut partial);
            b.arg(d.rows)
                .arg(d.channels)
                .arg(d.inner)
                .arg(cpt)
                .arg(chunks)
                .arg(ccols)
                .arg(rpt);
            b.arg(per_example);
            b.launch(stream, &self.module, "sbp_backward_tiles", cfg)?;
        }
        let parts_i = as_i32(OP, "reduction parts", parts)?;
        let (seed_lo, seed_hi, step, layer2) = stream_words(&p.stream);
        let warps = BLOCK as usize / 32;
        let cfg = LaunchConfig {
            grid_dim: (shape.channels.div_ceil(warps) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // Per channel the kernel never reads dth; it still takes a buffer.
        let dth = dth.unwrap_or(&partial);
        let mut b = Args::<R>::new();
        b.input(&partial).input(p.mu).input(p.log_sigma).input(dth);
        b.output(&mut grads.dmu)
            .output(&mut grads.dlog_sigma)
            .output(&mut grads.dtheta);
        b.arg(d.channels)
            .arg(parts_i)
            .arg(chunks)
            .arg(seed_lo)
            .arg(seed_hi)
            .arg(step)
            .arg(layer2);
        b.arg(per_example);
        // The workspace holds parts*C*chunks entries.
        b.launch(stream, &self.module, "sbp_backward_finalize", cfg)
    }

    /// Allocating form of [`SbpNoise::backward_into`].
    pub fn backward(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        x: &R::Buf<f32>,
        theta: &R::Buf<f32>,
        dth: Option<&R::Buf<f32>>,
        shape: SbpShape,
        p: &SbpParams<R>,
    ) -> Result<SbpGrads<R>, KernelError> {
        let mut g = SbpGrads {
            dx: R::alloc::<f32>(stream, shape.numel()?)?,
            dmu: R::alloc::<f32>(stream, shape.channels)?,
            dlog_sigma: R::alloc::<f32>(stream, shape.channels)?,
            dtheta: R::alloc::<f32>(stream, shape.theta_len(p.mode)?)?,
        };
        self.backward_into(stream, dy, x, theta, dth, shape, p, &mut g)?;
        Ok(g)
    }

    /// E\[theta\], SNR and KL of every channel.
    pub fn stats_into(
        &self,
        stream: &R::Stream,
        mu: &R::Buf<f32>,
        log_sigma: &R::Buf<f32>,
        channels: usize,
        out: &mut SbpStatsBuffers<R>,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp stats";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "mu", mu, channels)?;
        check_buf(&self.ctx, OP, "log_sigma", log_sigma, channels)?;
        check_buf(&self.ctx, OP, "mean", &out.mean, channels)?;
        check_buf(&self.ctx, OP, "snr", &out.snr, channels)?;
        check_buf(&self.ctx, OP, "kl", &out.kl, channels)?;
        if channels == 0 {
            return Ok(());
        }
        let c = as_i32(OP, "channels", channels)?;
        let cfg = LaunchConfig {
            grid_dim: (channels.div_ceil(BLOCK as usize) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = Args::<R>::new();
        b.input(mu)
            .input(log_sigma)
            .output(&mut out.mean)
            .output(&mut out.snr)
            .output(&mut out.kl)
            .arg(c);
        b.launch(stream, &self.module, "sbp_channel_stats", cfg)
    }

    /// Allocating form of [`SbpNoise::stats_into`].
    pub fn stats(
        &self,
        stream: &R::Stream,
        mu: &R::Buf<f32>,
        log_sigma: &R::Buf<f32>,
        channels: usize,
    ) -> Result<SbpStatsBuffers<R>, KernelError> {
        let mut out = SbpStatsBuffers {
            mean: R::alloc::<f32>(stream, channels)?,
            snr: R::alloc::<f32>(stream, channels)?,
            kl: R::alloc::<f32>(stream, channels)?,
        };
        self.stats_into(stream, mu, log_sigma, channels, &mut out)?;
        Ok(out)
    }

    /// Host convenience: uploads, runs [`SbpNoise::forward_into`] into NaN-filled outputs,
    /// and returns (y, theta).
    pub fn forward_host(
        &self,
        stream: &R::Stream,
        x: &[f32],
        shape: SbpShape,
        mu: &[f32],
        log_sigma: &[f32],
        noise: impl Into<NoiseStream>,
        mode: NoiseMode,
    ) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
        let (xd, mud, lsd) = (
            R::upload(stream, x)?,
            R::upload(stream, mu)?,
            R::upload(stream, log_sigma)?,
        );
        let p = SbpParams {
            mu: &mud,
            log_sigma: &lsd,
            stream: noise.into(),
            mode,
        };
        let (n, t) = (shape.numel()?, shape.theta_len(mode)?);
        let mut y = poisoned::<R>(stream, n)?;
        let mut theta = poisoned::<R>(stream, t)?;
        let mut dth = match mode {
            NoiseMode::PerChannel => None,
            NoiseMode::PerExample => Some(poisoned::<R>(stream, 2 * t)?),
        };
        self.forward_into(stream, &xd, shape, &p, &mut y, &mut theta, dth.as_mut())?;
        Ok((R::download(stream, &y, n)?, R::download(stream, &theta, t)?))
    }

    /// Host convenience for [`SbpNoise::backward_into`] (outputs NaN-filled first).
    pub fn backward_host(
        &self,
        stream: &R::Stream,
        dy: &[f32],
        x: &[f32],
        theta: &[f32],
        shape: SbpShape,
        mu: &[f32],
        log_sigma: &[f32],
        noise: impl Into<NoiseStream>,
        mode: NoiseMode,
    ) -> Result<SbpHostGrads, KernelError> {
        let (dyd, xd, thd) = (
            R::upload(stream, dy)?,
            R::upload(stream, x)?,
            R::upload(stream, theta)?,
        );
        let (mud, lsd) = (R::upload(stream, mu)?, R::upload(stream, log_sigma)?);
        let p = SbpParams {
            mu: &mud,
            log_sigma: &lsd,
            stream: noise.into(),
            mode,
        };
        let (n, t, c) = (shape.numel()?, shape.theta_len(mode)?, shape.channels);
        let mut g = SbpGrads {
            dx: poisoned::<R>(stream, n)?,
            dmu: poisoned::<R>(stream, c)?,
            dlog_sigma: poisoned::<R>(stream, c)?,
            dtheta: poisoned::<R>(stream, t)?,
        };
        // Per example, the samples' derivatives come from a forward pass with the same
        // parameters (the same noise stream draws the same samples).
        let samples = match mode {
            NoiseMode::PerChannel => None,
            NoiseMode::PerExample => Some(self.forward(stream, &xd, shape, &p)?),
        };
        let dth = samples.as_ref().and_then(|s| s.dth.as_ref());
        self.backward_into(stream, &dyd, &xd, &thd, dth, shape, &p, &mut g)?;
        Ok(SbpHostGrads {
            dx: R::download(stream, &g.dx, n)?,
            dmu: R::download(stream, &g.dmu, c)?,
            dlog_sigma: R::download(stream, &g.dlog_sigma, c)?,
            dtheta: R::download(stream, &g.dtheta, t)?,
        })
    }

    /// Host convenience for [`SbpNoise::stats_into`] (outputs NaN-filled first).
    pub fn stats_host(
        &self,
        stream: &R::Stream,
        mu: &[f32],
        log_sigma: &[f32],
    ) -> Result<SbpHostStats, KernelError> {
        let c = mu.len();
        let (mud, lsd) = (R::upload(stream, mu)?, R::upload(stream, log_sigma)?);
        let mut out = SbpStatsBuffers {
            mean: poisoned::<R>(stream, c)?,
            snr: poisoned::<R>(stream, c)?,
            kl: poisoned::<R>(stream, c)?,
        };
        self.stats_into(stream, &mud, &lsd, c, &mut out)?;
        Ok(SbpHostStats {
            mean: R::download(stream, &out.mean, c)?,
            snr: R::download(stream, &out.snr, c)?,
            kl: R::download(stream, &out.kl, c)?,
        })
    }
}
