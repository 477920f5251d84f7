#!/usr/bin/env bash
# Installs ptxas from PyPI (the nvidia-cuda-nvcc wheel; no CUDA toolkit or GPU needed) and
# prints the `export` line that points the register-spill test at it.  Use as:
#
#     eval "$(bash .ci/ptxas.sh)"
#     PRUNE_REQUIRE_PTXAS=1 cargo test -p prune-kernels --test ptxas_spills
#
# Diagnostics go to stderr; only export lines go to stdout.
set -euo pipefail

PY="${PYTHON:-python3}"

echo "ptxas.sh: installing nvidia-cuda-nvcc==13.0.* with pip" >&2
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'nvidia-cuda-nvcc==13.0.*' >&2

PTXAS="$("$PY" "$(dirname "$0")/wheel_path.py" 'nvidia/**/bin/ptxas')"
chmod +x "$PTXAS" 2>/dev/null || true
echo "ptxas.sh: $("$PTXAS" --version | tail -n1) at $PTXAS" >&2
echo "export PRUNE_PTXAS=\"$PTXAS\""
