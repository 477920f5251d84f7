"""PyTorch CPU peer figure that ../shared/peer/torch_cpu_bench.py lacks:
LeNet5-Caffe inference at batch 100 (eval mode, no autograd), images/s,
mean over 30 batches after 3 warm-up ones, 2 threads. Prints one JSON object.
Usage: python torch_lenet5_infer.py   (needs torch, in a venv outside the repo)"""
import json, time, torch, torch.nn as nn

torch.set_num_threads(2); torch.manual_seed(0)
m = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.ReLU(),
                  nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10)).eval()
x = torch.randn(100, 1, 28, 28)
with torch.no_grad():
    for _ in range(3): m(x)
    t = time.perf_counter()
    for _ in range(30): m(x)
    dt = (time.perf_counter() - t) / 30
print(json.dumps({'lenet5_infer_b100_ips': round(100 / dt, 2)}))
