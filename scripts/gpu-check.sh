#!/usr/bin/env bash
# The prepared GPU check.  Runs on a GPU machine with CUDA 13, PyTorch + cuDNN and
# compute-sanitizer but no cargo and no network, from the repository root, with the bundle
# built beforehand by scripts/gpu-build.sh carried along:
#
#     OUT=/some/dir bash scripts/gpu-check.sh [BUNDLE]     # default BUNDLE: runs/gpu-bundle
#
# Everything it prints also goes under $OUT (default: ./gpu-check-out): one log per step and
# summary.txt with one line per step (PASS / FAIL / SKIP / UNSUPPORTED and the reason).
# Budget: under 5 minutes in all; every step runs under its own `timeout`.
#
# Steps
#   1. nvidia-smi
#   2. every GPU test binary with PRUNE_REQUIRE_GPU=1 (a missing GPU or driver fails them):
#      the prune-kernels kernel tests, prune-core's backend op tests (backend_ops,
#      backend_sbp: every Backend op on cuda:0 against the CPU references; backend_conv:
#      cuDNN under PRUNE_CUDNN=deterministic, bitwise repeatable) and prune-nn's
#      device_pipeline (prune with each method on cuda:0 against the CPU run); the
#      convolution check of backend_ops once more with PRUNE_CUDNN=off (the implicit-GEMM
#      fallback)
#   3. compute-sanitizer memcheck and racecheck on a small subset (the gather, kernel-op and
#      backend SBP tests); where the device runtime does not support the tool, UNSUPPORTED
#      with its message
#   4. the kernel benchmarks (bandwidth lines, fused vs unfused, gather vs copy, masked conv
#      vs dense + mask and vs cuDNN's three passes on the gathered tensors)
#   5. training on the GPU with the prune-nn CLI: LeNet5 one MNIST epoch on cuda (cuDNN's
#      fastest algorithms, then PRUNE_CUDNN=deterministic) and on cpu from the same seed
#      (losses compared; also after 1 and 20 batches, to show how the difference grows
#      with the steps), one ResNet-20 / ResNet-56 epoch on Fashion-MNIST at batch 128
#      timed, and `prune-nn bench --device cuda --train` (training step and inference of
#      ResNet-20, ResNet-56 and VGG-like at batch 128, batch-1 latency); only when the
#      CLI accepts --device, else SKIP with the reason
#   6. the PyTorch peer: ResNet-56 / ResNet-20 training step, inference batch and batch-1
#      latency on the same GPU and batch (cuDNN with TF32 allowed, FP32, deterministic)
#   7. with the time left: one ResNet-20 epoch with PRUNE_CUDNN=off (implicit-GEMM
#      convolutions) beside the cuDNN one of step 5
set -uo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${1:-runs/gpu-bundle}"
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
START=$(date +%s)
BUDGET=290  # seconds for everything

note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
# step NAME TIMEOUT CMD...: runs CMD with output to $OUT/NAME.log (and the console).
step() {
    local name="$1" limit="$2"
    shift 2
    local l
    l=$(left)
    if [ "$l" -lt 10 ]; then
        note "SKIP  $name: out of time budget"
        return 0
    fi
    [ "$limit" -gt "$l" ] && limit="$l"
    echo "=== $name (timeout ${limit}s): $*" | tee "$OUT/$name.log"
    timeout --kill-after=5 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        note "PASS  $name"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        note "FAIL  $name: timed out after ${limit}s"
    else
        note "FAIL  $name: exit $rc (see $name.log)"
    fi
    return 0
}

note "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
[ -f "$BUNDLE/BUILD_INFO" ] && sed 's/^/bundle /' "$BUNDLE/BUILD_INFO" | tee -a "$SUMMARY"
if [ ! -d "$BUNDLE/tests" ]; then
    note "FAIL  bundle: $BUNDLE/tests not found; build it with: bash scripts/gpu-build.sh $BUNDLE"
    exit 1
fi

# Dataset for the training steps (the repository's shared/data, or $PRUNE_NN_DATA).
if [ -z "${PRUNE_NN_DATA:-}" ]; then
    for d in shared/data ../shared/data; do
        [ -d "$d" ] && PRUNE_NN_DATA="$(cd "$d" && pwd)" && break
    done
fi
export PRUNE_NN_DATA="${PRUNE_NN_DATA:-}"

# CUDA libraries the binaries load at run time (libcuda from the driver; libnvrtc, libcublas,
# and libcudnn for the backend's convolution and the cuDNN peer): the toolkit's lib directory
# and the NVIDIA wheels next to PyTorch, added to LD_LIBRARY_PATH when present.
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && libdirs="$libdirs:$d"
done
if command -v python3 >/dev/null 2>&1; then
    wheel_dirs="$(python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = []
try:
    roots += site.getsitepackages()
except AttributeError:
    pass
roots += [p for p in sys.path if p.endswith("site-packages") or p.endswith("dist-packages")]
seen = []
for root in dict.fromkeys(roots):
    for pat in ("libnvrtc.so*", "libcudnn.so*", "libcublas.so*"):
        for hit in glob.glob(os.path.join(root, "nvidia", "**", pat), recursive=True):
            d = os.path.dirname(os.path.realpath(hit))
            if d not in seen:
                seen.append(d)
