#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_onnx_import: tests/fuzz/corpus/onnx/seed-*.onnx.

Usage:  python3 tests/fuzz/make_corpus.py [OUT_DIR]

Each seed is a tiny valid model (under 4 KB, so libFuzzer's default input
size limit keeps them whole) that reaches a different part of the importer:
old-opset upgrades, every Constant form, raw_data in several dtypes,
symbolic dims through Shape -> Gather -> Concat -> Reshape, and most op
kinds kiln knows.  The fuzzer mutates them; their bytes matter more than
their numbers, so weights are small ramps.  Only seed-*.onnx files are
written: the inputs that once crashed or hung the fuzz target
(crash-*.onnx, timeout-*.onnx, named for the bug) live in the same folder
as regression seeds and are left alone.  The output is deterministic, so rerunning
the script after an onnx upgrade shows any change in `git diff`.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "corpus" / "onnx"
IR_VERSION = 8
MAX_BYTES = 4096


def ramp(name, shape, dtype=np.float32):
    """An initializer 0, 1, 2, ... scaled into a small range, as raw_data."""
    n = int(np.prod(shape)) if shape else 1
    data = (np.arange(n) % 7 - 3).astype(dtype).reshape(shape)
    return numpy_helper.from_array(data, name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model(name, nodes, inputs, outputs, inits=(), opset=13):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-fuzz-seeds")
    m.ir_version = IR_VERSION
    return m


def f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_relu():
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], "relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], "pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["y"], "gap"),
    ]
    return model("conv_relu", nodes, [f32("x", ["N", 3, 8, 8])], [f32("y", None)],
                 [ramp("W", [4, 3, 3, 3]), ramp("B", [4])])


def mlp():
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], "flat", axis=1),
        helper.make_node("Gemm", ["f", "W1", "B1"], ["h"], "fc1", transB=1),
        helper.make_node("Sigmoid", ["h"], ["s"], "act"),
        helper.make_node("MatMul", ["s", "W2"], ["m"], "fc2"),
        helper.make_node("Add", ["m", "B2"], ["a"], "bias2"),
        helper.make_node("Softmax", ["a"], ["y"], "softmax", axis=-1),
    ]
    return model("mlp", nodes, [f32("x", [2, 2, 3])], [f32("y", None)],
                 [ramp("W1", [5, 6]), ramp("B1", [5]), ramp("W2", [5, 4]), ramp("B2", [4])])


