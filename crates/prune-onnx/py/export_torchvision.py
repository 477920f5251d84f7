"""Exports a torchvision ResNet-18 (10 classes, a 1-channel stem for 28x28
MNIST/Fashion-MNIST images) to ONNX, as a user would export their own model.

    python export_torchvision.py OUT.onnx [--keep-bn]

The weights are torchvision's default initialization (no download). With
--keep-bn the batch norms stay separate nodes (the model is exported in
training-preserving mode's eval form) so polarization and slimming find their
scale factors; without it torch folds each BN into the conv before it and
prune-nn adds scale gates itself.
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
