#!/usr/bin/env python3
"""Twin kernels through the CLI (backends/llvm/llvm_twins.c) vs ONNX Runtime.

Usage:  python3 tests/backends/llvm/test_twins_model.py KILN_BINARY WORK_DIR

A network of BLOCKS repeated residual blocks (Conv 3x3 + Relu + Add, the
same shapes, each block its own seeded weights), as ResNet repeats its
bottlenecks.  Asserted:
  * `kiln run --time` prints "kiln: llvm: K kernels, P printed, T share a
    twin's functions" with T >= BLOCKS - 1 (every block after the first is
    a twin of an earlier one: fused into one kernel per block, the same
    loop IR on other buffers) and P + T == K;
  * the output against ONNX Runtime (graph optimisations off), on one
    thread and on two, and with KILN_CPU=znver3 (the AVX2 tile): each
    block's twin must read its own weights and write its own activation.
Tolerance: each conv output sums 72 products (8 channels x 3x3, weights
in [-0.25, 0.25]) in float32 in another order than ORT's, then adds the
residual; per block the rounding error is at most 72 * 2^-24 of the sum
of the terms' magnitudes, compounding over 5 blocks to well under
rtol = 1e-5 of the output's largest magnitude (measured: 3e-7).  A twin
computing on another block's weights or input is off by O(1) of it.
"""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

BLOCKS, C, H = 5, 8, 12
FAILS = []


def check(name, cond, detail=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        FAILS.append(name)


def model(path):
    rng = np.random.default_rng(10)
    nodes, inits, x = [], [], "x"
    for b in range(BLOCKS):
        w = rng.uniform(-0.25, 0.25, (C, C, 3, 3)).astype(np.float32)
        bias = rng.uniform(-0.5, 0.5, (C,)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{b}"), numpy_helper.from_array(bias, f"b{b}")]
        nodes.append(helper.make_node("Conv", [x, f"w{b}", f"b{b}"], [f"c{b}"], name=f"conv{b}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{b}"], [f"r{b}"], name=f"relu{b}"))
        out = "y" if b == BLOCKS - 1 else f"a{b}"
        nodes.append(helper.make_node("Add", [f"r{b}", x], [out], name=f"add{b}"))
        x = out
    shape = [1, C, H, H]
    g = helper.make_graph(nodes, "twins", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    path = os.path.join(work, "twins.onnx")
    model(path)
    x = np.random.default_rng(3).uniform(-1, 1, (1, C, H, H)).astype(np.float32)
    np.save(os.path.join(work, "x.npy"), x)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for label, extra, env_cpu in [("1 thread", [], None), ("2 threads", ["--threads", "2"], None),
                                  ("znver3", [], "znver3")]:
        out = os.path.join(work, label.replace(" ", "_"))
        env = dict(os.environ)
        env.pop("KILN_OPT", None)
        if env_cpu:
            env["KILN_CPU"] = env_cpu
        r = subprocess.run([kiln, "run", path, "--input", f"x={work}/x.npy", "--output", out, "--time"] + extra,
                           capture_output=True, text=True, timeout=600, env=env)
        check(f"{label}: kiln run exits 0", r.returncode == 0, r.stderr[-500:])
        if r.returncode:
            continue
        m = re.search(r"^kiln: llvm: (\d+) kernels, (\d+) printed, (\d+) share a twin's functions$", r.stderr, re.M)
        check(f"{label}: twin count printed", m is not None, r.stderr[-500:])
        if m:
            k, p, t = map(int, m.groups())
            check(f"{label}: {t} of {k} kernels reuse a twin ({p} printed), >= {BLOCKS - 1}",
                  t >= BLOCKS - 1 and p + t == k and p >= 1, m.group(0))
        y = np.load(os.path.join(out, "y.npy"))
        err = float(np.max(np.abs(y.astype(np.float64) - ref))) / float(np.max(np.abs(ref)))
        check(f"{label}: output vs ONNX Runtime, max |error| / max |ref| = {err:.2e} <= 1e-5",
              y.shape == ref.shape and err <= 1e-5)
    if FAILS:
        print(f"{len(FAILS)} failed")
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
