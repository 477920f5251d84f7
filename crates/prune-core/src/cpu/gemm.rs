//! Single-precision matrix multiply (GEMM), the hot path of every layer.
//!
//! `C[m×n] = alpha · op(A) · op(B) + beta · C`, all row-major.
//!
//! The blocked loop nest is in `gemm_driver.rs` and the micro-kernels
//! in [`super::gemm_kernels`]; this module holds the public entry points.

pub(crate) use super::gemm_driver::COut;
use super::gemm_driver::{drive, pack_a_all, packed_a_len, ASource, BSource, Dims};
use super::gemm_kernels::{active_kernel, Kernel};
use super::scratch::Kept;
use crate::error::{CoreError, Result};
use crate::tensor::Tensor;

pub(crate) use super::gemm_pack::Operand;

/// `op(A)` packed once for every k-block, for reuse across many products
/// with the same left operand (a convolution's weights across a batch).
pub struct PackedA {
    kernel: &'static Kernel,
    m: usize,
    k: usize,
    buf: Kept,
}

impl PackedA {
    /// Packs the `m × k` matrix `op(A)` (`A` stored `k × m` when `trans_a`).
    /// Errors when `a` does not hold exactly `m·k` values.
    pub fn new(trans_a: bool, m: usize, k: usize, a: &[f32]) -> Result<Self> {
        Self::with_kernel(active_kernel(), trans_a, m, k, a)
    }

    /// [`PackedA::new`] for an explicit micro-kernel.
    pub(crate) fn with_kernel(
        kernel: &'static Kernel,
        trans_a: bool,
        m: usize,
        k: usize,
        a: &[f32],
    ) -> Result<Self> {
        if a.len() != m * k {
            return Err(CoreError::BadShape {
                op: "PackedA::new",
                shape: if trans_a { vec![k, m] } else { vec![m, k] },
                reason: format!("operand holds {} values", a.len()),
            });
        }
        let ld = if trans_a { m } else { k };
        let len = packed_a_len(kernel.mr, m, k);
        let mut buf = Kept::take(len);
        let op = Operand {
            data: a,
            ld,
            trans: trans_a,
        };
        pack_a_all(kernel.mr, op, m, k, &mut buf);
        Ok(Self { kernel, m, k, buf })
    }

    /// Rows of `op(A)`.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of `op(A)` (the inner dimension).
    pub fn depth(&self) -> usize {
        self.k
    }

    /// The packed micro-panels.
    fn panels(&self) -> &[f32] {
        &self.buf
    }
}

/// `C = alpha · op(A) · op(B) + beta · C` with every operand in place.
/// Internal kernel entry: dimensions must already agree with the slices.
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand,
    b: Operand,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    gemm_with(
        active_kernel(),
        m,
        n,
        k,
        alpha,
        a,
        b,
        beta,
        c,
        ldc,
        parallel,
    );
}

/// [`gemm`] with an explicit micro-kernel.
pub(crate) fn gemm_with(
    kernel: &'static Kernel,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand,
    b: Operand,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    let d = Dims { m, n, k };
    drive(
        kernel,
        d,
        alpha,
        ASource::Raw(a),
        BSource::Raw(b),
        COut::Update(c, beta),
        ldc,
        parallel,
    );
}

/// `C = alpha · A · op(B) (+ beta · C)` with `A` packed by [`PackedA::new`],
/// into `c` as [`COut`] says: updated, or overwritten without reading it;
/// `C` rows are `ldc` apart. Multithreaded when `parallel` and large enough.
pub(crate) fn gemm_prepacked(
    pa: &PackedA,
    n: usize,
    alpha: f32,
    b: Operand,
    c: COut,
    ldc: usize,
    parallel: bool,
) {
    let d = Dims {
        m: pa.m,
        n,
        k: pa.k,
    };
    drive(
        pa.kernel,
        d,
        alpha,
        ASource::Packed(pa.panels()),
        BSource::Raw(b),
        c,
        ldc,
        parallel,
    );
}

/// The layout of a prepacked right operand for the active micro-kernel:
/// `op(B)` (`k × n`) takes [`PackedBLayout::len`] values, `(p, j)` at
/// `row(p) + col(j)`; columns of the last panel past `n` must be zeros.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedBLayout {
    nr: usize,
    k: usize,
    n: usize,
}

impl PackedBLayout {
    /// The layout of a `k × n` `op(B)`.
    pub(crate) fn new(k: usize, n: usize) -> Self {
        Self {
            nr: active_kernel().nr,
            k,
            n,
        }
    }

    /// Values of the packed operand.
    pub(crate) fn len(&self) -> usize {
        super::gemm_driver::packed_b_len(self.nr, self.k, self.n)
    }

    /// Rows of `op(B)`.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Columns of `op(B)`.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Columns per micro-panel.
    pub(crate) fn nr(&self) -> usize {
        self.nr
    }