def reshape_chain():
    """The exporters' dynamic-reshape idiom over a symbolic batch dim."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], "shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], "batch", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], "unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], "cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"], "reshape"),
        helper.make_node("Transpose", ["r"], ["t"], "transpose", perm=[1, 0]),
        helper.make_node("Identity", ["t"], ["y"], "id"),
    ]
    return model("reshape_chain", nodes, [f32("x", ["N", 2, 3])], [f32("y", [6, "N"])],
                 [ints("zero", 0), ints("axes0", [0]), ints("minus1", [-1])])


def constants():
    """Every Constant form, ConstantOfShape, Cast, comparisons, Where, Expand."""
    nodes = [
        helper.make_node("Constant", [], ["k_t"], "k_tensor", value=ramp("kv", [2, 3])),
        helper.make_node("Constant", [], ["k_f"], "k_float", value_float=1.5),
        helper.make_node("Constant", [], ["k_i"], "k_int", value_int=3),
        helper.make_node("Constant", [], ["k_fs"], "k_floats", value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Constant", [], ["k_is"], "k_ints", value_ints=[2, 3]),
        helper.make_node("ConstantOfShape", ["k_is"], ["zeros"], "cos",
                         value=numpy_helper.from_array(np.array([0.25], dtype=np.float32))),
        helper.make_node("Add", ["x", "k_t"], ["a"], "add"),
        helper.make_node("Mul", ["a", "k_f"], ["b"], "mul"),
        helper.make_node("Greater", ["b", "zeros"], ["g"], "gt"),
        helper.make_node("Where", ["g", "b", "k_fs"], ["w"], "where"),
        helper.make_node("Cast", ["k_i"], ["ki_f"], "cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["w", "ki_f"], ["s"], "sub"),
        helper.make_node("Expand", ["s", "k_is"], ["y"], "expand"),
    ]
    return model("constants", nodes, [f32("x", [2, 3])], [f32("y", None)])


def raw_dtypes():
    """raw_data initializers of the narrow and wide dtypes, cast to float."""
    kinds = [("u8", np.uint8), ("i8", np.int8), ("i16", np.int16), ("i32", np.int32), ("f16", np.float16),
             ("f64", np.float64), ("b", np.bool_)]
    inits, nodes, prev = [], [], "x"
    for i, (tag, dt) in enumerate(kinds):
        inits.append(ramp(tag, [2, 3], dt))
        nodes.append(helper.make_node("Cast", [tag], [tag + "_f"], "cast_" + tag, to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Add", [prev, tag + "_f"], ["sum%d" % i], "add_" + tag))
        prev = "sum%d" % i
    # an int32_data (not raw) tensor and an f16 in int32_data
    inits.append(helper.make_tensor("i32t", TensorProto.INT32, [3], [1, -2, 3]))
    inits.append(helper.make_tensor("f16t", TensorProto.FLOAT16, [3], np.array([1, 2, 3], np.float16).view(np.uint16)))
    nodes.append(helper.make_node("Cast", ["i32t"], ["i32t_f"], "cast_i32t", to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Cast", ["f16t"], ["f16t_f"], "cast_f16t", to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Add", [prev, "i32t_f"], ["p"], "add_i32t"))
    nodes.append(helper.make_node("Add", ["p", "f16t_f"], ["y"], "add_f16t"))
    return model("raw_dtypes", nodes, [f32("x", [2, 3])], [f32("y", None)], inits)


def legacy_opset6():
    """Opset 6 forms the importer upgrades: legacy broadcast, BatchNorm with
    is_test/spatial, Clip/Pad/Dropout attributes, Squeeze/Unsqueeze axes,
    Softmax's 2-D coercion."""
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["a"], "add_bcast", broadcast=1, axis=1),
        helper.make_node("BatchNormalization", ["a", "scale", "B", "mean", "var"], ["bn"], "bn",
                         is_test=1, spatial=1, epsilon=1e-5),
        helper.make_node("Clip", ["bn"], ["c"], "clip", min=0.0, max=6.0),
        helper.make_node("Pad", ["c"], ["p"], "pad", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0),
        helper.make_node("Dropout", ["p"], ["d"], "drop", is_test=1, ratio=0.5),
        helper.make_node("Unsqueeze", ["d"], ["u"], "unsq", axes=[0]),
        helper.make_node("Squeeze", ["u"], ["q"], "sq", axes=[0]),
        helper.make_node("Reshape", ["q", "shape2d"], ["r"], "reshape"),
        helper.make_node("Softmax", ["r"], ["y"], "softmax", axis=1),
    ]
    return model("legacy_opset6", nodes, [f32("x", [1, 2, 2, 2])], [f32("y", None)],
                 [ramp("bias", [2]), ramp("scale", [2]), ramp("B", [2]), ramp("mean", [2]),
                  numpy_helper.from_array(np.ones(2, np.float32), "var"), ints("shape2d", [1, -1])], opset=6)


