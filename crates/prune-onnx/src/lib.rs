//! `prune-onnx`: ONNX import and export of prune-nn models.
//!
//! * [`import_file`] reads a CNN as `torch.onnx.export` writes it (opsets
//!   7–21; Conv, Gemm, MatMul + Add, BatchNormalization, Relu, Clip(0, 6),
//!   pooling, Add, Concat, Flatten, Reshape/Squeeze to 2-D, Identity,
//!   Dropout) into the IR and its parameter store, keeping the names of
//!   nodes and weights. Anything else is an error naming the node, its op
//!   type and the supported list — never a silent approximation.
//! * [`export_file`] writes any model — dense, gated or compiled — as ONNX
//!   (opset 17 by default): SBP gates become a multiplication by their
//!   test-time scale, `select` a `Gather`, batch norm stays or is folded.
//!
//! The ONNX schema comes from ONNX's official `onnx.proto`, compiled to
//! prost types checked in under `src/proto/` (see `codegen/`), so neither
//! building nor regenerating needs a system `protoc`.

pub mod error;
pub mod export;
pub mod fold;
pub mod import;
mod import_ops;
pub mod proto;
mod tensor;

pub use error::{OnnxError, Result};
pub use export::{export_bytes, export_file, ExportOptions, DEFAULT_OPSET};
pub use fold::fold_batch_norms;
pub use import::{import_bytes, import_file, OPSETS, SUPPORTED_OPS};
