//! ONNX → IR: reads a model as `torch.onnx.export` writes CNNs (opsets 13–21)
//! into a [`Model`].
//!
//! Every ONNX value maps either to an IR node's output or to a constant
//! (initializers and `Constant` nodes). Layers with weights
//! take their tensors from constants; shape-only operators (Flatten,
//! Reshape/Squeeze to 2-D) become `flatten` or vanish when the IR value is
//! already flat; Identity and Dropout (inference) are aliases. ONNX keeps
//! `[N, C, 1, 1]` after GlobalAveragePool where the IR has `[N, C]`, so each
//! value carries both its ONNX shape and its IR shape.

use crate::error::{OnnxError, Result};
use crate::import_ops::convert_node;
use crate::proto::{type_proto, ModelProto, NodeProto, ValueInfoProto};
use crate::tensor::{decode, Const};
use prost::Message;
use prune_graph::{infer_shapes, Graph, Layer, Model, ParamStore};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The operators [`import_bytes`] understands.
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
    "Concat",
    "Flatten",
    "Reshape",
    "Squeeze",
    "Identity",
    "Dropout",
    "Constant",
];

/// Lowest and highest default-domain opset accepted.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=21;

/// An ONNX value during import.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// Output of IR node `node`; `onnx` and `ir` are per-example shapes.
    Data {
        node: String,
        onnx: Vec<usize>,
        ir: Vec<usize>,
    },
    Const(Const),
}

/// The importer's state: the IR being built and the ONNX values seen so far.
pub(crate) struct Builder {
    pub graph: Graph,
    pub params: ParamStore,
    pub values: HashMap<String, Value>,
    /// How many nodes read each ONNX value (to fold MatMul + Add safely).
    pub readers: HashMap<String, usize>,
    used_names: HashSet<String>,
}

/// The node being converted, for error messages.
pub(crate) struct At<'n> {
    pub node: &'n NodeProto,
    pub name: String,
    pub file: String,
}

impl At<'_> {
    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            file: self.file.clone(),
            node: self.name.clone(),
            op: self.node.op_type().to_string(),
            reason: reason.into(),
        }
    }
}

impl Builder {
    /// A data input of the node, or an error naming it.
    pub fn data(&self, at: &At<'_>, k: usize) -> Result<(String, Vec<usize>, Vec<usize>)> {
        let name = at.node.input.get(k).filter(|s| !s.is_empty());
        match name.and_then(|n| self.values.get(n)) {
            Some(Value::Data { node, onnx, ir }) => Ok((node.clone(), onnx.clone(), ir.clone())),
            Some(Value::Const(_)) => Err(at.err(format!(
                "input {k} ('{}') is a constant; prune-nn needs it to be computed from the graph input",
                name.map(String::as_str).unwrap_or_default()
            ))),
            None => Err(at.err(format!(
                "input {k} ('{}') is not produced by any earlier node",
                name.map(String::as_str).unwrap_or_default()
            ))),
        }
    }

    /// A constant input of the node (`None` when the optional input is absent).
    pub fn constant(&self, at: &At<'_>, k: usize) -> Result<Option<Const>> {
        let Some(name) = at.node.input.get(k).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        match self.values.get(name) {
            Some(Value::Const(c)) => Ok(Some(c.clone())),
            Some(Value::Data { .. }) => Err(at.err(format!(
                "input {k} ('{name}') must be a constant (an initializer), but it is computed"
            ))),
            None => Err(at.err(format!("input {k} ('{name}') is not defined"))),
        }
    }

    /// A required float constant input with its dims.
    pub fn weight(&self, at: &At<'_>, k: usize, what: &str) -> Result<Const> {
        let c = self
            .constant(at, k)?
            .ok_or_else(|| at.err(format!("missing {what} (input {k})")))?;
        if c.floats.is_none() {
            return Err(at.err(format!("{what} must be a floating-point tensor")));
        }
        Ok(c)
    }

    /// The IR name for a node with weights: the prefix of its weight
    /// initializer (`layer1.0.conv1.weight` → `layer1.0.conv1`), so names
    /// match the PyTorch module; otherwise the ONNX node name.
    pub fn weighted_name(&self, at: &At<'_>, k: usize) -> String {
        at.node
            .input
            .get(k)
            .and_then(|w| w.strip_suffix(".weight"))
            .filter(|p| !p.is_empty() && !p.contains("::"))
            .map(str::to_string)
            .unwrap_or_else(|| at.name.clone())
    }

    /// Adds an IR node (a unique name derived from `want`) reading `inputs`;
    /// returns its name and IR output shape.
    pub fn push(
        &mut self,
        at: &At<'_>,
        want: &str,
        layer: Layer,
        inputs: &[&str],
        params: Vec<(&str, Vec<usize>, Vec<f32>)>,
    ) -> Result<(String, Vec<usize>)> {
        let name = self.unique(want);
        self.graph
            .push(&name, layer, inputs)
            .map_err(|e| at.err(e.to_string()))?;
        for (field, dims, data) in params {
            let t = prune_core::Tensor::from_vec(dims, data).map_err(|e| at.err(e.to_string()))?;
            self.params.insert(format!("{name}.{field}"), t);
        }
        let shapes = infer_shapes(&self.graph).map_err(|e| at.err(e.to_string()))?;
        let shape = shapes.last().cloned().unwrap_or_default();
        Ok((name, shape))
    }

    fn unique(&mut self, want: &str) -> String {
        let base = if want.is_empty() { "node" } else { want };
        let mut name = base.to_string();
        let mut k = 2;
        while self.used_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    /// Records the node's first output as the value `v`.
    pub fn set_output(&mut self, at: &At<'_>, v: Value) -> Result<()> {
        let out = at
            .node
            .output
            .first()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| at.err("has no output"))?;
        if at.node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(at.err(
                "only the first output may be used (training-mode outputs such as running \
                 statistics, pooling indices or dropout masks are not supported)",
            ));
        }
        self.values.insert(out.clone(), v);
        Ok(())
    }
}

