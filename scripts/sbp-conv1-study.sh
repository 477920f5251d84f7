#!/bin/bash
# The short SBP LeNet5 conv1 study of docs/results.md: six variants from one
# dense LeNet5, 600 Adam steps each, noise parameters at 100x the rate.
# Usage: scripts/sbp-conv1-study.sh DENSE_RUN UNTRAINED_RUN OUT_DIR
# (UNTRAINED_RUN: `prune-nn train --model lenet5 --epochs 0 --out ...`).
set -euo pipefail
dense=$1 init=$2 out=$3
bin=${PRUNE_NN_BIN:-./target/release/prune-nn}
common=(--method sbp --dataset mnist --epochs 10 --max-batches 60 --test-subset 1000
        --batch-size 100 --lr 0.001 --beta1 0.95 --sbp-lr-mult 100
        --finetune-epochs 0 --speed-repeats 0 --seed 0)
run() { name=$1; shift; nice -n 10 "$bin" prune "${common[@]}" "$@" --out "$out/$name" > "$out/$name.log" 2>&1; }
mkdir -p "$out"
run A-baseline --model "$dense" &
run B-per-example --model "$dense" --sbp-per-example &
run C-kl-10-convs --model "$dense" --sbp-kl-weights 10,10,1,1 &
run D-from-scratch --model "$init" &
run E-kl-10-all --model "$dense" --sbp-kl-weights 10,10,10,10 &
run F-kl-100-conv1 --model "$dense" --sbp-kl-weights 100,10,1,1 &
wait
# Kept units per layer by epoch: $out/<variant>/sparse/kept.jsonl
# Gate parameters: python scripts/sbp-gates.py $out/*/sparse/weights.safetensors
