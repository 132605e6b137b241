#!/usr/bin/env python3
"""Register-blocked Conv (passes/lower_conv.c, "the register path") against float64 NumPy.

Usage:  python3 tests/passes/test_conv_blocks.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

The register path computes tiles of MB output channels by VL virtual
positions (6 x 64 f32 with 64-byte vectors, or 8 x 48 when 8 divides the
channels per group and 6 does not; 6 x 16 with 32-byte ones: run this under
KILN_CPU=znver3 for the AVX2 shape), with a shorter block where the
channels of a group are not a multiple of MB, a shorter tile where the
positions are not a multiple of VL, and supertiles of positions when a
block's input rows outgrow half the L2.  Every case is a one-node ONNX Conv
summing at least 32 products per output (RB_MIN_TERMS: fewer take the
older in-Yv path) whose sizes land on those tails: 1-D, 2-D and 3-D, groups, strides,
dilations, asymmetric pads, 1x1 read in place, bias or none, f32, f64 and
f16.  The reference is the definition (passes/conv_def.h) evaluated in
float64 NumPy on the same inputs (f16 weights and inputs widened exactly).

TOLERANCE, per output element y with reference r:
  |y - r| <= n * u * S + u * |r|
where n = C/group * taps is the number of products summed, S = |b| + sum
|w * x| over them, and u the unit roundoff of the compute type (2^-24 f32,
2^-53 f64; f16 outputs compute in f32 and add one f16 rounding, 2^-11 |r|).
That is the classical worst-case bound for a floating-point sum of n terms
in any order (Higham, "Accuracy and Stability", 4.2: |error| <= gamma_n *
sum |terms|, gamma_n ~ n*u), plus the final rounding: any summation order
satisfies it, a wrong index or a dropped tap does not (its error is of the
size of the terms themselves).

KILN_CONV_BANDS=H in the environment forces the register path's bands of
H output rows of dim 0 (emit_banded: each slot packs a band of the phase
planes and copies its sums out block by block; "Hs": the bands' sums over
the whole packed input) wherever they apply (2-D and 3-D convolutions that
pack X): every case then runs through them, with bands ending short and
slots ending idle, and each such case is checked to name that schedule
(`kiln inspect --verbose`).

Prints "PASS name: ..." or "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
zoo_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_run)

ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16}


def out_size(n, k, s, d, pb, pe):
    return (n + pb + pe - d * (k - 1) - 1) // s + 1


def conv_ref(x, w, b, strides, dils, pads, group):
    """Y = B + sum X * W (conv_def.h) in float64; also S = |B| + sum |X * W|."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    sp = x.ndim - 2
    N, C = x.shape[:2]
    M, Cg = w.shape[:2]
    K = w.shape[2:]
    pb, pe = pads[:sp], pads[sp:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pb[i], pe[i]) for i in range(sp)])
    out = [out_size(x.shape[2 + i], K[i], strides[i], dils[i], pb[i], pe[i]) for i in range(sp)]
    Mg = M // group
    y = np.zeros((N, M, *out))
    s = np.zeros((N, M, *out))
    for tap in np.ndindex(*K):
        sl = tuple(slice(tap[i] * dils[i], tap[i] * dils[i] + (out[i] - 1) * strides[i] + 1, strides[i])
                   for i in range(sp))
        for g in range(group):
            xs = xp[(slice(None), slice(g * Cg, (g + 1) * Cg)) + sl]       # N, Cg, out...
            ws = w[(slice(g * Mg, (g + 1) * Mg), slice(None)) + tap]       # Mg, Cg
            y[:, g * Mg:(g + 1) * Mg] += np.einsum("nc...,mc->nm...", xs, ws)
            s[:, g * Mg:(g + 1) * Mg] += np.einsum("nc...,mc->nm...", np.abs(xs), np.abs(ws))
    if b is not None:
        shape = (1, M) + (1,) * sp
        y += b.astype(np.float64).reshape(shape)
        s += np.abs(b.astype(np.float64)).reshape(shape)
    return y, s, Cg * int(np.prod(K))