    /// True when the last column panel has columns past `n` (to be zeroed).
    pub(crate) fn padded(&self) -> bool {
        !self.n.is_multiple_of(self.nr)
    }

    /// Offset part of row `p`.
    pub(crate) fn row(&self, p: usize) -> usize {
        super::gemm_driver::packed_b_row(self.nr, self.k, self.n, p)
    }

    /// Offset part of column `j`.
    pub(crate) fn col(&self, j: usize) -> usize {
        super::gemm_driver::packed_b_col(self.nr, self.k, j)
    }
}

/// `C = alpha · op(A) · B` into `c` (overwritten, rows `ldc` apart) with
/// `B` prepacked in the [`PackedBLayout`] of `k × n`; multithreaded when
/// `parallel` and large enough.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed_b(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: Operand,
    b: &[f32],
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    drive(
        active_kernel(),
        Dims { m, n, k },
        alpha,
        ASource::Raw(a),
        BSource::Packed(b),
        COut::Update(c, 0.0),
        ldc,
        parallel,
    );
}

/// Checks slice lengths against the dimensions of a GEMM call.
fn lengths_ok(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &[f32]) -> bool {
    a.len() == m * k && b.len() == k * n && c.len() == m * n
}

/// `C[m×n] = alpha · op(A) · op(B) + beta · C`, row-major, multithreaded.
///
/// `op(A)` is `m × k` (`A` stored `k × m` when `trans_a`), `op(B)` is `k × n`
/// (`B` stored `n × k` when `trans_b`). With `beta == 0` the previous content
/// of `C` is ignored (NaNs in it do not propagate). An internal kernel: slice
/// lengths are checked with `debug_assert!`; use [`matmul`] for a validated
/// tensor-level product.
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    debug_assert!(
        lengths_ok(m, n, k, a, b, c),
        "sgemm: slice lengths do not match m={m} n={n} k={k}"
    );
    let (a, b) = operands(trans_a, trans_b, m, n, k, a, b);
    gemm(m, n, k, alpha, a, b, beta, c, n, true);
}

/// [`sgemm`] on the calling thread only, for use inside parallel loops that
/// already occupy every core.
pub fn sgemm_serial(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    debug_assert!(
        lengths_ok(m, n, k, a, b, c),
        "sgemm_serial: slice lengths do not match m={m} n={n} k={k}"
    );
    let (a, b) = operands(trans_a, trans_b, m, n, k, a, b);
    gemm(m, n, k, alpha, a, b, beta, c, n, false);
}

/// `C[m×n] = alpha · op(A) · op(B) + beta · C` on the calling thread with a
/// left operand packed by [`PackedA::new`] (`m = pa.rows()`, `k = pa.depth()`).
pub fn sgemm_packed_serial(
    pa: &PackedA,
    trans_b: bool,
    n: usize,
    alpha: f32,
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    debug_assert!(
        b.len() == pa.k * n && c.len() == pa.m * n,
        "sgemm_packed_serial: slice lengths"
    );
    let ld = if trans_b { pa.k } else { n };
    gemm_prepacked(
        pa,
        n,
        alpha,
        Operand {
            data: b,
            ld,
            trans: trans_b,
        },
        COut::Update(c, beta),
        n,
        false,
    );
}

fn operands<'a>(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    a: &'a [f32],
    b: &'a [f32],
) -> (Operand<'a>, Operand<'a>) {
    (
        Operand {
            data: a,
            ld: if trans_a { m } else { k },
            trans: trans_a,
        },
        Operand {
            data: b,
            ld: if trans_b { k } else { n },
            trans: trans_b,
        },
    )
}

/// `op(a) · op(b)` for 2-D tensors, where `op` transposes when the flag is set.
/// Errors (naming both shapes) unless both are rank 2 with matching inner
/// dimensions.
pub fn matmul(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    let mismatch = || CoreError::ShapeMismatch {
        op: "matmul",
        lhs: a.shape().to_vec(),
        rhs: b.shape().to_vec(),
    };
    if a.rank() != 2 || b.rank() != 2 {
        return Err(mismatch());
    }
    let (sa, sb) = (a.shape(), b.shape());
    let (m, ka) = if trans_a {
        (sa[1], sa[0])
    } else {
        (sa[0], sa[1])
    };
    let (kb, n) = if trans_b {
        (sb[1], sb[0])
    } else {
        (sb[0], sb[1])
    };
    if ka != kb {
        return Err(mismatch());
    }
    let mut out = vec![0.0; m * n];
    sgemm(
        trans_a,
        trans_b,
        m,
        n,
        ka,
        1.0,
        a.data(),
        b.data(),
        0.0,
        &mut out,
    );
    Tensor::from_vec([m, n], out)
}
