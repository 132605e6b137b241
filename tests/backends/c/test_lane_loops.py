#!/usr/bin/env python3
"""The C printer's lane loops (backends/c/c_lanes.c) and what GCC makes of them.

Usage:  python3 tests/backends/c/test_lane_loops.py KILN_BINARY WORK_DIR

A register-tiled convolution ends in one store per accumulator; with a
Relu (a select) in the stored value GCC's vectoriser left the whole tile
scalar, 24-34x slower than the LLVM backend.  The printer now prints such a
run of stores as one loop over lane arrays.  For a model of SqueezeNet's
fire-module convolutions (1x1 + Relu, 3x3 + residual Add + Clip), checked:

  * the emitted C has lane arrays and lane loops, and still compiles with
    -std=c99 -Wall -Wextra -Wpedantic -Werror;
  * compiled with `cc -O3 -march=native`, each convolution kernel's code
    has 8 or more packed fused multiply-adds (vfmadd...ps): its main tile is
    vectorised (without lane loops GCC 12 left 0, every one scalar; the
    scalar ones left are the tail tile of 9 positions).  Skipped where the host has no
    FMA or the compiler is not GCC or Clang on x86-64;
  * the outputs equal ONNX Runtime's within 1e-5 relative to the largest
    output (f32 sums of at most 576 products in another order).

All of it for the default C (tiles for 64-byte vectors, compiled with
-march=native) and for `emit-c --vector-bytes 32` compiled for AVX2
(-mavx2 -mfma: no zmm register in it), where GCC used to unroll the
16-lane loops before vectorising and leave every tile scalar.  A second
model, a 1x1 and a 3x3 convolution on a 13x13 map (the transposed-GEMM
schedule, whose tiles reuse 4 weight vectors across 6 rows), checks that at
most a quarter of its packed FMAs read a full vector from memory (GCC
without KILN_KEEP_VECTORS folded every reuse into a memory operand: 44 of
the two kernels' 56), with the default C on AVX-512 hosts and with
--vector-bytes 32 for AVX2.

A third model, a depthwise 3x3 + Clip(0, 6) with rows of 68 interior
columns (not a whole number of vectors), checks the clamp: its bounds are
read into opaque locals (kiln_opaque_f32), and the compiled kernel clamps
with max and min instructions and has no scalar compare (GCC threaded the
jump between the two constant compares: two data-dependent branches per
scalar output, MobileNetV2's depthwise rows).

A fourth model, an LRN (GoogLeNet's: size 5, beta 0.75, two square roots
an output), checks that the C declares sqrtf const and that the compiled
code takes its square roots with vsqrtps and calls no sqrtf: with
-fmath-errno (the default) each call was a store to errno, and GCC left
every loop around one scalar (GoogLeNet's LRNs 15x slower than the LLVM
backend's).  On AVX2 it also needs the planes whose window lies inside
the channels lowered without the edge select (passes/lower_pool.c), which
GCC's AVX2 vectoriser leaves scalar.  Emitted with --threads, as the bench emits it.
"""
import os
import platform
import re
import subprocess
import sys
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from kiln_check import Checks, args, load  # noqa: E402

C = Checks()
check = C.check


