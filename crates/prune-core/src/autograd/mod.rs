//! Reverse-mode automatic differentiation over a tape of [`Op`] nodes.
//!
//! A [`Tape`] records every operation as a node whose [`Op`] variant names
//! the operation, its input [`Var`]s and whatever the backward pass needs.
//! Code can walk `tape.ops()` to inspect the graph. Parameters enter the tape
//! borrowed ([`Tape::param`]), so a forward pass copies no weights.
//! [`Tape::backward`] from a scalar returns [`Gradients`] for every node that
//! requires a gradient; callers read the leaves they care about.
//!
//! [`Tape::no_grad`] builds a tape for inference: values are computed, but no
//! backward information is kept and `backward` is an error.
//!
//! The tape computes nothing itself: every forward and backward value comes
//! from the [`Backend`](crate::backend::Backend) of its inputs' device, and
//! `Op` variants keep tensors (pooling argmax, dropout mask, batch
//! statistics, labels), so the tape runs unchanged on any backend.

mod backward;
mod ops_basic;
mod ops_fused;
mod ops_nn;
mod ops_shape;

use crate::backend::{BnBatchStats, BnNorm, Device};
use crate::cpu::{Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::Indices;
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::sync::Arc;

pub use crate::backend::broadcast_shape;
pub use ops_shape::{index_select, reduce_to_shape, sum_axes};

/// A handle to a node of a [`Tape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub(crate) usize);

impl Var {
    /// Position of the node on its tape.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Elementwise unary operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Relu,
    Exp,
    Log,
    Sqrt,
    Square,
    Abs,
    Neg,
    /// `clamp(x, lo, hi)`; gradient passes where `lo <= x <= hi`.
    Clamp(f32, f32),
    /// `x * s`.
    Scale(f32),
    /// `x + s`.
    Shift(f32),
}

/// Elementwise binary operations with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// A user-defined differentiable operation (for example a regularizer's
/// penalty).
///
/// The forward value is computed by the caller and handed to
/// [`Tape::custom`]; the op keeps whatever it needs for its backward. Inputs,
/// output and gradients are tensors on the inputs' device; an op computes
/// with [`Tensor::backend`] to stay device-agnostic, and says through
/// [`CustomOp::supports`] which devices it runs on, so the tape refuses it
/// cleanly elsewhere.
pub trait CustomOp: Send + Sync + std::fmt::Debug {
    /// A short name shown when the graph is inspected.
    fn name(&self) -> &str;
    /// Whether the op runs on `device` (the CPU only, unless overridden).
    fn supports(&self, device: Device) -> bool {
        device == Device::Cpu
    }
    /// Gradients of the inputs given the gradient of the output
    /// (`None` for an input that gets no gradient).
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        grad_out: &Tensor,
    ) -> Result<Vec<Option<Tensor>>>;
}

