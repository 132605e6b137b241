#!/usr/bin/env python3
"""MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool against float64
NumPy and ONNX Runtime.

Usage:  python3 tests/passes/test_pool_fast.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

Covers the fast form (passes/lower_pool_fast.c: static border/interior
regions, the window unrolled) and the generic one it falls back to
(Indices, long windows): 1-D/2-D/3-D, strides 1/2/3, pads (asymmetric),
dilations, ceil_mode, count_include_pad 0/1, odd sizes, N=2, float16 and
int8 MaxPool, NaN propagation, windows past the input (border outputs
with taps only in the padding), SqueezeNet's 3x3 stride-2 ceil_mode pool,
stride-1 windows over rows as wide as the input's, whose interior rows
run as one flat loop (borders, NaNs, asymmetric pads, f16, averages), and
strided rows shorter than a vector, computed at every input column into a
scratch row and picked every s-th (N=2, NaNs, stride 3, f16, averages), and
strided max pools done separably over small planes (ceil_mode partial
windows, pads, NaNs in border rows and columns, f16, int8), and stride-2
max rows in groups of the target's lanes (the last group overlapping;
NaNs and infinities, 2x2 windows, partial border rows, 1-D and 3-D).

Reference: a direct float64 loop over every output (its own window
arithmetic, written here; the output shape from ONNX's formula, checked
against kiln's).  TOLERANCES:
  MaxPool, GlobalMaxPool: exact (a max of the input values is one of them;
    NaN where the window holds a NaN).
  AveragePool, GlobalAveragePool (float32 sums, one division):
    |y - ref| <= (n + 1) * 2^-24 * A / count, A = sum of |x| over the
    window, n its taps: the bound on any float32 summation order (gamma_n)
    plus the division's rounding; for float16 outputs plus half an f16 ulp
    of the result (the one rounding to f16).
Every float32 case is also run through ONNX Runtime and must meet the same
bound against it (ORT's own error is of the same order; twice the bound is
allowed there since both sides err).

Prints one line per case, "PASS name: ..." or "FAIL name: ...", then
"N passed, M failed"; exit status 1 if any failed.
"""

import importlib.util
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
zoo_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_run)

DT = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.int8: TensorProto.INT8}


def out_size(n, K, s, d, pb, pe, ceil):
    span = n + pb + pe - ((K - 1) * d + 1)
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= n + pb:  # the last window must start inside the input or the left pad
        o -= 1
    return o


def pool_ref(x, op, K, s, d, pads, ceil, include_pad):
    """float64 pooling; returns (y, taps per output, sum |x| per output, divisor per output)."""
    sp = x.ndim - 2
    xin = x.shape[2:]
    out = [out_size(xin[i], K[i], s[i], d[i], pads[i], pads[sp + i], ceil) for i in range(sp)]
    N, C = x.shape[:2]
    y = np.zeros([N, C] + out)
    ntap = np.zeros(out)
    mag = np.zeros([N, C] + out)
    div = np.ones(out)
    for o in np.ndindex(*out):
        vals, cnt = [], 1
        ranges = []
        for i in range(sp):
            pos = [o[i] * s[i] - pads[i] + k * d[i] for k in range(K[i])]
            ranges.append([p for p in pos if 0 <= p < xin[i]])
            lo, hi = (-pads[i], xin[i] + pads[sp + i]) if include_pad else (0, xin[i])
            cnt *= sum(lo <= p < hi for p in pos)
        for p in np.ndindex(*[len(r) for r in ranges]):
            idx = tuple(ranges[i][p[i]] for i in range(sp))
            vals.append(x[(slice(None), slice(None)) + idx])
        ntap[o] = len(vals)
        div[o] = cnt
        sl = (slice(None), slice(None)) + o
        if not vals:
            y[sl] = -np.inf if op == "MaxPool" else np.nan
            continue
        v = np.stack(vals)
        if op == "MaxPool":
            y[sl] = np.max(v, axis=0)  # NaN propagates
        else:
            y[sl] = v.sum(axis=0) / cnt
            mag[sl] = np.abs(v).sum(axis=0)
    return y, ntap, mag, div


def make_model(op, x, attrs, opset=17):
    """One node; y's shape left to inference (ONNX's ignores ceil_mode's last-window rule)."""
    xt = DT[x.dtype.type]
    xi = helper.make_tensor_value_info("x", xt, list(x.shape))
    yi = helper.make_tensor_value_info("y", xt, None)
    node = helper.make_node(op, ["x"], ["y"], name="pool0", **attrs)
    g = helper.make_graph([node], "pool", [xi], [yi])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-test")
    m.ir_version = 8
    return m