def legacy_opset9():
    """Upsample (deprecated) and attribute-form Slice."""
    nodes = [
        helper.make_node("Upsample", ["x", "scales"], ["u"], "up", mode="nearest"),
        helper.make_node("Slice", ["u"], ["s"], "slice", starts=[0, 0, 1, 1], ends=[1, 2, 3, 3], axes=[0, 1, 2, 3]),
        helper.make_node("LeakyRelu", ["s"], ["y"], "lrelu", alpha=0.2),
    ]
    return model("legacy_opset9", nodes, [f32("x", [1, 2, 2, 2])], [f32("y", None)],
                 [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")], opset=9)


def reduce_split():
    """Opset-18 forms: axes as inputs, Split with num_outputs, Resize, Pad."""
    nodes = [
        helper.make_node("Split", ["x"], ["s0", "s1"], "split", axis=1, num_outputs=2),
        helper.make_node("Concat", ["s1", "s0"], ["c"], "cat", axis=1),
        helper.make_node("ReduceMean", ["c", "axes"], ["m"], "mean", keepdims=1),
        helper.make_node("Sub", ["c", "m"], ["d"], "center"),
        helper.make_node("Pow", ["d", "two"], ["d2"], "square"),
        helper.make_node("ReduceSum", ["d2", "axes"], ["v"], "var", keepdims=1),
        helper.make_node("Sqrt", ["v"], ["sd"], "sqrt"),
        helper.make_node("Div", ["d", "sd"], ["n"], "norm"),
        helper.make_node("Resize", ["n", "", "rscales"], ["r"], "resize", mode="linear"),
        helper.make_node("Pad", ["r", "pads"], ["p"], "pad", mode="reflect"),
        helper.make_node("AveragePool", ["p"], ["ap"], "avg", kernel_shape=[2, 2], ceil_mode=1),
        helper.make_node("ArgMax", ["ap"], ["y"], "argmax", axis=1, keepdims=0),
    ]
    return model("reduce_split", nodes, [f32("x", [1, 4, 3, 3])], [helper.make_tensor_value_info("y", TensorProto.INT64, None)],
                 [ints("axes", [2, 3]), numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                  numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "rscales"),
                  ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])], opset=18)


