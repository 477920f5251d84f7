"""Prints the real path of the first file under an installed wheel's
site-packages tree that matches GLOB (relative to site-packages, `**`
allowed), skipping names that contain any EXCLUDE word. Exits non-zero,
naming the directories searched, when nothing matches.

Usage: python3 .ci/wheel_path.py GLOB [EXCLUDE ...]
Used by nvrtc.sh and ptxas.sh to find what the NVIDIA PyPI wheels installed."""
import glob
import os
import site
import sys

if len(sys.argv) < 2:
    sys.exit(__doc__)
pattern, exclude = sys.argv[1], sys.argv[2:]
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
roots = [r for r in dict.fromkeys(roots) if os.path.isdir(r)]
for root in roots:
    hits = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
    hits = [h for h in hits if not any(w in os.path.basename(h) for w in exclude)]
    if hits:
        print(os.path.realpath(hits[0]))
        sys.exit(0)
sys.exit(f"{pattern} not found under " + ", ".join(roots))
