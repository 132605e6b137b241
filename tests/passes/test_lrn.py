#!/usr/bin/env python3
"""LRN against float64 NumPy and ONNX Runtime.

Usage:  python3 tests/passes/test_lrn.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

passes/lower_pool.c lowers LRN with the channel window's edge neighbours
read at a clamped channel and selected away (no IF: the loop vectorises
and the vectoriser's overlap check passes) in the planes whose window
reaches past the channels, the others without clamp or select, and builds b^beta from square
roots when beta is a whole number of quarters (0.25 ... 4: AlexNet and
GoogLeNet use 0.75), pow otherwise.  Cases: AlexNet's and GoogLeNet's
shapes, beta 0.25/0.5/0.75/1/1.25/2 and two that take pow (0.3, 0),
sizes 1, 4 (even: the window reaches one channel before, two after) and 7
with fewer channels than the window, N=2, large inputs (bases of ~1e6),
an infinity and a NaN in an edge channel (they reach exactly the
channels whose window holds them), float16 and 1-D / 3-D spatial shapes.

Reference: float64 y = x / (bias + alpha/size * sum_{window} x^2)^beta,
its own window arithmetic.  TOLERANCE, relative to |ref|, with u = 2^-24:
  the float32 sum of `size` nonnegative squares errs by at most
  (size + 1) u, the base by (size + 3) u; raising it to beta scales that
  by beta and adds the power's own rounding (2 u for the square-root
  form: sqrt is correctly rounded, sqrt(sqrt) within 0.75 u, one product;
  libm's powf within 1 u); the division 1 u more:
    |y - ref| <= (beta * (size + 3) + 4) * u * |ref|  (+ 1e-37 absolute),
  for float16 outputs plus half an f16 ulp of the result.  Non-finite
  references must match exactly (inf, NaN, 0 where x is finite and the
  base is inf).  Every float32 case is also run through ONNX Runtime
  against twice the bound (both sides err), except beta = 0, size 4 and
the 1-D and 3-D cases, which ONNX Runtime refuses, and the large and
non-finite inputs, where its running window sum errs (see build_cases).

Prints one line per case, "PASS name: ..." or "FAIL name: ...", then
"N passed, M failed"; exit status 1 if any failed.
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
zoo_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_run)

DT = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}


def make_model(x, size, alpha, beta, bias):
    xt = DT[x.dtype.type]
    xi = helper.make_tensor_value_info("x", xt, list(x.shape))
    yi = helper.make_tensor_value_info("y", xt, list(x.shape))
    node = helper.make_node("LRN", ["x"], ["y"], name="lrn0", size=size, alpha=alpha, beta=beta, bias=bias)
    g = helper.make_graph([node], "lrn", [xi], [yi])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="kiln-test")
    m.ir_version = 8
    return m


def lrn_ref(x, size, alpha, beta, bias):
    x = x.astype(np.float64)
    C = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.zeros_like(x)
    with np.errstate(invalid="ignore", over="ignore"):
        for c in range(C):
            for cc in range(max(0, c - lo), min(C - 1, c + hi) + 1):
                sq[:, c] += x[:, cc] * x[:, cc]
        base = bias + alpha / size * sq
        return x / base ** beta


def build_cases(rng):
    cases = []

    def case(name, shape, size=5, alpha=1e-4, beta=0.75, bias=1.0, scale=1.0, dtype=np.float32, poison=None,
             ort=True):
        x = (rng.standard_normal(shape) * scale).astype(np.float32)
        if poison:
            for idx, v in poison:
                x[idx] = v
        x = x.astype(dtype)
        # (ONNX Runtime refuses beta <= 0, even sizes and ranks other than 4,
        # which ONNX allows)
        ort = ort and dtype == np.float32 and beta > 0 and size % 2 == 1 and x.ndim == 4
        cases.append((name, x, size, alpha, beta, bias, ort))

    case("alexnet_norm1", (1, 96, 13, 17), scale=10)
    case("googlenet_norm2", (1, 192, 14, 14), scale=30)
    for beta in (0.25, 0.5, 1.0, 1.25, 2.0):
        case(f"beta_{beta}", (1, 12, 5, 9), alpha=0.5, beta=beta, bias=2.0)
    case("beta_0.3_pow", (1, 12, 5, 9), alpha=0.5, beta=0.3, bias=2.0)
    case("beta_0_pow", (1, 6, 3, 5), beta=0.0)
    case("size_1", (1, 7, 4, 6), size=1, alpha=0.3)
    case("size_4_even", (1, 9, 4, 6), size=4, alpha=0.3)
    case("size_7_three_channels", (1, 3, 5, 5), size=7, alpha=0.3)
    case("batch_2", (2, 10, 6, 7), alpha=0.2)
    # ONNX Runtime's window is a running sum (add the channel entering,
    # subtract the one leaving): with bases of 1e6 it cancels to 7.6e-6
    # relative error against float64, 30x kiln's bound, and an infinity
    # leaving the window leaves inf - inf = NaN in every later channel.
    # These cases check kiln against float64 only.
    case("large_bases", (1, 16, 8, 8), alpha=1.0, scale=1e3, ort=False)
    case("inf_edge_channel", (1, 8, 4, 5), poison=[((0, 0, 1, 2), np.inf), ((0, 7, 3, 4), -np.inf)], ort=False)
    case("nan_edge_channel", (1, 8, 4, 5), poison=[((0, 0, 2, 2), np.nan), ((0, 7, 0, 0), np.nan)], ort=False)
    case("f16", (1, 16, 6, 7), alpha=0.1, dtype=np.float16)
    case("rank3_1d", (2, 11, 37), alpha=0.2)
    case("rank5_3d", (1, 6, 3, 4, 5), alpha=0.2)
    return cases


def check(y, ref, size, beta, dtype, slack=1.0):
    """(ok, worst fraction of the bound, max abs error) over the finite references."""
    y = y.astype(np.float64)
    fin = np.isfinite(ref)
    same_nonfinite = np.array_equal(np.isnan(y[~fin]), np.isnan(ref[~fin])) and np.array_equal(
        y[~fin][~np.isnan(ref[~fin])], ref[~fin][~np.isnan(ref[~fin])])
    bound = (beta * (size + 3) + 4) * 2.0 ** -24 * np.abs(ref[fin]) + 1e-37
    if dtype == np.float16:
        ulp = np.spacing(np.abs(ref[fin]).astype(np.float16)).astype(np.float64)
        bound = bound + 0.5 * ulp
    bound = bound * slack
    err = np.abs(y[fin] - ref[fin])
    worst = float(np.max(err / bound)) if err.size else 0.0
    amax = float(np.max(err)) if err.size else 0.0
    return bool(same_nonfinite and worst <= 1.0), worst, amax


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
    rng = np.random.default_rng(20261203)
    passed = failed = 0
    for name, x, size, alpha, beta, bias, with_ort in build_cases(rng):
        if only and name not in only:
            continue
        m = make_model(x, size, alpha, beta, bias)
        ref = lrn_ref(x, size, alpha, beta, bias)
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name}.onnx"
            path.write_bytes(m.SerializeToString())
            run = zoo_run.run_kiln if backend == "llvm" else zoo_run.run_c
            outs, _, err = run(kiln, path, {"x": x}, tmp)
            ort = zoo_run.run_ort(path, {"x": x})[0] if with_ort else None
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
        ok, worst, amax = check(y, ref, size, beta, x.dtype.type)
        msg = f"max error {amax:.3g} = {worst:.2f} of the bound"
        if ort is not None:
            ok2, worst2, _ = check(y, ort["y"].astype(np.float64), size, beta, x.dtype.type, slack=2.0)
            ok = ok and ok2
            msg += f"; vs ONNX Runtime {worst2:.2f} of twice the bound"
        print(f"{'PASS' if ok else 'FAIL'} {name}: {msg}")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
