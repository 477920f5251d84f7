//! Reference-speed kernels (`kernels/baseline.cu`) that the benchmarks compare the fused
//! and tiled kernels against: the unfused SBP noise chain, a per-channel scale (mask
//! multiply) and a naive per-element gather.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::context::{as_i32, check_buf, check_slice, check_stream, KernelContext, LoadedModule};
use crate::error::KernelError;
use crate::host::alloc;
use crate::keep::KeepList;
use crate::sbp::{stream_words, SbpParams};
use crate::shapes::{ChannelLayout, NoiseMode, SbpShape};
use crate::source::KernelFile;
use crate::tiling::{stride_grid, BLOCK};

/// Baseline kernels of one context.
pub struct Baselines {
    ctx: Arc<CudaContext>,
    module: Arc<LoadedModule>,
    sms: u32,
}

/// Temporaries of the unfused noise chain (one entry per theta).
pub struct UnfusedWork {
    eps: CudaSlice<f32>,
    log_theta: CudaSlice<f32>,
    theta: CudaSlice<f32>,
    len: usize,
}

impl UnfusedWork {
    /// Buffers for `len` theta entries.
    pub fn new(stream: &Arc<CudaStream>, len: usize) -> Result<UnfusedWork, KernelError> {
        Ok(UnfusedWork {
            eps: alloc(stream, len)?,
            log_theta: alloc(stream, len)?,
            theta: alloc(stream, len)?,
            len,
        })
    }

    /// The theta values of the last chain run.
    pub fn theta(&self) -> &CudaSlice<f32> {
        &self.theta
    }
}

