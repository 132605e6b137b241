#!/usr/bin/env python3
"""Views instead of copies (passes/views.c) and the alias-aware memory plan,
against ONNX Runtime, on both backends.

Usage:  python3 tests/passes/test_views.py KILN_BINARY WORK_DIR

Each case is a small ONNX model.  Its outputs from `kiln run` (LLVM JIT)
and from `kiln emit-c` + cc (the generated example main.c) must equal ONNX
Runtime's exactly: the models compute only Relu, Neg, Abs, Add, Mul and
ReduceMax on float32 (each correctly rounded in IEEE-754, so any correct implementation
gives the same bits) and move data (Reshape, Flatten, Squeeze, Unsqueeze,
Identity, Concat).  The kernel count from `kiln inspect --loops` is
asserted too: the number of compute nodes, plus the copies each case
expects to stay.

Cases: a chain of Reshape/Flatten/Squeeze/Unsqueeze/Identity and a channel
Concat (no copy kernels at all); input -> Reshape -> output (the copy stays);
a value read by two Concats; a Concat input that is also a graph output;
a batch-2 Concat (strided slices: copied); DenseNet-like prefix Concats
(each a prefix of the last); Concat(x, x); a Concat of a Reshape's view;
a view of a graph input; Dropout without its mask (or with one nothing
reads); elementwise chains the memory plan runs in place,
with a Transpose, a ReduceMax and a broadcast Add among them (exact ops
too).
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
    """A tiny model builder: nodes in order, initializers for shapes."""

    def __init__(self, name):
        self.name, self.nodes, self.inits, self.n = name, [], [], 0

    def op(self, op, ins, **attrs):
        self.n += 1
        out = f"{op.lower()}{self.n}"
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def shape(self, dims):
        name = f"shape{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.array(dims, np.int64), name))
        return name

    def save(self, path, inputs, outputs):
        g = helper.make_graph(self.nodes, self.name,
                              [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, F, None) for n in outputs], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        onnx.save(m, path)


def rename_out(m, old, new):
    for nd in m.nodes:
        nd.output[:] = [new if o == old else o for o in nd.output]
        nd.input[:] = [new if i == old else i for i in nd.input]
    return new


def cases():
    out = []
    # 1. every view op and a channel concat: only the compute kernels remain
    #    (Relu, Neg, and Abs with the Add fused into it: 3)
    m = M("chain")
    a = m.op("Relu", ["x"])
    b = m.op("Neg", ["x"])
    c = m.op("Concat", [a, b], axis=1)                       # [1,6,4,4]
    r = m.op("Reshape", [c, m.shape([1, 6, 16])])
    f = m.op("Flatten", [r], axis=1)                         # [1,96]
    u = m.op("Unsqueeze", [f, m.shape([0])])                 # [1,1,96]
    s = m.op("Squeeze", [u, m.shape([0])])                   # [1,96]
    i = m.op("Identity", [s])
    y = m.op("Abs", [i])
    z = m.op("Add", [y, f])
    out.append((m, [("x", [1, 3, 4, 4])], [z], 3))
    # 2. input -> Reshape -> output: the copy stays
    m = M("in_reshape_out")
    r = m.op("Reshape", ["x", m.shape([12])])
    out.append((m, [("x", [1, 3, 2, 2])], [r], 1))
    # 3. x read by two Concats (x's home is the later one, the earlier copies)
    m = M("two_concats")
    x = m.op("Relu", ["x"])
    p = m.op("Neg", ["x"])
    q = m.op("Abs", ["x"])
    c1 = m.op("Concat", [x, p], axis=1)
    c2 = m.op("Concat", [q, x], axis=1)
    y1 = m.op("Neg", [c1])
    y2 = m.op("Relu", [c2])
    out.append((m, [("x", [1, 2, 3, 3])], [y1, y2], 6))
    # 4. a Concat input that is also a graph output: copied into the concat
    m = M("input_is_output")
    x = m.op("Relu", ["x"])
    p = m.op("Neg", ["x"])
    c = m.op("Concat", [x, p], axis=1)
    y = m.op("Abs", [c])
    out.append((m, [("x", [1, 2, 3, 3])], [x, y], 4))
    # 5. batch 2: run one image at a time (passes/per_image.c), where each
    # image's slices are contiguous again: no copy
    m = M("batch2")
    x = m.op("Relu", ["x"])
    p = m.op("Neg", ["x"])
    c = m.op("Concat", [x, p], axis=1)
    y = m.op("Abs", [c])
    out.append((m, [("x", [2, 2, 3, 3])], [y], 3))
    # 5b. batch 2 where images mix (a ReduceMean over the batch): slices are
    # strided, the concat copies
    m = M("batch2_mixed")
    x = m.op("Relu", ["x"])
    p = m.op("Neg", ["x"])
    c = m.op("Concat", [x, p], axis=1)
    r = m.op("ReduceMean", [c], axes=[0], keepdims=1)
    y = m.op("Sub", [c, r])
    out.append((m, [("x", [2, 2, 3, 3])], [y], 5))
    # 6. DenseNet-like: each Concat a prefix of the last; the middle one read too
    m = M("prefix")
    x0 = m.op("Relu", ["x"])
    y1 = m.op("Neg", [x0])
    c1 = m.op("Concat", [x0, y1], axis=1)
    y2 = m.op("Abs", [c1])
    c2 = m.op("Concat", [x0, y1, y2], axis=1)
    t = m.op("Neg", [c2])
    u = m.op("Relu", [c1])
    out.append((m, [("x", [1, 2, 3, 3])], [t, u], 5))
    # 7. Concat(x, x): the second copy of x needs a kernel
    m = M("twice")
    x = m.op("Relu", ["x"])
    c = m.op("Concat", [x, x], axis=1)
    y = m.op("Neg", [c])
    out.append((m, [("x", [1, 2, 3, 3])], [y], 3))
    # 8. Concat of a Reshape's view: the view cannot also be a slice
    m = M("concat_of_view")
    a = m.op("Relu", ["x"])
    r = m.op("Reshape", [a, m.shape([1, 2, 3, 3])])
    p = m.op("Neg", [r])
    c = m.op("Concat", [r, p], axis=1)
    y = m.op("Abs", [c])
    out.append((m, [("x", [1, 2, 9])], [y], 4))
    # 9. a view of a graph input, read by two nodes
    m = M("input_view")
    r = m.op("Reshape", ["x", m.shape([1, 18])])
    a = m.op("Relu", [r])
    b = m.op("Mul", [r, r])
    out.append((m, [("x", [1, 2, 9])], [a, b], 2))
    # 10. elementwise chains run in place (plan_inplace.c); a Transpose,
    #     a broadcast Add and a Concat copy among them must not (7 kernels:
    #     Neg+Relu, Relu+Neg and Abs+Add fuse, passes/fuse_epilogue.c)
    m = M("inplace")
    a = m.op("Neg", ["x"])
    b = m.op("Relu", [a])
    t = m.op("Transpose", [b], perm=[0, 1, 3, 2])
    c = m.op("Abs", [t])
    d = m.op("Add", [c, m.op("Neg", [m.op("Relu", ["x"])])])
    e = m.op("Add", [d, m.op("ReduceMax", [d], keepdims=1, axes=[3])])
    f = m.op("Mul", [e, e])
    out.append((m, [("x", [1, 8, 16, 16])], [f], 7))
    # 11. Dropout (inference, no mask output) is a view: no kernel
    m = M("dropout")
    a = m.op("Relu", ["x"])
    d = m.op("Dropout", [a])
    y = m.op("Neg", [d])
    out.append((m, [("x", [1, 2, 9])], [y], 2))
    # 12. Dropout whose mask output is named but read by nothing (exporters
    #     do this: the float16 SqueezeNet's last Dropout) is a view too
    m = M("dropout_unread_mask")
    a = m.op("Relu", ["x"])
    d = m.op("Dropout", [a])
    m.nodes[-1].output.append("unread_mask")
    y = m.op("Neg", [d])
    out.append((m, [("x", [1, 2, 9])], [y], 2))
    return out


def same(m, got, ref):
    return np.array_equal(got, ref)


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        return subprocess.CompletedProcess(cmd, 127, "", str(e))


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(7)
    for m, inputs, outputs, kernels in cases():
        d, path, feeds, ref = onnx_case(m, inputs, outputs, work, rng)
        p = run([kiln, "inspect", path, "--loops"])
        got_k = sum(1 for line in p.stdout.splitlines() if line.startswith("kernel "))
        check(f"{m.name}: {kernels} kernels", p.returncode == 0 and got_k == kernels, f"{got_k} kernels; {p.stderr.strip()}")
        # LLVM JIT
        od = os.path.join(d, "jit")
        p = run([kiln, "run", path, "--output", od] + sum([["--input", f"{n}={os.path.join(d, n + '.npy')}"]
                                                              for n, _ in inputs], []))
        for k, name in enumerate(outputs):
            ok = p.returncode == 0 and os.path.exists(os.path.join(od, name + ".npy"))
            got = np.load(os.path.join(od, name + ".npy")) if ok else None
            check(f"{m.name}: llvm output {name} == ORT", ok and got.shape == ref[k].shape and same(m, got, ref[k]),
                  p.stderr.strip() if not ok else f"max diff {np.max(np.abs(got - ref[k])) if got.shape == ref[k].shape else got.shape}")
        # C: emit-c and the example main.c
        cd = os.path.join(d, "c")
        p = run([kiln, "emit-c", path, "-o", cd, "--name", "net"])
        exe = os.path.join(cd, "run_model")
        if p.returncode == 0:
            p = run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-o", exe,
                     os.path.join(cd, "main.c"), os.path.join(cd, "net.c"), os.path.join(cd, "net_weights.c"), "-lm"])
        if p.returncode == 0:
            od = os.path.join(cd, "out")
            os.makedirs(od)
            p = run([exe] + [os.path.join(d, n + ".npy") for n, _ in inputs] + [od])
        for k, name in enumerate(outputs):
            f = os.path.join(cd, "out", f"output_{k}.npy")
            ok = p.returncode == 0 and os.path.exists(f)
            got = np.load(f).reshape(ref[k].shape) if ok else None
            check(f"{m.name}: c output {name} == ORT", ok and same(m, got, ref[k]), p.stderr.strip())
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
