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


def conv_relu_gap():
    """Conv 1x1 (2 -> 3 channels, 3x3) -> Relu -> GlobalAveragePool -> Flatten."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["y"], name="flatten"),
    ]
    return model("conv_relu_gap", nodes, [vi("x", [1, 2, 3, 3])], [vi("y", [1, 3])],
                 [weight("w", [3, 2, 1, 1]), weight("b", [3])])


def maxpool_wide():
    """MaxPool 9x9 (81 taps: more than lower_pool_fast.c unrolls) on [1,1,10,10]:
    the generic form, a NaN-propagating max reduction."""
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[9, 9])]
    return model("maxpool_wide", nodes, [vi("x", [1, 1, 10, 10])], [vi("y", [1, 1, 2, 2])], [])


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
    """x -> Relu a -> Softmax b -> Neg c -> Add(a, c) d -> Softmax e -> Tanh y:
    workspace buffers, a live across the chain, the others short-lived, so
    the memory plan reuses offsets (the Softmaxes keep the chain from being
    fused into one kernel: only Neg -> Add is)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Softmax", ["a"], ["b"], name="softmax"),
        helper.make_node("Neg", ["b"], ["c"], name="neg"),
        helper.make_node("Add", ["a", "c"], ["d"], name="residual"),
        helper.make_node("Softmax", ["d"], ["e"], name="softmax2"),
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


def bn_params(prefix, c):
    """BatchNormalization scale, bias, mean, var for c channels: exact
    binary fractions, var > 0, no two channels alike."""
    i = np.arange(c, dtype=np.float32)
    vals = {"scale": 0.5 + (i % 5) / 4, "bias": (i % 3 - 1) / 4, "mean": (i % 4 - 1.5) / 8, "var": 0.25 + (i % 6) / 2}
    return [numpy_helper.from_array(v.astype(np.float32), prefix + "_" + k) for k, v in vals.items()]


def bn(prefix, x, y, **attrs):
    return helper.make_node("BatchNormalization", [x] + [prefix + "_" + k for k in ("scale", "bias", "mean", "var")],
                            [y], name=prefix, **attrs)


def conv_bn():
    """Conv 3x3 without bias (2 -> 4 channels, 5x5) -> BatchNormalization -> Relu."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        bn("bn", "c", "n"),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    return model("conv_bn", nodes, [vi("x", [1, 2, 5, 5])], [vi("y", [1, 4, 5, 5])],
                 [weight("w", [4, 2, 3, 3])] + bn_params("bn", 4))


def conv_bias_bn():
    """Conv 1x1 with bias (3 -> 3) -> BatchNormalization (epsilon 1e-3), whose output is the graph output."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
        bn("bn", "c", "y", epsilon=1e-3),
    ]
    return model("conv_bias_bn", nodes, [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 4, 4])],
                 [weight("w", [3, 3, 1, 1]), weight("b", [3])] + bn_params("bn", 3))


def grouped_bn():
    """Depthwise Conv (group 4) -> BN, then ConvTranspose group 2 (4 -> 6,
    W [4, 3, 2, 2]: the BN channel is W's dim 1 within each group) -> BN."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        bn("bn1", "c1", "n1"),
        helper.make_node("ConvTranspose", ["n1", "w2"], ["c2"], name="up", kernel_shape=[2, 2], strides=[2, 2], group=2),
        bn("bn2", "c2", "y"),
    ]
    return model("grouped_bn", nodes, [vi("x", [1, 4, 3, 3])], [vi("y", [1, 6, 6, 6])],
                 [weight("w1", [4, 1, 3, 3]), weight("b1", [4]), weight("w2", [4, 3, 2, 2])]
                 + bn_params("bn1", 4) + bn_params("bn2", 6))


def bn_nofold():
    """BNs that must stay: conv a's output is also read by an Add (a
    residual), conv b's BN is in training mode (opset 15).  Conv c's BN
    folds, and a Transpose pair, an Identity and a same-type Cast go."""
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], name="conv_a", kernel_shape=[1, 1]),
        bn("bn_a", "a", "na"),
        helper.make_node("Add", ["a", "na"], ["s"], name="residual"),
        helper.make_node("Conv", ["s", "wb"], ["b"], name="conv_b", kernel_shape=[1, 1]),
        bn("bn_b", "b", "nb", training_mode=1),
        helper.make_node("Conv", ["nb", "wc"], ["c"], name="conv_c", kernel_shape=[1, 1]),
        bn("bn_c", "c", "nc"),
        helper.make_node("Transpose", ["nc"], ["t1"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Identity", ["t2"], ["i"], name="same"),
        helper.make_node("Cast", ["i"], ["k"], name="still_float", to=F),
        helper.make_node("Relu", ["k"], ["y"], name="relu"),
    ]
    return model("bn_nofold", nodes, [vi("x", [2, 3, 2, 2])], [vi("y", [2, 3, 2, 2])],
                 [weight("wa", [3, 3, 1, 1]), weight("wb", [3, 3, 1, 1]), weight("wc", [3, 3, 1, 1])]
                 + bn_params("bn_a", 3) + bn_params("bn_b", 3) + bn_params("bn_c", 3), opset=15)


def gemm_bn():
    """Gemm (alpha 0.5, beta 2, transB, bias [3]) -> BatchNormalization over the rows' 3 channels."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1, alpha=0.5, beta=2.0),
        bn("bn", "g", "y"),
    ]
    return model("gemm_bn", nodes, [vi("x", [2, 4])], [vi("y", [2, 3])],
                 [weight("w", [3, 4]), weight("b", [3])] + bn_params("bn", 3))


