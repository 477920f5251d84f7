//! The parameter store: named tensors `<node>.<field>`, their expected
//! shapes (derived from the IR), and default initialization.

use crate::error::{GraphError, Result};
use crate::ir::{Graph, Layer};
use prune_core::Tensor;
use rand::Rng;
use std::collections::BTreeMap;

/// What a stored tensor is, which decides training and weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Weight,
    Bias,
    /// Batch-norm scale γ.
    BnGamma,
    /// Batch-norm shift β.
    BnBeta,
    RunningMean,
    RunningVar,
    /// SBP location μ of log θ.
    SbpMu,
    /// SBP log σ of log θ.
    SbpLogSigma,
    /// A learnable per-channel scale.
    ScaleGamma,
}

impl ParamKind {
    /// Whether the optimizer updates it (running statistics are buffers).
    pub fn trainable(self) -> bool {
        !matches!(self, ParamKind::RunningMean | ParamKind::RunningVar)
    }
    /// Whether weight decay applies: only to conv/linear weights.
    pub fn decays(self) -> bool {
        matches!(self, ParamKind::Weight)
    }
}

/// One expected tensor of a graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub node: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

/// The tensors every node of `graph` needs, in node order.
pub fn param_specs(graph: &Graph) -> Vec<ParamSpec> {
    let mut out = Vec::new();
    for n in &graph.nodes {
        let mut add = |field: &str, shape: Vec<usize>, kind| {
            out.push(ParamSpec {
                name: format!("{}.{field}", n.name),
                node: n.name.clone(),
                shape,
                kind,
            })
        };
        match &n.layer {
            Layer::Linear {
                in_features,
                out_features,
                bias,
            } => {
                add(
                    "weight",
                    vec![*out_features, *in_features],
                    ParamKind::Weight,
                );
                if *bias {
                    add("bias", vec![*out_features], ParamKind::Bias);
                }
            }
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let cin = in_channels / (*groups).max(1);
                add(
                    "weight",
                    vec![*out_channels, cin, kernel[0], kernel[1]],
                    ParamKind::Weight,
                );
                if *bias {
                    add("bias", vec![*out_channels], ParamKind::Bias);
                }
            }
            Layer::BatchNorm { features, .. } => {
                add("weight", vec![*features], ParamKind::BnGamma);
                add("bias", vec![*features], ParamKind::BnBeta);
                add("running_mean", vec![*features], ParamKind::RunningMean);
                add("running_var", vec![*features], ParamKind::RunningVar);
            }
            Layer::SbpGate { units } => {
                add("mu", vec![*units], ParamKind::SbpMu);
                add("log_sigma", vec![*units], ParamKind::SbpLogSigma);
            }
            Layer::Scale { units } => add("weight", vec![*units], ParamKind::ScaleGamma),
            _ => {}
        }
    }
    out
}

/// Named tensors of a model (parameters and buffers).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamStore {
    tensors: BTreeMap<String, Tensor>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tensor by name, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| GraphError::Param {
            name: name.into(),
            reason: "missing".into(),
        })
    }

    /// Mutable access by name.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        self.tensors.get_mut(name).ok_or_else(|| GraphError::Param {
            name: name.into(),
            reason: "missing".into(),
        })
    }

    /// Inserts or replaces a tensor.
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.insert(name.into(), t);
    }

    /// Removes a tensor.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// True when a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// All tensors, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// All tensors, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Tensor)> {
        self.tensors.iter_mut()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Checks that every tensor `graph` needs is present with the right shape.
    pub fn validate(&self, graph: &Graph) -> Result<()> {
        for spec in param_specs(graph) {
            let t = self.get(&spec.name)?;
            if t.shape() != spec.shape.as_slice() {
                return Err(GraphError::Param {
                    name: spec.name,
                    reason: format!("expected shape {:?}, found {:?}", spec.shape, t.shape()),
                });
            }
        }
        Ok(())
    }
}

/// Fan-in of a weight of shape `[out, in, ...]`.
fn fan_in(shape: &[usize]) -> usize {
    shape.iter().skip(1).product::<usize>().max(1)
}

/// Default initialization of one tensor.
///
/// Conv/linear weights: Kaiming normal, `N(0, 2/fan_in)` (He et al. 2015, for
/// ReLU networks); biases 0; BN γ = 1, β = 0, running mean 0, var 1;
/// SBP μ = 0, log σ = −5 (Neklyudov et al. 2017); scale γ = 1.
pub fn init_tensor<R: Rng + ?Sized>(spec: &ParamSpec, rng: &mut R) -> Tensor {
    match spec.kind {
        ParamKind::Weight => {
            let std = (2.0 / fan_in(&spec.shape) as f32).sqrt();
            Tensor::randn(spec.shape.clone(), 0.0, std, rng)
        }
        ParamKind::Bias | ParamKind::BnBeta | ParamKind::RunningMean | ParamKind::SbpMu => {
            Tensor::zeros(spec.shape.clone())
        }
        ParamKind::BnGamma | ParamKind::RunningVar | ParamKind::ScaleGamma => {
            Tensor::ones(spec.shape.clone())
        }
        ParamKind::SbpLogSigma => Tensor::full(spec.shape.clone(), -5.0),
    }
}

/// A store holding freshly initialized tensors for every node of `graph`.
pub fn init_params<R: Rng + ?Sized>(graph: &Graph, rng: &mut R) -> ParamStore {
    let mut store = ParamStore::new();
    for spec in param_specs(graph) {
        let t = init_tensor(&spec, rng);
        store.insert(spec.name, t);
    }
    store
}
