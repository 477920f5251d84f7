//! Reductions, log-softmax and NLL (`kernels/reduce.cu`).

use super::{as_i64, cfg, numel, NnKernels};
use crate::context::as_i32;
use crate::error::KernelError;
use crate::runtime::{check_buf, Args, Runtime};
use crate::tiling::MAX_GRID_YZ;

/// Splits sorted, unique `axes` into runs of consecutive axes.
fn runs(axes: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &a in axes {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == a => *end = a,
            _ => out.push((a, a)),
        }
    }
    out
}

impl<R: Runtime> NnKernels<R> {
    /// `y[o, i] = scale * sum_r x[o, r, i]` on a `[outer, red, inner]` view.
    pub fn reduce_middle(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        y: &mut R::Buf<f32>,
        outer: usize,
        red: usize,
        inner: usize,
        scale: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "reduce";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "x", x, numel(OP, &[outer, red, inner])?)?;
        check_buf(&self.ctx, OP, "y", y, numel(OP, &[outer, inner])?)?;
        if outer * inner == 0 {
            return Ok(());
        }
        let (o64, r32) = (
            as_i64(OP, "outer", outer)?,
            as_i32(OP, "reduced size", red)?,
        );
        if inner == 1 {
            let mut b = Args::<R>::new();
            b.input(x).output(y).arg(o64).arg(r32).arg(scale);
            b.launch(
                stream,
                &self.reduce,
                "reduce_rows",
                cfg([outer.min(MAX_GRID_YZ) as u32, 1, 1]),
            )
        } else {
            let i32_ = as_i32(OP, "inner", inner)?;
            let mut b = Args::<R>::new();
            b.input(x).output(y).arg(o64).arg(r32).arg(i32_).arg(scale);
            b.launch(
                stream,
                &self.reduce,
                "reduce_cols",
                self.stride_cfg(outer * inner),
            )
        }
    }

    /// Sum (or mean) of `x` of shape `dims` over `axes` (any order, no repeats); `y` holds
    /// the result with the reduced axes removed.  Non-adjacent axes are reduced one run of
    /// consecutive axes at a time, through temporaries.
    pub fn reduce_axes(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        dims: &[usize],
        axes: &[usize],
        mean: bool,
        y: &mut R::Buf<f32>,
    ) -> Result<(), KernelError> {
        const OP: &str = "reduce over axes";
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != axes.len() || sorted.last().is_some_and(|&a| a >= dims.len()) {
            return Err(KernelError::invalid(
                OP,
                format!("axes {axes:?} invalid for a rank-{} tensor", dims.len()),
            ));
        }
        let out_len = numel(
            OP,
            &dims
                .iter()
                .enumerate()
                .filter(|(d, _)| !sorted.contains(d))
                .map(|(_, &v)| v)
                .collect::<Vec<_>>(),
        )?;
        check_buf(&self.ctx, OP, "y", y, out_len)?;
        let runs = runs(&sorted);
        let mut cur_dims = dims.to_vec();
        let mut tmp: Option<R::Buf<f32>> = None;
        for (k, &(a0, a1)) in runs.iter().enumerate().rev() {
            let outer = numel(OP, &cur_dims[..a0])?;
            let red = numel(OP, &cur_dims[a0..=a1])?;
            let inner = numel(OP, &cur_dims[a1 + 1..])?;
            let scale = if mean && red > 0 {
                1.0 / red as f32
            } else {
                1.0
            };
            cur_dims.drain(a0..=a1);
            let src = tmp.take();
            let src_ref = src.as_ref().unwrap_or(x);
            if k == 0 {
                self.reduce_middle(stream, src_ref, y, outer, red, inner, scale)?;
            } else {
                let mut dst = R::alloc::<f32>(stream, outer * inner)?;
                self.reduce_middle(stream, src_ref, &mut dst, outer, red, inner, scale)?;
                tmp = Some(dst);
            }
        }
        if runs.is_empty() {
            return Err(KernelError::invalid(OP, "no axes to reduce"));
        }
        Ok(())
    }

    /// Log-softmax over the rows of `[rows, cols]`.
    pub fn log_softmax(
        &self,
        stream: &R::Stream,
        x: &R::Buf<f32>,
        y: &mut R::Buf<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "log_softmax";
        self.ctx.check_stream(OP, stream)?;
        let n = numel(OP, &[rows, cols])?;
        check_buf(&self.ctx, OP, "x", x, n)?;
        check_buf(&self.ctx, OP, "y", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let (r, c) = (as_i32(OP, "rows", rows)?, as_i32(OP, "cols", cols)?);
        let mut b = Args::<R>::new();
        b.input(x).output(y).arg(r).arg(c);
        b.launch(
            stream,
            &self.reduce,
            "log_softmax_fwd",
            cfg([rows.min(MAX_GRID_YZ) as u32, 1, 1]),
        )
    }

    /// Backward of [`NnKernels::log_softmax`] from its output `y`.
    pub fn log_softmax_backward(
        &self,
        stream: &R::Stream,
        dy: &R::Buf<f32>,
        y: &R::Buf<f32>,
        dx: &mut R::Buf<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "log_softmax backward";
        self.ctx.check_stream(OP, stream)?;
        let n = numel(OP, &[rows, cols])?;
        for (name, b) in [("dy", dy), ("y", y)] {
            check_buf(&self.ctx, OP, name, b, n)?;
        }
        check_buf(&self.ctx, OP, "dx", dx, n)?;
        if n == 0 {
            return Ok(());
        }
        let (r, c) = (as_i32(OP, "rows", rows)?, as_i32(OP, "cols", cols)?);
        let mut b = Args::<R>::new();
        b.input(dy).input(y).output(dx).arg(r).arg(c);
        b.launch(
            stream,
            &self.reduce,
            "log_softmax_bwd",
            cfg([rows.min(MAX_GRID_YZ) as u32, 1, 1]),
        )
    }

    /// Per-row NLL `loss[r] = -logp[r, labels[r]]`; NaN marks a label outside `[0, cols)`.
    pub fn nll(
        &self,
        stream: &R::Stream,
        logp: &R::Buf<f32>,
        labels: &R::Buf<i32>,
        loss: &mut R::Buf<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        const OP: &str = "nll";
        self.ctx.check_stream(OP, stream)?;
        check_buf(&self.ctx, OP, "logp", logp, numel(OP, &[rows, cols])?)?;
        check_buf(&self.ctx, OP, "labels", labels, rows)?;
        check_buf(&self.ctx, OP, "loss", loss, rows)?;
        if rows == 0 {
            return Ok(());
        }
        let (r, c) = (as_i32(OP, "rows", rows)?, as_i32(OP, "cols", cols)?);
        let mut b = Args::<R>::new();
        b.input(logp).input(labels).output(loss).arg(r).arg(c);
        b.launch(stream, &self.reduce, "nll_fwd", self.stride_cfg(rows))
    }

    /// Backward of [`NnKernels::nll`] scaled by `scale` (1/rows for a batch mean).
    pub fn nll_backward(
        &self,
        stream: &R::Stream,
        dloss: &R::Buf<f32>,
        labels: &R::Buf<i32>,
        dlogp: &mut R::Buf<f32>,
        rows: usize,
        cols: usize,
        scale: f32,
    ) -> Result<(), KernelError> {
        const OP: &str = "nll backward";
        self.ctx.check_stream(OP, stream)?;
        let n = numel(OP, &[rows, cols])?;
        check_buf(&self.ctx, OP, "dloss", dloss, rows)?;
        check_buf(&self.ctx, OP, "labels", labels, rows)?;
        check_buf(&self.ctx, OP, "dlogp", dlogp, n)?;
        if n == 0 {
            return Ok(());
        }
        let (r, c) = (as_i32(OP, "rows", rows)?, as_i32(OP, "cols", cols)?);
        let mut b = Args::<R>::new();
        b.input(dloss)
            .input(labels)
            .output(dlogp)
            .arg(r)
            .arg(c)
            .arg(scale);
        b.launch(stream, &self.reduce, "nll_bwd", self.stride_cfg(n))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn axes_split_into_runs() {
        assert_eq!(super::runs(&[0, 1, 3]), vec![(0, 1), (3, 3)]);
        assert_eq!(super::runs(&[2]), vec![(2, 2)]);
        assert!(super::runs(&[]).is_empty());
    }
}