def f16_fire():
    """A float16 fire module: Conv 1x1 -> Relu -> MaxPool 2x2, two Convs
    Concat'ed; the Concat is a graph output and is also read by a
    GlobalAveragePool; an f32 side input Cast to f16 and added.  widen-f16
    makes every inner tensor f32: Casts at the input and the outputs,
    kiln.RoundTo after each node that computes (Conv, Add, the pool's
    mean), none after Relu, MaxPool and Concat."""
    H = TensorProto.FLOAT16

    def h(name, shape):
        return helper.make_tensor_value_info(name, H, shape)

    def hw(name, shape):
        return numpy_helper.from_array(numpy_helper.to_array(weight(name, shape)).astype(np.float16), name)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="squeeze", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w1"], ["e1"], name="expand1", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["p", "w3"], ["e3"], name="expand3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["e1", "e3"], ["cat"], name="concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Cast", ["side"], ["side16"], name="side_cast", to=H),
        helper.make_node("Add", ["gap", "side16"], ["y"], name="shift"),
    ]
    return model("f16_fire", nodes, [h("x", [1, 3, 4, 4]), vi("side", [1, 4, 1, 1])], [h("cat", [1, 4, 2, 2]), h("y", [1, 4, 1, 1])],
                 [hw("w", [2, 3, 1, 1]), hw("b", [2]), hw("w1", [2, 2, 1, 1]), hw("w3", [2, 2, 3, 3])])


BN_MODELS = [conv_bn, conv_bias_bn, grouped_bn, bn_nofold, gemm_bn]


def conv_add_relu():
    """Conv (bias) -> Add(residual: the graph input x) -> Relu: both fuse
    into the Conv's epilogue; x exists before the Conv runs."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "x"], ["s"], name="residual"),
        helper.make_node("Relu", ["s"], ["y"], name="relu"),
    ]
    return model("conv_add_relu", nodes, [vi("x", [1, 2, 4, 4])], [vi("y", [1, 2, 4, 4])],
                 [weight("w", [2, 2, 3, 3]), weight("b", [2])])


def gemm_sigmoid():
    """Gemm (8 -> 3, bias) -> Sigmoid, then a bias Add broadcast over the
    row: both steps fuse into the Gemm."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc", transB=1),
        helper.make_node("Sigmoid", ["g"], ["s"], name="sigmoid"),
        helper.make_node("Add", ["s", "shift"], ["y"], name="shift"),
    ]
    return model("gemm_sigmoid", nodes, [vi("x", [2, 8])], [vi("y", [2, 3])],
                 [weight("w", [3, 8]), weight("b", [3]), weight("shift", [1, 3])])


def no_fuse():
    """What must not fuse: a Conv output read twice (Relu and Add), a MatMul
    whose output is a graph output (its Relu stays a kernel of its own), and
    an Add that broadcasts its running value to a larger shape."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "c"], ["y"], name="twice"),
        helper.make_node("MatMul", ["m", "k"], ["p"], name="matmul"),
        helper.make_node("Relu", ["p"], ["q"], name="relu_of_output"),
        helper.make_node("MatMul", ["m", "k"], ["p2"], name="matmul2"),
        helper.make_node("Add", ["p2", "wide"], ["z"], name="widen"),
    ]
    return model("no_fuse", nodes, [vi("x", [1, 2, 3, 3]), vi("m", [1, 2, 4]), vi("wide", [3, 2, 2])],
                 [vi("y", [1, 2, 3, 3]), vi("p", [1, 2, 2]), vi("q", [1, 2, 2]), vi("z", [3, 2, 2])],
                 [weight("w", [2, 2, 1, 1]), weight("k", [4, 2])])


def conv_registers():
    """1-D Conv of 4 channels, 9 taps (36 products per output: the register
    path, passes/lower_conv.c), 16 positions -> 1 channel: one tile of sums."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[9], pads=[4, 4])]
    return model("conv_registers", nodes, [vi("x", [1, 4, 16])], [vi("y", [1, 1, 16])], [weight("w", [1, 4, 9])])


