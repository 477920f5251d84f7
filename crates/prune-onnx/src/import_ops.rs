//! One ONNX operator at a time → IR layers (see [`crate::import`]).

use crate::error::{OnnxError, Result};
use crate::import::{At, Builder, Value, SUPPORTED_OPS};
use crate::tensor::{decode, Attrs, Const};
use prune_graph::Layer;

/// Converts one node, recording its output value.
pub(crate) fn convert_node(b: &mut Builder, at: &At<'_>, opset: i64) -> Result<()> {
    let a = Attrs(at.node);
    match at.node.op_type() {
        "Constant" => {
            let t = a
                .tensor("value")
                .ok_or_else(|| at.err("only tensor-valued constants ('value') are supported"))?;
            let c = decode(t).map_err(|e| at.err(e))?;
            b.set_output(at, Value::Const(c))
        }
        "Identity" | "Dropout" => {
            // torch writes `Identity` over initializers that two modules share.
            if let Some(Value::Const(c)) = at.node.input.first().and_then(|i| b.values.get(i)) {
                let c = c.clone();
                return b.set_output(at, Value::Const(c));
            }
            let (node, onnx, ir) = b.data(at, 0)?;
            b.set_output(at, Value::Data { node, onnx, ir })
        }
        "Conv" => conv(b, at, &a),
        "Gemm" => gemm(b, at, &a),
        "MatMul" => matmul(b, at),
        "BatchNormalization" => batch_norm(b, at, &a),
        "Relu" => simple(b, at, Layer::Relu),
        "Clip" => clip(b, at, &a, opset),
        "MaxPool" | "AveragePool" => pool(b, at, &a),
        "GlobalAveragePool" => {
            let (x, onnx, _) = b.data(at, 0)?;
            if onnx.len() != 3 {
                return Err(at.err(format!(
                    "needs [N, C, H, W] input, got per-example {onnx:?}"
                )));
            }
            let (node, ir) = b.push(at, &at.name, Layer::GlobalAvgPool, &[&x], vec![])?;
            b.set_output(
                at,
                Value::Data {
                    node,
                    onnx: vec![onnx[0], 1, 1],
                    ir,
                },
            )
        }
        "Add" => add(b, at),
        "Concat" => concat(b, at, &a),
        "Flatten" => {
            let (_, onnx, _) = b.data(at, 0)?;
            let axis = a.int("axis", 1);
            if axis != 1 && axis != -(onnx.len() as i64) {
                return Err(at.err(format!(
                    "axis {axis}: only flattening everything after the batch (axis 1) is supported"
                )));
            }
            to_features(b, at)
        }
        "Reshape" => {
            let (_, onnx, _) = b.data(at, 0)?;
            let shape = b
                .constant(at, 1)?
                .and_then(|c| c.ints)
                .ok_or_else(|| at.err("the target shape must be a constant int64 tensor"))?;
            let f: usize = onnx.iter().product();
            // [batch or 0 or -1, F] or [batch or 0, -1]
            let flat = match shape.as_slice() {
                [s0, s1] => *s0 >= -1 && (*s1 == f as i64 || (*s1 == -1 && *s0 != -1)),
                _ => false,
            };
            if !flat {
                return Err(at.err(format!(
                    "target shape {shape:?}: only reshapes to [batch, {f}] (2-D) are supported"
                )));
            }
            to_features(b, at)
        }
        "Squeeze" => {
            let (_, onnx, _) = b.data(at, 0)?;
            let axes = if opset >= 13 {
                b.constant(at, 1)?.and_then(|c| c.ints)
            } else {
                a.ints("axes")
            };
            let rank = onnx.len() as i64 + 1;
            let mut kept: Vec<usize> = Vec::new();
            for (d, &s) in onnx.iter().enumerate() {
                let full = d as i64 + 1;
                let squeezed = match &axes {
                    Some(ax) => ax.iter().any(|&x| x == full || x + rank == full),
                    None => s == 1,
                };
                if squeezed && s != 1 {
                    return Err(at.err(format!("cannot squeeze dimension {full} of size {s}")));
                }
                if !squeezed {
                    kept.push(s);
                }
            }
            if kept.len() != 1 {
                return Err(at.err(format!(
                    "squeezing per-example {onnx:?} leaves {kept:?}; only squeezes to 2-D [batch, F] are supported"
                )));
            }
            to_features(b, at)
        }
        other => Err(OnnxError::Unsupported {
            file: at.file.clone(),
            node: at.name.clone(),
            op: other.to_string(),
            supported: SUPPORTED_OPS.join(", "),
        }),
    }
}

