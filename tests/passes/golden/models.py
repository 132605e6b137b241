#!/usr/bin/env python3
"""The ONNX models of the golden pass tests, built with onnx.helper.

    models.py OUT_DIR      writes OUT_DIR/NAME.onnx for every model below

Each model is small (its dumps stay under ~150 lines) and chosen for what a
pass does to it; the `<pass>.cases` files name them.  Weights are exact
binary fractions from a formula (no random generator), and the files are
written with a fixed IR version and opset, so every run writes the same
bytes and the dumps do not depend on the numpy or onnx version.
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def weight(name, shape):
    """Values (i % 7 - 3) / 8: small, exact in f32, not all equal."""
    n = int(np.prod(shape))
    v = ((np.arange(n) % 7) - 3).astype(np.float32) / 8
    return numpy_helper.from_array(v.reshape(shape), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model(name, nodes, inputs, outputs, inits, opset=13):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-golden")
    m.ir_version = 8
    return m


def vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


def conv_relu_pool():
    """Conv 3x3 pad 1 (2 -> 3 channels, 6x6) -> Relu -> MaxPool 2x2 stride 2."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    return model("conv_relu_pool", nodes, [vi("x", [1, 2, 6, 6])], [vi("y", [1, 3, 3, 3])],
                 [weight("w", [3, 2, 3, 3]), weight("b", [3])])


def gemm_flatten():
    """Flatten [1,2,2,2] -> Gemm with transB and a bias (8 -> 3)."""
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1),
    ]
    return model("gemm_flatten", nodes, [vi("x", [1, 2, 2, 2])], [vi("y", [1, 3])],
                 [weight("w", [3, 8]), weight("b", [3])])


def add_concat():
    """Add with broadcasting ([1,2,3] + [1,1,3]), then Concat with an input on axis 1."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Concat", ["s", "a"], ["y"], name="concat", axis=1),
    ]
    return model("add_concat", nodes, [vi("a", [1, 2, 3]), vi("b", [1, 1, 3])], [vi("y", [1, 4, 3])], [])


def transpose_pad():
    """Transpose [1,2,3,4] to NHWC, then Pad (1 before/after on W): index
    arithmetic with divisions and remainders the simplifier removes or hoists."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Pad", ["t", "pads"], ["y"], name="pad"),
    ]
    return model("transpose_pad", nodes, [vi("x", [1, 2, 3, 4])], [vi("y", [1, 3, 6, 2])],
                 [ints("pads", [0, 0, 1, 0, 0, 0, 1, 0])])


def residual_chain():
    """x -> Relu a -> Sigmoid b -> Neg c -> Add(a, c) d -> Exp e -> Tanh y:
    five workspace buffers, a live across the chain, the others short-lived,
    so the memory plan reuses offsets."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Sigmoid", ["a"], ["b"], name="sigmoid"),
        helper.make_node("Neg", ["b"], ["c"], name="neg"),
        helper.make_node("Add", ["a", "c"], ["d"], name="residual"),
        helper.make_node("Exp", ["d"], ["e"], name="exp"),
        helper.make_node("Tanh", ["e"], ["y"], name="tanh"),
    ]
    return model("residual_chain", nodes, [vi("x", [1, 64])], [vi("y", [1, 64])], [])


def shapes_symbolic():
    """A symbolic batch N through Conv stride 2, GlobalAveragePool, Reshape
    [0, -1], Transpose, Concat and ReduceMean: the shapes infer-shapes fills
    in, N kept symbolic."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Reshape", ["g", "shape"], ["r"], name="reshape"),
        helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["t"], ["m"], name="mean", axes=[1, 2], keepdims=0),
        helper.make_node("Concat", ["r", "m"], ["y"], name="concat", axis=1),
    ]
    return model("shapes_symbolic", nodes, [vi("x", ["N", 3, 9, 9])], [vi("y", ["N", 8])],
                 [weight("w", [4, 3, 3, 3]), ints("shape", [0, -1])])


def gap_softmax():
    """GlobalAveragePool over 20x20 planes (a long f32 sum: blocked into an
    f64 total by expand-reduce) -> Flatten -> Softmax (a max and a sum)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Softmax", ["f"], ["y"], name="softmax", axis=1),
    ]
    return model("gap_softmax", nodes, [vi("x", [1, 4, 20, 20])], [vi("y", [1, 4])], [])


def big_and_small():
    """A Relu over 1x64x320x320 (worth the thread pool: its batch-1 loop
    gives way to the channel loop) and a Neg over 4 values (not worth it)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="big_relu"),
        helper.make_node("Neg", ["s"], ["z"], name="small_neg"),
    ]
    return model("big_and_small", nodes, [vi("x", [1, 64, 320, 320]), vi("s", [1, 4])],
                 [vi("y", [1, 64, 320, 320]), vi("z", [1, 4])], [])


def conv_registers():
    """1-D Conv of 4 channels, 9 taps (36 products per output: the register
    path, passes/lower_conv.c), 16 positions -> 1 channel: one tile of sums."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[9], pads=[4, 4])]
    return model("conv_registers", nodes, [vi("x", [1, 4, 16])], [vi("y", [1, 1, 16])], [weight("w", [1, 4, 9])])


MODELS = [conv_relu_pool, gemm_flatten, add_concat, transpose_pad, residual_chain, shapes_symbolic, gap_softmax,
          big_and_small, conv_registers]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for make in MODELS:
        m = make()
        path = os.path.join(out, make.__name__ + ".onnx")
        with open(path + ".tmp", "wb") as f:
            f.write(m.SerializeToString(deterministic=True))
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
