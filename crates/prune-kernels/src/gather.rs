//! Device API of channel gather / scatter (`kernels/gather.cu`).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use crate::context::{as_i32, check_buf, check_slice, check_stream, KernelContext, LoadedModule};
use crate::error::KernelError;
use crate::host::{alloc, download, poisoned, upload};
use crate::keep::KeepList;
use crate::shapes::ChannelLayout;
use crate::source::KernelFile;
use crate::tiling::{gather_grid, stride_grid, BLOCK};

/// Channel gather / scatter on `[outer, C, inner]` views.
pub struct ChannelGather {
    ctx: Arc<CudaContext>,
    module: Arc<LoadedModule>,
    sms: u32,
}

/// What scatter does with the channels that are not in the keep list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untouched {
    /// Leave them as they are in the destination.
    Keep,
    /// Set them to zero (the whole destination is cleared first).
    Zero,
}

struct Args {
    outer: i32,
    channels: i32,
    kept: i32,
    inner: i32,
    vec4: bool,
    row_units: usize,
}

fn args(op: &'static str, layout: &ChannelLayout, keep: &KeepList) -> Result<Args, KernelError> {
    if keep.bound() != layout.channels {
        return Err(KernelError::shape(
            op,
            format!(
                "keep list is for {} channels but the layout has {}",
                keep.bound(),
                layout.channels
            ),
        ));
    }
    layout.full_len()?;
    let row = keep
        .len()
        .checked_mul(layout.inner)
        .filter(|&r| r <= i32::MAX as usize);
    let row = row.ok_or_else(|| {
        KernelError::invalid(
            op,
            format!("{} kept x {} inner exceeds 2^31", keep.len(), layout.inner),
        )
    })?;
    let vec4 = layout.inner.is_multiple_of(4);
    let unit_inner = if vec4 { layout.inner / 4 } else { layout.inner };
    Ok(Args {
        outer: as_i32(op, "outer", layout.outer)?,
        channels: as_i32(op, "channels", layout.channels)?,
        kept: as_i32(op, "kept", keep.len())?,
        inner: as_i32(op, "inner", unit_inner)?,
        vec4,
        row_units: if vec4 { row / 4 } else { row },
    })
}

impl ChannelGather {
    /// Compiles (once per context) and loads `gather.cu`.
    pub fn new(kc: &KernelContext) -> Result<ChannelGather, KernelError> {
        Ok(ChannelGather {
            ctx: kc.cuda_context().clone(),
            module: kc.module(KernelFile::Gather)?,
            sms: kc.sms(),
        })
    }

