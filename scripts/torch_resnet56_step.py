"""PyTorch peer timing for the GPU check: one ResNet-56 training step (CIFAR-style
ResNet, 3 stages of 9 basic blocks with 16/32/64 channels, batch norm, ReLU, global average
pooling) on Fashion-MNIST-shaped input (1 x 28 x 28), SGD with momentum, cuDNN.

    python3 scripts/torch_resnet56_step.py [--batch 128] [--steps 50] [--blocks 9]

Prints one line per setting: device, batch, ms per step (median of the timed steps).
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
    for deterministic in (False, True):
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
        torch.manual_seed(0)
        model = ResNet(a.blocks).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        x = torch.randn(a.batch, 1, 28, 28, device=dev)
        y = torch.randint(0, 10, (a.batch,), device=dev)
        times = []
        for step in range(a.steps + 10):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            if step >= 10:
                times.append(time.perf_counter() - t0)
        depth = 6 * a.blocks + 2
        print(
            f"torch ResNet-{depth} step, batch {a.batch}, cudnn "
            f"{'deterministic' if deterministic else 'benchmark'}: "
            f"{1e3 * statistics.median(times):.2f} ms/step (median of {a.steps})"
        )


if __name__ == "__main__":
    main()
