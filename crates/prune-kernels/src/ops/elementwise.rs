//! Elementwise maps (`kernels/elementwise.cu`): unary, broadcasting binary, dropout.

use super::{as_i64, numel, NnKernels};
use crate::cpu_ref::elementwise::{broadcast, Binary, Unary};
use crate::error::KernelError;
use crate::runtime::{check_buf, Args, Runtime};

impl<R: Runtime> NnKernels<R> {
    /// `y[e] = op(x[e]; a)` for `e < n`.
    pub fn unary(
        &self,
        stream: &R::Stream,
        op: Unary,
        x: &R::Buf<f32>,
        y: &mut R::Buf<f32>,
        n: usize,
        a: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "unary";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "x", x, n)?;
        check_buf(&self.ctx, OP, "y", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let (n64, code) = (as_i64(OP, "n", n)?, op as i32);
        let mut b = Args::<R>::new();
        b.input(x).output(y).arg(n64).arg(code).arg(a);
        b.launch(stream, &self.elementwise, "ew_unary", self.stride_cfg(n))
    }

    /// `out = op(a, b)` with NumPy broadcasting of `a_dims` against `b_dims` (at most
    /// [`crate::cpu_ref::elementwise::MAX_DIMS`] dimensions); returns the output shape.
    pub fn binary(
        &self,
        stream: &R::Stream,
        op: Binary,
        a: &R::Buf<f32>,
        a_dims: &[usize],
        b: &R::Buf<f32>,
        b_dims: &[usize],
        out: &mut R::Buf<f32>,
    ) -> Result<Vec<usize>, KernelError> {
        const OP: &str = "binary";
        self.ctx.check_stream(OP, stream)?;
        let (dims, sa, sb) = broadcast(a_dims, b_dims)?;
        let n = numel(OP, &dims)?;
        check_buf(&self.ctx, OP, "a", a, numel(OP, a_dims)?)?;
        check_buf(&self.ctx, OP, "b", b, numel(OP, b_dims)?)?;
        check_buf(&self.ctx, OP, "out", out, n)?;
        if n == 0 {
            return Ok(dims);
        }
        let mut meta = Vec::with_capacity(3 * dims.len());
        for v in dims.iter().chain(&sa).chain(&sb) {
            meta.push(as_i64(OP, "dimension", *v)?);
        }
        let meta = self.lists.i64s(stream, &meta)?;
        let contiguous = (a_dims == b_dims) as i32;
        let (n64, nd, code) = (as_i64(OP, "n", n)?, dims.len() as i32, op as i32);
        let mut bld = Args::<R>::new();
        bld.input(a).input(b).output(out).input(&*meta);
        bld.arg(n64).arg(nd).arg(code).arg(contiguous);
        bld.launch(stream, &self.elementwise, "ew_binary", self.stride_cfg(n))?;
        Ok(dims)
    }

    /// Dropout with drop probability `p` in `[0, 1)`: `y = x * mask`, `mask` = 0 or
    /// `1/(1-p)`; the backward is `dx = dy * mask` ([`NnKernels::binary`] with `Mul`).
    /// `(seed, offset)` select the Philox stream: use a new offset for every call.
    pub fn dropout(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        y: &mut R::Buf<f32>,
        mask: &mut R::Buf<f32>,
        n: usize,
        p: f32,
        seed: u64,
        offset: u64,
    ) -> Result<(), KernelError> {
        const OP: &str = "dropout";
        self.ctx.check_stream(OP, stream)?;
        if !(0.0..1.0).contains(&p) {
            return Err(KernelError::invalid(
                OP,
                format!("drop probability {p} outside [0, 1)"),
            ));
        }
        check_buf(&self.ctx, OP, "x", x, n)?;
        check_buf(&self.ctx, OP, "y", y, n)?;
        check_buf(&self.ctx, OP, "mask", mask, n)?;
        if n == 0 {
            return Ok(());
        }
        if n.div_ceil(4) > u32::MAX as usize {
            return Err(KernelError::invalid(
                OP,
                format!("{n} elements exceed 2^34"),
            ));
        }
        let n64 = as_i64(OP, "n", n)?;
        let (s0, s1, o0, o1) = (
            seed as u32,
            (seed >> 32) as u32,
            offset as u32,
            (offset >> 32) as u32,
        );
        let mut b = Args::<R>::new();
        b.input(x).output(y).output(mask).arg(n64).arg(p);
        b.arg(s0).arg(s1).arg(o0).arg(o1);
        b.launch(
            stream,
            &self.elementwise,
            "dropout_fwd",
            self.stride_cfg(n.div_ceil(4)),
        )
    }
}