    fn launch(
        &self,
        name: &'static str,
        src: &CudaSlice<f32>,
        keep: &KeepList,
        dst: &mut CudaSlice<f32>,
        a: &Args,
        stream: &Arc<CudaStream>,
    ) -> Result<(), KernelError> {
        if a.outer == 0 || a.row_units == 0 {
            return Ok(());
        }
        let (gx, gy) = gather_grid(a.outer as usize, a.row_units);
        let f = self.module.function(name)?;
        let mut b = stream.launch_builder(f);
        b.arg(src).arg(keep.device()).arg(dst);
        b.arg(&a.outer).arg(&a.channels).arg(&a.kept).arg(&a.inner);
        let cfg = LaunchConfig {
            grid_dim: (gx, gy, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: arguments match the kernel; the buffers were checked against the layout
        // and the keep list was validated against the channel count.  The vec4 kernels
        // read whole device allocations, which are at least 256-byte aligned.
        unsafe { b.launch(cfg) }.map_err(KernelError::launch(name))?;
        Ok(())
    }

    /// `dst [outer, keep.len(), inner] = src [outer, C, inner]` at the kept channels.
    pub fn gather_into(
        &self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<f32>,
        layout: &ChannelLayout,
        keep: &KeepList,
        dst: &mut CudaSlice<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "channel gather";
        check_stream(&self.ctx, OP, stream)?;
        let a = args(OP, layout, keep)?;
        check_slice(&self.ctx, OP, "keep", keep.device())?;
        check_buf(&self.ctx, OP, "src", src, layout.full_len()?)?;
        check_buf(&self.ctx, OP, "dst", dst, layout.compact_len(keep.len())?)?;
        let name = if a.vec4 {
            "gather_channels_vec4"
        } else {
            "gather_channels_f32"
        };
        self.launch(name, src, keep, dst, &a, stream)
    }

    /// Allocating form of [`ChannelGather::gather_into`].
    pub fn gather(
        &self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<f32>,
        layout: &ChannelLayout,
        keep: &KeepList,
    ) -> Result<CudaSlice<f32>, KernelError> {
        let mut dst = alloc(stream, layout.compact_len(keep.len())?)?;
        self.gather_into(stream, src, layout, keep, &mut dst)?;
        Ok(dst)
    }

    /// `dst [outer, C, inner]` at the kept channels `= src [outer, keep.len(), inner]`; the
    /// other channels are kept or zeroed according to `untouched`.
    pub fn scatter_into(
        &self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<f32>,
        layout: &ChannelLayout,
        keep: &KeepList,
        dst: &mut CudaSlice<f32>,
        untouched: Untouched,
    ) -> Result<(), KernelError> {
        const OP: &str = "channel scatter";
        check_stream(&self.ctx, OP, stream)?;
        let a = args(OP, layout, keep)?;
        check_slice(&self.ctx, OP, "keep", keep.device())?;
        check_buf(&self.ctx, OP, "src", src, layout.compact_len(keep.len())?)?;
        let full = layout.full_len()?;
        check_buf(&self.ctx, OP, "dst", dst, full)?;
        if untouched == Untouched::Zero && full > 0 {
            self.fill(stream, dst, full, 0.0)?;
        }
        let name = if a.vec4 {
            "scatter_channels_vec4"
        } else {
            "scatter_channels_f32"
        };
        self.launch(name, src, keep, dst, &a, stream)
    }

    /// Sets the first `len` entries of `dst` to `value`.
    pub fn fill(
        &self,
        stream: &Arc<CudaStream>,
        dst: &mut CudaSlice<f32>,
        len: usize,
        value: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "fill";
        check_stream(&self.ctx, OP, stream)?;
        check_slice(&self.ctx, OP, "dst", dst)?;
        if len > dst.len() {
            return Err(KernelError::shape(
                OP,
                format!("{len} entries requested in a {}-entry buffer", dst.len()),
            ));
        }
        if len == 0 {
            return Ok(());
        }
        let n = len as i64;
        let f = self.module.function("fill_f32")?;
        let mut b = stream.launch_builder(f);
        b.arg(dst).arg(&value).arg(&n);
        let cfg = LaunchConfig {
            grid_dim: (stride_grid(len, self.sms), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel writes entries below `len`, which is within the buffer.
        unsafe { b.launch(cfg) }.map_err(KernelError::launch("fill_f32"))?;
        Ok(())
    }

    /// Host convenience: gathered tensor (output NaN-filled first).
    pub fn gather_host(
        &self,
        stream: &Arc<CudaStream>,
        src: &[f32],
        layout: &ChannelLayout,
        keep: &[u32],
    ) -> Result<Vec<f32>, KernelError> {
        let k = KeepList::new(stream, keep, layout.channels)?;
        let s = upload(stream, src)?;
        let len = layout.compact_len(keep.len())?;
        let mut dst = poisoned(stream, len)?;
        self.gather_into(stream, &s, layout, &k, &mut dst)?;
        download(stream, &dst, len)
    }

    /// Host convenience: `src` scattered over a copy of `dst_init`.
    pub fn scatter_host(
        &self,
        stream: &Arc<CudaStream>,
        src: &[f32],
        layout: &ChannelLayout,
        keep: &[u32],
        dst_init: &[f32],
        untouched: Untouched,
    ) -> Result<Vec<f32>, KernelError> {
        let k = KeepList::new(stream, keep, layout.channels)?;
        let s = upload(stream, src)?;
        let mut dst = upload(stream, dst_init)?;
        self.scatter_into(stream, &s, layout, &k, &mut dst, untouched)?;
        download(stream, &dst, dst_init.len())
    }
}
