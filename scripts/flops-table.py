#!/usr/bin/env python3
"""Markdown table of pruning runs for docs/results.md.

Usage: scripts/flops-table.py DENSE_RUN RUN_DIR...

Reads report.json of each directory: a dense run (`prune-nn train`) gives
the dense row; a pruning run (`prune-nn prune`) gives its method, kept units,
FLOPs reduction and test accuracy before and after fine-tuning. Directories
without report.json (runs not finished) are listed as such. The accuracy-vs-
FLOPs chart (`prune-nn chart accuracy-flops`) reads the same fields, so the
table is what the chart must show.
"""
import json
import sys
from pathlib import Path


def load(d):
    p = Path(d) / "report.json"
    if not p.is_file():
        return None
    with open(p) as f:
        return json.load(f)


def flags(cfg):
    m = cfg.get("method")
    if m == "slimming":
        t = cfg.get("target_flops")
        return f"λ {cfg.get('slim_lambda')}, target {t:.3g}x" if t else f"λ {cfg.get('slim_lambda')}, {cfg.get('percent')}%"
    if m == "polarization":
        return f"λ {cfg.get('lambda')}, t {cfg.get('t')}"
    if m == "sbp":
        w = cfg.get("sbp_kl_weights") or [1]
        s = "KL weights " + ",".join(f"{x:g}" for x in w)
        if cfg.get("target_flops"):
            s += f", target {cfg.get('target_flops'):.3g}x"
        return s
    return ""


def main(argv):
    if len(argv) < 1:
        sys.stderr.write(__doc__)
        return 2
    print("| method | setting | kept units | FLOPs reduction | test acc. before fine-tuning | test acc. | run |")
    print("|---|---|---|---:|---:|---:|---|")
    rows = []
    for d in argv:
        name = Path(d).name or Path(d).parent.name
        r = load(d)
        if r is None:
            print(f"| — | — | not finished | — | — | — | `{name}` |")
            continue
        if "method" not in r:
            print(
                f"| dense | {r.get('epochs')} epochs | — | 1.00x | — | "
                f"{100 * r['test_accuracy']:.2f}% | `{name}` |"
            )
            continue
        cfg = r.get("config", {})
        rows.append((r["method"], r["flops_reduction"], name, r, cfg))
    for method, fr, name, r, cfg in sorted(rows, key=lambda x: (x[0], x[1])):
        print(
            f"| {method} | {flags(cfg)} | {r['architecture_after']} | {fr:.2f}x | "
            f"{100 * r['test_accuracy_compiled']:.2f}% | {100 * r['test_accuracy_after']:.2f}% | `{name}` |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