fn cfg(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Baselines {
    /// Compiles (once per context) and loads `baseline.cu`.
    pub fn new(kc: &KernelContext) -> Result<Baselines, KernelError> {
        Ok(Baselines {
            ctx: kc.cuda_context().clone(),
            module: kc.module(KernelFile::Baseline)?,
            sms: kc.sms(),
        })
    }

    /// The SBP forward as four launches: uniform noise, log theta, exp, broadcast multiply.
    pub fn unfused_noise(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<f32>,
        shape: SbpShape,
        p: &SbpParams,
        work: &mut UnfusedWork,
        y: &mut CudaSlice<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "unfused sbp noise";
        check_stream(&self.ctx, OP, stream)?;
        let numel = shape.numel()?;
        let tlen = shape.theta_len(p.mode)?;
        check_buf(&self.ctx, OP, "x", x, numel)?;
        check_buf(&self.ctx, OP, "y", y, numel)?;
        check_buf(&self.ctx, OP, "mu", p.mu, shape.channels)?;
        check_buf(&self.ctx, OP, "log_sigma", p.log_sigma, shape.channels)?;
        if work.len != tlen {
            return Err(KernelError::shape(
                OP,
                format!("workspace has {} entries, expected {tlen}", work.len),
            ));
        }
        if tlen == 0 {
            return Ok(());
        }
        let rows = as_i32(OP, "rows", shape.rows)?;
        let channels = as_i32(OP, "channels", shape.channels)?;
        let inner = as_i32(OP, "inner", shape.inner)?;
        let per_example = p.mode.counter_tag() as i32;
        let (seed_lo, seed_hi, step, layer2) = stream_words(&p.stream);
        let count = tlen as i64;
        let blocks = stride_grid(tlen, self.sms);

        let f = self.module.function("base_noise_uniform")?;
        let mut b = stream.launch_builder(f);
        b.arg(&mut work.eps)
            .arg(&rows)
            .arg(&channels)
            .arg(&seed_lo)
            .arg(&seed_hi)
            .arg(&step)
            .arg(&layer2)
            .arg(&per_example);
        // SAFETY: arguments match; eps holds tlen entries.
        unsafe { b.launch(cfg(blocks)) }.map_err(KernelError::launch("base_noise_uniform"))?;

        let f = self.module.function("base_noise_log_theta")?;
        let mut b = stream.launch_builder(f);
        b.arg(&work.eps)
            .arg(p.mu)
            .arg(p.log_sigma)
            .arg(&mut work.log_theta)
            .arg(&count)
            .arg(&channels);
        // SAFETY: arguments match; all buffers hold tlen (or C) entries.
        unsafe { b.launch(cfg(blocks)) }.map_err(KernelError::launch("base_noise_log_theta"))?;

        let f = self.module.function("base_exp")?;
        let mut b = stream.launch_builder(f);
        b.arg(&work.log_theta).arg(&mut work.theta).arg(&count);
        // SAFETY: arguments match; both buffers hold tlen entries.
        unsafe { b.launch(cfg(blocks)) }.map_err(KernelError::launch("base_exp"))?;

        if numel == 0 {
            return Ok(());
        }
        let total = numel as i64;
        let f = self.module.function("base_scale_channels")?;
        let mut b = stream.launch_builder(f);
        b.arg(x)
            .arg(&work.theta)
            .arg(y)
            .arg(&total)
            .arg(&channels)
            .arg(&inner)
            .arg(&per_example);
        // SAFETY: arguments match; x and y hold numel entries, theta tlen.
        unsafe { b.launch(cfg(stride_grid(numel, self.sms))) }
            .map_err(KernelError::launch("base_scale_channels"))?;
        Ok(())
    }

    /// `y[n, c, i] = x[n, c, i] * scale[c]` (per channel) or `scale[n*C + c]` (per example);
    /// with a 0/1 `scale` this is the mask multiply after a dense convolution.
    pub fn scale_channels(
        &self,
        stream: &Arc<CudaStream>,
        x: &CudaSlice<f32>,
        scale: &CudaSlice<f32>,
        shape: SbpShape,
        mode: NoiseMode,
        y: &mut CudaSlice<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "scale channels";
        check_stream(&self.ctx, OP, stream)?;
        let numel = shape.numel()?;
        check_buf(&self.ctx, OP, "x", x, numel)?;
        check_buf(&self.ctx, OP, "y", y, numel)?;
        check_buf(&self.ctx, OP, "scale", scale, shape.theta_len(mode)?)?;
        if numel == 0 {
            return Ok(());
        }
        let channels = as_i32(OP, "channels", shape.channels)?;
        let inner = as_i32(OP, "inner", shape.inner)?;
        let per_example = mode.counter_tag() as i32;
        let total = numel as i64;
        let f = self.module.function("base_scale_channels")?;
        let mut b = stream.launch_builder(f);
        b.arg(x)
            .arg(scale)
            .arg(y)
            .arg(&total)
            .arg(&channels)
            .arg(&inner)
            .arg(&per_example);
        // SAFETY: arguments match; lengths checked above.
        unsafe { b.launch(cfg(stride_grid(numel, self.sms))) }
            .map_err(KernelError::launch("base_scale_channels"))?;
        Ok(())
    }

    /// Gather with one thread per element and 64-bit index decomposition.
    pub fn naive_gather(
        &self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<f32>,
        layout: &ChannelLayout,
        keep: &KeepList,
        dst: &mut CudaSlice<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "naive gather";
        check_stream(&self.ctx, OP, stream)?;
        if keep.bound() != layout.channels {
            return Err(KernelError::shape(
                OP,
                format!(
                    "keep list is for {} channels, layout has {}",
                    keep.bound(),
                    layout.channels
                ),
            ));
        }
        check_slice(&self.ctx, OP, "keep", keep.device())?;
        check_buf(&self.ctx, OP, "src", src, layout.full_len()?)?;
        let total = layout.compact_len(keep.len())?;
        check_buf(&self.ctx, OP, "dst", dst, total)?;
        if total == 0 {
            return Ok(());
        }
        let channels = as_i32(OP, "channels", layout.channels)?;
        let kept = as_i32(OP, "kept", keep.len())?;
        let inner = as_i32(OP, "inner", layout.inner)?;
        let total_i = total as i64;
        let blocks = total.div_ceil(BLOCK as usize);
        if blocks > i32::MAX as usize {
            return Err(KernelError::invalid(
                OP,
                format!("{total} elements exceed one grid"),
            ));
        }
        let f = self.module.function("base_gather_naive")?;
        let mut b = stream.launch_builder(f);
        b.arg(src)
            .arg(keep.device())
            .arg(dst)
            .arg(&total_i)
            .arg(&channels)
            .arg(&kept)
            .arg(&inner);
        // SAFETY: arguments match; indices come from a validated keep list.
        unsafe { b.launch(cfg(blocks as u32)) }
            .map_err(KernelError::launch("base_gather_naive"))?;
        Ok(())
    }
}
