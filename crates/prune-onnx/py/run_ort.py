"""Runs ONNX models in onnxruntime for prune-nn's tests and benchmarks.

    python run_ort.py check MODEL.onnx IN.f32 N,C,H,W OUT.f32 [MODEL IN DIMS OUT ...]
        checks each model with onnx.checker, runs it on the raw little-endian
        float32 input of the given shape and writes the output as raw float32.
    python run_ort.py bench MODEL.onnx N,C,H,W SECONDS
        prints the model's throughput in images/s on one thread and on all
        threads, for a random batch of the given shape.
"""
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort


def session(path, threads=0):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def check(args):
    if len(args) % 4 != 0 or not args:
        sys.exit("check needs groups of MODEL IN DIMS OUT")
    for k in range(0, len(args), 4):
        model, inp, dims, out = args[k : k + 4]
        onnx.checker.check_model(onnx.load(model), full_check=True)
        shape = [int(d) for d in dims.split(",")]
        x = np.fromfile(inp, dtype="<f4").reshape(shape)
        sess = session(model)
        (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
        np.ascontiguousarray(y, dtype="<f4").tofile(out)
        print(f"{model}: output {list(y.shape)}")


def bench(args):
    model, dims, seconds = args
    shape = [int(d) for d in dims.split(",")]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for threads in (1, 0):
        sess = session(model, threads)
        name = sess.get_inputs()[0].name
        for _ in range(3):
            sess.run(None, {name: x})
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < float(seconds):
            sess.run(None, {name: x})
            n += 1
        rate = n * shape[0] / (time.perf_counter() - t0)
        label = "1 thread" if threads == 1 else "all threads"
        print(f"{model}: {rate:.1f} images/s ({label}, batch {shape[0]})")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("check", "bench"):
        sys.exit(__doc__)
    {"check": check, "bench": bench}[sys.argv[1]](sys.argv[2:])
