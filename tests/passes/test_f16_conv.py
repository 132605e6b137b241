#!/usr/bin/env python3
"""float16 Conv / ConvTranspose / Gemm / MatMul against float64 NumPy.

Usage:  python3 tests/passes/test_f16_conv.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

kiln computes an f16 convolution or matrix product in float32: by default
the f16 input is widened once (passes/widen_f16.c: a Cast at the graph
input) and the conv runs as an f32 one on f32 weights converted at compile
time; with --keep-f16 (every case runs both ways, "NAME/keep-f16") the
input is packed into an f32 scratch inside the kernel and the weights and
bias read from f32 copies (passes/lower.c, kiln_lower_weight_ct).  Either
way the products are summed in f32 and rounded to f16 once, at the final
store.  Each case is a
one-node ONNX model with an f16 input, f16 initializers (weights, bias) and
an f16 output, covering the conv fast path's forms (1x1 read in place for
f32, 3x3 padded, strided, 7x7 stride 2, depthwise, grouped, 1-D, 3-D),
ConvTranspose, Gemm (transB, bias) and MatMul with a weight operand.

The reference is the same computation in float64 NumPy on the same f16
values.  TOLERANCE, per element, with ref the float64 result, n the number
of products in its sum and A = sum |x*w| + |bias| (computed in float64):
  |y - ref| <= 0.5 * ulp16(|ref| + e) + e,   e = n * 2^-24 * A
e bounds the error of any float32 summation order (recursive summation:
gamma_n ~ n * u, u = 2^-24, relative to the sum of magnitudes); the half
ulp is the one rounding to f16.  So the bound holds exactly when y is an
f32 accumulation rounded once, and fails for an f16 accumulation (each of
the n additions would round to 11 bits, errors of ~2^-11 relative) or a
double rounding through a narrower type.  ulp16 is the spacing of float16
at that magnitude (2^-24 in the subnormal range).

Prints one line per case, "PASS name: ..." or "FAIL name: ...", then
"N passed, M failed"; exit status 1 if any failed.
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]

spec = importlib.util.spec_from_file_location("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
zoo_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_run)

F16 = TensorProto.FLOAT16


def ulp16(a):
    """Spacing of float16 numbers at magnitude a (array)."""
    a = np.maximum(np.abs(a), 2.0 ** -14)
    return 2.0 ** (np.floor(np.log2(a)) - 10)


def make_model(op, x_shape, y_shape, inits, attrs, extra=()):
    x = helper.make_tensor_value_info("x", F16, list(x_shape))
    y = helper.make_tensor_value_info("y", F16, list(y_shape))
    names = ["x"] + [n for n, _ in inits] + list(extra)
    node = helper.make_node(op, names, ["y"], name="n0", **attrs)
    g = helper.make_graph([node], "f16", [x], [y],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln-test")
    m.ir_version = 8
    return m


def conv_ref(x, w, b, strides, pads, dilations, group):
    """float64 direct convolution, N x C x spatial; returns (y, n terms, sum of magnitudes)."""
    sp = x.ndim - 2
    N, C = x.shape[:2]
    M = w.shape[0]
    K = w.shape[2:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[sp + i]) for i in range(sp)])
    out = [(xp.shape[2 + i] - dilations[i] * (K[i] - 1) - 1) // strides[i] + 1 for i in range(sp)]
    y = np.zeros([N, M] + out)
    mag = np.zeros_like(y)
    Cg, Mg = C // group, M // group
    for m in range(M):
        g = m // Mg
        for k in np.ndindex(*K):
            sl = tuple(slice(k[i] * dilations[i], k[i] * dilations[i] + strides[i] * (out[i] - 1) + 1, strides[i])
                       for i in range(sp))
            xs = xp[(slice(None), slice(g * Cg, (g + 1) * Cg)) + sl]
            wk = w[(m, slice(None)) + tuple(k)].reshape([1, Cg] + [1] * sp)
            y[:, m] += (xs * wk).sum(axis=1)
            mag[:, m] += np.abs(xs * wk).sum(axis=1)
    y += b.reshape([1, M] + [1] * sp)
    mag += np.abs(b).reshape([1, M] + [1] * sp)
    return y, Cg * int(np.prod(K)) + 1, mag


def convt_ref(x, w, b, strides, pads, group):
    """float64 ConvTranspose (dilation 1, no output_padding), 2-D."""
    N, C, H, W = x.shape
    Mg, KH, KW = w.shape[1:]
    M = Mg * group
    Cg = C // group
    full = np.zeros([N, M, (H - 1) * strides[0] + KH, (W - 1) * strides[1] + KW])
    mag = np.zeros_like(full)
    for g in range(group):
        for c in range(Cg):
            for mm in range(Mg):
                for kh in range(KH):
                    for kw in range(KW):
                        t = x[:, g * Cg + c] * w[g * Cg + c, mm, kh, kw]
                        sl = (slice(None), g * Mg + mm, slice(kh, kh + strides[0] * (H - 1) + 1, strides[0]),
                              slice(kw, kw + strides[1] * (W - 1) + 1, strides[1]))
                        full[sl] += t
                        mag[sl] += np.abs(t)
    crop = (slice(None), slice(None), slice(pads[0], full.shape[2] - pads[2]), slice(pads[1], full.shape[3] - pads[3]))
    y, mag = full[crop], mag[crop]
    y = y + b.reshape(1, M, 1, 1)
    mag = mag + np.abs(b).reshape(1, M, 1, 1)
    return y, Cg * KH * KW + 1, mag


def conv_case(rng, name, x_shape, M, K, strides=None, pads=None, dilations=None, group=1, bias=True, scale=1.0):
    sp = len(x_shape) - 2
    strides = strides or [1] * sp
    pads = pads or [0] * (2 * sp)
    dilations = dilations or [1] * sp
    C = x_shape[1]
    x = rng.uniform(-2, 2, x_shape).astype(np.float16)
    w = (rng.uniform(-1, 1, [M, C // group] + list(K)) * scale).astype(np.float16)
    b = rng.uniform(-1, 1, [M]).astype(np.float16)
    ref, n, mag = conv_ref(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64) if bias else np.zeros(M),
                           strides, pads, dilations, group)
    inits = [("w", w)] + ([("b", b)] if bias else [])
    attrs = {"kernel_shape": list(K), "strides": strides, "pads": pads, "dilations": dilations, "group": group}
    return name, make_model("Conv", x_shape, ref.shape, inits, attrs), x, ref, n, mag


def convt_case(rng, name, x_shape, Mg, K, strides, pads, group=1):
    C = x_shape[1]
    x = rng.uniform(-2, 2, x_shape).astype(np.float16)
    w = rng.uniform(-1, 1, [C, Mg] + list(K)).astype(np.float16)
    b = rng.uniform(-1, 1, [Mg * group]).astype(np.float16)
    ref, n, mag = convt_ref(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), strides, pads, group)
    attrs = {"kernel_shape": list(K), "strides": strides, "pads": pads, "group": group}
    return name, make_model("ConvTranspose", x_shape, ref.shape, [("w", w), ("b", b)], attrs), x, ref, n, mag


def gemm_case(rng, name, M, K, N):
    x = rng.uniform(-2, 2, [M, K]).astype(np.float16)
    w = rng.uniform(-1, 1, [N, K]).astype(np.float16)  # transB
    c = rng.uniform(-1, 1, [N]).astype(np.float16)
    xd, wd, cd = x.astype(np.float64), w.astype(np.float64), c.astype(np.float64)
    ref = xd @ wd.T + cd
    mag = np.abs(xd) @ np.abs(wd).T + np.abs(cd)
    m = make_model("Gemm", [M, K], [M, N], [("w", w), ("c", c)], {"transB": 1})
    return name, m, x, ref, K + 1, mag


def matmul_case(rng, name, M, K, N):
    x = rng.uniform(-2, 2, [M, K]).astype(np.float16)
    w = rng.uniform(-1, 1, [K, N]).astype(np.float16)
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    m = make_model("MatMul", [M, K], [M, N], [("w", w)], {})
    return name, m, x, xd @ wd, K, np.abs(xd) @ np.abs(wd)


def build_cases(rng):
    return [
        conv_case(rng, "conv_1x1", [1, 64, 13, 13], 32, [1, 1]),            # squeezenet's squeeze / expand1x1
        conv_case(rng, "conv_3x3_pad", [1, 16, 13, 13], 64, [3, 3], pads=[1, 1, 1, 1]),
        conv_case(rng, "conv_3x3_s2", [1, 3, 31, 29], 8, [3, 3], strides=[2, 2]),  # squeezenet's conv1 form
        conv_case(rng, "conv_7x7_s2_pad3", [1, 3, 32, 32], 8, [7, 7], strides=[2, 2], pads=[3, 3, 3, 3]),
        conv_case(rng, "conv_depthwise", [1, 16, 20, 20], 16, [3, 3], pads=[1, 1, 1, 1], group=16),
        conv_case(rng, "conv_grouped_dil", [2, 8, 12, 12], 12, [3, 3], pads=[2, 1, 2, 1], dilations=[2, 1], group=4),
        conv_case(rng, "conv_1d_nobias", [1, 6, 40], 5, [5], pads=[2, 2], bias=False),
        conv_case(rng, "conv_3d", [1, 4, 6, 7, 8], 6, [3, 3, 3], pads=[1] * 6),
        conv_case(rng, "conv_long_sum", [1, 512, 5, 5], 8, [3, 3], pads=[1, 1, 1, 1], scale=0.05),
        conv_case(rng, "conv_subnormal_out", [1, 8, 9, 9], 4, [3, 3], scale=1e-5),
        convt_case(rng, "convtranspose_s2", [1, 6, 7, 7], 4, [3, 3], [2, 2], [1, 1, 1, 1]),
        gemm_case(rng, "gemm_transB_bias", 3, 300, 17),
        matmul_case(rng, "matmul_weight", 4, 100, 33),
    ]


def check(y, ref, n, mag):
    e = n * 2.0 ** -24 * mag
    bound = 0.5 * ulp16(np.abs(ref) + e) + e
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.max(err / bound)
    return worst <= 1.0, worst, np.max(err)


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
    cases = [(name + suffix, m, x, ref, n, mag, extra) for name, m, x, ref, n, mag in build_cases(rng)
             for suffix, extra in (("", ()), ("/keep-f16", ("--keep-f16",)))]
    for name, m, x, ref, n, mag, extra in cases:
        if only and name.split("/")[0] not in only:
            continue
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name.split('/')[0]}.onnx"
            path.write_bytes(m.SerializeToString())
            if backend == "llvm":
                outs, _, err = zoo_run.run_kiln(kiln, path, {"x": x}, tmp, extra=extra)
            else:
                outs, _, err = zoo_run.run_c(kiln, path, {"x": x}, tmp, extra=extra)
        if err:
            print(f"FAIL {name}: {err}")
            failed += 1
            continue
        y = outs["y"] if "y" in outs else outs.get("output_0")
        if y is None or y.dtype != np.float16 or y.shape != ref.shape:
            print(f"FAIL {name}: got {'nothing' if y is None else f'{y.dtype}{list(y.shape)}'}, want float16{list(ref.shape)}")
            failed += 1
            continue
        ok, worst, amax = check(y, ref, n, mag)
        print(f"{'PASS' if ok else 'FAIL'} {name}: max error {amax:.3g} = {worst:.2f} of the bound ({n} terms)")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