print(":".join(seen))
PY
)"
    [ -n "$wheel_dirs" ] && libdirs="$libdirs:$wheel_dirs"
fi
if [ -n "$libdirs" ]; then
    export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
note "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# 1. device
step nvidia-smi 20 nvidia-smi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    >> "$OUT/nvidia-smi.log" 2>&1

# 2. GPU tests: every test of every carried binary, GPU required (the `emu::` and
#    `emu_gemm::` cases, the CUDA backend over the CPU emulation of the kernels, already ran
#    in CI: skipped here).
export PRUNE_REQUIRE_GPU=1 PRUNE_REQUIRE_NVRTC=1
for t in "$BUNDLE"/tests/*; do
    step "test-$(basename "$t")" 90 "$t" --test-threads=1 --skip emu:: --skip emu_gemm::
done
# The convolution fallback (implicit-GEMM kernels) on the GPU: cuDNN turned off.
if [ -x "$BUNDLE/tests/backend_ops" ]; then
    step test-backend_ops-conv-fallback 30 env PRUNE_CUDNN=off "$BUNDLE/tests/backend_ops" \
        --test-threads=1 cuda::convolution
fi

# 3. compute-sanitizer on a small subset.
if command -v compute-sanitizer >/dev/null 2>&1; then
    for tool in memcheck racecheck; do
        for t in gpu_gather gpu_ops backend_sbp; do
            [ -x "$BUNDLE/tests/$t" ] || continue
            name="sanitizer-$tool-$t"
            step "$name" 75 compute-sanitizer --tool "$tool" --error-exitcode 3 \
                "$BUNDLE/tests/$t" --test-threads=1
            if grep -qiE "not supported|unsupported|Target application terminated before first instrumented API call|Unable to find injection library|device does not support" "$OUT/$name.log"; then
                sed -i "s/^FAIL  $name:.*/UNSUPPORTED $name: compute-sanitizer $tool does not run on this device runtime (see $name.log)/" "$SUMMARY"
                echo "UNSUPPORTED $name" >&2
            fi
        done
    done
else
    note "UNSUPPORTED compute-sanitizer: not on PATH"
fi

# 4. kernel benchmarks (the summary lines print before the criterion runs).
if [ -x "$BUNDLE/benches/kernels" ]; then
    step bench-kernels 100 "$BUNDLE/benches/kernels" --bench --noplot \
        --warm-up-time 0.5 --measurement-time 1 --sample-size 10
    # The benchmark exits successfully when it finds no GPU; here that is a failure.
    if grep -q "benchmarks skipped" "$OUT/bench-kernels.log" 2>/dev/null; then
        sed -i "s/^PASS  bench-kernels$/FAIL  bench-kernels: no usable GPU (see bench-kernels.log)/" "$SUMMARY"
    fi
else
    note "SKIP  bench-kernels: no benchmark binary in $BUNDLE/benches"
fi

# 5. training on the GPU through the CLI.
CLI="$BUNDLE/bin/prune-nn"
if [ ! -x "$CLI" ]; then
    note "SKIP  training: no prune-nn binary in $BUNDLE/bin"
elif ! "$CLI" train --help 2>/dev/null | grep -q -- "--device"; then
    note "SKIP  training (LeNet5 cuda vs cpu, ResNet-20/56 epochs): this prune-nn has no --device option, the CUDA backend is not built in"
elif [ -z "$PRUNE_NN_DATA" ]; then
    note "SKIP  training: no dataset (set PRUNE_NN_DATA or carry shared/data)"
else
    # cuda: cuDNN's fastest algorithms; cuda-det: PRUNE_CUDNN=deterministic.
    for dev in cuda cuda-det cpu; do
        rm -rf "$OUT/lenet5-$dev"
        case "$dev" in
            cuda-det) run_env=(env PRUNE_CUDNN=deterministic); flag=cuda ;;
            *) run_env=(env); flag="$dev" ;;
        esac
        step "train-lenet5-$dev" 60 "${run_env[@]}" "$CLI" train --model lenet5 --dataset mnist \
            --epochs 1 --seed 7 --device "$flag" --out "$OUT/lenet5-$dev"
    done
    for dev in cuda cuda-det; do
        python3 - "$dev" "$OUT/lenet5-$dev/metrics.jsonl" "$OUT/lenet5-cpu/metrics.jsonl" <<'PY' 2>&1 | tee -a "$SUMMARY"
import json, sys
dev = sys.argv[1]
try:
    a, b = [json.loads(open(p).read().splitlines()[-1]) for p in sys.argv[2:4]]
except Exception as e:  # a run above failed; its log says why
    print(f"FAIL  lenet5-compare-{dev}: {e}")
    sys.exit(0)
