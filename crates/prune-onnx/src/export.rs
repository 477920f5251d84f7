//! IR → ONNX for any model: dense, gated (SBP gates, scale gates) or
//! compiled (with `select` gathers).
//!
//! | IR layer | ONNX |
//! |---|---|
//! | linear | `Gemm(x, W, b)`, `transB = 1` |
//! | conv2d | `Conv` (pads `[p_h, p_w, p_h, p_w]`, `group`) |
//! | batch_norm | `BatchNormalization` (momentum `1 − m`), or folded (`fold_bn`) |
//! | relu / relu6 | `Relu` / `Clip(x, 0, 6)` |
//! | max_pool / avg_pool | `MaxPool` / `AveragePool` (`count_include_pad = 1`) |
//! | global_avg_pool | `GlobalAveragePool` then `Flatten` (the IR's output is `[N, C]`) |
//! | flatten, add, concat | `Flatten`, `Add` (`Sum` for 3+ inputs), `Concat(axis = 1)` |
//! | dropout | `Identity` (inference) |
//! | sbp_gate | `Mul` by its test-time scale `E[θ]·1[SNR > 1]` |
//! | scale | `Mul` by γ |
//! | select | `Gather(axis = 1)` with int64 indices |

use crate::error::{OnnxError, Result};
use crate::fold::fold_batch_norms;
use crate::proto::{
    tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::tensor::{attr_float, attr_int, attr_ints, f32_tensor, i64_tensor};
use prost::Message;
use prune_graph::{infer_shapes, Layer, Model};
use std::path::Path;

/// Default opset of exported models.
pub const DEFAULT_OPSET: i64 = 17;

/// Export settings.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Default-domain opset, 13 to 21.
    pub opset: i64,
    /// Fold batch norms into the convolution or linear layer before them.
    pub fold_bn: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            opset: DEFAULT_OPSET,
            fold_bn: false,
        }
    }
}

/// The ONNX IR version that goes with an opset (ONNX's versioning table).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

struct Out {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Out {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<crate::proto::AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs,
            ..Default::default()
        });
    }
}

