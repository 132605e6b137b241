#!/usr/bin/env python3
"""GPU schedules of reductions (passes/schedule_reduce_gpu.c): launch shapes
and values through the host emulation (`kiln run --target cuda-host`).

Usage:  python3 tests/passes/test_schedule_reduce_gpu.py KILN_BINARY WORK_DIR

Each case is a one-node ONNX model.  Its launch shapes come from
`kiln inspect --dump-after schedule-gpu --target cuda` and must be the
expected ones (a block of 256 threads reducing together where one thread
looped before; per-output threads where there is parallelism enough).  Its
outputs, computed by the emulated CUDA kernels (barriers, shared-memory
tree), are compared with float64 NumPy on the same float32 inputs.

TOLERANCES (u = 2^-24, the float32 unit roundoff):
  exact        Max reductions, NaN included (any order gives the same
               value; ONNX ReduceMax propagates NaN).
  sums         max|y - ref| <= 128u * sum|x| per output (7.6e-6): each thread
               adds its terms in float32 blocks of at most 128 (error <= 127u
               of the block's magnitude, Higham eq. 3.5), the float64 total
               and tree add ~2^-53 per term, the rounding to float32 u of
               |y| <= u * sum|x|; no summation order exceeds this.
  Softmax      2e-6 relative per element: Exp <= 1.14 ulp (1.4e-7), the
               rounding of x - max (6e-8 for inputs in [0, 1)), the sum of
               5000 positive terms in float32 blocks of 20 (19u = 1.1e-6),
               the reciprocal and the product (u each): 1.5e-6 in all.
  Gemm         Higham's bound for a dot product in any order:
               |err| <= gamma(K + 2) * (|c| + sum |a*b|), gamma(n) = n*u/(1-n*u).

Prints one line per case, "PASS name: ..." or "FAIL name: ...", then
"N passed, M failed"; exit status 1 if any failed.
"""

import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
U = 2.0 ** -24

spec = importlib.util.spec_from_file_location("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
zoo_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_run)


