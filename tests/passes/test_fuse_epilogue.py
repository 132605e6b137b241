#!/usr/bin/env python3
"""Epilogue fusion (passes/fuse_epilogue.c) against ONNX Runtime.

Usage:  python3 tests/passes/test_fuse_epilogue.py KILN_BINARY WORK_DIR

Each case is a small ONNX model whose elementwise chains the pass fuses
(or must not fuse) into a Conv, ConvTranspose, Gemm, MatMul or elementwise
producer.  Asserted: the kernel count of `kiln inspect --loops` (the
number the case's comment works out by hand), and `kiln run`'s outputs
against ONNX Runtime (graph optimisations off, so ORT computes the graph
as written, unfused).

Tolerances: chains of exactly rounded ops only (Abs, Neg, Add, Relu) must
match bit for bit.  A case with a Conv/Gemm/MatMul sums at most 36
products of values in [-2, 2] and weights in [-1, 1] in float32 in an
order that differs from ORT's: |error| <= 36 * 2^-24 * sum|terms| < 1e-5
absolute, so atol = rtol = 1e-5; the fused steps then round each result to
float32 exactly as the unfused graph does.  The case ending in a float16
Cast may land one float16 step (2^-11 relative) away when the float32 sum
sits on a rounding boundary: rtol = 1e-3 there.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import onnx_case  # noqa: E402

F = TensorProto.FLOAT
FAILS = []


def check(name, cond, detail=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        FAILS.append(name)


class M:
    def __init__(self, name):
        self.name, self.nodes, self.inits, self.n = name, [], [], 0
        self.rng = np.random.default_rng(len(name))

    def op(self, op, ins, **attrs):
        self.n += 1
        out = f"{op.lower()}{self.n}"
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def w(self, shape):
        name = f"w{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(self.rng.uniform(-1, 1, shape).astype(np.float32), name))
        return name

    def save(self, path, inputs, outputs):
        g = helper.make_graph(self.nodes, self.name,
                              [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, F, None) for n in outputs], self.inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), path)


EXACT, SUMS, HALF = (0, 0), (1e-5, 1e-5), (1e-3, 1e-5)


def cases():
    out = []
    # conv -> add(residual computed after the conv: Neg(x)) -> relu: 1 fused kernel + neg
    m = M("conv_residual_relu")
    c = m.op("Conv", ["x", m.w([4, 4, 3, 3]), m.w([4])], pads=[1, 1, 1, 1])
    n = m.op("Neg", ["x"])
    y = m.op("Relu", [m.op("Add", [c, n])])
    out.append((m, [("x", [1, 4, 6, 6])], [y], 2, SUMS))
    # ResNet's shape: conv+relu, conv + add(a later conv's output) + relu, the shortcut conv
    m = M("two_branch_residual")
    a = m.op("Relu", [m.op("Conv", ["x", m.w([3, 2, 3, 3])], pads=[1, 1, 1, 1])])
    b = m.op("Conv", [a, m.w([3, 3, 1, 1])])
    s = m.op("Conv", ["x", m.w([3, 2, 1, 1])])
    y = m.op("Relu", [m.op("Add", [b, s])])
    out.append((m, [("x", [1, 2, 5, 5])], [y], 3, SUMS))
    # Gemm -> Sigmoid -> Mul(per column) -> Sub(row broadcast) -> Clip: one kernel
    m = M("gemm_chain")
    g = m.op("Gemm", ["x", m.w([5, 8]), m.w([5])], transB=1)
    lo = m.w([])
    hi = m.w([])
    y = m.op("Clip", [m.op("Sub", [m.op("Mul", [m.op("Sigmoid", [g]), m.w([5])]), m.w([1, 5])]), lo, hi])
    out.append((m, [("x", [2, 8])], [y], 1, SUMS))
    # MatMul (batched) -> LeakyRelu -> PRelu -> HardSigmoid -> Tanh: one kernel
    m = M("matmul_chain")
    p = m.op("MatMul", ["a", m.w([4, 6])])
    y = m.op("Tanh", [m.op("HardSigmoid", [m.op("PRelu", [m.op("LeakyRelu", [p], alpha=0.1), m.w([6])])])])
    out.append((m, [("a", [2, 3, 4])], [y], 1, SUMS))
    # ConvTranspose -> HardSwish -> Cast f16 -> Cast f32: one kernel
    m = M("convtranspose_cast")
    t = m.op("ConvTranspose", ["x", m.w([2, 3, 3, 3])], strides=[2, 2])
    h = m.op("Cast", [m.op("HardSwish", [t])], to=TensorProto.FLOAT16)
    y = m.op("Cast", [h], to=F)
    out.append((m, [("x", [1, 2, 3, 3])], [y], 1, HALF))
    # exact elementwise chain into an elementwise producer: Abs -> Neg -> Add(x): one kernel
    m = M("elementwise_chain")
    y = m.op("Add", [m.op("Neg", [m.op("Abs", ["x"])]), "x"])
    out.append((m, [("x", [3, 7])], [y], 1, EXACT))
    # must not fuse: conv output read twice (relu+add fuse with each other: 2 kernels);
    # a MatMul output that is a graph output (its Relu stays: 2 kernels)
    m = M("no_fuse")
    c = m.op("Conv", ["x", m.w([2, 2, 1, 1])])
    y = m.op("Add", [m.op("Relu", [c]), c])
    p = m.op("MatMul", ["a", m.w([4, 2])])
    q = m.op("Relu", [p])
    out.append((m, [("x", [1, 2, 3, 3]), ("a", [2, 4])], [y, p, q], 4, SUMS))
    # views: fused outputs written straight into a Concat's slices (no concat
    # kernel), and through a Reshape view: conv+relu x2, neg, conv+relu, sigmoid
    m = M("concat_reshape")
    r1 = m.op("Relu", [m.op("Conv", ["x", m.w([2, 2, 3, 3])], pads=[1, 1, 1, 1])])
    r2 = m.op("Relu", [m.op("Conv", ["x", m.w([3, 2, 1, 1])])])
    y = m.op("Neg", [m.op("Concat", [r1, r2], axis=1)])
    r3 = m.op("Relu", [m.op("Conv", ["x", m.w([2, 2, 1, 1])])])
    shape = "shape"
    m.inits.append(numpy_helper.from_array(np.array([1, -1], np.int64), shape))
    z = m.op("Sigmoid", [m.op("Reshape", [r3, shape])])
    out.append((m, [("x", [1, 2, 4, 4])], [y, z], 5, SUMS))
    return out


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        return subprocess.CompletedProcess(cmd, 127, "", str(e))


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(11)
    for m, inputs, outputs, kernels, (rtol, atol) in cases():
        d, path, feeds, ref = onnx_case(m, inputs, outputs, work, rng)
        p = run([kiln, "inspect", path, "--loops"])
        got_k = sum(1 for line in p.stdout.splitlines() if line.startswith("kernel "))
        check(f"{m.name}: {kernels} kernels", p.returncode == 0 and got_k == kernels, f"{got_k} kernels; {p.stderr.strip()}")
        od = os.path.join(d, "out")
        p = run([kiln, "run", path, "--output", od] + sum([["--input", f"{n}={os.path.join(d, n + '.npy')}"]
                                                              for n, _ in inputs], []))
        for k, name in enumerate(outputs):
            f = os.path.join(od, name + ".npy")
            ok = p.returncode == 0 and os.path.exists(f)
            got = np.load(f) if ok else None
            good = ok and got.shape == ref[k].shape and np.allclose(got, ref[k], rtol=rtol, atol=atol)
            if rtol == 0:
                good = ok and got.shape == ref[k].shape and np.array_equal(got, ref[k])
            detail = p.stderr.strip() if not ok else (
                f"max diff {np.max(np.abs(got - ref[k]))}" if got.shape == ref[k].shape else f"shape {got.shape}")
            check(f"{m.name}: output {name} == ORT (rtol {rtol}, atol {atol})", good, detail)
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