/// A layer with one data input and no weights.
fn simple(b: &mut Builder, at: &At<'_>, layer: Layer) -> Result<()> {
    let (x, onnx, _) = b.data(at, 0)?;
    let (node, ir) = b.push(at, &at.name, layer, &[&x], vec![])?;
    b.set_output(at, Value::Data { node, onnx, ir })
}

/// `[N, ...] -> [N, F]`: an IR `flatten`, or an alias when the IR value is
/// already a feature vector (e.g. after GlobalAveragePool).
fn to_features(b: &mut Builder, at: &At<'_>) -> Result<()> {
    let (x, onnx, ir) = b.data(at, 0)?;
    let f: usize = onnx.iter().product();
    if ir.len() == 1 {
        return b.set_output(
            at,
            Value::Data {
                node: x,
                onnx: vec![f],
                ir,
            },
        );
    }
    let (node, ir) = b.push(at, &at.name, Layer::Flatten, &[&x], vec![])?;
    b.set_output(
        at,
        Value::Data {
            node,
            onnx: vec![f],
            ir,
        },
    )
}

/// Symmetric 2-D padding from ONNX `pads` `[top, left, bottom, right]`.
fn pads2(at: &At<'_>, a: &Attrs<'_>) -> Result<[usize; 2]> {
    match a.string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("VALID") => {}
        Some(other) => {
            return Err(at.err(format!(
                "auto_pad {other} is not supported; export with explicit pads"
            )))
        }
    }
    let p = a.ints("pads").unwrap_or_else(|| vec![0; 4]);
    match p.as_slice() {
        [t, l, bo, r] if t == bo && l == r && *t >= 0 && *l >= 0 => Ok([*t as usize, *l as usize]),
        _ => Err(at.err(format!(
            "pads {p:?}: only symmetric 2-D padding [t, l, t, l] is supported"
        ))),
    }
}

fn pair(at: &At<'_>, a: &Attrs<'_>, name: &str) -> Result<[usize; 2]> {
    match a.ints(name).as_deref() {
        None => Ok([1, 1]),
        Some([h, w]) if *h > 0 && *w > 0 => Ok([*h as usize, *w as usize]),
        Some(v) => Err(at.err(format!("{name} {v:?}: expected two positive values"))),
    }
}

fn no_dilation(at: &At<'_>, a: &Attrs<'_>) -> Result<()> {
    if pair(at, a, "dilations")? != [1, 1] {
        return Err(at.err("dilation other than 1 is not supported"));
    }
    Ok(())
}

fn conv(b: &mut Builder, at: &At<'_>, a: &Attrs<'_>) -> Result<()> {
    let (x, onnx, _) = b.data(at, 0)?;
    let w = b.weight(at, 1, "weight")?;
    let bias = b.constant(at, 2)?;
    if onnx.len() != 3 || w.dims.len() != 4 {
        return Err(at.err(format!(
            "only 2-D convolutions are supported (input {onnx:?}, weight {:?})",
            w.dims
        )));
    }
    no_dilation(at, a)?;
    let groups = a.int("group", 1).max(1) as usize;
    let kernel = [w.dims[2], w.dims[3]];
    if let Some(ks) = a.ints("kernel_shape") {
        if ks != [kernel[0] as i64, kernel[1] as i64] {
            return Err(at.err(format!(
                "kernel_shape {ks:?} disagrees with weight {:?}",
                w.dims
            )));
        }
    }
    let cout = w.dims[0];
    let layer = Layer::Conv2d {
        in_channels: onnx[0],
        out_channels: cout,
        kernel,
        stride: pair(at, a, "strides")?,
        padding: pads2(at, a)?,
        groups,
        bias: bias.is_some(),
    };
    let mut params = vec![("weight", w.dims.clone(), w.floats.unwrap_or_default())];
    if let Some(c) = bias {
        params.push(("bias", vec![cout], floats(at, c, cout, "bias")?));
    }
    let want = b.weighted_name(at, 1);
    let (node, ir) = b.push(at, &want, layer, &[&x], params)?;
    b.set_output(
        at,
        Value::Data {
            node,
            onnx: ir.clone(),
            ir,
        },
    )
}

