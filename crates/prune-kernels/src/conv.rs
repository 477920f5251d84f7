//! Device API of the masked convolution (`kernels/masked_conv.cu`).

use std::sync::Arc;

use cudarc::driver::LaunchConfig;

use crate::context::{as_i32, KernelContext, LoadedModule};
use crate::error::KernelError;
use crate::keep::KeepList;
use crate::runtime::{check_buf, poisoned, Args, Cuda, Runtime};
use crate::shapes::ConvShape;
use crate::source::KernelFile;
use crate::tiling::{conv_grid, stride_grid, wgrad_split, BLOCK};

/// Convolution over kept channels: compact output, gradients written in place into the
/// full-size input / weight gradient buffers.
pub struct MaskedConv2d<R: Runtime = Cuda> {
    ctx: R,
    module: Arc<LoadedModule<R>>,
    sms: u32,
}

/// The 14 geometry arguments shared by the convolution kernels, in kernel order.
struct Geom([i32; 14]);

impl Geom {
    fn push<R: Runtime>(&self, b: &mut Args<'_, R>) {
        for v in &self.0 {
            b.arg(v);
        }
    }
}

/// Largest GEMM dimension accepted (leaves headroom for the 32-bit index arithmetic).
const GEMM_LIMIT: usize = (i32::MAX as usize) - 1024;

struct Plan {
    geom: Geom,
    ho: usize,
    wo: usize,
}

fn plan<R: Runtime>(
    op: &'static str,
    shape: &ConvShape,
    keep_in: &KeepList<R>,
    keep_out: &KeepList<R>,
) -> Result<Plan, KernelError> {
    if keep_in.bound() != shape.in_channels || keep_out.bound() != shape.out_channels {
        return Err(KernelError::shape(
            op,
            format!(
                "keep lists are for {} input / {} output channels but the convolution has {} / {}",
                keep_in.bound(),
                keep_out.bound(),
                shape.in_channels,
                shape.out_channels
            ),
        ));
    }
    let (ho, wo) = shape.output_hw()?;
    shape.input_len()?;
    shape.weight_len()?;
    let (kh, kw) = shape.kernel;
    let taps = kh * kw;
    let gemm = [
        ho.checked_mul(wo).and_then(|p| p.checked_mul(shape.batch)),
        shape
            .height
            .checked_mul(shape.width)
            .and_then(|p| p.checked_mul(shape.batch)),
        keep_in.len().checked_mul(taps),
        keep_out.len().checked_mul(taps),
    ];
    if gemm.iter().any(|d| d.is_none_or(|v| v > GEMM_LIMIT)) {
        return Err(KernelError::invalid(
            op,
            format!("{shape:?} gives GEMM dimensions beyond the 32-bit kernel indexing"),
        ));
    }
    let v = |name: &str, x: usize| as_i32(op, name, x);
    let geom = Geom([
        v("batch", shape.batch)?,
        v("in_channels", shape.in_channels)?,
        v("height", shape.height)?,
        v("width", shape.width)?,
        v("kernel_h", kh)?,
        v("kernel_w", kw)?,
        v("stride_h", shape.stride.0)?,
        v("stride_w", shape.stride.1)?,
        v("pad_h", shape.padding.0)?,
        v("pad_w", shape.padding.1)?,
        v("out_h", ho)?,
        v("out_w", wo)?,
        v("kept_in", keep_in.len())?,
        v("kept_out", keep_out.len())?,
    ]);
    Ok(Plan { geom, ho, wo })
}

impl<R: Runtime> MaskedConv2d<R> {
    /// Compiles (once per context) and loads `masked_conv.cu`.
    pub fn new(kc: &KernelContext<R>) -> Result<MaskedConv2d<R>, KernelError> {
        Ok(MaskedConv2d {
            ctx: kc.runtime().clone(),
            module: kc.module(KernelFile::MaskedConv)?,
            sms: kc.sms(),
        })
    }

    fn check_keeps(
        &self,
        op: &'static str,
        keep_in: &KeepList<R>,
        keep_out: &KeepList<R>,
    ) -> Result<(), KernelError> {
        self.ctx.check_owner(op, "keep_in", keep_in.device())?;
        self.ctx.check_owner(op, "keep_out", keep_out.device())
    }