/// Per-example shape of a graph input: drops the batch dimension (fixed or
/// named). Errors when another dimension is unknown.
fn input_shape(file: &str, vi: &ValueInfoProto) -> Result<Vec<usize>> {
    let bad = |reason: String| OnnxError::Model {
        file: file.into(),
        reason: format!("graph input '{}': {reason}", vi.name()),
    };
    let tensor = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => return Err(bad("is not a tensor".into())),
    };
    if tensor.elem_type() != crate::proto::tensor_proto::DataType::Float as i32 {
        return Err(bad(format!(
            "has element type {}, prune-nn models take float32 input",
            tensor.elem_type()
        )));
    }
    let dims = &tensor
        .shape
        .as_ref()
        .ok_or_else(|| bad("has no shape".into()))?
        .dim;
    use crate::proto::tensor_shape_proto::dimension::Value as DV;
    let mut shape = Vec::new();
    for (i, d) in dims.iter().enumerate().skip(1) {
        match d.value {
            Some(DV::DimValue(v)) if v > 0 => shape.push(v as usize),
            _ => {
                return Err(bad(format!(
                    "dimension {i} is not a fixed size; only the batch dimension (0) may be dynamic"
                )))
            }
        }
    }
    if dims.len() != 2 && dims.len() != 4 {
        return Err(bad(format!(
            "has rank {}; prune-nn takes [N, C, H, W] images or [N, F] feature vectors",
            dims.len()
        )));
    }
    Ok(shape)
}

/// Imports an ONNX file.
pub fn import_file(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    import_bytes(&bytes, &path.display().to_string(), &name)
}

/// Imports a serialized ONNX model; `file` names it in errors and
/// `model_name` becomes the graph's name.
pub fn import_bytes(bytes: &[u8], file: &str, model_name: &str) -> Result<Model> {
    let bad = |reason: String| OnnxError::Model {
        file: file.into(),
        reason,
    };
    let proto = ModelProto::decode(bytes).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
        .map(|o| o.version())
        .ok_or_else(|| bad("declares no default-domain opset".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(bad(format!(
            "opset {opset} is outside the supported {}..={}",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| bad("has no graph".into()))?;
    let mut values = HashMap::new();
    for init in &g.initializer {
        let c = decode(init).map_err(|e| bad(format!("initializer '{}': {e}", init.name())))?;
        values.insert(init.name().to_string(), Value::Const(c));
    }
    let data_inputs: Vec<&ValueInfoProto> = g
        .input
        .iter()
        .filter(|i| !values.contains_key(i.name()))
        .collect();
    let [input] = data_inputs.as_slice() else {
        return Err(bad(format!(
            "has {} graph inputs besides initializers; prune-nn models take exactly one",
            data_inputs.len()
        )));
    };
    let [output] = g.output.as_slice() else {
        return Err(bad(format!(
            "has {} graph outputs; prune-nn models have exactly one (the logits)",
            g.output.len()
        )));
    };
    let shape = input_shape(file, input)?;
    let graph = Graph::new(model_name, &shape);
    let input_node = graph.nodes[0].name.clone();
    values.insert(
        input.name().to_string(),
        Value::Data {
            node: input_node.clone(),
            onnx: shape.clone(),
            ir: shape,
        },
    );
    let mut readers = HashMap::new();
    for n in &g.node {
        for i in &n.input {
            *readers.entry(i.clone()).or_insert(0) += 1;
        }
    }
    let mut b = Builder {
        graph,
        params: ParamStore::new(),
        values,
        readers,
        used_names: HashSet::from([input_node]),
    };
    for (k, node) in g.node.iter().enumerate() {
        let at = At {
            node,
            name: if node.name().is_empty() {
                node.output
                    .first()
                    .cloned()
                    .unwrap_or_else(|| format!("node{k}"))
            } else {
                node.name().to_string()
            },
            file: file.to_string(),
        };
        if !(node.domain().is_empty() || node.domain() == "ai.onnx") {
            return Err(OnnxError::Unsupported {
                file: file.into(),
                node: at.name.clone(),
                op: format!("{}:{}", node.domain(), node.op_type()),
                supported: SUPPORTED_OPS.join(", "),
            });
        }
        convert_node(&mut b, &at, opset)?;
    }
    let out_node = match b.values.get(output.name()) {
        Some(Value::Data { node, .. }) => node.clone(),
        _ => {
            return Err(bad(format!(
                "graph output '{}' is not computed from the input",
                output.name()
            )))
        }
    };
    let graph = keep_ancestors(b.graph, &out_node);
    let mut params = ParamStore::new();
    for (name, t) in b.params.iter() {
        let node = graph.nodes.iter().any(|n| {
            name.strip_prefix(n.name.as_str())
                .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
        });
        if node {
            params.insert(name.clone(), t.clone());
        }
    }
    let model = Model { graph, params };
    model.validate()?;
    Ok(model)
}

/// Drops nodes the output does not depend on, so the output is the last node.
fn keep_ancestors(mut graph: Graph, output: &str) -> Graph {
    let mut needed: HashSet<String> = HashSet::from([output.to_string()]);
    for n in graph.nodes.iter().rev() {
        if needed.contains(&n.name) {
            needed.extend(n.inputs.iter().cloned());
        }
    }
    let pos = graph.index_of(output).unwrap_or(graph.nodes.len() - 1);
    graph.nodes.truncate(pos + 1);
    graph
        .nodes
        .retain(|n| needed.contains(&n.name) || matches!(n.layer, Layer::Input { .. }));
    graph
}
