#!/usr/bin/env bash
# Builds, on a machine with cargo (no GPU needed), everything scripts/gpu-check.sh runs on a
# GPU machine that has no cargo and no network: the release, stripped GPU test binaries,
# the kernel benchmark binary and the prune-nn CLI, into one folder to carry along.
#
#     bash scripts/gpu-build.sh [BUNDLE]        # default BUNDLE: runs/gpu-bundle
#
# Layout of BUNDLE:  tests/<name>   test binaries (libtest harness)
#                    benches/kernels  criterion benchmark binary
#                    bin/prune-nn   the CLI, built with the CUDA backend (`--device cuda`)
#                    BUILD_INFO     commit, date, rustc version
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${1:-runs/gpu-bundle}"
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/tests" "$BUNDLE/benches" "$BUNDLE/bin"
# The sources being built: recorded now, not after the (long) build.
COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"

# Test targets of prune-kernels that touch the GPU (or NVRTC on it); the CPU-only tests run
# in CI and are not carried.
GPU_TESTS="gpu_sbp gpu_conv gpu_gather gpu_ops probe nvrtc_compile"
# prune-core's backend op tests, built with the CUDA backend: on the GPU machine they run
# every op on cuda:0 against the CPU references (and on the CPU backend, as in CI);
# backend_conv checks cuDNN's deterministic setting (bitwise repeatable, equal to the CPU).
CORE_TESTS="backend_ops backend_train_ops backend_sbp backend_conv"
# prune-nn's pipeline test: prune (three methods) on cuda:0 against the same run on the CPU.
NN_TESTS="device_pipeline"

# Paths of the executables cargo reports for a build, one per line: "name<TAB>path".
artifacts() {
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"] + "\t" + m["executable"])
'
}

args=()
for t in $GPU_TESTS; do args+=(--test "$t"); done
echo "gpu-build: release test binaries: $GPU_TESTS" >&2
cargo test --release -p prune-kernels "${args[@]}" --no-run --message-format=json-render-diagnostics \
    | artifacts | while IFS=$'\t' read -r name path; do
        cp "$path" "$BUNDLE/tests/$name"
    done

args=()
for t in $CORE_TESTS; do args+=(--test "$t"); done
echo "gpu-build: release backend test binaries (prune-core --features cuda): $CORE_TESTS" >&2
cargo test --release -p prune-core --features cuda "${args[@]}" --no-run \
    --message-format=json-render-diagnostics \
    | artifacts | while IFS=$'\t' read -r name path; do
        cp "$path" "$BUNDLE/tests/$name"
    done

args=()
for t in $NN_TESTS; do args+=(--test "$t"); done
echo "gpu-build: release pipeline test binaries (prune-nn --features cuda): $NN_TESTS" >&2
cargo test --release -p prune-nn --features cuda "${args[@]}" --no-run \
    --message-format=json-render-diagnostics \
    | artifacts | while IFS=$'\t' read -r name path; do
        cp "$path" "$BUNDLE/tests/$name"
    done

echo "gpu-build: kernel benchmark" >&2
cargo bench -p prune-kernels --features cudnn --bench kernels --no-run --message-format=json-render-diagnostics \
    | artifacts | while IFS=$'\t' read -r name path; do
        cp "$path" "$BUNDLE/benches/$name"
    done

echo "gpu-build: prune-nn CLI" >&2
cargo build --release -p prune-cli --message-format=json-render-diagnostics \
    | artifacts | while IFS=$'\t' read -r name path; do
        cp "$path" "$BUNDLE/bin/$name"
    done

strip "$BUNDLE"/tests/* "$BUNDLE"/benches/* "$BUNDLE"/bin/* 2>/dev/null || true
{
    echo "commit: $COMMIT"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "rustc: $(rustc --version)"
} > "$BUNDLE/BUILD_INFO"
for t in $GPU_TESTS $CORE_TESTS $NN_TESTS; do
    [ -x "$BUNDLE/tests/$t" ] || { echo "gpu-build: missing test binary $t" >&2; exit 1; }
done
[ -x "$BUNDLE/bin/prune-nn" ] || { echo "gpu-build: missing the prune-nn CLI" >&2; exit 1; }
[ -x "$BUNDLE/benches/kernels" ] || { echo "gpu-build: missing bench binary" >&2; exit 1; }
du -sh "$BUNDLE"/* >&2
echo "gpu-build: bundle ready in $BUNDLE ($(du -sh "$BUNDLE" | cut -f1)); carry it and run" >&2
echo "           OUT=<dir> bash scripts/gpu-check.sh $BUNDLE" >&2