def model(op, x_shape, y_shape, attrs=None, inits=(), extra_inputs=(), opset=13):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))
    node = helper.make_node(op, ["x", *extra_inputs], ["y"], name="n0", **(attrs or {}))
    g = helper.make_graph([node], "reduce_gpu", [x], [y], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-test")
    m.ir_version = 8
    return m


def sum_check(x, axes, keep):
    ref = np.sum(x.astype(np.float64), axis=axes, keepdims=keep)
    mag = np.sum(np.abs(x.astype(np.float64)), axis=axes, keepdims=keep)

    def check(y):
        err = np.abs(y.astype(np.float64) - ref)
        worst = float(np.max(err / mag))
        return worst <= 128 * U, f"max err / sum|x| = {worst:.2e} (bound 128u = {128 * U:.1e})"
    return check


def exact_check(ref):
    def check(y):
        same = np.array_equal(y, ref.astype(np.float32), equal_nan=True)
        return same, "exact (NaN included)" if same else f"differs: {y.ravel()[:6]} vs {ref.ravel()[:6]}"
    return check


def build_cases(rng):
    cases = {}
    x = rng.uniform(-1, 3, (1, 64, 32, 32)).astype(np.float32)
    cases["reduce_sum_all"] = (model("ReduceSum", x.shape, [], {"keepdims": 0}), x,
                               ["grid(1, 1, 1) block(256, 1, 1)"], sum_check(x, None, False))
    x = rng.uniform(-1, 1, (1, 4, 64, 64)).astype(np.float32)
    x[0, 1, 10, 7] = np.nan
    x[0, 2] = -np.inf
    x[0, 3, 63, 63] = 5.0  # the last element: the last thread's last strided step
    ref = np.max(x.astype(np.float64), axis=(2, 3), keepdims=True)
    cases["reduce_max_nan"] = (model("ReduceMax", x.shape, [1, 4, 1, 1], {"axes": [2, 3]}), x,
                               ["grid(4, 1, 1) block(256, 1, 1)"], exact_check(ref))
    x = rng.uniform(-1, 1, (3, 5000)).astype(np.float32)
    x[1, 4999] = np.nan
    x[2, 0] = 7.0
    ref = np.max(x.astype(np.float64), axis=1, keepdims=True)
    cases["reduce_max_rows"] = (model("ReduceMax", x.shape, [3, 1], {"axes": [1]}), x,
                                ["grid(3, 1, 1) block(256, 1, 1)"], exact_check(ref))
    x = rng.random((1, 5000)).astype(np.float32)
    e = np.exp(x.astype(np.float64) - x.max())
    ref = e / e.sum()

    def softmax_check(y, ref=ref):
        worst = float(np.max(np.abs(y.astype(np.float64) - ref) / ref))
        return worst <= 2e-6, f"max rel err {worst:.2e} (bound 2e-6)"
    cases["softmax_5000"] = (model("Softmax", x.shape, x.shape, {"axis": 1}), x,
                             ["grid(1, 1, 1) block(256, 1, 1)"], softmax_check)
    K, N = 512, 100
    a = rng.uniform(-1, 1, (1, K)).astype(np.float32)
    b = rng.uniform(-1, 1, (N, K)).astype(np.float32)
    c = rng.uniform(-1, 1, (N,)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64).T + c
    mag = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)).T + np.abs(c)
    gamma = (K + 2) * U / (1 - (K + 2) * U)

    def gemm_check(y, ref=ref, mag=mag):
        worst = float(np.max(np.abs(y.astype(np.float64) - ref) / (gamma * mag)))
        return worst <= 1.0, f"max err / Higham bound = {worst:.2f} (<= 1)"
    m = model("Gemm", a.shape, [1, N], {"transB": 1}, inits=[numpy_helper.from_array(b, "b"),
                                                             numpy_helper.from_array(c, "c")],
              extra_inputs=["b", "c"])
    # a Gemm is no longer this pass's: schedule_gpu tiles it (schedule_gemm_gpu.c);
    # one row -> 16-column tiles, ceil(100 / 16) = 7 blocks of 16 threads
    cases["gemm_batch1"] = (m, a, ["grid(7, 1, 1) block(16, 1, 1)"], gemm_check)
    x = rng.uniform(-1, 1, (1, 16)).astype(np.float32)
    cases["short_sum_one_thread"] = (model("ReduceSum", x.shape, [], {"keepdims": 0}), x,
                                     ["grid(1, 1, 1) block(1, 1, 1)"], sum_check(x, None, False))
    x = rng.uniform(-1, 1, (2048, 49)).astype(np.float32)
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")  # an input since opset 13
    cases["many_short_rows"] = (model("ReduceSum", x.shape, [2048, 1], inits=[axes], extra_inputs=["axes"]), x,
                                ["grid(8, 1, 1) block(256, 1, 1)"], sum_check(x, 1, True))
    return cases


def launches(kiln, path):
    proc = subprocess.run([kiln, "inspect", str(path), "--dump-after", "schedule-gpu", "--target", "cuda"],
                          capture_output=True, text=True)
    return re.findall(r"launch (grid\([^)]*\) block\([^)]*\))", proc.stdout + proc.stderr)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    kiln, work = argv[1], Path(argv[2])
    work.mkdir(parents=True, exist_ok=True)
    passed = failed = 0
    for name, (m, x, want, check) in build_cases(np.random.default_rng(7)).items():
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(m, path)
            got = launches(kiln, path)
            outs, _, err = zoo_run.run_kiln(kiln, path, {"x": x}, tmp, "cuda-host")
        if got != want:
            err = f"launches {got}, expected {want}"
        if not err:
            y = outs.get("y")
            ok, why = check(y) if y is not None else (False, "no output y")
            err = None if ok else why
        print(f"{'FAIL' if err else 'PASS'} {name}: {err or why}")
        passed += not err
        failed += bool(err)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
