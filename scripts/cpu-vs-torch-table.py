#!/usr/bin/env python3
"""Markdown table of scripts/cpu-vs-torch.sh output: per figure, prune-nn and
PyTorch per round, and the ratio of the medians over rounds.

Usage: scripts/cpu-vs-torch-table.py OUT_FILE.jsonl
Images/s figures: ratio = prune-nn / PyTorch (above 1: prune-nn faster);
batch-1 latency: ratio = PyTorch ms / prune-nn ms (same direction)."""
import json
import statistics
import sys

# (label, case, prune-nn path, torch case, torch key, kind)
FIGURES = [
    ("ResNet-20 train, b128 (images/s)", "resnet20", ("training", "median_images_per_sec"), "resnet20", "resnet20_train_ips", "ips"),
    ("ResNet-20 inference, b128 (images/s)", "resnet20", ("inference", "median_images_per_sec"), "resnet20", "resnet20_infer_ips", "ips"),
    ("ResNet-20 latency, b1 (ms)", "resnet20", ("latency_batch1", "p50_ms"), "resnet20", "resnet20_batch1_ms", "ms"),
    ("ResNet-56 train, b128 (images/s)", "resnet56", ("training", "median_images_per_sec"), "resnet56", "resnet56_train_ips", "ips"),
    ("ResNet-56 inference, b128 (images/s)", "resnet56", ("inference", "median_images_per_sec"), "resnet56", "resnet56_infer_ips", "ips"),
    ("ResNet-56 latency, b1 (ms)", "resnet56", ("latency_batch1", "p50_ms"), "resnet56", "resnet56_batch1_ms", "ms"),
    ("VGG-like train, b64 (images/s)", "vgg", ("training", "median_images_per_sec"), "vgg", "vgg_train_ips", "ips"),
    ("VGG-like inference, b64 (images/s)", "vgg", ("inference", "median_images_per_sec"), "vgg", "vgg_infer_ips", "ips"),
    ("LeNet5 train, b100 (images/s)", "lenet5", ("training", "median_images_per_sec"), "lenet5", "lenet5_train_ips", "ips"),
    ("LeNet5 inference, b100 (images/s)", "lenet5", ("inference", "median_images_per_sec"), "lenet5-infer", "lenet5_infer_b100_ips", "ips"),
]


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    by = {}
    loads = []
    for r in rows:
        by[(r["round"], r["program"], r["case"])] = r["result"]
        loads.append(float(r["load"]))
    rounds = sorted({r["round"] for r in rows})
    print(f"rounds: {len(rounds)}; load average at the start of each program: {min(loads):.2f}-{max(loads):.2f}\n")
    print("| figure | prune-nn (per round) | PyTorch (per round) | ratio of medians |")
    print("|---|---|---|---:|")
    for label, case, (sec, key), tcase, tkey, kind in FIGURES:
        ours, theirs = [], []
        for rd in rounds:
            a = by.get((rd, "prune-nn", case))
            b = by.get((rd, "torch", tcase))
            if a is not None and b is not None:
                ours.append(a[sec][key])
                theirs.append(b[tkey])
        if not ours:
            continue
        mo, mt = statistics.median(ours), statistics.median(theirs)
        ratio = mo / mt if kind == "ips" else mt / mo
        fmt = (lambda v: f"{v:,.0f}") if kind == "ips" and mo > 100 else (lambda v: f"{v:.2f}")
        print(f"| {label} | {', '.join(fmt(v) for v in ours)} | {', '.join(fmt(v) for v in theirs)} | {ratio:.2f}x |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
