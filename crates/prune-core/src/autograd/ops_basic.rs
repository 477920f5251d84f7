//! Elementwise operations: unary maps and broadcasting binary arithmetic,
//! with the scalar definitions of the unary maps and their derivatives.

use super::{Binary, Op, Tape, Unary, Var};
use crate::error::{CoreError, Result};

impl Unary {
    /// The forward map.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Unary::Relu => x.max(0.0),
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Square => x * x,
            Unary::Abs => x.abs(),
            Unary::Neg => -x,
            Unary::Clamp(lo, hi) => x.clamp(lo, hi),
            Unary::Scale(s) => x * s,
            Unary::Shift(s) => x + s,
        }
    }

    /// d(output)/d(input) at input `x` with output `y`.
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Unary::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::Exp => y,
            Unary::Log => 1.0 / x,
            Unary::Sqrt => 0.5 / y,
            Unary::Square => 2.0 * x,
            // subgradient 0 at 0
            Unary::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Unary::Neg => -1.0,
            Unary::Clamp(lo, hi) => {
                if x >= lo && x <= hi {
                    1.0
                } else {
                    0.0
                }
            }
            Unary::Scale(s) => s,
            Unary::Shift(_) => 1.0,
        }
    }
}

impl Tape<'_> {
    /// Applies an elementwise unary op.
    pub fn unary(&mut self, x: Var, op: Unary) -> Result<Var> {
        if let Unary::Clamp(lo, hi) = op {
            if lo.is_nan() || hi.is_nan() || lo > hi {
                return Err(CoreError::InvalidArgument {
                    op: "clamp",
                    reason: format!("need lo <= hi, got [{lo}, {hi}]"),
                });
            }
        }
        let xv = self.value(x)?;
        let y = xv.backend().unary(xv, op)?;
        Ok(self.push(y, Op::Unary { x, op }))
    }

    /// `max(x, 0)`.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Relu)
    }
    /// `exp(x)`.
    pub fn exp(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Exp)
    }
    /// Natural log.
    pub fn log(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Log)
    }
    /// Square root.
    pub fn sqrt(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Sqrt)
    }
    /// `x²`.
    pub fn square(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Square)
    }
    /// `|x|` (subgradient 0 at 0).
    pub fn abs(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Abs)
    }
    /// `-x`.
    pub fn neg(&mut self, x: Var) -> Result<Var> {
        self.unary(x, Unary::Neg)
    }
    /// `clamp(x, lo, hi)`.
    pub fn clamp(&mut self, x: Var, lo: f32, hi: f32) -> Result<Var> {
        self.unary(x, Unary::Clamp(lo, hi))
    }
    /// `x * s` for a scalar `s`.
    pub fn scale(&mut self, x: Var, s: f32) -> Result<Var> {
        self.unary(x, Unary::Scale(s))
    }
    /// `x + s` for a scalar `s`.
    pub fn shift(&mut self, x: Var, s: f32) -> Result<Var> {
        self.unary(x, Unary::Shift(s))
    }

    /// An elementwise binary op with broadcasting.
    pub fn binary(&mut self, a: Var, b: Var, op: Binary) -> Result<Var> {
        let backend = self.backend("binary", &[a, b])?;
        let y = backend.binary(self.value(a)?, self.value(b)?, op)?;
        Ok(self.push(y, Op::Binary { a, b, op }))
    }

    /// `a + b` with broadcasting.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Add)
    }
    /// `a - b` with broadcasting.
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Sub)
    }
    /// `a * b` with broadcasting.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Mul)
    }
    /// `a / b` with broadcasting.
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Div)
    }
}
