//! Device API of the fused SBP noise kernels (`kernels/sbp_noise.cu`).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::context::{as_i32, check_buf, check_stream, KernelContext, LoadedModule};
use crate::cpu_ref::sbp::NoiseStream;
use crate::error::KernelError;
use crate::host::{alloc, download, poisoned, upload};
use crate::shapes::{NoiseMode, SbpShape};
use crate::source::KernelFile;
use crate::tiling::{SbpPlan, BLOCK};

/// Noise parameters of one SBP layer.
#[derive(Debug, Clone, Copy)]
pub struct SbpParams<'a> {
    /// Per-channel mean of log theta (C entries).
    pub mu: &'a CudaSlice<f32>,
    /// Per-channel log standard deviation of log theta (C entries).
    pub log_sigma: &'a CudaSlice<f32>,
    /// Philox key (seed) and counter words (layer, step): the same stream reproduces the
    /// same noise; see [`crate::cpu_ref::sbp`].
    pub stream: NoiseStream,
    /// One sample per channel or per (example, channel).
    pub mode: NoiseMode,
}

/// Device gradients of an SBP layer.
pub struct SbpGrads {
    /// Gradient w.r.t. the input, same shape as x.
    pub dx: CudaSlice<f32>,
    /// Gradient w.r.t. mu (C entries).
    pub dmu: CudaSlice<f32>,
    /// Gradient w.r.t. log_sigma (C entries).
    pub dlog_sigma: CudaSlice<f32>,
    /// Gradient w.r.t. theta (C or rows*C entries).
    pub dtheta: CudaSlice<f32>,
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
pub struct SbpStatsBuffers {
    /// E\[theta\]
    pub mean: CudaSlice<f32>,
    /// E\[theta\] / std\[theta\], capped at 1e30
    pub snr: CudaSlice<f32>,
    /// KL(q(theta) || log-uniform on [e^-20, 1])
    pub kl: CudaSlice<f32>,
}

/// Host copies of [`SbpStatsBuffers`].
#[derive(Debug, Clone, PartialEq)]
pub struct SbpHostStats {
    pub mean: Vec<f32>,
    pub snr: Vec<f32>,
    pub kl: Vec<f32>,
}

/// The fused SBP noise operations of one [`KernelContext`].
pub struct SbpNoise {
    ctx: Arc<CudaContext>,
    module: Arc<LoadedModule>,
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

impl SbpNoise {
    /// Compiles (once per context) and loads `sbp_noise.cu`.
    pub fn new(kc: &KernelContext) -> Result<SbpNoise, KernelError> {
        Ok(SbpNoise {
            ctx: kc.cuda_context().clone(),
            module: kc.module(KernelFile::SbpNoise)?,
            sms: kc.sms(),
        })
    }

