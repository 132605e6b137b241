#!/usr/bin/env python3
"""f32 -> f16 -> f32 as both backends print it, against NumPy.

Usage:  python3 tests/backends/c/test_round_f16.py KILN_BINARY WORK_DIR

A float16 model's tensors are f32 buffers holding f16 values
(passes/widen_f16.c): after each node that computes, kiln.RoundTo rounds
its result through f16.  The C printer writes that round trip as one
helper, kiln_round_f16 (integer rounding in f16's normal range, the FPU in
its subnormal range), the LLVM printer as fptrunc + fpext with a NaN fix-up.
The model here is Cast(to=f16) -> Cast(to=f32) over 1.2 M f32 values: for
every finite f16 value h, the f32 values at and next to the midpoints
between h and its neighbours (ties to even, both ways), h itself, values
past the largest f16 (65504, 65520: overflow to Inf), f16's subnormal range,
zeros, Infs, NaNs with both signs, and 2^20 random bit patterns.  The
reference is NumPy's astype(float16).astype(float32) (round to nearest
even): every output must equal it bit for bit, but NaNs, which must be NaNs
with the input's sign (kiln's NaN is the quiet one, 0x7fc00000 | sign).
Run through `kiln run` (LLVM) and `kiln emit-c` + cc -O3 -march=native.
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from kiln_check import Checks, args, load  # noqa: E402

C = Checks()
check = C.check


def sweep():
    h = np.arange(0x7c00, dtype=np.uint32)  # finite non-negative f16 bit patterns
    lo = h.astype(np.uint16).view(np.float16).astype(np.float32)
    hi = (h + 1).astype(np.uint16).view(np.float16).astype(np.float32)  # 0x7c00: Inf, past the top
    mid = ((lo.astype(np.float64) + np.where(np.isinf(hi), 65536.0, hi)) / 2).astype(np.float32)
    mb = mid.view(np.uint32)
    parts = [lo.view(np.uint32), mb, mb - 1, mb + 1, lo.view(np.uint32) + 1, lo.view(np.uint32) - 1]
    special = np.array([0x00000000, 0x7f800000, 0x7fc00000, 0x7f800001, 0x7fffffff, 0x477fe000, 0x477ff000, 0x477fefff,
                        0x477ff001, 0x7f7fffff, 0x33800000, 0x33000000, 0x33000001, 0x32ffffff, 0x387fffff, 0x38800000,
                        0x00000001, 0x007fffff], dtype=np.uint32)
    rnd = np.random.default_rng(5).integers(0, 2 ** 32, size=2 ** 20, dtype=np.uint64).astype(np.uint32)
    bits = np.concatenate(parts + [special, rnd])
    bits = np.concatenate([bits, bits | np.uint32(0x80000000)])  # both signs
    return bits.view(np.float32)


def model(n):
    nodes = [helper.make_node("Cast", ["x"], ["h"], name="narrow", to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], name="widen", to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "round_f16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def compare(what, x, y, ref):
    if y is None or y.shape != ref.shape:
        check(False, f"{what}: an output of {ref.shape}")
        return
    nan = np.isnan(ref)
    yb, rb, xb = y.view(np.uint32), ref.view(np.uint32), x.view(np.uint32)
    wrong = np.flatnonzero(~nan & (yb != rb))
    check(wrong.size == 0, f"{what}: {(~nan).sum()} numbers bit-exact with NumPy"
          + (f" (first: x {xb[wrong[0]]:#010x} -> {yb[wrong[0]]:#010x}, want {rb[wrong[0]]:#010x})" if wrong.size else ""))
    bad = np.flatnonzero(nan & ((yb & 0x7fffffff) != 0x7fc00000) | nan & ((yb ^ xb) >> 31 != 0))
    check(bad.size == 0, f"{what}: {nan.sum()} NaNs are the quiet NaN with the input's sign")


def main(argv):
    a = args(argv, __doc__)
    if not a:
        return 2
    kiln, work = a
    for d in ("llvm", "c"):
        shutil.rmtree(work / d, ignore_errors=True)
        (work / d).mkdir()
    zoo_run = load("zoo_run", "tests/models/test_zoo_run.py")
    x = sweep()
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(np.float16).astype(np.float32)
    path = work / "round_f16.onnx"
    path.write_bytes(model(x.size).SerializeToString())
    outs, _, err = zoo_run.run_kiln(kiln, path, {"x": x}, work / "llvm")
    check(err is None, f"kiln run ({err})")
    compare("LLVM", x, (outs or {}).get("y"), ref)
    outs, _, err = zoo_run.run_c(kiln, path, {"x": x}, work / "c")
    check(err is None, f"emit-c + cc ({err})")
    compare("C", x, next(iter(outs.values())) if outs and len(outs) == 1 else None, ref)
    src = (work / "c" / "c" / "net.c").read_text() if (work / "c" / "c" / "net.c").exists() else ""
    check("kiln_round_f16(" in src, "the C prints the round trip as kiln_round_f16")
    return C.exit()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
