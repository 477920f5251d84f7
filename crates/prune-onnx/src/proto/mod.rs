//! The ONNX schema (`proto/onnx.proto`, ONNX's official IR definition) as
//! prost types. `onnx.rs` is generated: regenerate it with
//! `bash crates/prune-onnx/codegen/regenerate.sh` (protox compiles the schema
//! in Rust, so no system `protoc` is needed, neither there nor at build time).

#![allow(clippy::all, clippy::pedantic, missing_docs)]
#![allow(rustdoc::all)]

include!("onnx.rs");
