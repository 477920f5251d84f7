//! Import of hand-built ONNX protos: unsupported operators and forms give
//! errors naming the node; float16 and bfloat16 initializers are converted.

use prost::Message;
use prune_onnx::proto::{
    attribute_proto, tensor_proto, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use prune_onnx::{import_bytes, OnnxError};

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value as DV, Dimension};
    let mut dim = vec![Dimension {
        value: Some(DV::DimParam("N".into())),
        ..Default::default()
    }];
    dim.extend(dims.iter().map(|&d| Dimension {
        value: Some(DV::DimValue(d)),
        ..Default::default()
    }));
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(tensor_proto::DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![format!("{name}_out")],
        attribute: attrs,
        ..Default::default()
    }
}

/// x [N,2,4,4] → Conv(3 out, 3x3, pad 1, weights of `dtype`) → `extra` → GAP → Flatten.
fn model(dtype: tensor_proto::DataType, extra: Option<NodeProto>) -> Vec<u8> {
    let w: Vec<f32> = (0..54).map(|i| (i as f32 - 27.0) / 16.0).collect();
    let raw: Vec<u8> = match dtype {
        tensor_proto::DataType::Float16 => w
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        tensor_proto::DataType::Bfloat16 => w
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect(),
        _ => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let weight = TensorProto {
        name: Some("conv.weight".into()),
        dims: vec![3, 2, 3, 3],
        data_type: Some(dtype as i32),
        raw_data: Some(raw),
        ..Default::default()
    };
    let mut nodes = vec![node(
        "Conv",
        "conv",
        &["x", "conv.weight"],
        vec![ints("pads", &[1, 1, 1, 1])],
    )];
    let mut last = "conv_out".to_string();
    if let Some(mut e) = extra {
        e.input[0] = last.clone();
        last = e.output[0].clone();
        nodes.push(e);
    }
    nodes.push(node("GlobalAveragePool", "gap", &[&last], vec![]));
    nodes.push(node("Flatten", "flat", &["gap_out"], vec![]));
    let graph = GraphProto {
        name: Some("t".into()),
        node: nodes,
        initializer: vec![weight],
        input: vec![vi("x", &[2, 4, 4])],
        output: vec![vi("flat_out", &[3])],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn float_weights_of_every_width_are_converted() {
    for (dt, tol) in [
        (tensor_proto::DataType::Float, 0.0),
        (tensor_proto::DataType::Float16, 0.0),
        (tensor_proto::DataType::Bfloat16, 0.0),
    ] {
        let m = import_bytes(&model(dt, None), "t.onnx", "t").expect("import");
        let w = m.params.get("conv.weight").expect("weight");
        assert_eq!(w.shape(), &[3, 2, 3, 3]);
        for (i, v) in w.data().iter().enumerate() {
            // These values are exact in all three formats.
            let want = (i as f32 - 27.0) / 16.0;
            assert!((v - want).abs() <= tol, "{dt:?} weight {i}: {v} vs {want}");
        }
        assert_eq!(
            m.graph.nodes.len(),
            3,
            "input, conv, global pool (flatten is implied)"
        );
    }
}

#[test]
fn unsupported_operator_names_node_op_and_list() {
    let err = import_bytes(
        &model(
            tensor_proto::DataType::Float,
            Some(node("LeakyRelu", "act", &["?"], vec![])),
        ),
        "m.onnx",
        "m",
    )
    .expect_err("LeakyRelu is not importable");
    match &err {
        OnnxError::Unsupported { node, op, .. } => {
            assert_eq!(node, "act");
            assert_eq!(op, "LeakyRelu");
        }
        other => panic!("wrong error: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("m.onnx: node 'act' has op type 'LeakyRelu'"),
        "{text}"
    );
    assert!(
        text.contains("Conv, Gemm, MatMul, BatchNormalization, Relu, Clip"),
        "{text}"
    );
}

#[test]
fn unsupported_forms_are_errors() {
    let asym = node(
        "MaxPool",
        "pool",
        &["?"],
        vec![ints("kernel_shape", &[2, 2]), ints("pads", &[0, 0, 1, 1])],
    );
    let err = import_bytes(
        &model(tensor_proto::DataType::Float, Some(asym)),
        "m.onnx",
        "m",
    )
    .expect_err("asymmetric pads");
    assert!(
        err.to_string()
            .contains("node 'pool' (MaxPool): pads [0, 0, 1, 1]"),
        "{err}"
    );
    let mut clip = node("Clip", "clip", &["?", "lo", "hi"], vec![]);
    clip.input = vec!["?".into(), String::new(), String::new()];
    // Clip with neither bound: not a ReLU form.
    let err = import_bytes(
        &model(tensor_proto::DataType::Float, Some(clip)),
        "m.onnx",
        "m",
    )
    .expect_err("unbounded clip");
    assert!(err.to_string().contains("only Clip(0, 6)"), "{err}");
    let err = import_bytes(b"not a model", "junk.onnx", "m").expect_err("garbage");
    assert!(err.to_string().starts_with("junk.onnx: "), "{err}");
}