    /// Compact output `y [batch, keep_out.len(), Ho, Wo]` reading only the kept input
    /// channels of the full `x` and the kept (out, in) entries of the full weight.
    pub fn forward_into(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        weight: &R::Buf<f32>,
        shape: &ConvShape,
        keep_in: &KeepList<R>,
        keep_out: &KeepList<R>,
        y: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "masked conv forward";
        self.ctx.check_stream(OP, stream)?;
        let pl = plan(OP, shape, keep_in, keep_out)?;
        self.check_keeps(OP, keep_in, keep_out)?;
        check_buf(&self.ctx, OP, "x", x, shape.input_len()?)?;
        check_buf(&self.ctx, OP, "weight", weight, shape.weight_len()?)?;
        check_buf(&self.ctx, OP, "y", y, shape.output_len(keep_out.len())?)?;
        let (m, n) = (keep_out.len(), shape.batch * pl.ho * pl.wo);
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (gx, gy) = conv_grid(m, n)?;
        let mut b = Args::<R>::new();
        b.input(x)
            .input(weight)
            .input(keep_in.device())
            .input(keep_out.device())
            .output(y);
        pl.geom.push(&mut b);
        // Buffer lengths and keep-list bounds were checked, so every index the kernel
        // forms is in range.
        b.launch(stream, &self.module, "masked_conv_fwd", cfg(gx, gy, 1))
    }

    /// Allocating form of [`MaskedConv2d::forward_into`].
    pub fn forward(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        weight: &R::Buf<f32>,
        shape: &ConvShape,
        keep_in: &KeepList<R>,
        keep_out: &KeepList<R>,
    ) -> Result<R::Buf<f32>, KernelError> {
        let mut y = R::alloc::<f32>(stream, shape.output_len(keep_out.len())?)?;
        self.forward_into(stream, x, weight, shape, keep_in, keep_out, &mut y)?;
        Ok(y)
    }

    /// Input gradient: overwrites the kept channels of the full `dx [batch, Cin, H, W]`
    /// from the compact `dy`; other channels are not touched.
    pub fn backward_input_into(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        weight: &R::Buf<f32>,
        shape: &ConvShape,
        keep_in: &KeepList<R>,
        keep_out: &KeepList<R>,
        dx: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "masked conv input grad";
        self.ctx.check_stream(OP, stream)?;
        let pl = plan(OP, shape, keep_in, keep_out)?;
        self.check_keeps(OP, keep_in, keep_out)?;
        check_buf(&self.ctx, OP, "dy", dy, shape.output_len(keep_out.len())?)?;
        check_buf(&self.ctx, OP, "weight", weight, shape.weight_len()?)?;
        check_buf(&self.ctx, OP, "dx", dx, shape.input_len()?)?;
        let (m, n) = (keep_in.len(), shape.batch * shape.height * shape.width);
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (gx, gy) = conv_grid(m, n)?;
        let mut b = Args::<R>::new();
        b.input(dy)
            .input(weight)
            .input(keep_in.device())
            .input(keep_out.device())
            .output(dx);
        pl.geom.push(&mut b);
        b.launch(stream, &self.module, "masked_conv_dgrad", cfg(gx, gy, 1))
    }

