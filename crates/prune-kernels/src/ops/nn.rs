//! Batch norm (`kernels/batchnorm.cu`), pooling (`kernels/pooling.cu`) and channel concat /
//! index-select (`kernels/channels.cu`).

use super::{as_i64, cfg, numel, NnKernels};
use crate::context::as_i32;
use crate::cpu_ref::channels::index_lists;
use crate::cpu_ref::pooling::Pool;
use crate::error::KernelError;
use crate::runtime::{check_buf, Args, Cuda, Runtime};
use crate::tiling::MAX_GRID_X;

/// Batch-norm buffers of one layer (all `C` entries except `x`-shaped ones).
pub struct BnParams<'a, R: Runtime = Cuda> {
    pub gamma: &'a R::Buf<f32>,
    pub beta: &'a R::Buf<f32>,
}

/// The kernels' pooling arguments after `planes`: h, w, ho, wo, kh, kw, sh, sw, ph, pw.
fn pool_geo(op: &'static str, p: &Pool) -> Result<(i64, Vec<i32>), KernelError> {
    let (ho, wo) = p.out_hw();
    let geo = [
        p.h,
        p.w,
        ho,
        wo,
        p.kernel.0,
        p.kernel.1,
        p.stride.0,
        p.stride.1,
        p.padding.0,
        p.padding.1,
    ]
    .iter()
    .map(|&v| as_i32(op, "pool geometry", v))
    .collect::<Result<_, _>>()?;
    Ok((as_i64(op, "planes", p.planes)?, geo))
}

fn check_pool(op: &'static str, p: &Pool) -> Result<(usize, usize), KernelError> {
    let (kh, kw) = p.kernel;
    if kh == 0 || kw == 0 || p.stride.0 == 0 || p.stride.1 == 0 {
        return Err(KernelError::invalid(
            op,
            format!("{p:?}: zero window or stride"),
        ));
    }
    if 2 * p.padding.0 > kh || 2 * p.padding.1 > kw {
        return Err(KernelError::invalid(
            op,
            format!("{p:?}: padding over half the window"),
        ));
    }
    if p.h + 2 * p.padding.0 < kh || p.w + 2 * p.padding.1 < kw {
        return Err(KernelError::shape(
            op,
            format!("{p:?}: window larger than the input"),
        ));
    }
    Ok(p.out_hw())
}

impl<R: Runtime> NnKernels<R> {
    /// Batch statistics of `x [n, C, hw]`: mean, 1/sqrt(var + eps) and the unbiased
    /// variance (for the running statistics), `C` entries each.
    pub fn bn_stats(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        (n, c, hw): (usize, usize, usize),
        eps: f32,
        mean: &mut R::Buf<f32>,
        invstd: &mut R::Buf<f32>,
        var_unbiased: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "batch norm statistics";
        self.ctx.check_stream(OP, stream)?;
        if !(eps >= 0.0 && eps.is_finite()) {
            return Err(KernelError::invalid(
                OP,
                format!("eps {eps} must be finite and >= 0"),
            ));
        }
        check_buf(&self.ctx, OP, "x", x, numel(OP, &[n, c, hw])?)?;
        for (name, b) in [
            ("mean", &*mean),
            ("invstd", &*invstd),
            ("var", &*var_unbiased),
        ] {
            check_buf(&self.ctx, OP, name, b, c)?;
        }
        if n * hw == 0 || c == 0 {
            return Err(KernelError::shape(
                OP,
                format!("no values per channel in [{n}, {c}, {hw}]"),
            ));
        }
        let (n32, c32, hw32) = (
            as_i32(OP, "n", n)?,
            as_i32(OP, "C", c)?,
            as_i32(OP, "hw", hw)?,
        );
        let mut b = Args::<R>::new();
        b.input(x).output(mean).output(invstd).output(var_unbiased);
        b.arg(n32).arg(c32).arg(hw32).arg(eps);
        b.launch(
            stream,
            &self.batchnorm,
            "bn_stats",
            cfg([c.min(MAX_GRID_X) as u32, 1, 1]),
        )
    }