fn value_info(name: &str, dims: &[usize]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value as DV, Dimension};
    let mut dim = vec![Dimension {
        value: Some(DV::DimParam("batch".into())),
        ..Default::default()
    }];
    dim.extend(dims.iter().map(|&d| Dimension {
        value: Some(DV::DimValue(d as i64)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(crate::proto::tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Test-time factor of each channel of an SBP gate: `E[θ]·1[SNR > 1]`, the
/// same single SBP math that evaluation and the compiler's folding use.
fn sbp_scale(model: &Model, node: &str) -> Result<Vec<f32>> {
    let mu = model.params.get(&format!("{node}.mu"))?;
    let ls = model.params.get(&format!("{node}.log_sigma"))?;
    Ok(mu
        .data()
        .iter()
        .zip(ls.data())
        .map(|(&m, &l)| prune_core::sbp::test_time_scale(f64::from(m), f64::from(l)) as f32)
        .collect())
}

/// Serializes `model` as an ONNX model.
pub fn export_bytes(model: &Model, opts: &ExportOptions) -> Result<Vec<u8>> {
    if !(13..=21).contains(&opts.opset) {
        return Err(OnnxError::Export(format!(
            "opset {} is outside the supported 13..=21",
            opts.opset
        )));
    }
    model.validate()?;
    let folded;
    let model = if opts.fold_bn {
        folded = fold_batch_norms(model)?;
        &folded
    } else {
        model
    };
    let shapes = infer_shapes(&model.graph)?;
    let mut out = Out {
        nodes: Vec::new(),
        inits: Vec::new(),
    };
    let p = |n: &str, f: &str| format!("{n}.{f}");
    let add_param = |out: &mut Out, name: &str, dims: &[usize]| -> Result<String> {
        let t = model.params.get(name)?;
        out.inits.push(f32_tensor(name, dims, t.data()));
        Ok(name.to_string())
    };
    for (i, node) in model.graph.nodes.iter().enumerate() {
        let n = node.name.as_str();
        let ins: Vec<&str> = node.inputs.iter().map(String::as_str).collect();
        let x = ins.first().copied().unwrap_or_default();
        // Per-channel factors broadcast over [N, C, H, W] as [C, 1, 1].
        let chan_dims = |c: usize| -> Vec<usize> {
            let mut d = vec![c];
            d.extend(std::iter::repeat_n(1, shapes[i].len().saturating_sub(1)));
            d
        };
        match &node.layer {
            Layer::Input { .. } => {}
            Layer::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let w = add_param(&mut out, &p(n, "weight"), &[*out_features, *in_features])?;
                let mut inputs = vec![x, w.as_str()];
                let b;
                if *bias {
                    b = add_param(&mut out, &p(n, "bias"), &[*out_features])?;
                    inputs.push(&b);
                }
                out.node("Gemm", n, &inputs, n, vec![attr_int("transB", 1)]);
            }
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                bias,
            } => {
                let dims = [*out_channels, in_channels / groups, kernel[0], kernel[1]];
                let w = add_param(&mut out, &p(n, "weight"), &dims)?;
                let mut inputs = vec![x, w.as_str()];
                let b;
                if *bias {
                    b = add_param(&mut out, &p(n, "bias"), &[*out_channels])?;
                    inputs.push(&b);
                }
                let attrs = vec![
                    attr_ints("kernel_shape", kernel),
                    attr_ints("strides", stride),
                    attr_ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
                    attr_ints("dilations", &[1, 1]),
                    attr_int("group", *groups as i64),
                ];
                out.node("Conv", n, &inputs, n, attrs);
            }
            Layer::BatchNorm {
                features,
                eps,
                momentum,
            } => {
                let mut inputs = vec![x.to_string()];
                for f in ["weight", "bias", "running_mean", "running_var"] {
                    inputs.push(add_param(&mut out, &p(n, f), &[*features])?);
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let attrs = vec![
                    attr_float("epsilon", *eps),
                    attr_float("momentum", 1.0 - momentum),
                ];
                out.node("BatchNormalization", n, &refs, n, attrs);
            }
            Layer::Relu => out.node("Relu", n, &[x], n, vec![]),
            Layer::Relu6 => {
                let (lo, hi) = (p(n, "min"), p(n, "max"));
                out.inits.push(f32_tensor(&lo, &[], &[0.0]));
                out.inits.push(f32_tensor(&hi, &[], &[6.0]));
                out.node("Clip", n, &[x, &lo, &hi], n, vec![]);
            }
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
                let mut attrs = vec![
                    attr_ints("kernel_shape", kernel),
                    attr_ints("strides", stride),
                    attr_ints("pads", &[padding[0], padding[1], padding[0], padding[1]]),
                ];
                let op = if matches!(node.layer, Layer::MaxPool { .. }) {
                    "MaxPool"
                } else {
                    attrs.push(attr_int("count_include_pad", 1));
                    "AveragePool"
                };
                out.node(op, n, &[x], n, attrs);
            }
            Layer::GlobalAvgPool => {
                // The ONNX node keeps the IR name, so a re-import names it alike.
                let pooled = format!("{n}/pooled");
                out.node("GlobalAveragePool", n, &[x], &pooled, vec![]);
                let flat = format!("{n}/flatten");
                out.node("Flatten", &flat, &[&pooled], n, vec![attr_int("axis", 1)]);
            }
            Layer::Flatten => out.node("Flatten", n, &[x], n, vec![attr_int("axis", 1)]),
            Layer::Dropout { .. } => out.node("Identity", n, &[x], n, vec![]),
            Layer::Add => {
                let op = if ins.len() == 2 { "Add" } else { "Sum" };
                out.node(op, n, &ins, n, vec![]);
            }
            Layer::Concat => out.node("Concat", n, &ins, n, vec![attr_int("axis", 1)]),
            Layer::SbpGate { units } => {
                let s = sbp_scale(model, n)?;
                debug_assert_eq!(s.len(), *units);
                let name = p(n, "scale");
                out.inits.push(f32_tensor(&name, &chan_dims(*units), &s));
                out.node("Mul", n, &[x, &name], n, vec![]);
            }
            Layer::Scale { units } => {
                let name = p(n, "weight");
                let t = model.params.get(&name)?;
                out.inits
                    .push(f32_tensor(&name, &chan_dims(*units), t.data()));
                out.node("Mul", n, &[x, &name], n, vec![]);
            }
            Layer::Select { indices } => {
                let name = p(n, "indices");
                let idx: Vec<i64> = indices.iter().map(|&v| v as i64).collect();
                out.inits.push(i64_tensor(&name, &[idx.len()], &idx));
                out.node("Gather", n, &[x, &name], n, vec![attr_int("axis", 1)]);
            }
        }
    }
    let input_shape = model.graph.input_shape()?.to_vec();
    let output = model.graph.output()?.to_string();
    let out_shape = shapes.last().cloned().unwrap_or_default();
    let graph = GraphProto {
        name: Some(model.graph.name.clone()),
        node: out.nodes,
        initializer: out.inits,
        input: vec![value_info(&model.graph.nodes[0].name, &input_shape)],
        output: vec![value_info(&output, &out_shape)],
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: Some(ir_version(opts.opset)),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opts.opset),
        }],
        producer_name: Some("prune-nn".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(proto.encode_to_vec())
}

/// Writes `model` as an ONNX file (atomically).
pub fn export_file(model: &Model, opts: &ExportOptions, path: &Path) -> Result<()> {
    let bytes = export_bytes(model, opts)?;
    prune_graph::io::atomic_write(path, &bytes)?;
    Ok(())
}
