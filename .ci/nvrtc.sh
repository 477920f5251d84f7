#!/usr/bin/env bash
# Installs NVRTC from PyPI (no CUDA toolkit or GPU needed) and prints the `export` lines
# that let cudarc's dynamic loader find it.  Use as:
#
#     eval "$(bash .ci/nvrtc.sh)"
#     PRUNE_REQUIRE_NVRTC=1 cargo test -p prune-kernels --test nvrtc_compile
#
# cudarc (built with feature cuda-13000) dlopen()s, in order, libnvrtc.so, libnvrtc64*.so,
# ..., libnvrtc.so.13, libnvrtc.so.12, ...: plain names resolved through LD_LIBRARY_PATH.
# The wheel ships nvidia/cu13/lib/libnvrtc.so.13 (plus libnvrtc-builtins.so.13.0, which
# libnvrtc loads from its own directory), so adding that directory to LD_LIBRARY_PATH is
# enough.  If a wheel ever lacks the .so.13 name, a symlink directory supplies it.
# Diagnostics go to stderr; only export lines go to stdout.
set -euo pipefail

PY="${PYTHON:-python3}"

echo "nvrtc.sh: installing nvidia-cuda-nvrtc==13.0.* with pip" >&2
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'nvidia-cuda-nvrtc==13.0.*' >&2

LIB="$("$PY" "$(dirname "$0")/wheel_path.py" 'nvidia/**/libnvrtc.so*' builtins)"
LIBDIR="$(dirname "$LIB")"
echo "nvrtc.sh: libnvrtc found in $LIBDIR" >&2

DIRS="$LIBDIR"
if [ ! -e "$LIBDIR/libnvrtc.so.13" ] && [ ! -e "$LIBDIR/libnvrtc.so" ]; then
    LINKDIR="${TMPDIR:-/tmp}/prune-nvrtc-links"
    mkdir -p "$LINKDIR"
    REAL="$(ls "$LIBDIR"/libnvrtc.so* | grep -v builtins | grep -v '\.alt\.' | head -n1)"
    ln -sf "$REAL" "$LINKDIR/libnvrtc.so.13"
    ln -sf "$REAL" "$LINKDIR/libnvrtc.so"
    echo "nvrtc.sh: linked $REAL as libnvrtc.so.13 and libnvrtc.so in $LINKDIR" >&2
    DIRS="$LINKDIR:$LIBDIR"
fi

echo "export LD_LIBRARY_PATH=\"$DIRS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export PRUNE_NVRTC_LIB_DIR=\"$LIBDIR\""