def conv_transpose():
    nodes = [
        helper.make_node("ConvTranspose", ["x", "W"], ["c"], "deconv", strides=[2, 2], output_padding=[1, 1]),
        helper.make_node("InstanceNormalization", ["c", "scale", "B"], ["i"], "inorm"),
        helper.make_node("HardSwish", ["i"], ["h"], "hswish"),
        helper.make_node("Conv", ["h", "Wg"], ["g"], "grouped", group=2, dilations=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Tanh", ["g"], ["y"], "tanh"),
    ]
    return model("conv_transpose", nodes, [f32("x", [1, 2, 3, 3])], [f32("y", [1, 2, 8, 8])],
                 [ramp("W", [2, 2, 3, 3]), ramp("scale", [2]), ramp("B", [2]), ramp("Wg", [2, 1, 3, 3])], opset=14)


def activations():
    """The remaining elementwise ops, variadic ops, comparisons and Clip-13
    with bound inputs, folded where kiln folds them (int64 shape data)."""
    unary = ["Elu", "Selu", "HardSigmoid", "Softplus", "Erf", "Exp", "Log", "Abs", "Neg", "Reciprocal", "Floor",
             "Ceil"]
    nodes, prev = [], "x"
    for op in unary:
        nodes.append(helper.make_node(op, [prev], [op.lower()], op.lower()))
        prev = op.lower()
    nodes += [
        helper.make_node("PRelu", [prev, "slope"], ["pr"], "prelu"),
        helper.make_node("Clip", ["pr", "lo", "hi"], ["cl"], "clip13"),
        helper.make_node("Sum", ["cl", "x", "pr"], ["su"], "sum"),
        helper.make_node("Mean", ["su", "x"], ["me"], "mean"),
        helper.make_node("Max", ["me", "x"], ["mx"], "max"),
        helper.make_node("Min", ["mx", "cl"], ["y"], "min"),
        # int64 arithmetic on constants: the folder's territory
        helper.make_node("Abs", ["k"], ["k_abs"], "k_abs"),
        helper.make_node("Neg", ["k_abs"], ["k_neg"], "k_neg"),
        helper.make_node("Equal", ["k", "k_neg"], ["k_eq"], "k_eq"),
        helper.make_node("Less", ["k", "k_neg"], ["k_lt"], "k_lt"),
        helper.make_node("Where", ["k_lt", "k", "k_neg"], ["k_w"], "k_where"),
        helper.make_node("Max", ["k_w", "k", "k_abs"], ["k_max"], "k_max"),
        helper.make_node("Div", ["k_max", "k3"], ["k_div"], "k_div"),
        helper.make_node("Pow", ["k_div", "k3"], ["k_pow"], "k_pow"),
    ]
    return model("activations", nodes, [f32("x", [1, 2, 3])],
                 [f32("y", [1, 2, 3]), helper.make_tensor_value_info("k_pow", TensorProto.INT64, [3]),
                  helper.make_tensor_value_info("k_eq", TensorProto.BOOL, [3])],
                 [ramp("slope", [2, 1]), numpy_helper.from_array(np.array(-1.0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(1.0, np.float32), "hi"), ints("k", [-3, 0, 5]), ints("k3", [3])])


def tensor_ops():
    """Opset-13 input forms of Squeeze/Unsqueeze/Slice/Dropout, pooling with
    every window attribute, LRN, and the remaining reductions."""
    nodes = [
        helper.make_node("LRN", ["x"], ["l"], "lrn", size=3, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("MaxPool", ["l"], ["mp", "idx"], "maxpool", kernel_shape=[2, 2], strides=[1, 2],
                         dilations=[1, 1], pads=[0, 1, 0, 1], ceil_mode=1),
        helper.make_node("AveragePool", ["mp"], ["ap"], "avgpool", kernel_shape=[3, 1], auto_pad="SAME_LOWER",
                         count_include_pad=1),
        helper.make_node("GlobalMaxPool", ["ap"], ["gm"], "gmp"),
        helper.make_node("Squeeze", ["gm", "axes23"], ["sq"], "squeeze"),
        helper.make_node("Unsqueeze", ["sq", "axes0"], ["us"], "unsqueeze"),
        helper.make_node("Slice", ["us", "starts", "ends", "axes2", "steps"], ["sl"], "slice"),
        helper.make_node("Dropout", ["sl", "ratio", "train"], ["dr"], "dropout", seed=1),
        helper.make_node("LogSoftmax", ["dr"], ["ls"], "logsoftmax", axis=-1),
        helper.make_node("ReduceMax", ["ls"], ["rm"], "reducemax", axes=[-1], keepdims=0),
        helper.make_node("Gather", ["rm", "neg_idx"], ["ga"], "gather", axis=1),
        helper.make_node("Transpose", ["ga"], ["y"], "transpose"),
    ]
    return model("tensor_ops", nodes, [f32("x", [1, 3, 4, 5])], [f32("y", None)],
                 [ints("axes23", [2, 3]), ints("axes0", [0]), ints("starts", [-1]), ints("ends", [-100]),
                  ints("axes2", [1]), ints("steps", [-2]),
                  numpy_helper.from_array(np.array(0.25, np.float32), "ratio"),
                  numpy_helper.from_array(np.array(False), "train"), ints("neg_idx", [-1, 0])])

def batched_head():
    """A fixed batch of 2 through Conv, Concat, PyTorch's flatten (Shape ->
    Gather -> Unsqueeze -> Concat -> Reshape) and Gemm: the per-image
    rewrite (passes/per_image.c) takes it."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], "conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x"], ["r"], "relu"),
        helper.make_node("Concat", ["c", "r"], ["cat"], "cat", axis=1),
        helper.make_node("Shape", ["cat"], ["s"], "shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], "batch", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], "unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["shp"], "target", axis=0),
        helper.make_node("Reshape", ["cat", "shp"], ["f"], "flatten"),
        helper.make_node("Gemm", ["f", "G"], ["y"], "fc", transB=1),
    ]
    zero = numpy_helper.from_array(np.array(0, dtype=np.int64), "zero")
    return model("batched_head", nodes, [f32("x", [2, 2, 3, 3])], [f32("y", [2, 3])],
                 [ramp("W", [2, 2, 3, 3]), ramp("G", [3, 36]), zero, ints("axes0", [0]), ints("minus1", [-1])])


SEEDS = [conv_relu, mlp, reshape_chain, constants, raw_dtypes, legacy_opset6, legacy_opset9, reduce_split,
         conv_transpose, activations, tensor_ops, batched_head]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for make in SEEDS:
        m = onnx.shape_inference.infer_shapes(make(), strict_mode=True)
        del m.graph.value_info[:]  # inferred intermediate types: bytes the importer ignores
        onnx.checker.check_model(m)
        data = m.SerializeToString(deterministic=True)
        if len(data) >= MAX_BYTES:
            raise SystemExit(f"seed {make.__name__} is {len(data)} bytes; seeds must stay under {MAX_BYTES}")
        path = OUT / f"seed-{make.__name__.replace('_', '-')}.onnx"
        path.write_bytes(data)
        print(f"{path.name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