def pool_case(rng, name, op, shape, K, s=None, d=None, pads=None, ceil=0, include_pad=0, dtype=np.float32,
              nan=False):
    sp = len(shape) - 2
    s, d, pads = s or [1] * sp, d or [1] * sp, pads or [0] * (2 * sp)
    if dtype == np.int8:
        x = rng.integers(-128, 128, shape).astype(np.int8)
    else:
        x = rng.uniform(-3, 3, shape).astype(dtype)
    if nan:  # True: 3 NaNs; a number: that many NaNs, and as many +inf and -inf
        k = 3 if nan is True else nan
        x.flat[rng.integers(0, x.size, k)] = np.nan
        if nan is not True:
            x.flat[rng.integers(0, x.size, k)] = np.inf
            x.flat[rng.integers(0, x.size, k)] = -np.inf
    y, ntap, mag, div = pool_ref(x.astype(np.float64), op, K, s, d, pads, ceil, include_pad)
    attrs = {"kernel_shape": K, "strides": s, "pads": pads, "ceil_mode": ceil}
    if any(v != 1 for v in d):
        attrs["dilations"] = d
    if op == "AveragePool":
        attrs["count_include_pad"] = include_pad
    # AveragePool's dilations are opset 19's
    return name, make_model(op, x, attrs, 19 if "dilations" in attrs else 17), x, y, ntap, mag, div


def global_case(rng, name, op, shape, dtype=np.float32):
    x = rng.uniform(-3, 3, shape).astype(dtype)
    xd = x.astype(np.float64)
    ax = tuple(range(2, x.ndim))
    S = int(np.prod(shape[2:]))
    if op == "GlobalMaxPool":
        y = xd.max(axis=ax, keepdims=True)
    else:
        y = xd.mean(axis=ax, keepdims=True)
    mag = np.abs(xd).sum(axis=ax, keepdims=True)
    one = np.ones(y.shape[2:])
    return name, make_model(op, x, {}), x, y, one * S, mag, one * S