    /// Weight gradient: overwrites the kept (out, in) entries of the full weight-shaped
    /// `dw`; other entries are not touched.  Large reductions are split over several
    /// blocks and summed in a fixed order, so the result is deterministic.
    pub fn backward_weight_into(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        x: &R::Buf<f32>,
        shape: &ConvShape,
        keep_in: &KeepList<R>,
        keep_out: &KeepList<R>,
        dw: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "masked conv weight grad";
        self.ctx.check_stream(OP, stream)?;
        let pl = plan(OP, shape, keep_in, keep_out)?;
        self.check_keeps(OP, keep_in, keep_out)?;
        check_buf(&self.ctx, OP, "dy", dy, shape.output_len(keep_out.len())?)?;
        check_buf(&self.ctx, OP, "x", x, shape.input_len()?)?;
        check_buf(&self.ctx, OP, "dw", dw, shape.weight_len()?)?;
        let taps = shape.kernel.0 * shape.kernel.1;
        let (m, n, k) = (
            keep_out.len(),
            keep_in.len() * taps,
            shape.batch * pl.ho * pl.wo,
        );
        if m == 0 || n == 0 {
            return Ok(());
        }
        let (gx, gy) = conv_grid(m, n)?;
        let (splits, per) = wgrad_split(m, n, k, self.sms);
        let per_i = as_i32(OP, "K per split", per)?;
        if splits == 1 {
            let split_out = 0i32;
            let mut b = Args::<R>::new();
            b.input(dy)
                .input(x)
                .input(keep_in.device())
                .input(keep_out.device())
                .output(dw);
            pl.geom.push(&mut b);
            b.arg(per_i).arg(split_out);
            // With one split the kernel writes dW directly.
            return b.launch(stream, &self.module, "masked_conv_wgrad", cfg(gx, gy, 1));
        }
        let mut partial = R::alloc::<f32>(stream, splits * m * n)?;
        let split_out = 1i32;
        let mut b = Args::<R>::new();
        b.input(dy)
            .input(x)
            .input(keep_in.device())
            .input(keep_out.device())
            .output(&mut partial);
        pl.geom.push(&mut b);
        b.arg(per_i).arg(split_out);
        // The partial buffer holds splits*M*N entries, one per (z, m, n) written.
        b.launch(
            stream,
            &self.module,
            "masked_conv_wgrad",
            cfg(gx, gy, splits as u32),
        )?;
        let (cin, taps_i) = (pl.geom.0[1], as_i32(OP, "taps", taps)?);
        let (kin, kout, splits_i) = (pl.geom.0[12], pl.geom.0[13], splits as i32);
        let mut b = Args::<R>::new();
        b.input(&partial)
            .input(keep_in.device())
            .input(keep_out.device())
            .output(dw);
        b.arg(cin).arg(taps_i).arg(kin).arg(kout).arg(splits_i);
        let blocks = stride_grid(m * n, self.sms);
        // Indices come from validated keep lists.
        b.launch(
            stream,
            &self.module,
            "masked_conv_wgrad_reduce",
            cfg(blocks, 1, 1),
        )
    }

    /// Host convenience: compact forward output (output buffer NaN-filled first).
    pub fn forward_host(
        &self,
        stream: &R::Stream,
        x: &[f32],
        weight: &[f32],
        shape: &ConvShape,
        keep_in: &[u32],
        keep_out: &[u32],
    ) -> Result<Vec<f32>, KernelError> {
        let ki = KeepList::<R>::new(stream, keep_in, shape.in_channels)?;
        let ko = KeepList::<R>::new(stream, keep_out, shape.out_channels)?;
        let (xd, wd) = (R::upload(stream, x)?, R::upload(stream, weight)?);
        let len = shape.output_len(keep_out.len())?;
        let mut y = poisoned::<R>(stream, len)?;
        self.forward_into(stream, &xd, &wd, shape, &ki, &ko, &mut y)?;
        R::download(stream, &y, len)
    }

    /// Host convenience: input gradient written over a copy of `dx_init`.
    pub fn backward_input_host(
        &self,
        stream: &R::Stream,
        dy: &[f32],
        weight: &[f32],
        shape: &ConvShape,
        keep_in: &[u32],
        keep_out: &[u32],
        dx_init: &[f32],
    ) -> Result<Vec<f32>, KernelError> {
        let ki = KeepList::<R>::new(stream, keep_in, shape.in_channels)?;
        let ko = KeepList::<R>::new(stream, keep_out, shape.out_channels)?;
        let (dyd, wd) = (R::upload(stream, dy)?, R::upload(stream, weight)?);
        let mut dx = R::upload(stream, dx_init)?;
        self.backward_input_into(stream, &dyd, &wd, shape, &ki, &ko, &mut dx)?;
        R::download(stream, &dx, dx_init.len())
    }

    /// Host convenience: weight gradient written over a copy of `dw_init`.
    pub fn backward_weight_host(
        &self,
        stream: &R::Stream,
        dy: &[f32],
        x: &[f32],
        shape: &ConvShape,
        keep_in: &[u32],
        keep_out: &[u32],
        dw_init: &[f32],
    ) -> Result<Vec<f32>, KernelError> {
        let ki = KeepList::<R>::new(stream, keep_in, shape.in_channels)?;
        let ko = KeepList::<R>::new(stream, keep_out, shape.out_channels)?;
        let (dyd, xd) = (R::upload(stream, dy)?, R::upload(stream, x)?);
        let mut dw = R::upload(stream, dw_init)?;
        self.backward_weight_into(stream, &dyd, &xd, shape, &ki, &ko, &mut dw)?;
        R::download(stream, &dw, dw_init.len())
    }
}

fn cfg(gx: u32, gy: u32, gz: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (gx, gy, gz),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}
