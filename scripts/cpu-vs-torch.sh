#!/bin/bash
# prune-nn against PyTorch CPU on the conv-net goals of docs/performance.md:
# the same work, alternating the two programs, ROUNDS times (default 3).
#
# Usage: scripts/cpu-vs-torch.sh OUT_FILE
# Environment: PRUNE_NN_BIN (default ./target/release/prune-nn),
#   PYTHON (a python with torch; default /work/venv/bin/python),
#   PEER (default ../shared/peer/torch_cpu_bench.py), ROUNDS.
# Each line of OUT_FILE is one JSON object: {"round", "program", "case", ...
# the program's own JSON}. Both sides use 2 threads.
set -euo pipefail
out=${1:?usage: $0 OUT_FILE}
bin=${PRUNE_NN_BIN:-./target/release/prune-nn}
py=${PYTHON:-/work/venv/bin/python}
peer=${PEER:-../shared/peer/torch_cpu_bench.py}
rounds=${ROUNDS:-3}
here=$(dirname "$0")
: > "$out"
emit() { # round program case json
    local compact
    compact=$(printf '%s' "$4" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))')
    printf '{"round": %s, "program": "%s", "case": "%s", "load": "%s", "result": %s}\n' \
        "$1" "$2" "$3" "$(cut -d' ' -f1 /proc/loadavg)" "$compact" >> "$out"
}
for r in $(seq 1 "$rounds"); do
    emit "$r" prune-nn resnet20 "$("$bin" bench --model resnet20 --train --threads 2 --json)"
    emit "$r" torch resnet20 "$("$py" "$peer" resnet20)"
    emit "$r" prune-nn resnet56 "$("$bin" bench --model resnet56 --train --threads 2 --repeats 5 --warmup 2 --latency-runs 30 --json)"
    emit "$r" torch resnet56 "$("$py" "$peer" resnet56)"
    emit "$r" prune-nn vgg "$("$bin" bench --model vgg-like --batch-size 64 --train --threads 2 --repeats 4 --warmup 1 --latency-runs 10 --json)"
    emit "$r" torch vgg "$("$py" "$peer" vgg)"
    emit "$r" prune-nn lenet5 "$("$bin" bench --model lenet5 --batch-size 100 --train --threads 2 --json)"
    emit "$r" torch lenet5 "$("$py" "$peer" lenet5)"
    emit "$r" torch lenet5-infer "$("$py" "$here/torch_lenet5_infer.py")"
    echo "round $r done" >&2
done
