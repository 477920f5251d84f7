//! CPU reference of `kernels/elementwise.cu`: unary maps, broadcasting binary maps and
//! dropout.  The operation codes are those of the kernels ([`Unary`], [`Binary`]).

use super::philox::{philox4x32_10, uniform_open};
use crate::error::KernelError;

/// Unary operations of `ew_unary` (the discriminant is the kernel's op code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Neg = 0,
    Exp = 1,
    Log = 2,
    Relu = 3,
    Sigmoid = 4,
    Tanh = 5,
    Sqrt = 6,
    Square = 7,
    /// `a * x`
    Scale = 8,
    /// `x + a`
    AddScalar = 9,
    Abs = 10,
}

impl Unary {
    /// Every unary operation.
    pub const ALL: [Unary; 11] = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Sqrt,
        Unary::Square,
        Unary::Scale,
        Unary::AddScalar,
        Unary::Abs,
    ];

    /// The operation on one value (in f64).
    pub fn apply(self, x: f64, a: f64) -> f64 {
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Relu => {
                if x > 0.0 || x.is_nan() {
                    x
                } else {
                    0.0
                }
            }
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Tanh => x.tanh(),
            Unary::Sqrt => x.sqrt(),
            Unary::Square => x * x,
            Unary::Scale => a * x,
            Unary::AddScalar => x + a,
            Unary::Abs => x.abs(),
        }
    }
}

/// Binary operations of `ew_binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
    Max = 4,
    Min = 5,
    /// `a = dy, b = x`: `dy [x > 0]`
    ReluGrad = 6,
    /// `a = dy, b = y = sigmoid(x)`: `dy y (1 - y)`
    SigmoidGrad = 7,
    /// `a = dy, b = y = tanh(x)`: `dy (1 - y^2)`
    TanhGrad = 8,
}

impl Binary {
    /// Every binary operation.
    pub const ALL: [Binary; 9] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
        Binary::ReluGrad,
        Binary::SigmoidGrad,
        Binary::TanhGrad,
    ];

    /// The operation on one pair (in f64); max / min propagate NaN.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max if a.is_nan() || b.is_nan() => f64::NAN,
            Binary::Max => a.max(b),
            Binary::Min if a.is_nan() || b.is_nan() => f64::NAN,
            Binary::Min => a.min(b),
            Binary::ReluGrad => {
                if b > 0.0 {
                    a
                } else {
                    0.0
                }
            }
            Binary::SigmoidGrad => a * b * (1.0 - b),
            Binary::TanhGrad => a * (1.0 - b * b),
        }
    }
}

/// Largest rank `ew_binary` handles.
pub const MAX_DIMS: usize = 8;

/// `(out_dims, stride_a, stride_b)` of a broadcast.
pub type Broadcast = (Vec<usize>, Vec<usize>, Vec<usize>);

/// Output shape and element strides of two operands broadcast against each other (NumPy
/// rules: shapes aligned at the right, a dimension of 1 stretches).  Returns
/// `(out_dims, stride_a, stride_b)`, all of the output's rank.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Broadcast, KernelError> {
    let nd = a.len().max(b.len());
    if nd > MAX_DIMS {
        return Err(KernelError::shape(
            "broadcast",
            format!("rank {nd} exceeds {MAX_DIMS}"),
        ));
    }
    let pad = |s: &[usize]| {
        let mut v = vec![1usize; nd - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(a), pad(b));
    let strides = |s: &[usize]| {
        let mut st = vec![0usize; nd];
        let mut acc = 1usize;
        for d in (0..nd).rev() {
            st[d] = if s[d] == 1 { 0 } else { acc };
            acc = acc.saturating_mul(s[d]);
        }
        st
    };
    let mut out = Vec::with_capacity(nd);
    for d in 0..nd {
        let (x, y) = (pa[d], pb[d]);
        out.push(match (x, y) {
            _ if x == y => x,
            (1, _) => y,
            (_, 1) => x,
            _ => {
                return Err(KernelError::shape(
                    "broadcast",
                    format!("shapes {a:?} and {b:?} differ in dimension {d} ({x} vs {y})"),
                ))
            }
        });
    }
    Ok((out, strides(&pa), strides(&pb)))
}

/// `y = f(x)` elementwise.
pub fn unary(op: Unary, x: &[f32], a: f32) -> Vec<f32> {
    x.iter()
        .map(|&v| op.apply(v as f64, a as f64) as f32)
        .collect()
}

/// `out = g(a, b)` with broadcasting; returns (out, out_dims).
pub fn binary(
    op: Binary,
    a: &[f32],
    a_dims: &[usize],
    b: &[f32],
    b_dims: &[usize],
) -> Result<(Vec<f32>, Vec<usize>), KernelError> {
    let (dims, sa, sb) = broadcast(a_dims, b_dims)?;
    let n: usize = dims.iter().product();
    if a.len() != a_dims.iter().product::<usize>() || b.len() != b_dims.iter().product::<usize>() {
        return Err(KernelError::shape(
            "cpu binary",
            "operand lengths do not match their shapes",
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let ia: usize = idx.iter().zip(&sa).map(|(i, s)| i * s).sum();
        let ib: usize = idx.iter().zip(&sb).map(|(i, s)| i * s).sum();
        out.push(op.apply(a[ia] as f64, b[ib] as f64) as f32);
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok((out, dims))
}

/// Dropout with drop probability `p`: returns `(y, mask)` with `mask[e]` = 0 or 1/(1-p) and
/// `y = x * mask`.  The uniform of element `e` is word `e % 4` of Philox4x32-10 of counter
/// `(e / 4, offset_lo, offset_hi, 2)` under key `(seed_lo, seed_hi)`.
pub fn dropout(
    x: &[f32],
    p: f32,
    seed: u64,
    offset: u64,
) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
    if !(0.0..1.0).contains(&p) {
        return Err(KernelError::invalid(
            "dropout",
            format!("drop probability {p} outside [0, 1)"),
        ));
    }
    let scale = 1.0f32 / (1.0 - p);
    let mut mask = Vec::with_capacity(x.len());
    for g in 0..x.len().div_ceil(4) {
        let r = philox4x32_10(
            [g as u32, offset as u32, (offset >> 32) as u32, 2],
            [seed as u32, (seed >> 32) as u32],
        );
        for &w in r.iter().take((x.len() - 4 * g).min(4)) {
            let u = uniform_open(w) as f32;
            mask.push(if u >= p { scale } else { 0.0 });
        }
    }
    let y = x.iter().zip(&mask).map(|(a, m)| a * m).collect();
    Ok((y, mask))
}