    fn check_params(
        &self,
        op: &'static str,
        shape: &SbpShape,
        p: &SbpParams,
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

    /// y = x * theta with theta sampled in the same pass; theta (C entries per-channel,
    /// rows*C per-example) is written for the backward pass.
    pub fn forward_into(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<f32>,
        shape: SbpShape,
        p: &SbpParams,
        y: &mut CudaSlice<f32>,
        theta: &mut CudaSlice<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp forward";
        check_stream(&self.ctx, OP, stream)?;
        let d = dims(OP, &shape, p.mode)?;
        self.check_params(OP, &shape, p)?;
        check_buf(&self.ctx, OP, "x", x, d.numel)?;
        check_buf(&self.ctx, OP, "y", y, d.numel)?;
        check_buf(&self.ctx, OP, "theta", theta, d.theta_len)?;
        if d.theta_len == 0 {
            return Ok(());
        }
        let plan = SbpPlan::new(shape.rows, shape.channels, shape.inner, self.sms)?;
        let (cpt, chunks, ccols, rpt) = plan_args(&plan);
        let (seed_lo, seed_hi, step, layer2) = stream_words(&p.stream);
        let per_example = p.mode.counter_tag() as i32;
        let f = self.module.function("sbp_forward")?;
        let cfg = LaunchConfig {
            grid_dim: (plan.grid_x as u32, plan.grid_y as u32, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(f);
        b.arg(x).arg(y).arg(theta).arg(p.mu).arg(p.log_sigma);
        b.arg(&d.rows)
            .arg(&d.channels)
            .arg(&d.inner)
            .arg(&cpt)
            .arg(&chunks)
            .arg(&ccols)
            .arg(&rpt);
        b.arg(&seed_lo)
            .arg(&seed_hi)
            .arg(&step)
            .arg(&layer2)
            .arg(&per_example);
        // SAFETY: the argument list matches the kernel signature; every buffer was checked
        // to have the length the kernel indexes.
        unsafe { b.launch(cfg) }.map_err(KernelError::launch("sbp_forward"))?;
        Ok(())
    }

    /// Allocating form of [`SbpNoise::forward_into`]: returns (y, theta).
    pub fn forward(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<f32>,
        shape: SbpShape,
        p: &SbpParams,
    ) -> Result<(CudaSlice<f32>, CudaSlice<f32>), KernelError> {
        let mut y = alloc(stream, shape.numel()?)?;
        let mut theta = alloc(stream, shape.theta_len(p.mode)?)?;
        self.forward_into(stream, x, shape, p, &mut y, &mut theta)?;
        Ok((y, theta))
    }

    /// Backward: dx = dy * theta, dtheta = sum dy * x per theta entry, and dmu,
    /// dlog_sigma through the pathwise derivative of the sample.  `theta` is the buffer
    /// the forward pass wrote with the same parameters.
    pub fn backward_into(
        &self,
        stream: &Arc<CudaStream>,
        dy: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        theta: &CudaSlice<f32>,
        shape: SbpShape,
        p: &SbpParams,
        grads: &mut SbpGrads,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp backward";
        check_stream(&self.ctx, OP, stream)?;
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
        // SAFETY: every entry of the workspace is written by sbp_backward_tiles before
        // sbp_backward_finalize reads it (one (part, channel, chunk) per block slot).
        let mut partial = unsafe { stream.alloc::<f32>(part_len.max(1)) }.map_err(
            KernelError::driver("allocating the SBP reduction workspace"),
        )?;
        let (cpt, chunks, ccols, rpt) = plan_args(&plan);
        if parts > 0 {
            let f = self.module.function("sbp_backward_tiles")?;
            let cfg = LaunchConfig {
                grid_dim: (plan.grid_x as u32, plan.grid_y as u32, 1),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = stream.launch_builder(f);
            b.arg(dy)
                .arg(x)
                .arg(theta)
                .arg(&mut grads.dx)
                .arg(&mut partial);
            b.arg(&d.rows)
                .arg(&d.channels)
                .arg(&d.inner)
                .arg(&cpt)
                .arg(&chunks)
                .arg(&ccols)
                .arg(&rpt);
            b.arg(&per_example);
            // SAFETY: arguments match the kernel; lengths were checked above.
            unsafe { b.launch(cfg) }.map_err(KernelError::launch("sbp_backward_tiles"))?;
        }
        let parts_i = as_i32(OP, "reduction parts", parts)?;
        let (seed_lo, seed_hi, step, layer2) = stream_words(&p.stream);
        let f = self.module.function("sbp_backward_finalize")?;
        let warps = BLOCK as usize / 32;
        let cfg = LaunchConfig {
            grid_dim: (shape.channels.div_ceil(warps) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(f);
        b.arg(&partial).arg(p.mu).arg(p.log_sigma);
        b.arg(&mut grads.dmu)
            .arg(&mut grads.dlog_sigma)
            .arg(&mut grads.dtheta);
        b.arg(&d.channels)
            .arg(&parts_i)
            .arg(&chunks)
            .arg(&seed_lo)
            .arg(&seed_hi)
            .arg(&step)
            .arg(&layer2);
        b.arg(&per_example);
        // SAFETY: arguments match the kernel; the workspace holds parts*C*chunks entries.
        unsafe { b.launch(cfg) }.map_err(KernelError::launch("sbp_backward_finalize"))?;
        Ok(())
    }

    /// Allocating form of [`SbpNoise::backward_into`].
    pub fn backward(
        &self,
        stream: &Arc<CudaStream>,
        dy: &CudaSlice<f32>,
        x: &CudaSlice<f32>,
        theta: &CudaSlice<f32>,
        shape: SbpShape,
        p: &SbpParams,
    ) -> Result<SbpGrads, KernelError> {
        let mut g = SbpGrads {
            dx: alloc(stream, shape.numel()?)?,
            dmu: alloc(stream, shape.channels)?,
            dlog_sigma: alloc(stream, shape.channels)?,
            dtheta: alloc(stream, shape.theta_len(p.mode)?)?,
        };
        self.backward_into(stream, dy, x, theta, shape, p, &mut g)?;
        Ok(g)
    }

    /// E\[theta\], SNR and KL of every channel.
    pub fn stats_into(
        &self,
        stream: &Arc<CudaStream>,
        mu: &CudaSlice<f32>,
        log_sigma: &CudaSlice<f32>,
        channels: usize,
        out: &mut SbpStatsBuffers,
    ) -> Result<(), KernelError> {
        const OP: &str = "sbp stats";
        check_stream(&self.ctx, OP, stream)?;
        check_buf(&self.ctx, OP, "mu", mu, channels)?;
        check_buf(&self.ctx, OP, "log_sigma", log_sigma, channels)?;
        check_buf(&self.ctx, OP, "mean", &out.mean, channels)?;
        check_buf(&self.ctx, OP, "snr", &out.snr, channels)?;
        check_buf(&self.ctx, OP, "kl", &out.kl, channels)?;
        if channels == 0 {
            return Ok(());
        }
        let c = as_i32(OP, "channels", channels)?;
        let f = self.module.function("sbp_channel_stats")?;
        let cfg = LaunchConfig {
            grid_dim: (channels.div_ceil(BLOCK as usize) as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(f);
        b.arg(mu)
            .arg(log_sigma)
            .arg(&mut out.mean)
            .arg(&mut out.snr)
            .arg(&mut out.kl)
            .arg(&c);
        // SAFETY: arguments match the kernel; all buffers hold `channels` entries.
        unsafe { b.launch(cfg) }.map_err(KernelError::launch("sbp_channel_stats"))?;
        Ok(())
    }

    /// Allocating form of [`SbpNoise::stats_into`].
    pub fn stats(
        &self,
        stream: &Arc<CudaStream>,
        mu: &CudaSlice<f32>,
        log_sigma: &CudaSlice<f32>,
        channels: usize,
    ) -> Result<SbpStatsBuffers, KernelError> {
        let mut out = SbpStatsBuffers {
            mean: alloc(stream, channels)?,
            snr: alloc(stream, channels)?,
            kl: alloc(stream, channels)?,
        };
        self.stats_into(stream, mu, log_sigma, channels, &mut out)?;
        Ok(out)
    }

    /// Host convenience: uploads, runs [`SbpNoise::forward_into`] into NaN-filled outputs,
    /// and returns (y, theta).
    pub fn forward_host(
        &self,
        stream: &Arc<CudaStream>,
        x: &[f32],
        shape: SbpShape,
        mu: &[f32],
        log_sigma: &[f32],
        noise: impl Into<NoiseStream>,
        mode: NoiseMode,
    ) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
        let (xd, mud, lsd) = (
            upload(stream, x)?,
            upload(stream, mu)?,
            upload(stream, log_sigma)?,
        );
        let p = SbpParams {
            mu: &mud,
            log_sigma: &lsd,
            stream: noise.into(),
            mode,
        };
        let (n, t) = (shape.numel()?, shape.theta_len(mode)?);
        let mut y = poisoned(stream, n)?;
        let mut theta = poisoned(stream, t)?;
        self.forward_into(stream, &xd, shape, &p, &mut y, &mut theta)?;
        Ok((download(stream, &y, n)?, download(stream, &theta, t)?))
    }

    /// Host convenience for [`SbpNoise::backward_into`] (outputs NaN-filled first).
    pub fn backward_host(
        &self,
        stream: &Arc<CudaStream>,
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
            upload(stream, dy)?,
            upload(stream, x)?,
            upload(stream, theta)?,
        );
        let (mud, lsd) = (upload(stream, mu)?, upload(stream, log_sigma)?);
        let p = SbpParams {
            mu: &mud,
            log_sigma: &lsd,
            stream: noise.into(),
            mode,
        };
        let (n, t, c) = (shape.numel()?, shape.theta_len(mode)?, shape.channels);
        let mut g = SbpGrads {
            dx: poisoned(stream, n)?,
            dmu: poisoned(stream, c)?,
            dlog_sigma: poisoned(stream, c)?,
            dtheta: poisoned(stream, t)?,
        };
        self.backward_into(stream, &dyd, &xd, &thd, shape, &p, &mut g)?;
        Ok(SbpHostGrads {
            dx: download(stream, &g.dx, n)?,
            dmu: download(stream, &g.dmu, c)?,
            dlog_sigma: download(stream, &g.dlog_sigma, c)?,
            dtheta: download(stream, &g.dtheta, t)?,
        })
    }

    /// Host convenience for [`SbpNoise::stats_into`] (outputs NaN-filled first).
    pub fn stats_host(
        &self,
        stream: &Arc<CudaStream>,
        mu: &[f32],
        log_sigma: &[f32],
    ) -> Result<SbpHostStats, KernelError> {
        let c = mu.len();
        let (mud, lsd) = (upload(stream, mu)?, upload(stream, log_sigma)?);
        let mut out = SbpStatsBuffers {
            mean: poisoned(stream, c)?,
            snr: poisoned(stream, c)?,
            kl: poisoned(stream, c)?,
        };
        self.stats_into(stream, &mud, &lsd, c, &mut out)?;
        Ok(SbpHostStats {
            mean: download(stream, &out.mean, c)?,
            snr: download(stream, &out.snr, c)?,
            kl: download(stream, &out.kl, c)?,
        })
    }
}
