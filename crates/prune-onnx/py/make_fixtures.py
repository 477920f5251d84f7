"""Writes the small CNNs prune-nn's ONNX tests import, built with the `onnx`
package's helper API and seeded random weights (no binaries in the repo).

    python make_fixtures.py OUT_DIR

Every model takes [batch, 1, 28, 28] (MNIST-shaped, so the tests can prune
them on MNIST-shaped data) and returns 10 logits:

* chain.onnx      Conv-BN-ReLU x2, MaxPool, Conv-BN-Clip(0,6), GlobalAveragePool,
                  Flatten, Gemm (transB=1)  — opset 17
* residual.onnx   stem Conv-BN-ReLU, a basic residual block with a strided 1x1
                  Conv-BN downsample, Add, ReLU, AveragePool, Reshape [0,-1],
                  MatMul + Add head  — opset 13
* branches.onnx   stem Conv-BN-ReLU; a 1x1 branch and a depthwise 3x3 + pointwise
                  branch concatenated, BN, ReLU, GlobalAveragePool, Squeeze,
                  Dropout, Gemm (transB=0)  — opset 21
* unsupported.onnx  a conv followed by Sigmoid (for the error test)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(20240601)


class Net:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, name, **attrs):
        out = name + "_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x, name, cin, cout, k, stride=1, pad=0, group=1, bias=True):
        w = RNG.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / (cin // group * k * k))
        ins = [x, self.init(f"{name}.weight", w.astype(np.float32))]
        if bias:
            ins.append(self.init(f"{name}.bias", (0.1 * RNG.standard_normal(cout)).astype(np.float32)))
        return self.node("Conv", ins, name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=group, dilations=[1, 1])

    def bn(self, x, name, c):
        ins = [x]
        for field, v in [("weight", RNG.uniform(0.5, 1.5, c)), ("bias", 0.1 * RNG.standard_normal(c)),
                         ("running_mean", 0.1 * RNG.standard_normal(c)), ("running_var", RNG.uniform(0.5, 2.0, c))]:
            ins.append(self.init(f"{name}.{field}", v.astype(np.float32)))
        return self.node("BatchNormalization", ins, name, epsilon=1e-5, momentum=0.9)

    def cbr(self, x, name, cin, cout, k, stride=1, pad=0):
        y = self.conv(x, f"{name}.conv", cin, cout, k, stride, pad, bias=False)
        y = self.bn(y, f"{name}.bn", cout)
        return self.node("Relu", [y], f"{name}.relu")

    def save(self, path, out, opset, name):
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 10])],
            self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="prune-nn fixtures")
        model.ir_version = {13: 7, 17: 8, 21: 10}[opset]
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, path)


def chain(path):
    n = Net()
    y = n.cbr("image", "c1", 1, 8, 3, pad=1)
    y = n.cbr(y, "c2", 8, 8, 3, pad=1)
    y = n.node("MaxPool", [y], "pool", kernel_shape=[2, 2], strides=[2, 2])
    y = n.conv(y, "c3.conv", 8, 12, 3, stride=1, pad=1)
    y = n.bn(y, "c3.bn", 12)
    lo = n.init("relu6.min", np.array(0.0, np.float32))
    hi = n.init("relu6.max", np.array(6.0, np.float32))
    y = n.node("Clip", [y, lo, hi], "c3.relu6")
    y = n.node("GlobalAveragePool", [y], "gap")
    y = n.node("Flatten", [y], "flatten", axis=1)
    w = n.init("fc.weight", (RNG.standard_normal((10, 12)) * 0.4).astype(np.float32))
    b = n.init("fc.bias", (0.1 * RNG.standard_normal(10)).astype(np.float32))
    y = n.node("Gemm", [y, w, b], "fc", transB=1)
    n.save(path, y, 17, "chain")


def residual(path):
    n = Net()
    x = n.cbr("image", "stem", 1, 8, 3, stride=2, pad=1)  # 8x14x14
    y = n.cbr(x, "block.a", 8, 16, 3, stride=2, pad=1)  # 16x7x7
    y = n.conv(y, "block.b.conv", 16, 16, 3, pad=1, bias=False)
    y = n.bn(y, "block.b.bn", 16)
    d = n.conv(x, "block.down.conv", 8, 16, 1, stride=2, bias=False)
    d = n.bn(d, "block.down.bn", 16)
    y = n.node("Add", [y, d], "block.add")
    y = n.node("Relu", [y], "block.relu")
    y = n.node("AveragePool", [y], "avg", kernel_shape=[2, 2], strides=[2, 2])  # 16x3x3
    shape = n.init("flat.shape", np.array([0, -1], np.int64))
    y = n.node("Reshape", [y, shape], "flat")
    w = n.init("fc.weight", (RNG.standard_normal((144, 10)) * 0.1).astype(np.float32))
    y = n.node("MatMul", [y, w], "fc.matmul")
    b = n.init("fc.bias", (0.1 * RNG.standard_normal(10)).astype(np.float32))
    y = n.node("Add", [y, b], "fc.add")
    n.save(path, y, 13, "residual")


def branches(path):
    n = Net()
    x = n.cbr("image", "stem", 1, 8, 3, stride=2, pad=1)  # 8x14x14
    a = n.conv(x, "branch_a.conv", 8, 6, 1)
    dw = n.conv(x, "branch_b.dw", 8, 8, 3, pad=1, group=8)
    pw = n.conv(dw, "branch_b.pw", 8, 10, 1)
    y = n.node("Concat", [a, pw], "cat", axis=1)  # 16 channels
    y = n.bn(y, "cat.bn", 16)
    y = n.node("Relu", [y], "cat.relu")
    y = n.node("GlobalAveragePool", [y], "gap")
    axes = n.init("squeeze.axes", np.array([2, 3], np.int64))
    y = n.node("Squeeze", [y, axes], "squeeze")
    y = n.node("Dropout", [y], "drop")
    w = n.init("head.weight", (RNG.standard_normal((16, 10)) * 0.4).astype(np.float32))
    b = n.init("head.bias", (0.1 * RNG.standard_normal(10)).astype(np.float32))
    y = n.node("Gemm", [y, w, b], "head", transB=0)
    n.save(path, y, 21, "branches")


def unsupported(path):
    n = Net()
    y = n.conv("image", "conv", 1, 4, 3)
    y = n.node("Sigmoid", [y], "gate")
    y = n.node("GlobalAveragePool", [y], "gap")
    y = n.node("Flatten", [y], "flatten")
    w = n.init("fc.weight", RNG.standard_normal((10, 4)).astype(np.float32))
    y = n.node("Gemm", [y, w], "fc", transB=1)
    n.save(path, y, 17, "unsupported")


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for f in (chain, residual, branches, unsupported):
        f(os.path.join(out, f.__name__ + ".onnx"))
        print(os.path.join(out, f.__name__ + ".onnx"))