    /// `invstd = 1/sqrt(var + eps)` (eval mode, from the running variance).
    pub fn bn_invstd(
        &self,
        stream: &R::Stream,
        var: &R::Buf<f32>,
        invstd: &mut R::Buf<f32>,
        c: usize,
        eps: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "batch norm invstd";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "var", var, c)?;
        check_buf(&self.ctx, OP, "invstd", invstd, c)?;
        if c == 0 {
            return Ok(());
        }
        let c32 = as_i32(OP, "C", c)?;
        let mut b = Args::<R>::new();
        b.input(var).output(invstd).arg(c32).arg(eps);
        b.launch(
            stream,
            &self.batchnorm,
            "bn_invstd",
            cfg([c.div_ceil(256) as u32, 1, 1]),
        )
    }

    /// `y = gamma (x - mean) invstd + beta` (train with batch statistics, eval with running
    /// ones).
    pub fn bn_apply(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        (n, c, hw): (usize, usize, usize),
        mean: &R::Buf<f32>,
        invstd: &R::Buf<f32>,
        p: &BnParams<R>,
        y: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "batch norm apply";
        self.ctx.check_stream(OP, stream)?;
        let total = numel(OP, &[n, c, hw])?;
        check_buf(&self.ctx, OP, "x", x, total)?;
        check_buf(&self.ctx, OP, "y", y, total)?;
        for (name, b) in [
            ("mean", mean),
            ("invstd", invstd),
            ("gamma", p.gamma),
            ("beta", p.beta),
        ] {
            check_buf(&self.ctx, OP, name, b, c)?;
        }
        if total == 0 {
            return Ok(());
        }
        let (t64, c32, hw32) = (
            as_i64(OP, "numel", total)?,
            as_i32(OP, "C", c)?,
            as_i32(OP, "hw", hw)?,
        );
        let mut b = Args::<R>::new();
        b.input(x)
            .input(mean)
            .input(invstd)
            .input(p.gamma)
            .input(p.beta)
            .output(y);
        b.arg(t64).arg(c32).arg(hw32);
        b.launch(stream, &self.batchnorm, "bn_apply", self.stride_cfg(total))
    }

    /// Backward: `dgamma`, `dbeta` and `dx` (training: through the batch statistics;
    /// `train = false`: eval, `dx = dy gamma invstd`).
    pub fn bn_backward(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        x: &R::Buf<f32>,
        (n, c, hw): (usize, usize, usize),
        mean: &R::Buf<f32>,
        invstd: &R::Buf<f32>,
        gamma: &R::Buf<f32>,
        train: bool,
        dx: &mut R::Buf<f32>,
        dgamma: &mut R::Buf<f32>,
        dbeta: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "batch norm backward";
        self.ctx.check_stream(OP, stream)?;
        let total = numel(OP, &[n, c, hw])?;
        for (name, b) in [("dy", dy), ("x", x)] {
            check_buf(&self.ctx, OP, name, b, total)?;
        }
        check_buf(&self.ctx, OP, "dx", dx, total)?;
        for (name, b) in [("mean", mean), ("invstd", invstd), ("gamma", gamma)] {
            check_buf(&self.ctx, OP, name, b, c)?;
        }
        check_buf(&self.ctx, OP, "dgamma", dgamma, c)?;
        check_buf(&self.ctx, OP, "dbeta", dbeta, c)?;
        if total == 0 {
            return Ok(());
        }
        let (n32, c32, hw32) = (
            as_i32(OP, "n", n)?,
            as_i32(OP, "C", c)?,
            as_i32(OP, "hw", hw)?,
        );
        let mut b = Args::<R>::new();
        b.input(dy)
            .input(x)
            .input(mean)
            .input(invstd)
            .output(&mut *dgamma)
            .output(&mut *dbeta);
        b.arg(n32).arg(c32).arg(hw32);
        b.launch(
            stream,
            &self.batchnorm,
            "bn_backward_reduce",
            cfg([c.min(MAX_GRID_X) as u32, 1, 1]),
        )?;
        let (t64, tr) = (as_i64(OP, "numel", total)?, train as i32);
        let mut b = Args::<R>::new();
        b.input(dy)
            .input(x)
            .input(mean)
            .input(invstd)
            .input(gamma)
            .input(&*dgamma)
            .input(&*dbeta)
            .output(dx);
        b.arg(t64).arg(n32).arg(c32).arg(hw32).arg(tr);
        b.launch(
            stream,
            &self.batchnorm,
            "bn_backward_dx",
            self.stride_cfg(total),
        )
    }

    /// Max pooling: `y` and the argmax (flat index in the plane) for the backward.
    pub fn max_pool(
        &self,
        stream: &R::Stream,
        p: &Pool,
        x: &R::Buf<f32>,
        y: &mut R::Buf<f32>,
        argmax: &mut R::Buf<i32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "max pool";
        self.ctx.check_stream(OP, stream)?;
        let (ho, wo) = check_pool(OP, p)?;
        let nout = numel(OP, &[p.planes, ho, wo])?;
        check_buf(&self.ctx, OP, "x", x, numel(OP, &[p.planes, p.h, p.w])?)?;
        check_buf(&self.ctx, OP, "y", y, nout)?;
        check_buf(&self.ctx, OP, "argmax", argmax, nout)?;
        if nout == 0 {
            return Ok(());
        }
        let (planes, geo) = pool_geo(OP, p)?;
        let mut b = Args::<R>::new();
        b.input(x).output(y).output(argmax).arg(planes);
        for g in &geo {
            b.arg(g);
        }
        b.launch(stream, &self.pooling, "max_pool_fwd", self.stride_cfg(nout))
    }

    /// Max pooling backward (gather form, deterministic).
    pub fn max_pool_backward(
        &self,
        stream: &R::Stream,
        p: &Pool,
        dy: &R::Buf<f32>,
        argmax: &R::Buf<i32>,
        dx: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "max pool backward";
        self.ctx.check_stream(OP, stream)?;
        let (ho, wo) = check_pool(OP, p)?;
        let (nin, nout) = (
            numel(OP, &[p.planes, p.h, p.w])?,
            numel(OP, &[p.planes, ho, wo])?,
        );
        check_buf(&self.ctx, OP, "dy", dy, nout)?;
        check_buf(&self.ctx, OP, "argmax", argmax, nout)?;
        check_buf(&self.ctx, OP, "dx", dx, nin)?;
        if nin == 0 {
            return Ok(());
        }
        let (planes, geo) = pool_geo(OP, p)?;
        let mut b = Args::<R>::new();
        b.input(dy).input(argmax).output(dx).arg(planes);
        for g in &geo {
            b.arg(g);
        }
        b.launch(stream, &self.pooling, "max_pool_bwd", self.stride_cfg(nin))
    }

    /// Average pooling (padding counts as zero) forward (`backward = false`: x -> y) or
    /// backward (`backward = true`: dy -> dx).
    pub fn avg_pool(
        &self,
        stream: &R::Stream,
        p: &Pool,
        backward: bool,
        src: &R::Buf<f32>,
        dst: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "average pool";
        self.ctx.check_stream(OP, stream)?;
        let (ho, wo) = check_pool(OP, p)?;
        let (nin, nout) = (
            numel(OP, &[p.planes, p.h, p.w])?,
            numel(OP, &[p.planes, ho, wo])?,
        );
        let (ns, nd) = if backward { (nout, nin) } else { (nin, nout) };
        check_buf(&self.ctx, OP, "source", src, ns)?;
        check_buf(&self.ctx, OP, "destination", dst, nd)?;
        if nd == 0 {
            return Ok(());
        }
        let name = if backward {
            "avg_pool_bwd"
        } else {
            "avg_pool_fwd"
        };
        let (planes, geo) = pool_geo(OP, p)?;
        let mut b = Args::<R>::new();
        b.input(src).output(dst).arg(planes);
        for g in &geo {
            b.arg(g);
        }
        b.launch(stream, &self.pooling, name, self.stride_cfg(nd))
    }

    /// Backward of global average pooling: `dx[plane, p] = dy[plane] / hw`.
    pub fn global_avg_pool_backward(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        dx: &mut R::Buf<f32>,
        planes: usize,
        hw: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "global average pool backward";
        self.ctx.check_stream(OP, stream)?;
        let total = numel(OP, &[planes, hw])?;
        check_buf(&self.ctx, OP, "dy", dy, planes)?;
        check_buf(&self.ctx, OP, "dx", dx, total)?;
        if total == 0 {
            return Ok(());
        }
        let (p64, hw32) = (as_i64(OP, "planes", planes)?, as_i32(OP, "hw", hw)?);
        let mut b = Args::<R>::new();
        b.input(dy).output(dx).arg(p64).arg(hw32);
        b.launch(
            stream,
            &self.pooling,
            "global_avg_pool_bwd",
            self.stride_cfg(total),
        )
    }

    /// `dst[o, dst_off + j, i] = src[o, src_off + j, i]` for `j < count` on
    /// `[outer, c_src, inner]` and `[outer, c_dst, inner]` views: one part of a concat (or,
    /// with the roles swapped, of its backward).
    pub fn copy_channels(
        &self,
        stream: &R::Stream,
        src: &R::Buf<f32>,
        (c_src, src_off): (usize, usize),
        dst: &mut R::Buf<f32>,
        (c_dst, dst_off): (usize, usize),
        count: usize,
        outer: usize,
        inner: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "copy channels";
        self.ctx.check_stream(OP, stream)?;
        if src_off + count > c_src || dst_off + count > c_dst {
            return Err(KernelError::invalid(
                OP,
                format!("channels {src_off}+{count} of {c_src} -> {dst_off}+{count} of {c_dst}"),
            ));
        }
        check_buf(
            &self.ctx,
            OP,
            "src",
            src,
            numel(OP, &[outer, c_src, inner])?,
        )?;
        check_buf(
            &self.ctx,
            OP,
            "dst",
            dst,
            numel(OP, &[outer, c_dst, inner])?,
        )?;
        let moved = numel(OP, &[outer, count, inner])?;
        if moved == 0 {
            return Ok(());
        }
        let a: Vec<i32> = [outer, c_src, src_off, c_dst, dst_off, count, inner]
            .iter()
            .map(|&v| as_i32(OP, "channel geometry", v))
            .collect::<Result<_, _>>()?;
        let mut b = Args::<R>::new();
        b.input(src).output(dst);
        for v in &a {
            b.arg(v);
        }
        b.launch(
            stream,
            &self.channels,
            "copy_channels",
            self.stride_cfg(moved),
        )
    }

    /// `dst [outer, idx.len(), inner] = src [outer, c, inner]` at channels `idx` (which may
    /// repeat); `idx` is validated, and uploaded when the device does not hold it yet.
    pub fn index_select(
        &self,
        stream: &R::Stream,
        src: &R::Buf<f32>,
        idx: &[u32],
        dst: &mut R::Buf<f32>,
        (outer, c, inner): (usize, usize, usize),
    ) -> Result<(), KernelError> {
        const OP: &str = "index select";
        self.ctx.check_stream(OP, stream)?;
        index_lists(idx, c)?;
        check_buf(&self.ctx, OP, "src", src, numel(OP, &[outer, c, inner])?)?;
        let total = numel(OP, &[outer, idx.len(), inner])?;
        check_buf(&self.ctx, OP, "dst", dst, total)?;
        if total == 0 {
            return Ok(());
        }
        let idx_d = self.lists.u32s(stream, idx)?;
        let a: Vec<i32> = [outer, c, idx.len(), inner]
            .iter()
            .map(|&v| as_i32(OP, "geometry", v))
            .collect::<Result<_, _>>()?;
        let mut b = Args::<R>::new();
        b.input(src).input(&*idx_d).output(dst);
        for v in &a {
            b.arg(v);
        }
        b.launch(
            stream,
            &self.channels,
            "index_select_channels",
            self.stride_cfg(total),
        )
    }

    /// Backward of [`NnKernels::index_select`]: `dsrc[o, c, i] = sum_{j: idx[j] = c}
    /// g[o, j, i]` (overwrites `dsrc`; deterministic).
    pub fn index_add(
        &self,
        stream: &R::Stream,
        g: &R::Buf<f32>,
        idx: &[u32],
        dsrc: &mut R::Buf<f32>,
        (outer, c, inner): (usize, usize, usize),
    ) -> Result<(), KernelError> {
        const OP: &str = "index select backward";
        self.ctx.check_stream(OP, stream)?;
        let (offsets, js) = index_lists(idx, c)?;
        check_buf(
            &self.ctx,
            OP,
            "g",
            g,
            numel(OP, &[outer, idx.len(), inner])?,
        )?;
        let total = numel(OP, &[outer, c, inner])?;
        check_buf(&self.ctx, OP, "dsrc", dsrc, total)?;
        if total == 0 {
            return Ok(());
        }
        let (off_d, js_d) = (
            self.lists.u32s(stream, &offsets)?,
            self.lists.u32s(stream, &js)?,
        );
        let a: Vec<i32> = [outer, c, idx.len(), inner]
            .iter()
            .map(|&v| as_i32(OP, "geometry", v))
            .collect::<Result<_, _>>()?;
        let mut b = Args::<R>::new();
        b.input(g).input(&*off_d).input(&*js_d).output(dsrc);
        for v in &a {
            b.arg(v);
        }
        b.launch(
            stream,
            &self.channels,
            "index_add_channels",
            self.stride_cfg(total),
        )
    }
}
