"""PyTorch peer timing for the GPU check: one ResNet-56 training step (CIFAR-style
ResNet, 3 stages of 9 basic blocks with 16/32/64 channels, batch norm, ReLU, global average
pooling) on Fashion-MNIST-shaped input (1 x 28 x 28), SGD with momentum, cuDNN.

    python3 scripts/torch_resnet56_step.py [--batch 128] [--steps 50] [--blocks 9]

Prints, per cuDNN setting (TF32 allowed as PyTorch's default, FP32, deterministic FP32):
ms per training step, ms per inference batch and batch-1 inference latency (medians).
Synthetic data, so no dataset is needed; the numbers are the peer for prune-nn's
ResNet-56 step on the same GPU and batch.
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet(nn.Module):
    def __init__(self, blocks, in_ch=1, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(blocks):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--blocks", type=int, default=9, help="9: ResNet-56, 3: ResNet-20")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch peer: skipped, torch.cuda.is_available() is False")
        return
    dev = torch.device("cuda")
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}")
    depth = 6 * a.blocks + 2
    # cuDNN settings: PyTorch's default lets cuDNN convolutions use TF32 tensor cores
    # (torch.backends.cudnn.allow_tf32 = True); prune-nn's cuDNN path is FP32, so the
    # FP32 lines are the like-for-like peer.
    settings = [
        ("benchmark, TF32 allowed (PyTorch default)", True, False, True),
        ("benchmark, FP32", True, False, False),
        ("deterministic, FP32", False, True, False),
    ]
    for what, benchmark, deterministic, tf32 in settings:
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.manual_seed(0)
        model = ResNet(a.blocks).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        x = torch.randn(a.batch, 1, 28, 28, device=dev)
        y = torch.randint(0, 10, (a.batch,), device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        ms = timed(step, a.steps)
        print(f"torch ResNet-{depth} step, batch {a.batch}, cudnn {what}: {ms:.2f} ms/step (median of {a.steps})")
        model.eval()
        one = x[:1].contiguous()
        with torch.no_grad():
            ms = timed(lambda: model(x), a.steps)
            print(f"torch ResNet-{depth} inference, batch {a.batch}, cudnn {what}: {ms:.2f} ms/batch (median of {a.steps})")
            ms = timed(lambda: model(one), 3 * a.steps)
            print(f"torch ResNet-{depth} inference, batch 1, cudnn {what}: {ms:.3f} ms (median of {3 * a.steps})")


def timed(f, n, warmup=10):
    """Median milliseconds of f() over n timed runs, each ended by a device synchronize."""
    times = []
    for i in range(n + warmup):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)

if __name__ == "__main__":
    main()
