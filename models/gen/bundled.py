#!/usr/bin/env python3
"""Generates models/resnet8_cifar.onnx, the small model bundled with kiln
(the README's first command runs it): a CIFAR-10 ResNet-8 (He et al. 2016,
section 4.2: 3x3 conv stem of 16 channels, three stages of one basic block
with 16/32/64 channels, global average pooling, a 10-way classifier),
78,042 learnable parameters, seeded random weights, opset 13.

Usage: python3 models/gen/bundled.py [OUT.onnx]
"""
import os
import sys

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402


def resnet8_cifar():
    b = zoo.Builder(seed=8)
    x = b.conv("input", "conv1", 3, 16, 3)
    x, c = b.relu(b.bn(x, "bn1", 16), "relu"), 16
    for stage, width in enumerate([16, 32, 64]):
        x, c = zoo._basic_block(b, x, f"layer{stage + 1}.0", c, width, 1 if stage == 0 else 2)
    y = b.gemm(b.gap_flatten(x, "pool"), "fc", c, 10)
    return b.finish("resnet8_cifar", "input", y, opset=13, in_shape=[1, 3, 32, 32], out_shape=[1, 10])


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    out = argv[1] if len(argv) > 1 else os.path.join(here, "..", "resnet8_cifar.onnx")
    model = resnet8_cifar()
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out)
    print(f"wrote {out}: {zoo.count_params(model)[0]:,} learnable parameters")


if __name__ == "__main__":
    main(sys.argv)
