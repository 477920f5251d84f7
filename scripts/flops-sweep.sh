#!/bin/bash
# The accuracy-vs-FLOPs comparison of docs/results.md: SBP, polarization and
# slimming pruning one dense LeNet5 (MNIST) at four FLOPs reductions each,
# with the same sparse-training epochs and the same fine-tuning for all
# three methods.
#
# Usage: scripts/flops-sweep.sh DENSE_RUN OUT_DIR
#   DENSE_RUN: a dense LeNet5 run (recipes/lenet5-dense.toml).
#   OUT_DIR:   one run directory per point, plus <name>.log.
# Environment: PRUNE_NN_BIN (default ./target/release/prune-nn),
#   EPOCHS (sparse-training epochs, default 3), FT_EPOCHS (fine-tuning
#   epochs, default 1).
#
# Resumable: a point whose directory holds report.json is skipped; a point
# that died during sparse training continues from its checkpoint
# (`--resume`); one that died elsewhere starts again. Points run one after the other, interleaved by method, so a
# partial sweep still compares the three methods.
#
# How each method reaches a FLOPs reduction:
# - slimming: `--target-flops X` picks the global γ percentile that meets X
#   after one L1-regularized training (λ = 1e-4, Liu et al. 2017);
# - polarization: the per-layer histogram rule has no target of its own at a
#   fixed λ, so the points are a λ grid at t = 1.2 (Adam needs λ ~10x the
#   SGD value of the paper; see docs/results.md);
# - SBP has no target either: the points are KL weights per layer (conv1,
#   conv2, fc1 input, fc2 input), the noise parameters at 100x the rate.
# Where each point landed is in its report.json; scripts/flops-table.py
# prints the table.
set -euo pipefail
source "$(dirname "$0")/prune-point.sh"
if [ $# -ne 2 ]; then
    echo "usage: $0 DENSE_RUN OUT_DIR" >&2
    exit 2
fi
dense=$1 out=$2
bin=${PRUNE_NN_BIN:-./target/release/prune-nn}
epochs=${EPOCHS:-3}
ft=${FT_EPOCHS:-1}
if [ ! -x "$bin" ]; then
    echo "$bin: not built (cargo build --release -p prune-cli)" >&2
    exit 1
fi
if [ ! -f "$dense/report.json" ]; then
    echo "$dense: no report.json; train the dense model first (prune-nn train --recipe recipes/lenet5-dense.toml)" >&2
    exit 1
fi
common=(--model "$dense" --dataset mnist --epochs "$epochs" --finetune-epochs "$ft"
        --batch-size 100 --lr 0.001 --finetune-lr 0.0001 --speed-repeats 0 --seed 0)
mkdir -p "$out"

point() {
    local name=$1
    shift
    NICE=10 prune_point "$bin" "$out" "$name" "${common[@]}" "$@"
}

slim_targets=(1.5 2 3 4)
pol_lambdas=(2e-3 5e-3 1e-2 2e-2)
sbp_weights=(1,1,1,1 10,10,1,1 10,10,10,10 100,10,1,1)
status=0
for i in 0 1 2 3; do
    point "slimming-x${slim_targets[$i]}" --method slimming --slim-lambda 1e-4 \
        --target-flops "${slim_targets[$i]}" || status=1
    point "polarization-l${pol_lambdas[$i]}" --method polarization \
        --lambda "${pol_lambdas[$i]}" --t 1.2 || status=1
    point "sbp-kl${sbp_weights[$i]//,/-}" --method sbp --beta1 0.95 --sbp-lr-mult 100 \
        --sbp-kl-weights "${sbp_weights[$i]}" || status=1
done

python3 "$(dirname "$0")/flops-table.py" "$dense" "$out"/*/
# Last step: the chart of docs/results.md, drawn from the same reports (the
# dense run is the dense point). CHART_DIR (default docs/img) receives
# accuracy-flops.png and .svg.
if "$bin" chart --help > /dev/null 2>&1; then
    chart_dir=${CHART_DIR:-docs/img}
    mkdir -p "$chart_dir"
    finished=()
    for d in "$out"/*/; do
        [ -f "$d/report.json" ] && finished+=("$d")
    done
    for ext in png svg; do
        "$bin" chart accuracy-flops --out "$chart_dir/accuracy-flops.$ext" "$dense" "${finished[@]}" \
            || status=1
    done
else
    echo "this prune-nn has no 'chart' command; chart skipped" >&2
fi
exit $status
