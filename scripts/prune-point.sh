# Sourced by the sweep scripts (flops-sweep.sh, resnet20-compare.sh): one
# resumable `prune-nn prune` run per point.
#
# prune_point BIN OUT NAME ARGS...: runs `BIN prune ARGS... --out OUT/NAME`,
# appending to OUT/NAME.log; skips a point whose directory holds
# report.json; continues one that died in sparse training (`--resume`) and
# redoes one that died elsewhere (`--force`). The caller's NICE (default 0)
# sets the run's niceness. Returns non-zero when the run fails.
prune_point() {
    local bin=$1 out=$2 name=$3
    shift 3
    local dir=$out/$name resume=()
    if [ -f "$dir/report.json" ]; then
        echo "$name: done, skipped"
        return
    fi
    if [ -f "$dir/model.json" ]; then
        resume=(--force) # died between saving the model and its report: redo
    elif [ -d "$dir/sparse/checkpoint" ]; then
        resume=(--resume)
    elif [ -d "$dir" ]; then
        resume=(--force) # died before its first checkpoint
    fi
    echo "$name: $*"
    if ! nice -n "${NICE:-0}" "$bin" prune "$@" "${resume[@]}" --out "$dir" >> "$out/$name.log" 2>&1; then
        echo "$name: FAILED (see $out/$name.log)" >&2
        return 1
    fi
}
