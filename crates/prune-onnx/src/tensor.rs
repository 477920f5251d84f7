//! Tensors and attributes of ONNX protos: decoding initializers (float32,
//! float16, bfloat16, float64; int64/int32 for shapes and axes) and building
//! them for export.

use crate::proto::{attribute_proto, tensor_proto, AttributeProto, NodeProto, TensorProto};

/// A constant of the ONNX graph (an initializer or a `Constant` node's value),
/// decoded: floats as f32, integer tensors as i64.
#[derive(Clone, Debug)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub floats: Option<Vec<f32>>,
    pub ints: Option<Vec<i64>>,
}

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// Decodes an initializer. Errors (as text) name the data type when it is
/// not a float or integer type, or when the data lives in an external file.
pub(crate) fn decode(t: &TensorProto) -> Result<Const, String> {
    use tensor_proto::DataType as D;
    if t.data_location == Some(tensor_proto::DataLocation::External as i32) {
        return Err(
            "its data is stored in an external file, which is not supported \
                    (save the model with all tensors inside the .onnx file)"
                .into(),
        );
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    let n: usize = dims.iter().product();
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let dt = t.data_type.unwrap_or(0);
    let (floats, ints) = match D::try_from(dt) {
        Ok(D::Float) => (
            Some(match raw {
                Some(r) => le_chunks::<4>(r).map(f32::from_le_bytes).collect(),
                None => t.float_data.clone(),
            }),
            None,
        ),
        Ok(D::Float16) | Ok(D::Bfloat16) => {
            let bits: Vec<u16> = match raw {
                Some(r) => le_chunks::<2>(r).map(u16::from_le_bytes).collect(),
                None => t.int32_data.iter().map(|&v| v as u16).collect(),
            };
            let f = if dt == D::Float16 as i32 {
                bits.iter()
                    .map(|&b| half::f16::from_bits(b).to_f32())
                    .collect()
            } else {
                bits.iter()
                    .map(|&b| half::bf16::from_bits(b).to_f32())
                    .collect()
            };
            (Some(f), None)
        }
        Ok(D::Double) => (
            Some(match raw {
                Some(r) => le_chunks::<8>(r)
                    .map(|b| f64::from_le_bytes(b) as f32)
                    .collect(),
                None => t.double_data.iter().map(|&v| v as f32).collect(),
            }),
            None,
        ),
        Ok(D::Int64) => (
            None,
            Some(match raw {
                Some(r) => le_chunks::<8>(r).map(i64::from_le_bytes).collect(),
                None => t.int64_data.clone(),
            }),
        ),
        Ok(D::Int32) => (
            None,
            Some(match raw {
                Some(r) => le_chunks::<4>(r)
                    .map(|b| i64::from(i32::from_le_bytes(b)))
                    .collect(),
                None => t.int32_data.iter().map(|&v| i64::from(v)).collect(),
            }),
        ),
        _ => {
            let name = D::try_from(dt)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| format!("type {dt}"));
            return Err(format!(
                "data type {name} is not supported (float32, float16, bfloat16, float64, int64, int32 are)"
            ));
        }
    };
    let got = floats
        .as_ref()
        .map(Vec::len)
        .or(ints.as_ref().map(Vec::len))
        .unwrap_or(0);
    if got != n {
        return Err(format!(
            "dims {dims:?} need {n} values, the tensor holds {got}"
        ));
    }
    Ok(Const { dims, floats, ints })
}

/// A float32 initializer with raw little-endian data.
pub(crate) fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Float as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// An int64 initializer.
pub(crate) fn i64_tensor(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(tensor_proto::DataType::Int64 as i32),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// Attribute readers of one node.
pub(crate) struct Attrs<'a>(pub &'a NodeProto);

impl Attrs<'_> {
    fn get(&self, name: &str) -> Option<&AttributeProto> {
        self.0.attribute.iter().find(|a| a.name() == name)
    }
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).and_then(|a| a.f).unwrap_or(default)
    }
    pub fn float_opt(&self, name: &str) -> Option<f32> {
        self.get(name).and_then(|a| a.f)
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorProto> {
        self.get(name).and_then(|a| a.t.as_ref())
    }
}

/// Attribute builders for export.
pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub(crate) fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

pub(crate) fn attr_ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attribute_proto::AttributeType::Ints as i32),
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}
