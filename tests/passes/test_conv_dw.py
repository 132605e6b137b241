#!/usr/bin/env python3
"""Depthwise Conv (passes/lower_conv_dw.c) against float64 NumPy.

Usage:  python3 tests/passes/test_conv_dw.py [--backend llvm|c|cuda-host] KILN_BINARY WORK_DIR [case ...]

--backend cuda-host runs `kiln run --target cuda-host`: the GPU target's
depthwise schedule (passes/schedule_dw_gpu.c: shared input tile with its
halo, taps in registers, the epilogue at the store) through the CUDA
backend's host emulation, same cases and bound (the thread count is moot).

The depthwise schedule (group == C, any channel multiplier, 1-D/2-D)
splits rows and columns into borders emitted one by one (taps outside X
left out), an interior without bounds checks, and, for borders wider than
4, loops with a check per tap; planes are split into bands of rows when
N*M planes are few; short stride-1 rows with OW == W are one flat run
over the interior rows with masked column taps, in chunks of whole rows.  The cases land on each of those: stride 1 and 2,
dilation 2, asymmetric and large pads, 1x1, 3x3, 5x5 and 7x1 kernels,
widths 1, 7, 17 and 112 (not multiples of the vector width), channel
multiplier 1 and 3, N=2, no bias, f16 and f64, 1-D, a fused Clip(0, 6)
(MobileNetV2's ReLU6, bounds 0 and 0.5) and a fused residual Add, with 1 and 2 threads.
The reference is conv_def.h's definition in float64 NumPy (conv_ref of
test_conv_blocks.py, on the same inputs; f16 widened exactly).

TOLERANCE, per output element y with reference r (as test_conv_blocks.py):
  |y - r| <= n * u * S + u * |r|
n = taps summed, S = |b| + sum |w * x|, u the compute type's unit
roundoff (2^-24 f32, 2^-53 f64; f16 computes in f32 and adds its own
rounding, 2^-11 |r|): the worst-case bound for a floating-point sum of n
terms in any order (Higham 4.2) plus the final rounding.  Clip is
1-Lipschitz, so the bound holds through it; a fused Add of r2 rounds once
more: + u * |r + r2|.  A wrong index or a dropped tap is off by the size
of a term, far above the bound.

Prints "PASS name: ..." / "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


blocks = load("conv_blocks", "tests/passes/test_conv_blocks.py")
zoo_run = blocks.zoo_run


# ReLU6 is Clip(0, 6); these sums lie within about +-3, so the cases clip at
# 0.5 for both bounds to bind (the same fused Clip node, other constants).
CLIP_HI = 0.5


def dw(rng, x_shape, K, mult=1, strides=None, dils=None, pads=None, bias=True, dt=np.float32, relu6=False,
       residual=False, threads=None):
    """A depthwise case: blocks.case with group = C, then the epilogue nodes."""
    C = x_shape[1]
    m, x, ref, tol = blocks.case(rng, x_shape, C * mult, K, strides, dils, pads, group=C, bias=bias, dt=dt)
    g = m.graph
    inputs = {"x": x}
    last = "y"
    u = 2.0 ** -53 if dt == np.float64 else 2.0 ** -24
    if relu6:
        g.initializer.extend([numpy_helper.from_array(np.array(0, dt), "lo"),
                              numpy_helper.from_array(np.array(CLIP_HI, dt), "hi")])
        g.node.append(helper.make_node("Clip", [last, "lo", "hi"], ["y6"], name="relu6"))
        ref = np.clip(ref, 0, CLIP_HI)
        last = "y6"
    if residual:
        r = rng.uniform(-1, 1, ref.shape).astype(dt)
        g.input.append(helper.make_tensor_value_info("r", g.input[0].type.tensor_type.elem_type, list(ref.shape)))
        g.node.append(helper.make_node("Add", [last, "r"], ["ys"], name="residual"))
        ref = ref + r.astype(np.float64)
        tol = tol + u * np.abs(ref)
        inputs["r"] = r
        last = "ys"
    if last != "y":
        out = g.output[0]
        out.name = last
    return m, inputs, ref, tol, threads


def build_cases(rng):
    c = {}
    c["3x3_s1_p1_w112"] = dw(rng, (1, 3, 9, 112), [3, 3], pads=[1, 1, 1, 1])
    c["3x3_s2_p1_w112"] = dw(rng, (1, 4, 12, 112), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c["3x3_s1_w17_n2"] = dw(rng, (2, 5, 17, 17), [3, 3], pads=[1, 1, 1, 1])
    c["3x3_s2_w7"] = dw(rng, (1, 6, 7, 7), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c["3x3_w1"] = dw(rng, (1, 4, 5, 1), [3, 3], pads=[1, 1, 1, 1])
    c["3x3_1x1_plane"] = dw(rng, (2, 3, 1, 1), [3, 3], pads=[1, 1, 1, 1])
    c["3x3_dil2_asym"] = dw(rng, (1, 3, 13, 17), [3, 3], dils=[2, 2], pads=[2, 0, 1, 3])
    c["5x5_s1_p2"] = dw(rng, (1, 4, 14, 17), [5, 5], pads=[2, 2, 2, 2])
    c["5x5_s2_asym"] = dw(rng, (1, 3, 15, 16), [5, 5], strides=[2, 2], pads=[1, 2, 2, 1])
    c["1x1_nobias"] = dw(rng, (1, 5, 7, 17), [1, 1], bias=False)
    c["7x1_s2x1_pad"] = dw(rng, (1, 2, 20, 7), [7, 1], strides=[2, 1], pads=[3, 0, 3, 0])
    # borders wider than 4 outputs: loops with a check per tap
    c["3x3_bigpad"] = dw(rng, (1, 2, 6, 9), [3, 3], pads=[6, 5, 7, 6])
    c["mult3_3x3_s2"] = dw(rng, (2, 4, 11, 13), [3, 3], mult=3, strides=[2, 2], pads=[1, 1, 1, 1])
    c["1d_k5_asym"] = dw(rng, (2, 3, 40), [5], pads=[2, 1])
    c["1d_s2_dil2"] = dw(rng, (1, 4, 33), [3], strides=[2], dils=[2], pads=[1, 3])
    c["f16_3x3_s1"] = dw(rng, (1, 8, 10, 17), [3, 3], pads=[1, 1, 1, 1], dt=np.float16)
    c["f16_3x3_s2_relu6"] = dw(rng, (1, 8, 14, 14), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1], dt=np.float16,
                               relu6=True)
    c["f64_3x3"] = dw(rng, (1, 3, 9, 10), [3, 3], pads=[1, 1, 1, 1], dt=np.float64)
    # MobileNetV2-like: a fused ReLU6-style Clip
    c["relu6_3x3_s1_c32_w112"] = dw(rng, (1, 32, 112, 112), [3, 3], pads=[1, 1, 1, 1], relu6=True)
    c["relu6_3x3_s2_threads2"] = dw(rng, (1, 16, 56, 56), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1], relu6=True,
                                    threads=2)
    # few planes: rows split into bands (2 planes, 2 threads)
    c["bands_3x3_c2_threads2"] = dw(rng, (1, 2, 40, 70), [3, 3], pads=[1, 1, 1, 1], threads=2)
    # short rows, stride 1, OW == W: one flat run with column masks (w17 above, 1x1 and 5x5 too),
    # several chunks of whole rows, dilation, width 7, and with 2 threads
    c["flat_chunks_3x3_h70_w17"] = dw(rng, (1, 3, 70, 17), [3, 3], pads=[1, 1, 1, 1], relu6=True)
    c["flat_3x3_dil2_w20"] = dw(rng, (1, 4, 11, 20), [3, 3], dils=[2, 2], pads=[2, 2, 2, 2])
    c["flat_3x3_w7_c40_threads2"] = dw(rng, (2, 40, 7, 7), [3, 3], pads=[1, 1, 1, 1], relu6=True, threads=2)
    c["flat_5x3_asym_w9"] = dw(rng, (1, 3, 12, 9), [5, 3], pads=[2, 0, 2, 2])
    c["residual_3x3"] = dw(rng, (1, 6, 9, 17), [3, 3], pads=[1, 1, 1, 1], residual=True)
    # stride-2 rows of a vector of interior outputs or more (w112, relu6 above): interior
    # columns in groups of the target's lanes (16 with AVX-512, 8 with AVX2), the last group
    # overlapping; a fused residual Add and ReLU6, bands of rows (2 planes, 2 threads), a
    # channel multiplier, 5x5 with pad 2, 1-D, rows of whole groups, and border rows wider
    # than 4 (rows whose taps need a check keep the loop)
    c["lanes_s2_relu6_residual_w60"] = dw(rng, (1, 5, 9, 60), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                          relu6=True, residual=True)
    c["lanes_s2_bands_c2_threads2"] = dw(rng, (1, 2, 48, 70), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                         threads=2)
    c["lanes_s2_mult3_w40"] = dw(rng, (1, 3, 8, 40), [3, 3], mult=3, strides=[2, 2], pads=[1, 1, 1, 1])
    c["lanes_s2_5x5_p2_w50"] = dw(rng, (2, 3, 11, 50), [5, 5], strides=[2, 2], pads=[2, 2, 2, 2])
    c["lanes_1d_s2_w70"] = dw(rng, (2, 3, 70), [3], strides=[2], pads=[1, 1])
    c["lanes_s2_whole_groups_w66"] = dw(rng, (1, 4, 7, 66), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c["lanes_s2_bigpad_rows"] = dw(rng, (1, 2, 6, 40), [3, 3], strides=[2, 2], pads=[6, 1, 7, 1])
    # rows shorter than a vector: groups of half or a quarter of it (4 lanes at least):
    # MobileNetV2's 13 interior columns (8 lanes with AVX-512, overlapping) and 6 (4 lanes),
    # 4 (one group of 4), 8 with a 5x5 window, 1-D, and 3 (too short: the loop)
    c["lanes_narrow_s2_w28_relu6"] = dw(rng, (1, 6, 28, 28), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1], relu6=True)
    c["lanes_narrow_s2_w14_residual"] = dw(rng, (1, 5, 14, 14), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                           residual=True, threads=2)
    c["lanes_narrow_s2_w10"] = dw(rng, (2, 3, 10, 10), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c["lanes_narrow_s2_5x5_w20"] = dw(rng, (1, 3, 20, 20), [5, 5], strides=[2, 2], pads=[2, 2, 2, 2])
    c["lanes_narrow_1d_s2_w20"] = dw(rng, (2, 3, 20), [3], strides=[2], pads=[1, 1])
    c["lanes_narrow_s2_w8_loop"] = dw(rng, (1, 2, 8, 8), [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    return c


def run_threads(kiln, path, inputs, work, threads):
    """kiln run with --threads (zoo_run.run_kiln takes the default)."""
    out = Path(work) / "out"
    out.mkdir()
    args = [kiln, "run", str(path), "--threads", str(threads), "--output", str(out)]
    for name, a in inputs.items():
        np.save(Path(work) / f"{name}.npy", a)
        args += ["--input", f"{name}={Path(work) / f'{name}.npy'}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=zoo_run.KILN_TIMEOUT_S)
    if proc.returncode != 0:
        return None, None, f"kiln run exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}"
    return {p.stem: np.load(p) for p in out.glob("*.npy")}, None, None


def fused_tail(rng, nodes, vis, inputs, ref, tol, u, dt, et, relu, residual):
    """Appends a fused Relu and/or residual Add (of a new input "r") after
    the node writing "y"; returns the last output's name and the reference
    and tolerance through them (Relu is 1-Lipschitz; the Add rounds once
    more: + u * |r + r2|).  Shared with test_conv_transpose.py and
    test_conv_winograd.py."""
    last = "y"
    if relu:
        nodes.append(helper.make_node("Relu", [last], ["yr"], name="relu"))
        ref = np.maximum(ref, 0)
        last = "yr"
    if residual:
        r = rng.uniform(-1, 1, ref.shape).astype(dt)
        vis.append(helper.make_tensor_value_info("r", et, list(ref.shape)))
        nodes.append(helper.make_node("Add", [last, "r"], ["ys"], name="residual"))
        ref = ref + r.astype(np.float64)
        tol = tol + u * np.abs(ref)
        inputs["r"] = r
        last = "ys"
    return last, ref, tol


def run_cases(argv, cases, doc, check=None):
    """Runs every case of cases(rng) -- (model, inputs, ref, tol, threads,
    ...) -- on the backend argv asks for and compares the first output with
    ref within tol; check(kiln, path, case), when given, adds a condition
    of its own: (ok, what it says).  Shared with test_conv_transpose.py."""
    backend = "llvm"
    if len(argv) > 1 and argv[1] == "--backend":
        backend = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        sys.exit(doc)
    kiln, work = argv[1], Path(argv[2])
    only = set(argv[3:])
    work.mkdir(parents=True, exist_ok=True)
    passed = failed = 0
    for name, case in cases(np.random.default_rng(0)).items():
        m, inputs, ref, tol, threads = case[:5]
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(m, path)
            extra_ok, extra = check(kiln, path, case) if check else (True, "")
            if backend == "c":
                outs, _, err = zoo_run.run_c(kiln, path, inputs, tmp)
            elif backend == "cuda-host":
                outs, _, err = zoo_run.run_kiln(kiln, path, inputs, tmp, "cuda-host")
            elif threads:
                outs, _, err = run_threads(kiln, path, inputs, tmp, threads)
            else:
                outs, _, err = zoo_run.run_kiln(kiln, path, inputs, tmp)
        y = None if err else outs.get(m.graph.output[0].name, outs.get("output_0"))
        if err or y is None or y.size != ref.size:
            failed += 1
            print(f"FAIL {name}: {err or f'no output of {ref.size} values'}")
            continue
        d = np.abs(y.reshape(ref.shape).astype(np.float64) - ref)
        ok = bool(np.all(d <= tol)) and extra_ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: max |y - ref| {float(np.max(d)):.2e}, "
              f"{float(np.max(d / tol)):.3f} of the bound at worst{extra}")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv):
    return run_cases(argv, build_cases, __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