def build_cases(rng):
    M, A = "MaxPool", "AveragePool"
    return [
        pool_case(rng, "max_squeezenet_3x3_s2_ceil", M, [1, 64, 111, 111], [3, 3], [2, 2], ceil=1),
        pool_case(rng, "max_3x3_s2_pad1_n2_odd", M, [2, 5, 17, 23], [3, 3], [2, 2], pads=[1, 1, 1, 1]),
        pool_case(rng, "max_2x2_s2_even", M, [1, 3, 16, 20], [2, 2], [2, 2]),
        pool_case(rng, "max_3x3_s1_pad1", M, [1, 4, 9, 10], [3, 3], [1, 1], pads=[1, 1, 1, 1]),
        # stride 1, rows as wide as the input's: the interior rows as one flat run (border
        # columns computed from wrapped taps, then stored over): GoogLeNet's branch pool, N=2;
        # NaNs (some in border columns); 5x5; asymmetric pads; one interior row; f16; averages
        pool_case(rng, "max_flat_googlenet_14x14_n2", M, [2, 16, 14, 14], [3, 3], [1, 1], pads=[1, 1, 1, 1]),
        pool_case(rng, "max_flat_nan", M, [1, 3, 13, 13], [3, 3], [1, 1], pads=[1, 1, 1, 1], nan=True),
        pool_case(rng, "max_flat_5x5_pad2", M, [1, 4, 11, 9], [5, 5], [1, 1], pads=[2, 2, 2, 2]),
        pool_case(rng, "max_flat_asym_pads", M, [1, 3, 11, 9], [3, 3], [1, 1], pads=[0, 2, 2, 0]),
        pool_case(rng, "max_flat_one_interior_row", M, [1, 2, 3, 20], [3, 3], [1, 1], pads=[1, 1, 1, 1]),
        pool_case(rng, "max_flat_f16", M, [1, 5, 12, 12], [3, 3], [1, 1], pads=[1, 1, 1, 1], dtype=np.float16),
        pool_case(rng, "avg_flat_incl_13x13", A, [1, 6, 13, 13], [3, 3], [1, 1], pads=[1, 1, 1, 1], include_pad=1),
        # strided rows shorter than a vector (13 outputs from 27 with AVX-512, 7 from 15 with
        # AVX2): each row computed at every input column, then every s-th picked; N=2 with an
        # odd plane count (the slots' last round partial), NaNs, stride 3 across, f16, averages
        pool_case(rng, "max_strided_rows_27_n2", M, [2, 5, 27, 27], [3, 3], [2, 2]),
        pool_case(rng, "max_strided_rows_15_nan", M, [1, 3, 15, 15], [3, 3], [2, 2], nan=True),
        pool_case(rng, "max_strided_rows_27_nan", M, [1, 3, 27, 27], [3, 3], [2, 2], nan=True),
        pool_case(rng, "max_strided_rows_s2x3", M, [1, 4, 20, 40], [3, 3], [2, 3]),
        pool_case(rng, "max_strided_rows_f16", M, [1, 3, 27, 27], [3, 3], [2, 2], dtype=np.float16),
        pool_case(rng, "avg_strided_rows_25x29", A, [1, 5, 25, 29], [3, 3], [2, 2]),
        # max pools strided across, on planes small enough for two in L1: separable (the
        # window's rows as one flat run over the plane, then along the rows, then picked;
        # border rows and columns with only their inside taps): GoogLeNet's ceil_mode pools
        # (partial last windows), ResNet's pad 1, asymmetric pads, pads past a whole window
        # row, a 4x3 window with strides 3x2, NaNs in the border rows and columns, f16,
        # int8, N=2 with an odd plane count, and a plane too big for the form (the body)
        pool_case(rng, "max_sep_googlenet_28_ceil", M, [1, 6, 28, 28], [3, 3], [2, 2], ceil=1),
        pool_case(rng, "max_sep_googlenet_56_ceil", M, [1, 3, 56, 56], [3, 3], [2, 2], ceil=1),
        pool_case(rng, "max_sep_pad1_n2_odd", M, [2, 3, 28, 28], [3, 3], [2, 2], pads=[1, 1, 1, 1]),
        pool_case(rng, "max_sep_asym_pads", M, [1, 3, 19, 17], [3, 3], [2, 2], pads=[2, 0, 1, 2]),
        pool_case(rng, "max_sep_4x3_s3x2_ceil", M, [1, 4, 22, 23], [4, 3], [3, 2], pads=[1, 1, 2, 0], ceil=1),
        pool_case(rng, "max_sep_nan_borders", M, [1, 4, 14, 14], [3, 3], [2, 2], pads=[1, 1, 1, 1], ceil=1,
                  nan=True),
        pool_case(rng, "max_sep_f16", M, [1, 5, 14, 15], [3, 3], [2, 2], pads=[1, 1, 1, 1], dtype=np.float16),
        pool_case(rng, "max_sep_int8", M, [1, 3, 13, 13], [3, 3], [2, 2], pads=[1, 1, 1, 1], dtype=np.int8),
        pool_case(rng, "max_sep_one_row", M, [1, 3, 3, 30], [3, 3], [2, 2]),
        pool_case(rng, "max_sep_plane_too_big", M, [1, 2, 70, 60], [3, 3], [2, 2], pads=[1, 1, 1, 1]),
        # max pools strided 2 along rows of one to two vectors of interior outputs, or with
        # border columns: the interior columns in groups of the target's lanes (16 with
        # AVX-512, 8 with AVX2), the last group overlapping the one before; border rows and
        # columns with only their inside taps.  GoogLeNet's 112 -> 56 ceil_mode pool, ResNet's
        # pad 1 with N=2, rows of 27 outputs with NaNs and infinities in the groups, 2x2
        # windows, asymmetric pads (partial border rows through the groups), strides 1x2,
        # 1-D and 3-D, f16 (widened to f32)
        pool_case(rng, "max_lanes_googlenet_112_ceil", M, [1, 4, 112, 112], [3, 3], [2, 2], ceil=1),
        pool_case(rng, "max_lanes_pad1_n2", M, [2, 3, 40, 50], [3, 3], [2, 2], pads=[1, 1, 1, 1]),
        pool_case(rng, "max_lanes_rows_27_nan_inf", M, [1, 3, 55, 55], [3, 3], [2, 2], ceil=1, nan=40),
        pool_case(rng, "max_lanes_pad1_nan_inf", M, [1, 2, 36, 66], [3, 3], [2, 2], pads=[1, 1, 1, 1], nan=30),
        pool_case(rng, "max_lanes_2x2_28", M, [1, 4, 28, 28], [2, 2], [2, 2]),
        pool_case(rng, "max_lanes_2x2_56", M, [1, 2, 56, 56], [2, 2], [2, 2]),
        pool_case(rng, "max_lanes_asym_pads", M, [1, 3, 33, 70], [3, 3], [2, 2], pads=[2, 1, 1, 2], ceil=1),
        pool_case(rng, "max_lanes_s1x2", M, [1, 3, 12, 60], [3, 3], [1, 2], pads=[1, 1, 1, 1]),
        pool_case(rng, "max_lanes_1d", M, [2, 3, 101], [3], [2], pads=[1, 1]),
        pool_case(rng, "max_lanes_3d", M, [1, 2, 5, 9, 40], [3, 3, 3], [2, 2, 2], pads=[1] * 6),
        pool_case(rng, "max_lanes_f16", M, [1, 3, 40, 50], [3, 3], [2, 2], pads=[1, 1, 1, 1], dtype=np.float16),
        # rows shorter than a vector, in groups of half or a quarter of it (4 lanes at
        # least): 1-D rows of 13 and 6 interior outputs, 3-D rows of 7 with NaNs and
        # infinities, a row of exactly 4; and GoogLeNet's 56 -> 28 ceil_mode rows (27
        # interior and a border column), whole groups where the separable form was taken
        pool_case(rng, "max_lanes_narrow_1d_13", M, [2, 5, 28], [3], [2], pads=[1, 1]),
        pool_case(rng, "max_lanes_narrow_1d_6_nan", M, [1, 7, 14], [3], [2], pads=[1, 1], nan=8),
        pool_case(rng, "max_lanes_narrow_3d_7_nan", M, [1, 3, 9, 11, 16], [3, 3, 3], [2, 2, 2], pads=[1] * 6, nan=30),
        pool_case(rng, "max_lanes_narrow_1d_4", M, [1, 3, 9], [3], [2]),
        pool_case(rng, "max_lanes_googlenet_56_ceil", M, [1, 6, 56, 56], [3, 3], [2, 2], ceil=1, nan=20),
        pool_case(rng, "max_3x3_s3_ceil_asym", M, [1, 3, 14, 17], [3, 3], [3, 3], pads=[0, 1, 2, 0], ceil=1),
        pool_case(rng, "max_dilated", M, [1, 2, 15, 13], [3, 2], [1, 2], d=[2, 3], pads=[2, 1, 2, 1]),
        pool_case(rng, "max_1d", M, [2, 3, 31], [4], [3], pads=[1, 2], ceil=1),
        pool_case(rng, "max_3d", M, [1, 3, 7, 9, 8], [3, 3, 3], [2, 2, 2], pads=[1] * 6),
        pool_case(rng, "max_f16", M, [1, 6, 21, 19], [3, 3], [2, 2], ceil=1, dtype=np.float16),
        pool_case(rng, "max_int8", M, [1, 4, 11, 12], [3, 3], [2, 2], pads=[1, 1, 1, 1], dtype=np.int8),
        pool_case(rng, "max_nan", M, [1, 2, 12, 12], [3, 3], [2, 2], pads=[1, 1, 1, 1], nan=True),
        pool_case(rng, "max_window_bigger_than_input", M, [1, 2, 3, 4], [5, 5], [1, 1], pads=[2, 2, 2, 2]),
        pool_case(rng, "max_long_window_generic", M, [1, 2, 20, 20], [9, 9], [1, 1]),
        pool_case(rng, "avg_3x3_s2_pad1_excl", A, [2, 5, 17, 23], [3, 3], [2, 2], pads=[1, 1, 1, 1]),
        pool_case(rng, "avg_3x3_s2_pad1_incl", A, [2, 5, 17, 23], [3, 3], [2, 2], pads=[1, 1, 1, 1], include_pad=1),
        pool_case(rng, "avg_2x2_s2_densenet", A, [1, 8, 56, 56], [2, 2], [2, 2]),
        pool_case(rng, "avg_3x3_s1_pad1_googlenet", A, [1, 8, 28, 28], [3, 3], [1, 1], pads=[1, 1, 1, 1]),
        pool_case(rng, "avg_ceil_incl_past_pad", A, [1, 3, 10, 11], [3, 3], [2, 2], pads=[1, 0, 0, 1], ceil=1,
                  include_pad=1),
        pool_case(rng, "avg_ceil_excl", A, [1, 3, 10, 11], [3, 3], [3, 3], pads=[1, 1, 1, 1], ceil=1),
        pool_case(rng, "avg_dilated_1d", A, [2, 3, 30], [3], [2], d=[2], pads=[2, 2]),
        pool_case(rng, "avg_3d_incl", A, [1, 2, 6, 7, 8], [2, 3, 3], [2, 1, 2], pads=[1, 1, 0, 0, 1, 1],
                  include_pad=1),
        pool_case(rng, "avg_f16", A, [1, 6, 21, 19], [3, 3], [2, 2], pads=[1, 1, 1, 1], dtype=np.float16),
        pool_case(rng, "avg_7x7_googlenet", A, [1, 16, 7, 7], [7, 7], [1, 1]),
        pool_case(rng, "avg_long_window_generic", A, [1, 2, 20, 20], [17, 17], [1, 1]),
        global_case(rng, "gap_resnet", "GlobalAveragePool", [1, 64, 7, 7]),
        global_case(rng, "gap_n2_odd", "GlobalAveragePool", [2, 5, 13, 11]),
        global_case(rng, "gap_long", "GlobalAveragePool", [1, 3, 40, 41]),
        global_case(rng, "gap_f16", "GlobalAveragePool", [1, 7, 9, 9], dtype=np.float16),
        global_case(rng, "gap_3d", "GlobalAveragePool", [1, 4, 3, 5, 6]),
        global_case(rng, "gmp", "GlobalMaxPool", [2, 6, 9, 10]),
    ]


