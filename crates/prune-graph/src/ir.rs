//! The model IR: a DAG of named layer nodes.
//!
//! Node 0 is the graph input; nodes are stored in topological order and the
//! last node is the output. Every node names its inputs by node name. Shapes
//! are per example (no batch dimension): `[C, H, W]` for images, `[F]` for
//! feature vectors. Channels are always dimension 0 of a per-example shape
//! (dimension 1 of a batch).

use crate::error::{GraphError, Result};
use serde::{Deserialize, Serialize};

/// One layer type with its hyperparameters (no weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    /// The graph input with its per-example shape.
    Input {
        shape: Vec<usize>,
    },
    /// `y = x Wᵀ + b`; params `weight [out, in]`, `bias [out]`.
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    /// 2-D convolution; params `weight [out, in/groups, kh, kw]`, `bias [out]`.
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        groups: usize,
        bias: bool,
    },
    /// Batch norm over the channel dim of `[C]` or `[C, H, W]` inputs; params
    /// `weight` (γ), `bias` (β), buffers `running_mean`, `running_var`.
    BatchNorm {
        features: usize,
        eps: f32,
        momentum: f32,
    },
    Relu,
    /// `min(max(x, 0), 6)`: MobileNet's ReLU6 (ONNX `Clip(0, 6)`).
    Relu6,
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// `[C, H, W] -> [C]` by averaging.
    GlobalAvgPool,
    /// `[C, H, W] -> [C·H·W]`.
    Flatten,
    Dropout {
        p: f32,
    },
    /// Elementwise sum of two or more inputs of equal shape (residuals).
    Add,
    /// Concatenation along channels.
    Concat,
    /// Structured Bayesian Pruning noise gate: multiplies channel `c` by
    /// θ_c; params `mu [units]`, `log_sigma [units]`.
    SbpGate {
        units: usize,
    },
    /// A learnable per-channel scale γ (a pruning gate for networks without
    /// batch norm); param `weight [units]`.
    Scale {
        units: usize,
    },
    /// Gathers features `indices` of an `[F]` input: how a compiled model
    /// drops individual flattened features or input pixels.
    Select {
        indices: Vec<usize>,
    },
}

impl Layer {
    /// Short type name, as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Input { .. } => "input",
            Layer::Linear { .. } => "linear",
            Layer::Conv2d { .. } => "conv2d",
            Layer::BatchNorm { .. } => "batch_norm",
            Layer::Relu => "relu",
            Layer::Relu6 => "relu6",
            Layer::MaxPool { .. } => "max_pool",
            Layer::AvgPool { .. } => "avg_pool",
            Layer::GlobalAvgPool => "global_avg_pool",
            Layer::Flatten => "flatten",
            Layer::Dropout { .. } => "dropout",
            Layer::Add => "add",
            Layer::Concat => "concat",
            Layer::SbpGate { .. } => "sbp_gate",
            Layer::Scale { .. } => "scale",
            Layer::Select { .. } => "select",
        }
    }

    /// True for gate layers whose per-channel factor decides pruning.
    pub fn is_gate(&self) -> bool {
        matches!(
            self,
            Layer::SbpGate { .. } | Layer::Scale { .. } | Layer::BatchNorm { .. }
        )
    }
}

/// A node: a stable name, a layer and the names of its inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub layer: Layer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

/// A model architecture: nodes in topological order, input first, output last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// A model name, e.g. `lenet5`.
    pub name: String,
    pub nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph with an input of the given per-example shape.
    pub fn new(name: &str, input_shape: &[usize]) -> Self {
        Self {
            name: name.to_string(),
            nodes: vec![Node {
                name: "input".into(),
                layer: Layer::Input {
                    shape: input_shape.to_vec(),
                },
                inputs: vec![],
            }],
        }
    }

    /// Appends a node and returns its name. Errors on a duplicate name or an
    /// unknown input.
    pub fn push(&mut self, name: &str, layer: Layer, inputs: &[&str]) -> Result<String> {
        if self.index_of(name).is_some() {
            return Err(GraphError::Invalid(format!("duplicate node name '{name}'")));
        }
        for i in inputs {
            if self.index_of(i).is_none() {
                return Err(GraphError::Invalid(format!(
                    "node '{name}' reads unknown node '{i}'"
                )));
            }
        }
        self.nodes.push(Node {
            name: name.to_string(),
            layer,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        });
        Ok(name.to_string())
    }

    /// Index of a node by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Result<&Node> {
        self.index_of(name)
            .map(|i| &self.nodes[i])
            .ok_or_else(|| GraphError::Invalid(format!("no node named '{name}'")))
    }

    /// The per-example input shape.
    pub fn input_shape(&self) -> Result<&[usize]> {
        match self.nodes.first().map(|n| &n.layer) {
            Some(Layer::Input { shape }) => Ok(shape),
            _ => Err(GraphError::Invalid(
                "the first node must be the input".into(),
            )),
        }
    }

    /// Name of the output node (the last one).
    pub fn output(&self) -> Result<&str> {
        self.nodes
            .last()
            .map(|n| n.name.as_str())
            .ok_or_else(|| GraphError::Invalid("empty graph".into()))
    }

    /// Indices of each node's inputs; checks names exist and order is topological.
    pub fn input_indices(&self) -> Result<Vec<Vec<usize>>> {
        let mut seen = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            if seen.insert(n.name.as_str(), i).is_some() {
                return Err(GraphError::Invalid(format!(
                    "duplicate node name '{}'",
                    n.name
                )));
            }
            let mut idx = Vec::with_capacity(n.inputs.len());
            for inp in &n.inputs {
                match seen.get(inp.as_str()) {
                    Some(&j) if j < i => idx.push(j),
                    _ => {
                        return Err(GraphError::Invalid(format!(
                            "node '{}' reads '{}', which is not an earlier node",
                            n.name, inp
                        )))
                    }
                }
            }
            let want = match n.layer {
                Layer::Input { .. } => 0..=0,
                Layer::Add | Layer::Concat => 1..=usize::MAX,
                _ => 1..=1,
            };
            if !want.contains(&idx.len()) || (i == 0) != matches!(n.layer, Layer::Input { .. }) {
                return Err(GraphError::Invalid(format!(
                    "node '{}' ({}) has {} inputs",
                    n.name,
                    n.layer.kind(),
                    idx.len()
                )));
            }
            out.push(idx);
        }
        Ok(out)
    }

    /// Names of nodes that read `name`.
    pub fn consumers(&self, name: &str) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|i| i == name))
            .collect()
    }
}