def model():
    rng = np.random.default_rng(7)

    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="squeeze", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w3", "b3"], ["c3"], name="expand", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "r1"], ["s"], name="residual"),
        helper.make_node("Clip", ["s", "lo", "hi"], ["y"], name="relu6"),
    ]
    lo = numpy_helper.from_array(np.array(0, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(6, np.float32), "hi")
    g = helper.make_graph(nodes, "fire", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 27, 27])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 27, 27])],
                          [w("w1", [16, 64, 1, 1]), w("b1", [16]), w("w3", [16, 16, 3, 3]), w("b3", [16]), lo, hi])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def gemm_model():
    """1x1 (256 -> 128) then 3x3 (128 -> 64) on 13x13, each + Relu: the transposed-GEMM tiles."""
    rng = np.random.default_rng(8)

    def w(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.05).astype(np.float32), name)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="squeeze", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w3", "b3"], ["c3"], name="expand", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["y"], name="relu3"),
    ]
    g = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 13, 13])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 13, 13])],
                          [w("w1", [128, 256, 1, 1]), w("b1", [128]), w("w3", [64, 128, 3, 3]), w("b3", [64])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def dw_model():
    """Depthwise 3x3 (pad 1, 8 channels of 20 x 70: interior rows of 68 columns, 4 x 16 + 4) + Clip(0, 6)."""
    rng = np.random.default_rng(9)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="relu6"),
    ]
    inits = [numpy_helper.from_array((rng.standard_normal([8, 1, 3, 3]) * 0.5).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal([8]) * 0.5).astype(np.float32), "b"),
             numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    g = helper.make_graph(nodes, "dwclip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 20, 70])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 20, 70])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def lrn_model():
    """LRN across 64 channels of 10 x 24 (GoogLeNet's window, alpha, beta and bias)."""
    nodes = [helper.make_node("LRN", ["x"], ["y"], name="norm", size=5, alpha=1e-4, beta=0.75, bias=1.0)]
    g = helper.make_graph(nodes, "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 10, 24])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 10, 24])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def function_asm(obj, name):
    """The disassembly of function `name` in object file obj."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True).stdout
    # GCC may specialise it: name.constprop.0
    m = re.search(r"^[0-9a-f]+ <%s(?:\.[a-z]+\.\d+)*>:\n(.*?)(?:\n\n|\Z)" % re.escape(name), out, re.S | re.M)
    return m.group(1) if m else ""


def main(argv):
    a = args(argv, __doc__)
    if not a:
        return 2
    kiln, work = a
    zoo_run = load("zoo_run", "tests/models/test_zoo_run.py")
    cpuinfo = open("/proc/cpuinfo").read()
    x86_fma = platform.machine() == "x86_64" and " fma " in cpuinfo
    avx2 = x86_fma and " avx2 " in cpuinfo
    cc = os.environ.get("CC", "cc")
    # (model, its name, input shape, --vector-bytes, compiler target flags, checks FMAs / ISA)
    cases = [(model(), "fire", (1, 64, 27, 27), None, ["-march=native"], x86_fma),
             (model(), "fire", (1, 64, 27, 27), "32", ["-mavx2", "-mfma"], avx2),
             (gemm_model(), "gemm", (1, 256, 13, 13), None, ["-march=native"], x86_fma and " avx512f " in cpuinfo),
             (gemm_model(), "gemm", (1, 256, 13, 13), "32", ["-mavx2", "-mfma"], avx2),
             (dw_model(), "dwclip", (1, 8, 20, 70), None, ["-march=native"], x86_fma),
             (dw_model(), "dwclip", (1, 8, 20, 70), "32", ["-mavx2", "-mfma"], avx2),
             (lrn_model(), "lrn", (1, 64, 10, 24), None, ["-march=native"], x86_fma),
             (lrn_model(), "lrn", (1, 64, 10, 24), "32", ["-mavx2", "-mfma"], avx2)]
    for mdl, name, shape, vb, march, fma_checks in cases:
        label = f"{name}, vector bytes {vb or 'default'}, {' '.join(march)}"
        tmp = work / f"{name}_{vb or 'default'}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "run").mkdir(parents=True)
        path = tmp / f"{name}.onnx"
        path.write_bytes(mdl.SerializeToString())
        out = tmp / "c"
        # the LRN as the bench builds it (--threads: the parallel loop over
        # planes outlined; without it the planes and columns are one loop)
        extra = (["--vector-bytes", vb] if vb else []) + (["--threads"] if name == "lrn" else [])
        cmd = [kiln, "emit-c", str(path), "-o", str(out), "--name", "net"] + extra
        p = subprocess.run(cmd, capture_output=True, text=True)
        check(p.returncode == 0, f"{label}: emit-c ({p.stderr.strip()[-300:]})")
        src = (out / "net.c").read_text()
        if name == "fire":  # (the transposed GEMM's copy-out is a loop of its own)
            check(re.search(r"float lane0\[\d+\];", src) is not None, f"{label}: lane arrays declared")
            check(re.search(r"lane\d+\[\d+\] = t\d+;\n\s+KILN_LANE_LOOP\n\s+for \(int64_t (i\d+) = 0; \1 < \d+; \+\+\1\)",
                            src) is not None, f"{label}: lane loops")
        obj = tmp / "net.o"
        p = subprocess.run([cc, "-std=c99", "-O3", *march, "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c",
                            str(out / "net.c"), "-o", str(obj)], capture_output=True, text=True)
        check(p.returncode == 0, f"{label}: cc -std=c99 -Wall -Wextra -Wpedantic -Werror ({p.stderr.strip()[-300:]})")
        if name == "dwclip":
            check(re.search(r"const float kiln_lim0 = kiln_opaque_f32\((0x1\.8p\+2f|0x0p\+0f)\);", src) is not None and
                  "kiln_lim1" in src and
                  not [ln for ln in src.splitlines() if "x_y[" in ln and ("0x1.8p+2f" in ln or "0x0p+0f" in ln)],
                  f"{label}: the Clip's bounds read through kiln_opaque_f32 into kiln_lim locals")
        if name == "lrn":
            check("float sqrtf(float) __attribute__((const));" in src, f"{label}: sqrtf declared const")
        if name == "lrn" and fma_checks and p.returncode == 0:
            asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], capture_output=True,
                                 text=True).stdout
            calls = re.findall(r"call.*<sqrtf", asm)
            check(re.search(r"vsqrtps", asm) and not calls,
                  f"{label}: square roots in vsqrtps, no call to sqrtf ({len(calls)} calls)")
        elif name == "dwclip" and fma_checks and p.returncode == 0:
            asm = "\n".join(function_asm(obj, k) for k in sorted(set(re.findall(r"void (k0_dw\w*)\(", src))))
            compares = re.findall(r"v?u?comis[sd]", asm)
            check(re.search(r"vmax[sp]s", asm) and re.search(r"vmin[sp]s", asm) and not compares,
                  f"{label}: the clamp is max and min instructions, no compare-and-branch "
                  f"({len(compares)} scalar compares; GCC's threaded jumps left 2 per scalar output)")
        elif fma_checks and p.returncode == 0:
            kernels = sorted(set(re.findall(r"^static (?:KILN_KEEP_VECTORS )?void (k\d+_(?:squeeze|expand))\(", src, re.M)))
            check(len(kernels) == 2, f"{label}: two convolution kernels ({kernels})")
            for k in kernels:
                asm = function_asm(obj, k)
                packed = len(re.findall(r"vfmadd\d+ps", asm))
                scalar = len(re.findall(r"vfmadd\d+ss", asm))
                check(packed >= 8, f"{label}: {k}: {packed} packed FMAs (>= 8: its main tile vectorised; "
                                   f"{scalar} scalar ones, the tail)")
                if vb == "32":
                    check("zmm" not in asm, f"{label}: {k}: no zmm register (AVX2 code)")
                if name == "gemm":
                    # a full-vector memory operand: "vfmadd231ps 0x40(%rcx),%zmm1,%zmm2" (not a {1toN} broadcast)
                    folded = len(re.findall(r"vfmadd\d+ps\s+-?(?:0x[0-9a-f]+)?\(%\w+(?:,%\w+,\d)?\),", asm))
                    check("KILN_KEEP_VECTORS void " + k in src, f"{label}: {k} marked KILN_KEEP_VECTORS")
                    check(folded * 4 <= packed, f"{label}: {k}: {folded} of {packed} packed FMAs read a vector "
                                                f"from memory (<= 1/4: weight vectors stay in registers)")
        elif not fma_checks:
            print(f"skip: {label}: FMA instruction counts (not an x86-64 host with FMA/AVX2)")
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        outs, _, err = zoo_run.run_c(kiln, path, {"x": x}, tmp / "run", extra)
        y = next(iter(outs.values())) if outs and len(outs) == 1 else None
        check(err is None and y is not None and y.shape == ref.shape, f"{label}: the C program ran, one output ({err})")
        if y is not None and y.shape == ref.shape:
            rel = np.abs(y - ref).max() / np.abs(ref).max()
            check(rel <= 1e-5, f"{label}: outputs within 1e-5 of ORT (relative to the largest: {rel:.2g})")
    return C.exit()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