def ulp16(a):
    a = np.maximum(np.abs(a), 2.0 ** -14)
    return 2.0 ** (np.floor(np.log2(a)) - 10)


def check(op, y, ref, ntap, mag, div, dtype, slack=1.0):
    """(ok, worst error / bound, max error)."""
    y = y.astype(np.float64)
    if "Max" in op:
        same = (y == ref) | (np.isnan(y) & np.isnan(ref))
        return bool(same.all()), 0.0 if same.all() else math.inf, float(np.nanmax(np.abs(y - ref), initial=0))
    if not np.array_equal(np.isnan(y), np.isnan(ref)):
        return False, math.inf, math.inf
    bound = (ntap + 1) * 2.0 ** -24 * mag / np.maximum(div, 1) * slack
    if dtype == np.float16:
        bound = bound + 0.5 * ulp16(np.abs(ref) + bound)
    bound = np.maximum(bound, 1e-300)
    ok = ~np.isnan(ref)
    err = np.abs(y - ref)[ok]
    worst = float(np.max(err / np.broadcast_to(bound, ref.shape)[ok], initial=0))
    return worst <= 1.0, worst, float(np.max(err, initial=0))


def main(argv):
    backend = "llvm"
    if len(argv) > 1 and argv[1] == "--backend":
        backend = argv[2]
        argv = [argv[0]] + argv[3:]
    if len(argv) < 3:
        print(__doc__)
        return 2
    kiln, work = argv[1], Path(argv[2])
    only = set(argv[3:])
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261201)
    passed = failed = 0
    for name, m, x, ref, ntap, mag, div in build_cases(rng):
        if only and name not in only:
            continue
        op = m.graph.node[0].op_type
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name}.onnx"
            path.write_bytes(m.SerializeToString())
            run = zoo_run.run_kiln if backend == "llvm" else zoo_run.run_c
            outs, _, err = run(kiln, path, {"x": x}, tmp)
            ort = zoo_run.run_ort(path, {"x": x})[0] if x.dtype == np.float32 else None
        if err:
            print(f"FAIL {name}: {err}")
            failed += 1
            continue
        y = outs["y"] if "y" in outs else outs.get("output_0")
        if y is None or y.dtype != x.dtype or y.shape != ref.shape:
            print(f"FAIL {name}: got {'nothing' if y is None else f'{y.dtype}{list(y.shape)}'}, "
                  f"want {x.dtype}{list(ref.shape)}")
            failed += 1
            continue
        ok, worst, amax = check(op, y, ref, ntap, mag, div, x.dtype.type)
        msg = f"max error {amax:.3g} = {worst:.2f} of the bound"
        if ort is not None and "Max" not in op:  # ORT vs kiln: both err, twice the bound
            yo = ort["y"]
            ok2, worst2, _ = check(op, y, yo.astype(np.float64), ntap, mag, div, x.dtype.type, slack=2.0)
            ok = ok and ok2
            msg += f"; vs ONNX Runtime {worst2:.2f} of twice the bound"
        elif ort is not None and not np.isnan(ref).any():
            yo = ort["y"]
            ok2 = np.array_equal(y, yo)
            ok = ok and ok2
            msg += f"; vs ONNX Runtime {'equal' if ok2 else 'DIFFERENT'}"
        print(f"{'PASS' if ok else 'FAIL'} {name}: {msg}")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