/// One recorded operation: its inputs and what its backward needs.
#[derive(Debug, Clone)]
pub enum Op {
    /// A parameter or constant.
    Leaf,
    /// A value computed on a no-grad tape: nothing recorded.
    NoGrad,
    Unary {
        x: Var,
        op: Unary,
    },
    Binary {
        a: Var,
        b: Var,
        op: Binary,
    },
    /// `a @ b` for 2-D tensors.
    MatMul {
        a: Var,
        b: Var,
    },
    /// `x @ wᵀ + b` with `x: [N, in]`, `w: [out, in]`, `b: [out]`.
    Linear {
        x: Var,
        w: Var,
        b: Option<Var>,
    },
    Conv2d {
        x: Var,
        w: Var,
        b: Option<Var>,
        params: Conv2dParams,
    },
    /// `relu(conv2d(x) + b + residual)` as one node; its backward reads the
    /// ReLU mask from the output.
    Conv2dRelu {
        x: Var,
        w: Var,
        b: Option<Var>,
        params: Conv2dParams,
        residual: Option<Var>,
    },
    /// `argmax`: the flat index of each output's maximum in its input plane.
    MaxPool2d {
        x: Var,
        params: PoolParams,
        argmax: Indices,
    },
    AvgPool2d {
        x: Var,
        params: PoolParams,
    },
    /// Batch norm with batch statistics (training).
    BatchNormTrain {
        x: Var,
        gamma: Var,
        beta: Var,
        stats: BnBatchStats,
    },
    /// Batch norm with running statistics (evaluation).
    BatchNormEval {
        x: Var,
        gamma: Var,
        beta: Var,
        running_mean: Tensor,
        running_var: Tensor,
        eps: f32,
    },
    /// `relu(batch_norm(x) + residual)` as one node (train or eval
    /// statistics in `norm`); its backward reads the ReLU mask from the output.
    BatchNormRelu {
        x: Var,
        gamma: Var,
        beta: Var,
        residual: Option<Var>,
        norm: BnNorm,
    },
    /// Sum over `axes` (kept as size-1 dims when `keepdim`).
    Sum {
        x: Var,
        axes: Vec<usize>,
        keepdim: bool,
    },
    /// Mean over `axes`.
    Mean {
        x: Var,
        axes: Vec<usize>,
        keepdim: bool,
    },
    Reshape {
        x: Var,
    },
    Concat {
        xs: Vec<Var>,
        axis: usize,
    },
    IndexSelect {
        x: Var,
        axis: usize,
        indices: Vec<usize>,
    },
    /// Inverted dropout; `mask` holds 0 or 1/(1-p) per element.
    Dropout {
        x: Var,
        mask: Tensor,
    },
    /// Log-softmax over the last axis.
    LogSoftmax {
        x: Var,
    },
    /// Mean cross-entropy of `[N, K]` logits against class labels.
    CrossEntropy {
        logits: Var,
        labels: Indices,
    },
    Custom {
        inputs: Vec<Var>,
        op: Arc<dyn CustomOp>,
    },
}

impl Op {
    /// Inputs of this node, in order.
    pub fn inputs(&self) -> Vec<Var> {
        match self {
            Op::Leaf | Op::NoGrad => vec![],
            Op::Unary { x, .. }
            | Op::MaxPool2d { x, .. }
            | Op::AvgPool2d { x, .. }
            | Op::Sum { x, .. }
            | Op::Mean { x, .. }
            | Op::Reshape { x }
            | Op::IndexSelect { x, .. }
            | Op::Dropout { x, .. }
            | Op::LogSoftmax { x } => vec![*x],
            Op::CrossEntropy { logits, .. } => vec![*logits],
            Op::Binary { a, b, .. } | Op::MatMul { a, b } => vec![*a, *b],
            Op::Linear { x, w, b } | Op::Conv2d { x, w, b, .. } => {
                let mut v = vec![*x, *w];
                v.extend(b.iter().copied());
                v
            }
            Op::Conv2dRelu {
                x, w, b, residual, ..
            } => {
                let mut v = vec![*x, *w];
                v.extend(b.iter().chain(residual).copied());
                v
            }
            Op::BatchNormTrain { x, gamma, beta, .. }
            | Op::BatchNormEval { x, gamma, beta, .. } => {
                vec![*x, *gamma, *beta]
            }
            Op::BatchNormRelu {
                x,
                gamma,
                beta,
                residual,
                ..
            } => {
                let mut v = vec![*x, *gamma, *beta];
                v.extend(residual.iter().copied());
                v
            }
            Op::Concat { xs, .. } => xs.clone(),
            Op::Custom { inputs, .. } => inputs.clone(),
        }
    }

    /// A short name for printing the graph.
    pub fn name(&self) -> String {
        match self {
            Op::Unary { op, .. } => format!("{op:?}"),
            Op::Binary { op, .. } => format!("{op:?}"),
            Op::Custom { op, .. } => op.name().to_string(),
            other => {
                let s = format!("{other:?}");
                s.split([' ', '{', '(']).next().unwrap_or("").to_string()
            }
        }
    }
}

struct Node<'a> {
    value: Cow<'a, Tensor>,
    op: Op,
    requires_grad: bool,
}

/// A tape of recorded operations. Parameters are borrowed for `'a`.
pub struct Tape<'a> {
    nodes: Vec<Node<'a>>,
    grad_enabled: bool,
}