/// The floats of a constant holding `n` values (any shape such as `[n]`,
/// `[1, n]`), or one value broadcast to `n`.
fn floats(at: &At<'_>, c: Const, n: usize, what: &str) -> Result<Vec<f32>> {
    let f = c
        .floats
        .ok_or_else(|| at.err(format!("{what} must be a floating-point tensor")))?;
    match f.len() {
        len if len == n => Ok(f),
        1 => Ok(vec![f[0]; n]),
        len => Err(at.err(format!(
            "{what} has {len} values (dims {:?}), expected {n}",
            c.dims
        ))),
    }
}

/// Checks a linear layer's input is a feature vector.
fn features_in(at: &At<'_>, ir: &[usize]) -> Result<usize> {
    match ir {
        [f] => Ok(*f),
        other => Err(at.err(format!(
            "needs a [batch, features] input, got per-example {other:?} (flatten first)"
        ))),
    }
}

fn gemm(b: &mut Builder, at: &At<'_>, a: &Attrs<'_>) -> Result<()> {
    let (x, _, ir_in) = b.data(at, 0)?;
    let fin = features_in(at, &ir_in)?;
    if a.int("transA", 0) != 0 {
        return Err(at.err("transA = 1 is not supported"));
    }
    let w = b.weight(at, 1, "B (weight)")?;
    if w.dims.len() != 2 {
        return Err(at.err(format!("B must be 2-D, got {:?}", w.dims)));
    }
    let (alpha, beta) = (a.float("alpha", 1.0), a.float("beta", 1.0));
    let trans_b = a.int("transB", 0) != 0;
    // The IR's weight is [out, in]: B itself when transB = 1, else Bᵀ.
    let (k, out) = if trans_b {
        (w.dims[1], w.dims[0])
    } else {
        (w.dims[0], w.dims[1])
    };
    if k != fin {
        return Err(at.err(format!("B {:?} does not take {fin} input features", w.dims)));
    }
    let wf = w.floats.unwrap_or_default();
    let weight: Vec<f32> = if trans_b {
        wf.iter().map(|v| alpha * v).collect()
    } else {
        let mut t = vec![0f32; k * out];
        for i in 0..k {
            for o in 0..out {
                t[o * k + i] = alpha * wf[i * out + o];
            }
        }
        t
    };
    let bias = match b.constant(at, 2)? {
        Some(c) => Some(
            floats(at, c, out, "C (bias)")?
                .iter()
                .map(|v| beta * v)
                .collect(),
        ),
        None => None,
    };
    linear(b, at, &x, fin, out, weight, bias)
}

fn linear(
    b: &mut Builder,
    at: &At<'_>,
    x: &str,
    fin: usize,
    out: usize,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
) -> Result<()> {
    let layer = Layer::Linear {
        in_features: fin,
        out_features: out,
        bias: bias.is_some(),
    };
    let mut params = vec![("weight", vec![out, fin], weight)];
    if let Some(bv) = bias {
        params.push(("bias", vec![out], bv));
    }
    let want = b.weighted_name(at, 1);
    let (node, ir) = b.push(at, &want, layer, &[x], params)?;
    b.set_output(
        at,
        Value::Data {
            node,
            onnx: ir.clone(),
            ir,
        },
    )
}

