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

PTXAS="$("$PY" - <<'PY'
import glob, os, site, sys
roots = []
try:
    roots += site.getsitepackages()
except AttributeError:
    pass
try:
    roots.append(site.getusersitepackages())
except AttributeError:
    pass
roots += [p for p in sys.path if p.endswith("site-packages") or p.endswith("dist-packages")]
for root in dict.fromkeys(roots):
    hits = sorted(glob.glob(os.path.join(root, "nvidia", "**", "bin", "ptxas"), recursive=True))
    if hits:
        print(os.path.realpath(hits[0]))
        sys.exit(0)
sys.exit("ptxas not found under the site-packages directories")
PY
)"
chmod +x "$PTXAS" 2>/dev/null || true
echo "ptxas.sh: $("$PTXAS" --version | tail -n1) at $PTXAS" >&2
echo "export PRUNE_PTXAS=\"$PTXAS\""
