#!/usr/bin/env python3
"""A small CNN whose every string is hostile, for kiln's escaping tests.

    make_hostile_model.py OUT.onnx MARKER

Graph (shapes static but for a symbolic batch dim with a hostile name):

    x0 [N,3,8,8] -Conv(3x3, pad 1)-> t0 -Relu-> t1 -Add(x1)-> t2 -Conv(1x1)-> t3
    t3 -Mul(x2)-> y0 -Sigmoid-> y1;  t1 -MaxPool(2x2)-> y2;
    t1 -GlobalAveragePool-> y3 -Flatten-> y4;  t3 is an output too (y5)
    with wide_gemm: y4 -Gemm(B [4, 1024] fixed, C)-> y6, a Gemm wide enough
    for the row form's chunk-major copy of B (a weight named `<B>.chunked`)

Graph, node, value, initializer, input and output names, the producer, the
graph name, doc strings and metadata are hostile: comment terminators and
openers with an `__attribute__((constructor))` payload that runs
`touch MARKER`, newlines ending `//` comments, quotes, backslashes, printf
conversions (%n, %s), `??/` trigraphs, `#define` lines, names that collide
once mangled (a.b / a-b, workspace / WORKSPACE, o.1 / o-1), C keywords,
reserved identifiers (_X, __x), digits first, UTF-8, and 5,000-character
names differing only in their last byte.  Weights are fixed by a seeded
generator, so the model is the same file on every run.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def hostile_strings(marker, payload_only=False):
    payload = ('*/ __attribute__((constructor)) static void f(void){system("touch %s");} /*' % marker)
    s = {
        "payload": payload,
        "x0": 'in"put\\%n%s%s%s\n*/ system("touch ' + marker + '"); /*',
        "x1": "workspace",
        "x2": "\u00f1/\u03c0??/",                         # UTF-8 and a trigraph line splice
        "w0": "a.b", "b0": "a-b",                          # collide once mangled
        "w1": "weights", "b1": "A" * 5000,
        "t0": "#define float int\n#define return exit(1);",
        "t1": "int",
        "t2": "0abc",
        "t3": "A" * 4999 + "B",
        "y0": "_X", "y1": "__x", "y2": "WORKSPACE", "y3": "o.1", "y4": "o-1",
        "sym": "N */ " + payload,
        "n0": payload, "n1": "line\n// comment ends here\nsystem(\"touch " + marker + "\");",
        "n2": "", "n3": "A" * 5000, "n4": "static", "n5": "??/\n" + payload, "n6": "%n%n%n%s",
        "n7": "__attribute__", "n8": "\\",
        "gB": "*/ gemm.w" + payload, "gC": 'gemm"bias\\%n', "n9": "%s%s\n#define chunked " + payload,
        "y6": "y6 */ " + payload,
    }
    if payload_only:  # plain tensor names: only node names and doc strings attack, each payload its own f
        for k in ("x0", "x1", "x2", "w0", "b0", "w1", "b1", "t0", "t1", "t2", "t3", "y0", "y1", "y2", "y3", "y4",
                  "gB", "gC", "y6"):
            s[k] = k
        s["sym"] = "N"
        for k in ("n0", "n1", "n5", "n9"):
            s[k] = payload.replace("void f(", "void f_%s(" % k)
    return s


def build(marker, payload_only=False, wide_gemm=False, batched=False):
    """payload_only: tensor names are plain, so a generator that pasted node
    names raw into comments would still compile, and run the payload.
    wide_gemm: add the Gemm y4 -> y6 (see the top).
    batched: the third input carries the symbolic batch too, so that with
    the batch bound above 1 every node is image-wise (passes/per_image.c)."""
    s = hostile_strings(marker, payload_only)
    rng = np.random.default_rng(20261130)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    inits = [numpy_helper.from_array(f32(4, 3, 3, 3) * 0.3, s["w0"]), numpy_helper.from_array(f32(4), s["b0"]),
             numpy_helper.from_array(f32(4, 4, 1, 1) * 0.5, s["w1"]), numpy_helper.from_array(f32(4), s["b1"])]
    for t in inits:
        t.doc_string = s["payload"]
    nodes = [
        helper.make_node("Conv", [s["x0"], s["w0"], s["b0"]], [s["t0"]], name=s["n0"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], doc_string=s["payload"]),
        helper.make_node("Relu", [s["t0"]], [s["t1"]], name=s["n1"], doc_string=s["n1"]),
        helper.make_node("Add", [s["t1"], s["x1"]], [s["t2"]], name=s["n2"]),
        helper.make_node("Conv", [s["t2"], s["w1"], s["b1"]], [s["t3"]], name=s["n3"], kernel_shape=[1, 1]),
        helper.make_node("Mul", [s["t3"], s["x2"]], [s["y0"]], name=s["n4"]),
        helper.make_node("Sigmoid", [s["y0"]], [s["y1"]], name=s["n5"]),
        helper.make_node("MaxPool", [s["t1"]], [s["y2"]], name=s["n6"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", [s["t1"]], [s["y3"]], name=s["n7"]),
        helper.make_node("Flatten", [s["y3"]], [s["y4"]], name=s["n8"]),
    ]
    sym = s["sym"]
    inputs = [helper.make_tensor_value_info(s["x0"], TensorProto.FLOAT, [sym, 3, 8, 8], doc_string=s["payload"]),
              helper.make_tensor_value_info(s["x1"], TensorProto.FLOAT, [sym, 4, 8, 8]),
              helper.make_tensor_value_info(s["x2"], TensorProto.FLOAT, [sym if batched else 1, 4, 1, 1])]
    outputs = [helper.make_tensor_value_info(s["y0"], TensorProto.FLOAT, [sym, 4, 8, 8]),
               helper.make_tensor_value_info(s["y1"], TensorProto.FLOAT, [sym, 4, 8, 8]),
               helper.make_tensor_value_info(s["y2"], TensorProto.FLOAT, [sym, 4, 4, 4]),
               helper.make_tensor_value_info(s["y3"], TensorProto.FLOAT, [sym, 4, 1, 1]),
               helper.make_tensor_value_info(s["y4"], TensorProto.FLOAT, [sym, 4]),
               helper.make_tensor_value_info(s["t3"], TensorProto.FLOAT, [sym, 4, 8, 8])]
    if wide_gemm:
        inits += [numpy_helper.from_array(f32(4, 1024) * 0.5, s["gB"]), numpy_helper.from_array(f32(1024), s["gC"])]
        nodes.append(helper.make_node("Gemm", [s["y4"], s["gB"], s["gC"]], [s["y6"]], name=s["n9"]))
        outputs.append(helper.make_tensor_value_info(s["y6"], TensorProto.FLOAT, [sym, 1024]))
    graph = helper.make_graph(nodes, s["payload"], inputs, outputs, inits, doc_string=s["n1"])
    model = helper.make_model(graph, producer_name=s["payload"], producer_version=s["n5"], doc_string=s["payload"],
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.domain = s["n1"]
    helper.set_model_props(model, {s["payload"]: s["n1"]})
    onnx.checker.check_model(model)
    return model, s


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_hostile_model.py OUT.onnx MARKER")
    model, _ = build(sys.argv[2])
    onnx.save(model, sys.argv[1])


if __name__ == "__main__":
    main()