/// `MatMul(x, B)` with a constant `B [in, out]`: a linear layer without bias
/// (a following `Add` of a constant becomes its bias).
fn matmul(b: &mut Builder, at: &At<'_>) -> Result<()> {
    let (x, _, ir_in) = b.data(at, 0)?;
    let fin = features_in(at, &ir_in)?;
    let w = b.weight(at, 1, "B (weight)")?;
    if w.dims.len() != 2 || w.dims[0] != fin {
        return Err(at.err(format!("B {:?} must be [{fin}, out]", w.dims)));
    }
    let out = w.dims[1];
    let wf = w.floats.unwrap_or_default();
    let mut t = vec![0f32; fin * out];
    for i in 0..fin {
        for o in 0..out {
            t[o * fin + i] = wf[i * out + o];
        }
    }
    linear(b, at, &x, fin, out, t, None)
}

fn add(b: &mut Builder, at: &At<'_>) -> Result<()> {
    let names: Vec<&String> = at.node.input.iter().collect();
    let is_const = |k: usize| {
        matches!(
            names.get(k).and_then(|n| b.values.get(*n)),
            Some(Value::Const(_))
        )
    };
    if names.len() != 2 {
        return Err(at.err(format!("expects 2 inputs, got {}", names.len())));
    }
    if is_const(0) || is_const(1) {
        // MatMul + Add: a constant added to a bias-free linear layer read only here.
        let (d, c) = if is_const(1) { (0, 1) } else { (1, 0) };
        let (x, onnx, ir) = b.data(at, d)?;
        let cst = b.weight(at, c, "the added constant")?;
        let single_reader = b.readers.get(names[d]).copied() == Some(1);
        let k = b.graph.index_of(&x);
        let node = k.map(|k| b.graph.nodes[k].clone());
        match node.as_ref().map(|n| &n.layer) {
            Some(Layer::Linear {
                in_features,
                out_features,
                bias: false,
            }) if single_reader => {
                let bias = floats(at, cst, *out_features, "bias")?;
                if let Some(k) = k {
                    b.graph.nodes[k].layer = Layer::Linear {
                        in_features: *in_features,
                        out_features: *out_features,
                        bias: true,
                    };
                }
                let t = prune_core::Tensor::from_vec(vec![*out_features], bias)?;
                b.params.insert(format!("{x}.bias"), t);
                b.set_output(at, Value::Data { node: x, onnx, ir })
            }
            _ => {
                Err(at.err("adding a constant is supported only as the bias of a preceding MatMul"))
            }
        }
    } else {
        let (x0, onnx0, _) = b.data(at, 0)?;
        let (x1, onnx1, _) = b.data(at, 1)?;
        if onnx0 != onnx1 {
            return Err(at.err(format!(
                "adds per-example shapes {onnx0:?} and {onnx1:?}; broadcasting is not supported"
            )));
        }
        let (node, ir) = b.push(at, &at.name, Layer::Add, &[&x0, &x1], vec![])?;
        b.set_output(
            at,
            Value::Data {
                node,
                onnx: onnx0,
                ir,
            },
        )
    }
}

fn concat(b: &mut Builder, at: &At<'_>, a: &Attrs<'_>) -> Result<()> {
    let mut xs = Vec::new();
    let mut onnx_out: Vec<usize> = Vec::new();
    for k in 0..at.node.input.len() {
        let (x, onnx, _) = b.data(at, k)?;
        if onnx_out.is_empty() {
            onnx_out = onnx.clone();
        } else {
            onnx_out[0] += onnx[0];
        }
        xs.push(x);
    }
    let rank = onnx_out.len() as i64 + 1;
    let axis = a.int("axis", 1);
    if axis != 1 && axis + rank != 1 {
        return Err(at.err(format!(
            "axis {axis}: only concatenation along channels (axis 1) is supported"
        )));
    }
    let refs: Vec<&str> = xs.iter().map(String::as_str).collect();
    let (node, ir) = b.push(at, &at.name, Layer::Concat, &refs, vec![])?;
    b.set_output(
        at,
        Value::Data {
            node,
            onnx: onnx_out,
            ir,
        },
    )
}