rel = abs(a["train_loss"] - b["train_loss"]) / max(abs(b["train_loss"]), 1e-12)
verdict = "PASS" if rel <= 1e-4 else "FAIL"
print(f"{verdict}  lenet5-compare-{dev}: train loss {dev} {a['train_loss']:.6f} cpu {b['train_loss']:.6f} "
      f"(relative difference {rel:.2e}, goal 1e-4); epoch seconds {dev} {a['seconds']:.2f} "
      f"(goal <= 2 s) cpu {b['seconds']:.2f}")
PY
    done
    # How the difference grows with the number of steps (deterministic cuDNN against the
    # CPU, same seed): the mean training loss after 1 and after 20 batches.
    for b in 1 20; do
        for dev in cuda-det cpu; do
            case "$dev" in
                cuda-det) run_env=(env PRUNE_CUDNN=deterministic); flag=cuda ;;
                *) run_env=(env); flag="$dev" ;;
            esac
            rm -rf "$OUT/lenet5-$dev-b$b"
            step "train-lenet5-$dev-b$b" 30 "${run_env[@]}" "$CLI" train --model lenet5 \
                --dataset mnist --epochs 1 --seed 7 --max-batches "$b" --test-subset 500 \
                --device "$flag" --out "$OUT/lenet5-$dev-b$b"
        done
        python3 - "$b" "$OUT/lenet5-cuda-det-b$b/metrics.jsonl" "$OUT/lenet5-cpu-b$b/metrics.jsonl" <<'PY' 2>&1 | tee -a "$SUMMARY"
import json, sys
try:
    a, c = [json.loads(open(p).read().splitlines()[-1])["train_loss"] for p in sys.argv[2:4]]
    print(f"lenet5 after {sys.argv[1]} batches: train loss cuda-det {a:.8f} cpu {c:.8f} "
          f"(relative difference {abs(a - c) / max(abs(c), 1e-12):.2e})")
except Exception as e:
    print(f"lenet5 after {sys.argv[1]} batches: no comparison ({e})")
PY
    done
    for m in resnet20 resnet56; do
        rm -rf "$OUT/$m-cuda"
        step "train-$m-cuda" 90 "$CLI" train --model "$m" --dataset fashion-mnist --epochs 1 \
            --batch-size 128 --optimizer sgd --lr 0.1 --seed 7 --device cuda --out "$OUT/$m-cuda"
        [ -f "$OUT/$m-cuda/metrics.jsonl" ] && tail -n1 "$OUT/$m-cuda/metrics.jsonl" \
            | sed "s/^/$m epoch: /" | tee -a "$SUMMARY"
    done
    # Step and inference times without data loading or evaluation, beside the PyTorch
    # peer's ms/step below (same batch, same GPU).
    for m in resnet20 resnet56 vgg-like; do
        step "bench-$m-cuda" 40 "$CLI" bench --model "$m" --device cuda --train \
            --batch-size 128 --repeats 20 --warmup 5 --latency-runs 50
        grep -hE "^(model|inference|training|latency)" "$OUT/bench-$m-cuda.log" \
            | sed "s/^/bench $m: /" | tee -a "$SUMMARY" >/dev/null
    done
fi

# 6. the PyTorch peer on the same GPU.
if python3 -c "import torch" >/dev/null 2>&1; then
    step torch-resnet56 60 python3 scripts/torch_resnet56_step.py --batch 128 --steps 30 --blocks 9
    step torch-resnet20 40 python3 scripts/torch_resnet56_step.py --batch 128 --steps 30 --blocks 3
    grep -h "^torch ResNet" "$OUT"/torch-resnet*.log | tee -a "$SUMMARY"
else
    note "SKIP  torch peer: python3 cannot import torch"
fi

# 7. with the budget left: one ResNet-20 epoch with cuDNN turned off (the implicit-GEMM
#    kernels), against train-resnet20-cuda above.
if [ -x "$CLI" ] && [ -n "$PRUNE_NN_DATA" ] && "$CLI" train --help 2>/dev/null | grep -q -- "--device"; then
    rm -rf "$OUT/resnet20-cuda-gemm"
    step train-resnet20-cuda-gemm 90 env PRUNE_CUDNN=off "$CLI" train --model resnet20 \
        --dataset fashion-mnist --epochs 1 --batch-size 128 --optimizer sgd --lr 0.1 --seed 7 \
        --device cuda --out "$OUT/resnet20-cuda-gemm"
    [ -f "$OUT/resnet20-cuda-gemm/metrics.jsonl" ] && tail -n1 "$OUT/resnet20-cuda-gemm/metrics.jsonl" \
        | sed "s/^/resnet20 epoch (PRUNE_CUDNN=off): /" | tee -a "$SUMMARY"
fi

# Which convolution engine the backend used (tests and CLI runs).
grep -h "convolution through" "$OUT"/test-*.log "$OUT"/train-*.log 2>/dev/null | sort -u \
    | tee -a "$SUMMARY" >/dev/null
# Bandwidth and speedup lines of the benchmark, for docs/kernels.md.
grep -hE "GB/s|speedup|device:|cuDNN peer" "$OUT/bench-kernels.log" 2>/dev/null | tee -a "$SUMMARY" >/dev/null
note "done in $(($(date +%s) - START)) s; logs in $OUT"
grep -q "^FAIL" "$SUMMARY" && exit 1
exit 0
