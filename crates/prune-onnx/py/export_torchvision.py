"""Exports a torchvision ResNet-18 (10 classes, a 1-channel stem for 28x28
MNIST/Fashion-MNIST images) to ONNX, as a user would export their own model.

    python export_torchvision.py OUT.onnx [--keep-bn] [--random-bn]

The weights are torchvision's default initialization (no download). With
--keep-bn the batch norms stay separate nodes (the model is exported in
training-preserving mode's eval form) so polarization and slimming find their
scale factors; without it torch folds each BN into the conv before it and
prune-nn adds scale gates itself.

torchvision initialises every batch norm to gamma = 1, beta = 0, mean 0,
variance 1. With --random-bn they are drawn (seeded) the way a trained
network's look instead: gamma = u^2 for u ~ U(0, 1), so that some channels
have small scale factors for polarization to find, and non-trivial beta and
running statistics, so that the import of every BN field is exercised.
"""
import sys

import torch
import torchvision


def main():
    out = sys.argv[1]
    keep_bn = "--keep-bn" in sys.argv
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if "--random-bn" in sys.argv:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(torch.rand_like(m.weight) ** 2)
                    m.bias.normal_(0.0, 0.1)
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    torch.onnx.export(
        model,
        (x,),
        out,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
        do_constant_folding=not keep_bn,
        training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL,
    )
    print(out)


if __name__ == "__main__":
    main()