fn batch_norm(b: &mut Builder, at: &At<'_>, a: &Attrs<'_>) -> Result<()> {
    let (x, onnx, _) = b.data(at, 0)?;
    if a.int("training_mode", 0) != 0 {
        return Err(at.err("training_mode = 1 is not supported; export the model in eval mode"));
    }
    let c = *onnx
        .first()
        .ok_or_else(|| at.err("needs a channel dimension"))?;
    let mut params = Vec::new();
    for (k, field) in [
        (1, "weight"),
        (2, "bias"),
        (3, "running_mean"),
        (4, "running_var"),
    ] {
        let t = b.weight(at, k, field)?;
        params.push((field, vec![c], floats(at, t, c, field)?));
    }
    let layer = Layer::BatchNorm {
        features: c,
        eps: a.float("epsilon", 1e-5),
        // ONNX: running = m·running + (1 − m)·batch; the IR uses PyTorch's 1 − m.
        momentum: 1.0 - a.float("momentum", 0.9),
    };
    let want = b.weighted_name(at, 1);
    let (node, ir) = b.push(at, &want, layer, &[&x], params)?;
    b.set_output(at, Value::Data { node, onnx, ir })
}

/// `Clip(x, 0, 6)` is ReLU6 and `Clip(x, 0)` (no upper bound) is ReLU; other
/// bounds have no IR layer.
fn clip(b: &mut Builder, at: &At<'_>, a: &Attrs<'_>, opset: i64) -> Result<()> {
    let bound = |k: usize, attr: &str| -> Result<Option<f32>> {
        if opset >= 11 {
            match b.constant(at, k)? {
                Some(c) => match c.floats.as_deref() {
                    Some([v]) => Ok(Some(*v)),
                    _ => Err(at.err(format!("bound {k} must be a float scalar"))),
                },
                None => Ok(None),
            }
        } else {
            Ok(a.float_opt(attr))
        }
    };
    let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
    let layer = match (lo, hi) {
        (Some(l), Some(h)) if l == 0.0 && h == 6.0 => Layer::Relu6,
        (Some(0.0), None) => Layer::Relu,
        _ => {
            return Err(at.err(format!(
                "bounds ({lo:?}, {hi:?}): only Clip(0, 6) (ReLU6) and Clip(0) (ReLU) are supported"
            )))
        }
    };
    simple(b, at, layer)
}

fn pool(b: &mut Builder, at: &At<'_>, a: &Attrs<'_>) -> Result<()> {
    let (x, onnx, _) = b.data(at, 0)?;
    if onnx.len() != 3 {
        return Err(at.err(format!(
            "needs [N, C, H, W] input, got per-example {onnx:?}"
        )));
    }
    no_dilation(at, a)?;
    if a.int("ceil_mode", 0) != 0 {
        return Err(at.err("ceil_mode = 1 is not supported"));
    }
    let kernel = match a.ints("kernel_shape").as_deref() {
        Some([h, w]) if *h > 0 && *w > 0 => [*h as usize, *w as usize],
        other => {
            return Err(at.err(format!(
                "kernel_shape {other:?}: expected two positive sizes"
            )))
        }
    };
    let stride = pair(at, a, "strides")?;
    let padding = pads2(at, a)?;
    let layer = if at.node.op_type() == "MaxPool" {
        Layer::MaxPool {
            kernel,
            stride,
            padding,
        }
    } else {
        // The IR averages over the whole window, padding counted as zeros.
        if padding != [0, 0] && a.int("count_include_pad", 0) == 0 {
            return Err(at.err(
                "padded average pooling with count_include_pad = 0 is not supported \
                 (the IR counts padding, as PyTorch's default count_include_pad=True)",
            ));
        }
        Layer::AvgPool {
            kernel,
            stride,
            padding,
        }
    };
    let (node, ir) = b.push(at, &at.name, layer, &[&x], vec![])?;
    b.set_output(
        at,
        Value::Data {
            node,
            onnx: ir.clone(),
            ir,
        },
    )
}