def dense_heads():
    """A Conv whose one 4x4 window is its whole input (with bias) becomes
    Flatten + Gemm over W^T + Reshape; a Gemm with transB over a constant
    reads a transposed constant, one over an input a Transpose node; a
    padded 4x4 Conv on the same input (more than one window) stays."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="c5", kernel_shape=[4, 4]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
        helper.make_node("Gemm", ["y", "u"], ["z"], name="by_input", transB=1),
        helper.make_node("Conv", ["x", "w"], ["p"], name="padded", kernel_shape=[4, 4], pads=[1, 1, 1, 1]),
    ]
    return model("dense_heads", nodes, [vi("x", [2, 3, 4, 4]), vi("u", [2, 3])],
                 [vi("z", [2, 2]), vi("p", [2, 5, 3, 3])],
                 [weight("w", [5, 3, 4, 4]), weight("b", [5]), weight("fw", [3, 5]), weight("fb", [3])])


def dw_add_clip():
    """Depthwise Conv 3x3 pad 1 (4 channels, group 4, bias, 5x7) -> Add(residual:
    the input x) -> Clip(0, 6): MobileNetV2's depthwise step with its fused
    epilogue (passes/schedule_dw_gpu.c on a GPU target)."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        helper.make_node("Add", ["c", "x"], ["s"], name="residual"),
        helper.make_node("Clip", ["s", "lo", "hi"], ["y"], name="relu6"),
    ]
    lo = numpy_helper.from_array(np.array(0, dtype=np.float32), "lo")
    hi = numpy_helper.from_array(np.array(6, dtype=np.float32), "hi")
    return model("dw_add_clip", nodes, [vi("x", [1, 4, 5, 7])], [vi("y", [1, 4, 5, 7])],
                 [weight("w", [4, 1, 3, 3]), weight("b", [4]), lo, hi])


def per_image_head():
    """A symbolic batch N through Conv + Relu, MaxPool, PyTorch's flatten
    x.view(x.size(0), -1) (Shape -> Gather -> Unsqueeze -> Concat ->
    Reshape, folded to the shape [N, -1]), a Linear layer (Gemm transB) and
    Softmax: every node image-wise, so with --batch 4 per-image rewrites it
    for one image (the Reshape's shape [4, -1] becomes [1, -1])."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="unsqueeze"),
        helper.make_node("Concat", ["n1", "minus1"], ["shp"], name="target", axis=0),
        helper.make_node("Reshape", ["p", "shp"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
    ]
    zero = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    return model("per_image_head", nodes, [vi("x", ["N", 3, 8, 8])], [vi("y", ["N", 5])],
                 [weight("w", [4, 3, 3, 3]), weight("fw", [5, 64]), zero, ints("axes0", [0]), ints("minus1", [-1])])


def nchwc_block():
    """1x1 convolutions on a 14x14 map (32 channels: a multiple of both
    blocks, 16 and 8): c1 (+ Relu) -> c2 (+ c1's result, + Relu) -> c3, the
    graph output.  With --layout nchwc, c1's and c2's results are blocked."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="c1", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="c2", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a2"], name="a2"),
        helper.make_node("Relu", ["a2"], ["r2"], name="r2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="c3", kernel_shape=[1, 1]),
    ]
    inits = []
    for k in (1, 2, 3):
        inits += [weight(f"w{k}", [32, 32, 1, 1]), weight(f"b{k}", [32])]
    return model("nchwc_block", nodes, [vi("x", [1, 32, 14, 14])], [vi("y", [1, 32, 14, 14])], inits)


MODELS = [conv_relu_pool, conv_relu_gap, gemm_flatten, add_concat, transpose_pad, residual_chain, shapes_symbolic, gap_softmax,
          big_and_small, conv_add_relu, gemm_sigmoid, no_fuse, conv_registers, dense_heads, maxpool_wide, dw_add_clip, f16_fire, per_image_head,
          nchwc_block] + BN_MODELS


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
