//! Shape inference and validation, and per-layer cost: parameters and
//! FLOPs counted as multiply-accumulates of conv and linear layers (as the
//! pruning papers count them).

use crate::error::{GraphError, Result};
use crate::ir::{Graph, Layer};
use serde::{Deserialize, Serialize};

fn out_len(size: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    if s == 0 || size + 2 * p < k {
        return None;
    }
    Some((size + 2 * p - k) / s + 1)
}

/// Per-example output shapes of every node, validating each layer against
/// its inputs. Errors name the node and the offending shapes.
pub fn infer_shapes(graph: &Graph) -> Result<Vec<Vec<usize>>> {
    let inputs = graph.input_indices()?;
    let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(graph.nodes.len());
    for (i, node) in graph.nodes.iter().enumerate() {
        let ins: Vec<&Vec<usize>> = inputs[i].iter().map(|&j| &shapes[j]).collect();
        let err = |reason: String| GraphError::Shape {
            node: node.name.clone(),
            reason,
        };
        let producer = |k: usize| node.inputs.get(k).cloned().unwrap_or_default();
        let s = match &node.layer {
            Layer::Input { shape } => {
                if shape.is_empty() || shape.contains(&0) {
                    return Err(err(format!("input shape {shape:?} must be non-empty")));
                }
                shape.clone()
            }
            Layer::Linear {
                in_features,
                out_features,
                ..
            } => {
                if ins[0].len() != 1 || ins[0][0] != *in_features {
                    return Err(err(format!(
                        "expects [{in_features}] features but '{}' produces {:?}",
                        producer(0),
                        ins[0]
                    )));
                }
                vec![*out_features]
            }
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                let x = ins[0];
                if x.len() != 3 || x[0] != *in_channels {
                    return Err(err(format!(
                        "expects [{in_channels}, H, W] but '{}' produces {:?}",
                        producer(0),
                        x
                    )));
                }
                if *groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                    return Err(err(format!(
                        "groups {groups} must divide in {in_channels} and out {out_channels}"
                    )));
                }
                let h = out_len(x[1], kernel[0], stride[0], padding[0]);
                let w = out_len(x[2], kernel[1], stride[1], padding[1]);
                match (h, w) {
                    (Some(h), Some(w)) => vec![*out_channels, h, w],
                    _ => return Err(err(format!("kernel {kernel:?} does not fit input {x:?}"))),
                }
            }
            Layer::BatchNorm { features, .. }
            | Layer::SbpGate { units: features }
            | Layer::Scale { units: features } => {
                if ins[0].is_empty() || ins[0][0] != *features || ins[0].len() == 2 {
                    return Err(err(format!(
                        "expects {features} channels but '{}' produces {:?}",
                        producer(0),
                        ins[0]
                    )));
                }
                ins[0].clone()
            }
            Layer::Relu | Layer::Relu6 | Layer::Dropout { .. } => ins[0].clone(),
            Layer::MaxPool {
                kernel,
                stride,
                padding,
            }
            | Layer::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                let x = ins[0];
                if x.len() != 3 {
                    return Err(err(format!("pooling needs [C, H, W], got {x:?}")));
                }
                let h = out_len(x[1], kernel[0], stride[0], padding[0]);
                let w = out_len(x[2], kernel[1], stride[1], padding[1]);
                match (h, w) {
                    (Some(h), Some(w)) => vec![x[0], h, w],
                    _ => return Err(err(format!("window {kernel:?} does not fit {x:?}"))),
                }
            }
            Layer::GlobalAvgPool => {
                if ins[0].len() != 3 {
                    return Err(err(format!("needs [C, H, W], got {:?}", ins[0])));
                }
                vec![ins[0][0]]
            }
            Layer::Flatten => vec![ins[0].iter().product()],
            Layer::Select { indices } => {
                let f = match ins[0].as_slice() {
                    [f] => *f,
                    other => return Err(err(format!("select needs [F] features, got {other:?}"))),
                };
                if indices.is_empty() || indices.iter().any(|&i| i >= f) {
                    return Err(err(format!(
                        "select indices must be non-empty and below {f} ('{}' produces [{f}])",
                        producer(0)
                    )));
                }
                vec![indices.len()]
            }
            Layer::Add => {
                for (k, s) in ins.iter().enumerate() {
                    if *s != ins[0] {
                        return Err(err(format!(
                            "adds '{}' {:?} and '{}' {:?}",
                            producer(0),
                            ins[0],
                            producer(k),
                            s
                        )));
                    }
                }
                ins[0].clone()
            }
            Layer::Concat => {
                let mut out = ins[0].clone();
                for (k, s) in ins.iter().enumerate().skip(1) {
                    if s.len() != out.len() || s[1..] != out[1..] {
                        return Err(err(format!(
                            "concatenates '{}' {:?} and '{}' {:?}",
                            producer(0),
                            ins[0],
                            producer(k),
                            s
                        )));
                    }
                    out[0] += s[0];
                }
                out
            }
        };
        shapes.push(s);
    }
    Ok(shapes)
}

/// Parameters and multiply-accumulates of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerCost {
    pub name: String,
    pub kind: String,
    /// Output channels (or features) of the node.
    pub channels: usize,
    /// Trainable parameters (weights, biases, BN affine, gate parameters).
    pub params: u64,
    /// Multiply-accumulates per example (conv and linear layers only).
    pub flops: u64,
}

/// Per-layer and total cost of a graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub layers: Vec<LayerCost>,
    pub params: u64,
    pub flops: u64,
}

/// Counts parameters and FLOPs (multiply-accumulates) per example.
///
/// Conv: `Cout · (Cin/groups) · kh · kw · Ho · Wo`; linear: `in · out`.
/// Gates (SBP, scale) count their parameters but no FLOPs, as in the papers.
pub fn cost(graph: &Graph) -> Result<Cost> {
    let shapes = infer_shapes(graph)?;
    let mut layers = Vec::new();
    for (node, shape) in graph.nodes.iter().zip(&shapes) {
        let (params, flops) = match &node.layer {
            Layer::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let w = (in_features * out_features) as u64;
                (w + if *bias { *out_features as u64 } else { 0 }, w)
            }
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let w = (out_channels * (in_channels / groups) * kernel[0] * kernel[1]) as u64;
                let hw = (shape[1] * shape[2]) as u64;
                (w + if *bias { *out_channels as u64 } else { 0 }, w * hw)
            }
            Layer::BatchNorm { features, .. } => (2 * *features as u64, 0),
            Layer::SbpGate { units } => (2 * *units as u64, 0),
            Layer::Scale { units } => (*units as u64, 0),
            _ => (0, 0),
        };
        layers.push(LayerCost {
            name: node.name.clone(),
            kind: node.layer.kind().into(),
            channels: shape.first().copied().unwrap_or(0),
            params,
            flops,
        });
    }
    Ok(Cost {
        params: layers.iter().map(|l| l.params).sum(),
        flops: layers.iter().map(|l| l.flops).sum(),
        layers,
    })
}
