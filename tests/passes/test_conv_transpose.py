#!/usr/bin/env python3
"""ConvTranspose on the CPU against float64 NumPy, and which schedule takes it.

Usage:  python3 tests/passes/test_conv_transpose.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

A ConvTranspose whose kernel equals its stride (no pads, dilation 1, out ==
in * stride, one group, constant weights: U-Net's 2x2 upsampling) is one
transposed GEMM of M * taps rows (passes/lower_conv_gemmt.c, "ConvTranspose
with kernel == stride"); every other ConvTranspose takes the phase path of
passes/lower_conv.c.  The cases cover the GEMM's row blocks (M * taps a
multiple of the 64-row block and not: a tail block), rows of input positions
that are and are not whole 6-position tiles, 1-D, 2-D, 3-D and non-square
kernels, N = 2, no bias, f64, a fused Relu and residual Add, 2 threads; and
shapes it declines (pads, output_padding, kernel != stride, two groups,
dilation, few input channels), which must still be right.  For each case the
lowered IR (`kiln inspect --dump-after lower`) must have the GEMM's blocked
weights (`<W>.blocked`) exactly when the case expects that schedule.

Reference: ConvTranspose's definition (passes/conv_def.h) in float64 NumPy,
one tap at a time onto a canvas of the full output, then cropped by the pads.

TOLERANCE, per output element y with reference r (as test_conv_blocks.py):
  |y - r| <= n * u * S + u * |r|
n = the products summed into that output (C x the taps that reach it: at
most C x prod(ceil(K / s))), S = |b| + sum |w * x| (the same sum over
absolute values), u the compute type's unit roundoff (2^-24 f32, 2^-53
f64): the worst-case bound of a floating-point sum of n terms in any order
(Higham 4.2) plus the final rounding.  Relu is 1-Lipschitz; a fused Add of
r2 rounds once more: + u * |r + r2|.  A wrong index, phase or dropped tap is
off by a whole term, far above the bound.

Prints "PASS name: ..." / "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import load  # noqa: E402

conv_dw = load("conv_dw", "tests/passes/test_conv_dw.py")  # run_cases


def convt_ref(x, w, b, s, d, pads, out_pad, group):
    """float64 ConvTranspose and the same sum over absolute values."""
    sp = x.ndim - 2
    N, C = x.shape[:2]
    Mg, K = w.shape[1], w.shape[2:]
    M, Cg = Mg * group, C // group
    ins = x.shape[2:]
    full = [(ins[i] - 1) * s[i] + (K[i] - 1) * d[i] + 1 for i in range(sp)]
    out = [full[i] - pads[i] - pads[sp + i] + out_pad[i] for i in range(sp)]
    canvas = [max(full[i], pads[i] + out[i]) for i in range(sp)]
    y = np.zeros((N, M, *canvas))
    a = np.zeros((N, M, *canvas))
    for g in range(group):
        xg, wg = x[:, g * Cg:(g + 1) * Cg], w[g * Cg:(g + 1) * Cg]
        for k in itertools.product(*[range(kk) for kk in K]):
            t = np.einsum("nc...,cm->nm...", xg, wg[(slice(None), slice(None), *k)])
            ta = np.einsum("nc...,cm->nm...", np.abs(xg), np.abs(wg[(slice(None), slice(None), *k)]))
            sl = tuple(slice(k[i] * d[i], k[i] * d[i] + (ins[i] - 1) * s[i] + 1, s[i]) for i in range(sp))
            y[(slice(None), slice(g * Mg, (g + 1) * Mg), *sl)] += t
            a[(slice(None), slice(g * Mg, (g + 1) * Mg), *sl)] += ta
    crop = (slice(None), slice(None), *[slice(pads[i], pads[i] + out[i]) for i in range(sp)])
    y, a = y[crop], a[crop]
    if b is not None:
        bb = b.reshape((1, M) + (1,) * sp)
        y, a = y + bb, a + np.abs(bb)
    return y, a


def case(rng, x_shape, M, K, strides=None, pads=None, out_pad=None, dils=None, group=1, bias=True, dt=np.float32,
         relu=False, residual=False, threads=None, gemm=True):
    sp = len(K)
    s = strides or list(K)
    d = dils or [1] * sp
    p = pads or [0] * (2 * sp)
    op = out_pad or [0] * sp
    C = x_shape[1]
    x = rng.uniform(-1, 1, x_shape).astype(dt)
    w = rng.uniform(-1, 1, [C, M // group, *K]).astype(dt)
    b = rng.uniform(-1, 1, [M]).astype(dt) if bias else None
    ref, absum = convt_ref(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64),
                           s, d, p, op, group)
    u = 2.0 ** -53 if dt == np.float64 else 2.0 ** -24
    n = (C // group) * int(np.prod([-(-K[i] // s[i]) for i in range(sp)]))
    tol = n * u * absum + u * np.abs(ref)
    et = TensorProto.DOUBLE if dt == np.float64 else TensorProto.FLOAT
    attrs = dict(kernel_shape=K, strides=s, pads=p)
    if out_pad:
        attrs["output_padding"] = op
    if dils:
        attrs["dilations"] = d
    if group != 1:
        attrs["group"] = group
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    nodes = [helper.make_node("ConvTranspose", ["x", "w"] + (["b"] if bias else []), ["y"], name="up", **attrs)]
    inputs = {"x": x}
    vis = [helper.make_tensor_value_info("x", et, list(x_shape))]
    last, ref, tol = conv_dw.fused_tail(rng, nodes, vis, inputs, ref, tol, u, dt, et, relu, residual)
    g = helper.make_graph(nodes, "convt", vis, [helper.make_tensor_value_info(last, et, list(ref.shape))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m, inputs, ref, tol, threads, gemm


def build_cases(rng):
    c = {}
    # the transposed GEMM: M * taps rows in blocks of 64 (AVX-512) or 32 (AVX2)
    c["unet_2x2_c64_m32_16x16_n2"] = case(rng, (2, 64, 16, 16), 32, [2, 2])
    c["2x2_c128_m64_8x8_relu"] = case(rng, (1, 128, 8, 8), 64, [2, 2], relu=True)
    c["2x2_c64_m33_5x7_tail_nobias"] = case(rng, (1, 64, 5, 7), 33, [2, 2], bias=False)
    c["3x3_s3_c40_m20_3x5_relu"] = case(rng, (1, 40, 3, 5), 20, [3, 3], relu=True)
    c["2x1_c48_m24_6x13"] = case(rng, (1, 48, 6, 13), 24, [2, 1])
    c["1d_k2_c64_m16_w10"] = case(rng, (2, 64, 10), 16, [2])
    c["3d_k2_c32_m8_3x4x5"] = case(rng, (1, 32, 3, 4, 5), 8, [2, 2, 2])
    c["2x2_f64_c32_m16_4x9"] = case(rng, (1, 32, 4, 9), 16, [2, 2], dt=np.float64)
    c["2x2_residual_c64_m16_6x6"] = case(rng, (1, 64, 6, 6), 16, [2, 2], residual=True)
    c["2x2_threads2_c64_m64_12x12"] = case(rng, (1, 64, 12, 12), 64, [2, 2], threads=2)
    # declined: the phase path, still right
    c["declined_3x3_s2_p1_outpad"] = case(rng, (1, 64, 5, 6), 16, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                          out_pad=[1, 1], gemm=False)
    c["declined_4x4_s2_p1"] = case(rng, (1, 64, 6, 6), 16, [4, 4], strides=[2, 2], pads=[1, 1, 1, 1], gemm=False)
    c["declined_2x2_group2"] = case(rng, (1, 64, 6, 6), 32, [2, 2], group=2, gemm=False)
    c["declined_2x2_outpad"] = case(rng, (1, 64, 4, 5), 16, [2, 2], out_pad=[1, 0], gemm=False)
    c["declined_2x2_dil2_s4"] = case(rng, (1, 64, 4, 5), 16, [2, 2], strides=[4, 4], dils=[2, 2], gemm=False)
    c["declined_2x2_c8"] = case(rng, (1, 8, 6, 6), 16, [2, 2], gemm=False)
    return c


def schedule_check(kiln, path, case):
    """The lowered IR has the transposed GEMM's blocked weights exactly when the case expects it."""
    gemm = case[5]
    proc = subprocess.run([kiln, "inspect", str(path), "--batch", "1", "--dump-after", "lower"], capture_output=True,
                          text=True, timeout=conv_dw.zoo_run.KILN_TIMEOUT_S)
    ok = ("%w.blocked" in proc.stdout + proc.stderr) == gemm
    return ok, f"; {'the transposed GEMM' if gemm else 'the phase path'} expected{'' if ok else ', the other taken'}"


def main(argv):
    return conv_dw.run_cases(argv, build_cases, __doc__, schedule_check)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
