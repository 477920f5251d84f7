#!/usr/bin/env bash
# Regenerates crates/prune-onnx/src/proto/onnx.rs from crates/prune-onnx/proto/onnx.proto.
# Needs only cargo: protox compiles the schema in Rust, no system `protoc`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/prune-onnx-codegen-target}" \
  cargo run --quiet --release --manifest-path "$here/Cargo.toml"
rustfmt --edition 2021 "$here/../src/proto/onnx.rs"