def case(rng, x_shape, M, K, strides=None, dils=None, pads=None, group=1, bias=True, dt=np.float32):
    sp = len(K)
    strides, dils = strides or [1] * sp, dils or [1] * sp
    pads = pads or [0] * (2 * sp)
    C = x_shape[1]
    x = rng.uniform(-1, 1, x_shape).astype(dt)
    w = rng.uniform(-1, 1, (M, C // group, *K)).astype(dt)
    b = rng.uniform(-1, 1, (M,)).astype(dt) if bias else None
    ref, s, n = conv_ref(x, w, b, strides, dils, pads, group)
    t = ONNX_TYPE[dt]
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], name="conv", kernel_shape=list(K),
                            strides=strides, dilations=dils, pads=pads, group=group)
    g = helper.make_graph([node], "conv_blocks", [helper.make_tensor_value_info("x", t, list(x_shape))],
                          [helper.make_tensor_value_info("y", t, list(ref.shape))], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln-test")
    m.ir_version = 8
    u = 2.0 ** -53 if dt == np.float64 else 2.0 ** -24
    out_u = 2.0 ** -11 if dt == np.float16 else u
    return m, x, ref, n * u * s + out_u * np.abs(ref)


def build_cases(rng):
    c = {}
    # 2-D 3x3 pad 1: 13 channels = two blocks of 6 and one of 1; 11*9 positions
    c["3x3_pad1_m13"] = case(rng, (1, 5, 11, 9), 13, [3, 3], pads=[1, 1, 1, 1])
    # ResNet-like 3x3 at 28x28 with 64 input channels: many tiles, tap loop, channel loop
    c["3x3_pad1_c64_28"] = case(rng, (1, 64, 28, 28), 8, [3, 3], pads=[1, 1, 1, 1])
    c["3x3_stride2_m7"] = case(rng, (1, 8, 15, 17), 7, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    # 1x1 unpadded stride 1: X read in place, Y written directly; 90 positions (a short tile)
    c["1x1_direct_m20"] = case(rng, (1, 40, 9, 10), 20, [1, 1])
    c["1x1_direct_nobias_batch2"] = case(rng, (2, 36, 7, 7), 6, [1, 1], bias=False)
    # 1x1 stride 2: one phase of the input
    c["1x1_stride2"] = case(rng, (1, 33, 13, 13), 6, [1, 1], strides=[2, 2])
    # a block's 256 input rows of 1600 positions (1.6 MB) outgrow half an L2: X streamed, one tile
    # a supertile, each tile's blocks prefetching the next tile's rows
    c["1x1_c256_supertiles"] = case(rng, (1, 256, 40, 40), 7, [1, 1])
    # 1x1 reducing 64 channels to 16 at 56x56: X outweighs W, so the threads
    # split the positions (one supertile a core), not the output channels
    c["1x1_direct_reduce_c64_56"] = case(rng, (1, 64, 56, 56), 16, [1, 1])
    # the same with 1640 positions: each of the 4 blocks' tail of 40 positions in the supertile
    # (one tile each) bi * nst / nbg, spread over them
    c["1x1_c256_supertiles_tails"] = case(rng, (1, 256, 40, 41), 20, [1, 1])
    # groups (7 channels each: a block of 6 and one of 1 per group), dilation 2
    c["3x3_group2_dil2"] = case(rng, (1, 8, 12, 12), 14, [3, 3], dils=[2, 2], pads=[2, 2, 2, 2], group=2)
    # 16 channels per group: blocks of 8 rows by 3 vectors (32 vector registers)
    c["3x3_group2_m32_mb8"] = case(rng, (1, 8, 13, 12), 32, [3, 3], pads=[1, 1, 1, 1], group=2)
    c["3x3_group4_stride2_asym"] = case(rng, (2, 16, 10, 11), 12, [3, 3], strides=[2, 1], pads=[0, 1, 2, 1], group=4)
    # stem-like 7x7 stride 2 pad 3 from 3 channels
    c["7x7_stride2_stem"] = case(rng, (1, 3, 32, 32), 8, [7, 7], strides=[2, 2], pads=[3, 3, 3, 3])
    # 5x5 (GoogLeNet's): rows of taps looped, each row's five unrolled (WINDOW_ROWS below)
    c["5x5_pad2_c16"] = case(rng, (1, 16, 14, 14), 12, [5, 5], pads=[2, 2, 2, 2])
    # 1-D (Y written directly), asymmetric pads; 3-D
    c["1d_k5_asym"] = case(rng, (1, 7, 100), 10, [5], pads=[2, 1])
    c["1d_stride3_dil2"] = case(rng, (1, 11, 70), 5, [3], strides=[3], dils=[2], pads=[1, 3])
    c["3d_3x3x3_pad1"] = case(rng, (1, 2, 6, 7, 8), 7, [3, 3, 3], pads=[1, 1, 1, 1, 1, 1])
    # other compute types: f64 sums in f64, f16 in an f32 scratch
    c["f64_3x3_m9"] = case(rng, (1, 4, 10, 10), 9, [3, 3], pads=[1, 1, 1, 1], dt=np.float64)
    c["f16_3x3_m7"] = case(rng, (1, 6, 9, 9), 7, [3, 3], pads=[1, 1, 1, 1], dt=np.float16)
    return c


# Windows of more than 9 taps: the register tile loops over the window's rows
# and unrolls each row's taps at constant offsets; one loop over all taps
# computed each tap's row and column with a division and remainder by the
# window's width (passes/lower_conv.c, emit_rtile).
WINDOW_ROWS = {"7x7_stride2_stem": 7, "5x5_pad2_c16": 5}


# The schedule names the split by positions (passes/lower_conv.c,
# emit_reg_blocks) on the fixed C target's 8 cores, or must not.
SPLIT_POSITIONS = {"1x1_direct_reduce_c64_56": True, "1x1_c256_supertiles": True, "1x1_direct_m20": False,
                   "3x3_pad1_c64_28": True}
# X streamed (emit_reg_blocks): where X outgrows half the fixed target's L2
# (2 MiB, ir/target.c), and not below; streamed kernels prefetch.
STREAMED = {"1x1_c256_supertiles": True, "1x1_c256_supertiles_tails": True, "1x1_direct_reduce_c64_56": False,
            "3x3_pad1_c64_28": False}
# 1x1 tiles with 12 input channels or more prefetch their rows 6 channels ahead into the L1
# (`prefetch.l1`, emit_reg_blocks); windows with taps do not.
NEAR_PREFETCH = {"1x1_c256_supertiles": True, "1x1_direct_reduce_c64_56": True, "1x1_stride2": True,
                 "3x3_pad1_c64_28": False, "7x7_stride2_stem": False}


def schedule_line(kiln, path, which=0):
    proc = subprocess.run([kiln, "inspect", str(path), "--verbose"], capture_output=True, text=True, timeout=300)
    lines = [ln.strip() for ln in proc.stdout.splitlines() if "Conv" in ln and "[" in ln]
    return lines[which] if len(lines) > which else ""


def depthwise_consumer_check(kiln, work):
    """A 1x1 whose output a depthwise convolution reads keeps the channel
    split (the depthwise kernel reads back the channels each core wrote)."""
    rng = np.random.default_rng(1)
    w1 = numpy_helper.from_array(rng.uniform(-1, 1, (16, 64, 1, 1)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.uniform(-1, 1, (16, 1, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="reduce", kernel_shape=[1, 1]),
             helper.make_node("Conv", ["h", "w2"], ["y"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=16)]
    g = helper.make_graph(nodes, "reduce_dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 56, 56])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 56, 56])],
                          initializer=[w1, w2])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln-test")
    m.ir_version = 8
    path = Path(work) / "reduce_dw.onnx"
    onnx.save(m, path)
    line = schedule_line(kiln, path)
    if "register tiles" not in line:
        return "no register-path schedule for the 1x1: " + line
    return "the 1x1 feeding a depthwise conv splits positions: " + line if "split positions" in line else None


def window_check(kiln, name, path):
    """The cases in WINDOW_ROWS: no tap index is divided by the window's
    width; those in SPLIT_POSITIONS: the schedule names the split or not;
    those in STREAMED: X streamed (and prefetched) or not; those in
    NEAR_PREFETCH: 1x1 rows prefetched into the L1 or not."""
    if name in SPLIT_POSITIONS:
        line = schedule_line(kiln, path)
        if ("split positions" in line) != SPLIT_POSITIONS[name]:
            return f"expected {'a' if SPLIT_POSITIONS[name] else 'no'} split by positions: {line}"
    if name in STREAMED:
        line = schedule_line(kiln, path)
        if ("X streamed" in line) != STREAMED[name]:
            return f"expected X {'' if STREAMED[name] else 'not '}streamed: {line}"
        dump = subprocess.run([kiln, "inspect", "--loops", str(path)], capture_output=True, text=True, timeout=300).stdout
        if ("prefetch %" in dump) != STREAMED[name]:
            return f"expected {'a' if STREAMED[name] else 'no'} prefetch of the next tile in the loop IR"
    if name in NEAR_PREFETCH:
        dump = subprocess.run([kiln, "inspect", "--loops", str(path)], capture_output=True, text=True, timeout=300).stdout
        if ("prefetch.l1 %" in dump) != NEAR_PREFETCH[name]:
            return f"expected {'a' if NEAR_PREFETCH[name] else 'no'} near prefetch in the loop IR"
    if name not in WINDOW_ROWS:
        return None
    dump = subprocess.run([kiln, "inspect", "--loops", str(path)], capture_output=True, text=True, timeout=300).stdout
    if "fma(" not in dump and " + (" not in dump:
        return "no loop IR dump"
    k = WINDOW_ROWS[name]
    bad = [ln.strip() for ln in dump.splitlines() if f" % {k})" in ln or f" / {k})" in ln]
    return f"a tap loop divides by the window width {k}: {bad[0][:120]}" if bad else None


def banded_check(kiln, name, path):
    """With KILN_CONV_BANDS set: the cases on the register path that pack X
    (2-D, 3-D, not a 1x1 read in place) name the banded schedule; those on
    the fixed C target's other schedules (im2col: the 3-D case) are left."""
    must = not (name.startswith("1d_") or "direct" in name or "supertiles" in name)
    proc = subprocess.run([kiln, "inspect", str(path), "--verbose"], capture_output=True, text=True, timeout=300)
    line = next((ln.strip() for ln in proc.stdout.splitlines() if "Conv" in ln and "[" in ln), "")
    if not line:
        return "no schedule in `kiln inspect --verbose`: " + proc.stderr.strip()[-300:]
    if must and "direct, register tiles" in line and "in bands of" not in line:
        return "KILN_CONV_BANDS is set but the schedule is not banded: " + line
    if not must and "in bands of" in line:
        return "banded where X is read in place or 1-D: " + line
    return None


def main(argv, cases=None, check=None):
    """Runs cases(rng) -> {name: (model, x or {input: array}, ref, tol)} (default: build_cases);
    check(kiln, name, model_path), when given, returns an error string or None."""
    backend = "llvm"
    if len(argv) > 1 and argv[1] == "--backend":
        backend = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        sys.exit(__doc__)
    kiln, work = argv[1], Path(argv[2])
    if check is None:
        check = banded_check if os.environ.get("KILN_CONV_BANDS") else window_check
    only = set(argv[3:])
    work.mkdir(parents=True, exist_ok=True)
    passed = failed = 0
    for name, (m, x, ref, tol) in (cases or build_cases)(np.random.default_rng(0)).items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(m, path)
            run = zoo_run.run_kiln if backend == "llvm" else zoo_run.run_c
            outs, _, err = run(kiln, path, x if isinstance(x, dict) else {"x": x}, tmp)
            if check and not err:
                err = check(kiln, name, path)
        y = None if err else outs.get("y", outs.get("output_0"))
        if err or y is None or y.size != ref.size:
            failed += 1
            print(f"FAIL {name}: {err or f'no output of {ref.size} values'}")
            continue
        d = np.abs(y.reshape(ref.shape).astype(np.float64) - ref)
        worst = float(np.max(d / tol))
        ok = bool(np.all(d <= tol))
        print(f"{'PASS' if ok else 'FAIL'} {name}: max |y - ref| {float(np.max(d)):.2e}, "
              f"{worst:.3f} of the bound at worst")
        passed += ok
        failed += not ok
    if check is window_check and not only:
        err = depthwise_consumer_check(kiln, work)
        print(f"{'FAIL' if err else 'PASS'} 1x1_then_depthwise: {err or 'channel split kept'}")
        passed += not err
        failed += bool(err)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