impl Default for Tape<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Tape<'a> {
    /// A tape that records operations for `backward`.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            grad_enabled: true,
        }
    }

    /// A tape for inference: values only, nothing recorded.
    pub fn no_grad() -> Self {
        Self {
            nodes: Vec::new(),
            grad_enabled: false,
        }
    }

    /// Whether this tape records operations.
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A borrowed parameter that receives a gradient.
    pub fn param(&mut self, t: &'a Tensor) -> Var {
        self.push_leaf(Cow::Borrowed(t), true)
    }

    /// An owned leaf, with or without gradient.
    pub fn leaf(&mut self, t: Tensor, requires_grad: bool) -> Var {
        self.push_leaf(Cow::Owned(t), requires_grad)
    }

    /// An owned constant (no gradient), such as a batch of inputs.
    pub fn constant(&mut self, t: Tensor) -> Var {
        self.push_leaf(Cow::Owned(t), false)
    }

    fn push_leaf(&mut self, value: Cow<'a, Tensor>, requires_grad: bool) -> Var {
        self.nodes.push(Node {
            value,
            op: Op::Leaf,
            requires_grad: requires_grad && self.grad_enabled,
        });
        Var(self.nodes.len() - 1)
    }

    /// The value of a node.
    pub fn value(&self, v: Var) -> Result<&Tensor> {
        self.nodes
            .get(v.0)
            .map(|n| n.value.as_ref())
            .ok_or(CoreError::UnknownVar {
                index: v.0,
                len: self.nodes.len(),
            })
    }

    /// Shape of a node's value.
    pub fn shape(&self, v: Var) -> Result<&[usize]> {
        Ok(self.value(v)?.shape())
    }

    /// Takes a node's value out of the tape (the node keeps an empty tensor).
    pub fn take_value(&mut self, v: Var) -> Result<Tensor> {
        let len = self.nodes.len();
        let node = self
            .nodes
            .get_mut(v.0)
            .ok_or(CoreError::UnknownVar { index: v.0, len })?;
        let t = std::mem::replace(&mut node.value, Cow::Owned(Tensor::zeros([0])));
        Ok(t.into_owned())
    }

    /// The recorded operations, in order, for inspection.
    pub fn ops(&self) -> impl Iterator<Item = (Var, &Op)> {
        self.nodes.iter().enumerate().map(|(i, n)| (Var(i), &n.op))
    }

    /// Whether a node requires a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes.get(v.0).is_some_and(|n| n.requires_grad)
    }

    /// Records a computed value. On a no-grad tape, or when no input needs a
    /// gradient, the op is dropped and `Op::NoGrad` stored instead.
    pub(crate) fn push(&mut self, value: Tensor, op: Op) -> Var {
        let requires_grad = self.grad_enabled && op.inputs().iter().any(|v| self.requires_grad(*v));
        let op = if requires_grad { op } else { Op::NoGrad };
        self.nodes.push(Node {
            value: Cow::Owned(value),
            op,
            requires_grad,
        });
        Var(self.nodes.len() - 1)
    }

    /// The backend shared by the values of `vars` (an error names `op` when
    /// they live on different devices).
    pub(crate) fn backend(
        &self,
        op: &'static str,
        vars: &[Var],
    ) -> Result<&'static dyn crate::backend::Backend> {
        let values = vars
            .iter()
            .map(|v| self.value(*v))
            .collect::<Result<Vec<&Tensor>>>()?;
        crate::backend::backend_of(op, &values)
    }

    /// Records the output of a [`CustomOp`] whose forward the caller computed.
    /// An error when the inputs and the output do not share a device the op supports.
    pub fn custom(&mut self, inputs: &[Var], output: Tensor, op: Arc<dyn CustomOp>) -> Result<Var> {
        let device = self.backend("custom op", inputs)?.device();
        let device = if inputs.is_empty() {
            output.device()
        } else {
            device
        };
        if output.device() != device || !op.supports(device) {
            return Err(CoreError::Unsupported(format!(
                "custom op {} on {} (output on {})",
                op.name(),
                device,
                output.device()
            )));
        }
        Ok(self.push(
            output,
            Op::Custom {
                inputs: inputs.to_vec(),
                op,
            },
        ))
    }
}

/// Gradients produced by [`Tape::backward`], indexed by [`Var`].
#[derive(Debug, Default)]
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient of `v`, if it received one.
    pub fn get(&self, v: Var) -> Option<&Tensor> {
        self.grads.get(v.0).and_then(|g| g.as_ref())
    }

    /// Takes the gradient of `v` out.
    pub fn take(&mut self, v: Var) -> Option<Tensor> {
        self.grads.get_mut(v.0).and_then(|g| g.take())
    }
}
