"""Per-gate mu and log sigma of a saved SBP LeNet5 (reads safetensors without the package)."""
import json, struct, sys
import numpy as np

def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=np.float32).reshape(v["shape"])
    return out

for path in sys.argv[1:]:
    t = load(path)
    print(path)
    for g in ["conv1.sbp", "conv2.sbp", "fc1.in_sbp", "fc2.in_sbp"]:
        mu, ls = t[g + ".mu"], t[g + ".log_sigma"]
        print(f"  {g:11s} mu median {np.median(mu):+.2f} [{mu.min():+.2f},{mu.max():+.2f}]  "
              f"log_sigma median {np.median(ls):+.2f} [{ls.min():+.2f},{ls.max():+.2f}]")
    w = t["conv1.weight"].reshape(t["conv1.weight"].shape[0], -1)
    print("  conv1 filter L2 norms:", np.round(np.linalg.norm(w, axis=1), 2).tolist())
    print("  conv1 bias:", np.round(t["conv1.bias"], 3).tolist())
