#!/bin/bash
# SBP, polarization and slimming pruning one dense ResNet-20 on
# Fashion-MNIST (full training set) at the same FLOPs reductions, with the
# same sparse-training and fine-tuning epochs for all three
# (docs/results.md, "ResNet-20 on Fashion-MNIST: the three methods").
#
# Usage: scripts/resnet20-compare.sh OUT_DIR
#   OUT_DIR/dense is trained first (recipes/resnet20-fashion-dense.toml with
#   its epochs scaled by DENSE_EPOCHS), then one run directory per point.
# Environment: PRUNE_NN_BIN (default ./target/release/prune-nn),
#   DENSE_EPOCHS (default 5; rate x0.1 after 60% and 80% of them),
#   EPOCHS (sparse-training epochs, default 2), FT_EPOCHS (fine-tuning
#   epochs, default 1), LAMBDAS (polarization λ per point, default
#   "4e-3 1e-2": about 47% and 70% fewer FLOPs here).
#
# How the reductions are matched: polarization has no FLOPs target at a
# fixed λ (its per-layer histogram valley decides; a target means a search
# over λ, one sparse training per trial, which this budget cannot pay), so
# each point runs polarization first and then slimming (global γ percentile)
# and SBP (global SNR threshold) with `--target-flops` set to the reduction
# polarization reached. Each method trains with its paper's optimizer:
# SGD (lr 0.1, x0.1 after the first epoch, momentum 0.9) for the two γ
# methods as in Zhuang et al. 2020 / Liu et al. 2017, Adam (lr 1e-3,
# β1 0.95, noise parameters at 100x) for SBP as in Neklyudov et al. 2017;
# fine-tuning continues with the same optimizer at a tenth of the rate.
#
# Regularization strengths: the papers' λ over their 160-200 epochs, scaled
# to the same total push Σ(lr·λ·∂R/∂γ) on a γ over this budget (at the
# default 2 epochs, Σ lr = 469·0.1 + 469·0.01 ≈ 51.6 at batch 128).
# Polarization: the official ResNet-56 command (λ 5e-5, t 1.4, lr 0.1 with
# x0.2 steps, 200 epochs) pushes a below-mean γ by λ(t+1)Σlr ≈ 0.7; here
# λ 1e-2 at t 1.2 gives 1e-2·2.2·51.6 ≈ 1.1 (and 70% fewer FLOPs on
# ResNet-20 / Fashion-MNIST), 4e-3 gives 0.45 (for about 47%).
# Slimming: λ 1e-5 over 160 epochs (Σ lr ≈ 6,600) gives an L1 drift of
# about 0.07; here 1e-3·51.6 ≈ 0.05.
#
# Resumable like scripts/flops-sweep.sh: finished points (report.json) are
# skipped, a point that died in sparse training continues (`--resume`).
set -euo pipefail
source "$(dirname "$0")/prune-point.sh"
out=${1:?usage: $0 OUT_DIR}
bin=${PRUNE_NN_BIN:-./target/release/prune-nn}
dense_epochs=${DENSE_EPOCHS:-5}
epochs=${EPOCHS:-2}
ft=${FT_EPOCHS:-1}
read -r -a lambdas <<< "${LAMBDAS:-4e-3 1e-2}"
if [ ! -x "$bin" ]; then
    echo "$bin: not built (cargo build --release -p prune-cli)" >&2
    exit 1
fi
mkdir -p "$out"
dense=$out/dense
if [ ! -f "$dense/report.json" ]; then
    m1=$(( (dense_epochs * 6 + 9) / 10 )) m2=$(( (dense_epochs * 8 + 9) / 10 ))
    resume=()
    [ -d "$dense/checkpoint" ] && resume=(--resume)
    [ -d "$dense" ] && [ ${#resume[@]} -eq 0 ] && resume=(--force)
    echo "dense: $dense_epochs epochs, milestones $m1,$m2"
    "$bin" train --recipe recipes/resnet20-fashion-dense.toml --epochs "$dense_epochs" \
        --milestones "$m1,$m2" --batch-size 128 "${resume[@]}" --out "$dense" >> "$out/dense.log" 2>&1
fi

common=(--model "$dense" --dataset fashion-mnist --epochs "$epochs" --finetune-epochs "$ft"
        --batch-size 128 --speed-repeats 0 --seed 0)
sgd=(--optimizer sgd --momentum 0.9 --lr 0.1 --milestones 1 --finetune-lr 0.01)
adam=(--optimizer adam --beta1 0.95 --lr 0.001 --sbp-lr-mult 100 --finetune-lr 0.0001)

point() {
    local name=$1
    shift
    prune_point "$bin" "$out" "$name" "${common[@]}" "$@"
}

reduction() { # run dir -> its FLOPs reduction
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1] + "/report.json"))["flops_reduction"])' "$1"
}

for lam in "${lambdas[@]}"; do
    point "polarization-l$lam" --method polarization "${sgd[@]}" --weight-decay 5e-4 \
        --lambda "$lam" --t 1.2
    target=$(reduction "$out/polarization-l$lam")
    if ! python3 -c 'import sys; sys.exit(float(sys.argv[1]) <= 1.01)' "$target"; then
        echo "polarization-l$lam pruned nothing (${target}x): no point to match; try a larger λ" >&2
        continue
    fi
    echo "polarization-l$lam reached ${target}x; slimming and SBP target it"
    point "slimming-l$lam" --method slimming "${sgd[@]}" --weight-decay 1e-4 \
        --slim-lambda 1e-3 --target-flops "$target"
    point "sbp-l$lam" --method sbp "${adam[@]}" --target-flops "$target"
done

points=()
for d in "$out"/*/; do
    [ "$d" != "$dense/" ] && points+=("$d")
done
python3 "$(dirname "$0")/flops-table.py" "$dense" "${points[@]}"
finished=()
for d in "${points[@]}"; do
    [ -f "$d/report.json" ] && finished+=("$d")
done
chart_dir=${CHART_DIR:-docs/img}
mkdir -p "$chart_dir"
for ext in png svg; do
    "$bin" chart accuracy-flops --out "$chart_dir/resnet20-fashion-accuracy-flops.$ext" "$dense" "${finished[@]}"
done
