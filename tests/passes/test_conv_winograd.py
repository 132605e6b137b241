#!/usr/bin/env python3
"""3x3 stride-1 Conv as Winograd F(m x m, 3 x 3) against float64 NumPy, and which schedule takes it.

Usage:  python3 tests/passes/test_conv_winograd.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

passes/lower_conv_winograd.c takes one-group 3x3 stride-1 convolutions with
at least 32 input and output channels, float32, constant weights.  The cases
cover maps whose output is and is not a whole number of tiles (the last row
and column of tiles partial), pads 0, 1 and 2 and asymmetric pads (border
tiles reading through bounds checks), output channels that are not whole
blocks of 6 (a tail block), tile counts that are not whole vectors (the
padded positions), N = 2, no bias, a fused Relu and residual Add, 2
threads, both tile sizes (KILN_WINOGRAD=4 forces F(4x4, 3x3) where it
applies), and shapes it declines (stride 2, dilation 2, two groups, 16
input channels, float64, a weight computed at run time), which must still be
right.  For each case the lowered IR (`kiln inspect --dump-after lower`)
must have the transformed weights (`<W>.winograd`) exactly when the case
expects that schedule.

Reference: Conv's definition (passes/conv_def.h) in float64 NumPy.

TOLERANCE, per output y with reference r.  Declined cases: the direct
sum's bound of tests/passes/test_conv_blocks.py, n * u * S + u * |r| (n =
C x 9 products, S = |b| + sum |w x|, u = 2^-24 f32, 2^-53 f64: Higham 4.2).
Winograd cases: the computed y is the composite linear map
  y = AT [ sum over c of (G w_c GT) (.) (BT d_c B) ] A + b
evaluated in float32 along paths of at most D = C + 4a + 2 roundings (U
rounded once from double; V: two a-term sums, each term one rounding; the
GEMM: C fused multiply-adds; the output transform: two a-term sums; the
bias), a = m + 2.  Its componentwise error is then at most
  D * u * S_w + u * |r|,   S_w = |AT| [ sum over c of (|G| |w_c| |GT|) (.) (|BT| |d_c| |B|) ] |A| + |b|
(Higham 3.5 applied to each product and sum, to first order in u), computed
per output in float64 from the same matrices.  S_w exceeds the direct sum's
S by the transforms' weights (for F(2x2) up to 4x; F(4x4) far more), which
is the accuracy Winograd trades; a wrong tile, point, border or channel is
off by a whole term, far above it.  Relu is 1-Lipschitz; a fused Add of r2
rounds once more: + u * |r + r2|.

Prints "PASS name: ..." / "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import load  # noqa: E402

conv_dw = load("conv_dw", "tests/passes/test_conv_dw.py")  # run_cases

BT = {2: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
      4: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
          [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]}
G = {2: [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
     4: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
         [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]}
AT = {2: [[1, 1, 1, 0], [0, 1, -1, -1]],
      4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]}


def conv_ref(x, w, b, s, d, pads, group):
    """float64 Conv and the same sum over absolute values."""
    N, C, H, W = x.shape
    M = w.shape[0]
    Cg, Mg = C // group, M // group
    pt, pl, pb_, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb_), (pl, pr)))
    OH = (H + pt + pb_ - d[0] * 2 - 1) // s[0] + 1
    OW = (W + pl + pr - d[1] * 2 - 1) // s[1] + 1
    y = np.zeros((N, M, OH, OW))
    a = np.zeros((N, M, OH, OW))
    for g in range(group):
        for i in range(3):
            for j in range(3):
                xs = xp[:, g * Cg:(g + 1) * Cg, i * d[0]:i * d[0] + (OH - 1) * s[0] + 1:s[0],
                        j * d[1]:j * d[1] + (OW - 1) * s[1] + 1:s[1]]
                wg = w[g * Mg:(g + 1) * Mg, :, i, j]
                y[:, g * Mg:(g + 1) * Mg] += np.einsum("nchw,mc->nmhw", xs, wg)
                a[:, g * Mg:(g + 1) * Mg] += np.einsum("nchw,mc->nmhw", np.abs(xs), np.abs(wg))
    if b is not None:
        y += b.reshape(1, M, 1, 1)
        a += np.abs(b).reshape(1, M, 1, 1)
    return y, a


def winograd_abs(x, w, b, pads, m, OH, OW):
    """S_w of the docstring: the transforms' absolute values applied to |x| and |w|, per output."""
    a = m + 2
    bt, g, at = (np.abs(np.array(t[m], dtype=np.float64)) for t in (BT, G, AT))
    N, C = x.shape[:2]
    th, tw = -(-OH // m), -(-OW // m)
    pt, pl = pads[0], pads[1]
    # the input as the tiles read it: zero outside, extended to whole tiles
    xp = np.zeros((N, C, th * m + 2, tw * m + 2))
    H, W = x.shape[2:]
    hh, ww = min(H, th * m + 2 - pt), min(W, tw * m + 2 - pl)
    xp[:, :, pt:pt + hh, pl:pl + ww] = np.abs(x[:, :, :hh, :ww])
    u = np.einsum("ai,mcij,bj->mcab", g, np.abs(w), g)  # |G| |w| |GT|
    out = np.zeros((N, w.shape[0], th * m, tw * m))
    for ty in range(th):
        for tx in range(tw):
            d = xp[:, :, ty * m:ty * m + a, tx * m:tx * m + a]
            v = np.einsum("ai,ncij,bj->ncab", bt, d, bt)  # |BT| |d| |B|
            mt = np.einsum("mcab,ncab->nmab", u, v)
            out[:, :, ty * m:(ty + 1) * m, tx * m:(tx + 1) * m] = np.einsum("ia,nmab,jb->nmij", at, mt, at)
    out = out[:, :, :OH, :OW]
    if b is not None:
        out += np.abs(b).reshape(1, -1, 1, 1)
    return out


def case(rng, x_shape, M, strides=(1, 1), pads=(1, 1, 1, 1), dils=(1, 1), group=1, bias=True, dt=np.float32,
         relu=False, residual=False, threads=None, wino=2, w_input=False, force=False, big_sibling=None, banded=False):
    C = x_shape[1]
    x = rng.uniform(-1, 1, x_shape).astype(dt)
    w = rng.uniform(-1, 1, [M, C // group, 3, 3]).astype(dt)
    b = rng.uniform(-1, 1, [M]).astype(dt) if bias else None
    x64, w64, b64 = x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64)
    ref, absum = conv_ref(x64, w64, b64, strides, dils, pads, group)
    u = 2.0 ** -53 if dt == np.float64 else 2.0 ** -24
    if wino:
        OH, OW = ref.shape[2:]
        D = (C // group) + 4 * (wino + 2) + 2
        tol = D * u * winograd_abs(x64, w64, b64, pads, wino, OH, OW) + u * np.abs(ref)
    else:
        tol = (C // group) * 9 * u * absum + u * np.abs(ref)
    et = TensorProto.DOUBLE if dt == np.float64 else TensorProto.FLOAT
    attrs = dict(kernel_shape=[3, 3], strides=list(strides), pads=list(pads), dilations=list(dils))
    if group != 1:
        attrs["group"] = group
    inputs = {"x": x}
    vis = [helper.make_tensor_value_info("x", et, list(x_shape))]
    inits = [] if w_input else [numpy_helper.from_array(w, "w")]
    if w_input:
        vis.append(helper.make_tensor_value_info("w", et, list(w.shape)))
        inputs["w"] = w
    if bias:
        inits.append(numpy_helper.from_array(b, "b"))
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], name="conv3x3", **attrs)]
    last, ref, tol = conv_dw.fused_tail(rng, nodes, vis, inputs, ref, tol, u, dt, et, relu, residual)
    outs = [helper.make_tensor_value_info(last, et, list(ref.shape))]
    if big_sibling is None:
        big_sibling = bool(wino)
    if big_sibling:
        # kiln takes V and Mt only from arena memory the plain plan leaves
        # free (graph inputs and outputs live outside it): a 1x1
        # convolution to many channels beside the 3x3, pooled to a small
        # second output, is the graph's peak; its channels make room for
        # the whole plane's V and Mt twice over, or (banded cases) 8 x C
        m_ = wino or 2
        T, tiles = (m_ + 2) ** 2, -(-ref.shape[2] // m_) * -(-ref.shape[3] // m_)
        need = 2 * T * (C + M + 6) * (tiles + 32) * 4 * x_shape[0]
        plane = x_shape[0] * x_shape[2] * x_shape[3] * 4
        sib = 8 * C if banded else max(8 * C, -(-need // plane))
        wb = rng.uniform(-1, 1, [sib, C, 1, 1]).astype(dt)
        inits.append(numpy_helper.from_array(wb, "wb"))
        nodes.append(helper.make_node("Conv", ["x", "wb"], ["big"], name="big", kernel_shape=[1, 1]))
        nodes.append(helper.make_node("GlobalAveragePool", ["big"], ["pooled"], name="pool"))
        outs.append(helper.make_tensor_value_info("pooled", et, [x_shape[0], sib, 1, 1]))
    g = helper.make_graph(nodes, "wino", vis, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m, inputs, ref, tol, threads, wino, force


def build_cases(rng):
    c = {}
    # the default rule: F(2x2, 3x3) under 128 channels, maps of 10x10 and more
    c["c64_m64_14x14_p1"] = case(rng, (1, 64, 14, 14), 64)
    c["c32_m40_13x11_p1_tail_relu"] = case(rng, (1, 32, 13, 11), 40, relu=True)
    c["c48_m33_13x19_p0_nobias"] = case(rng, (1, 48, 13, 19), 33, pads=(0, 0, 0, 0), bias=False)
    c["c32_m32_10x10_p2"] = case(rng, (1, 32, 10, 10), 32, pads=(2, 2, 2, 2))
    c["c32_m36_12x11_asym_pads"] = case(rng, (1, 32, 12, 11), 36, pads=(0, 2, 1, 0))
    c["c64_m32_n2_10x10_residual"] = case(rng, (2, 64, 10, 10), 32, residual=True)
    c["c64_m64_28x28_threads2"] = case(rng, (1, 64, 28, 28), 64, threads=2, relu=True)
    # F(4x4, 3x3): 128 channels and more at 14x14 and larger
    c["f4_default_c128_m128_14x14"] = case(rng, (1, 128, 14, 14), 128, wino=4)
    c["f4_default_c128_m134_15x17_relu"] = case(rng, (1, 128, 15, 17), 134, relu=True, wino=4)
    # and 14x14 to 28x28 maps with 96 input channels or more, whatever M
    c["f4_default_c96_m32_28x28"] = case(rng, (1, 96, 28, 28), 32, wino=4)
    c["f4_default_c112_m40_14x20_relu"] = case(rng, (1, 112, 14, 20), 40, relu=True, wino=4)
    # banded: the whole plane's V and Mt (16 x 68 x ~1024 floats, 4.5 MB)
    # past the room the sibling makes (its 256-channel output: 4 MB)
    c["banded_c32_m32_64x64"] = case(rng, (1, 32, 64, 64), 32, banded=True)
    c["banded_c32_m32_n2_61x59_threads2"] = case(rng, (2, 32, 61, 59), 32, threads=2, banded=True)
    # a lone convolution: its own input and output are the network's peak,
    # no room for V and Mt, computed directly
    c["declined_lone_c64_m64_14x14"] = case(rng, (1, 64, 14, 14), 64, wino=0)
    # F(4x4, 3x3) forced where the rule would not take it
    c["f4_c64_m64_14x14_p1"] = case(rng, (1, 64, 14, 14), 64, wino=4, force=True)
    c["f4_c32_m38_13x10_p1_relu"] = case(rng, (1, 32, 13, 10), 38, relu=True, wino=4, force=True)
    c["f4_c32_m32_6x9_p2_n2"] = case(rng, (2, 32, 6, 9), 32, pads=(2, 1, 0, 2), wino=4, force=True)
    # declined: other schedules, still right
    c["declined_stride2"] = case(rng, (1, 32, 12, 12), 32, strides=(2, 2), wino=0)
    c["declined_dil2"] = case(rng, (1, 32, 12, 12), 32, dils=(2, 2), pads=(2, 2, 2, 2), wino=0)
    c["declined_group2"] = case(rng, (1, 64, 10, 10), 64, group=2, wino=0)
    c["declined_c16"] = case(rng, (1, 16, 10, 10), 32, wino=0)
    c["declined_f64"] = case(rng, (1, 32, 8, 8), 32, dt=np.float64, wino=0)
    c["declined_w_input"] = case(rng, (1, 32, 12, 12), 32, w_input=True, wino=0)
    c["declined_6x17"] = case(rng, (1, 48, 6, 17), 33, wino=0, big_sibling=True)
    # maps of 7x7 to 9x9 take F(2x2) whatever U weighs: 16 tiles (one
    # vector) in blocks of up to 24 rows, 25 tiles (two vectors, AVX-512)
    c["small_c256_m64_7x7"] = case(rng, (1, 256, 7, 7), 64)
    c["small_c48_m33_9x17_relu"] = case(rng, (1, 48, 9, 17), 33, relu=True)
    c["small_c64_m70_9x9_n2_residual"] = case(rng, (2, 64, 9, 9), 70, residual=True)
    return c


def with_tile(case):
    """KILN_WINOGRAD=4 for the forced F(4x4) cases, unset otherwise (the default rule)."""
    if case[6]:
        os.environ["KILN_WINOGRAD"] = "4"
    else:
        os.environ.pop("KILN_WINOGRAD", None)


def schedule_check(kiln, path, case):
    """The lowered IR has the transformed weights exactly when the case
    expects Winograd; then their size says the tile (U: a*a points x C x
    M rounded up to whole blocks of 6 to 24 channels, block_rows in
    lower_conv_winograd.c: 16 and 36 points cannot give the same size for
    M >= 32) and V's size whether the plane was cut
    into bands (less than every tile of every image: a*a x C x tiles x N)."""
    with_tile(case)
    m, inputs, ref, wino = case[0], case[1], case[2], case[5]
    proc = subprocess.run([kiln, "inspect", str(path), "--batch", "1", "--dump-after", "lower"], capture_output=True,
                          text=True, timeout=conv_dw.zoo_run.KILN_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    u = re.search(r"buffer %w\.winograd : f32\[(\d+)\]", out)
    v = re.search(r"buffer %y\.winograd_in : f32\[(\d+)\]", out)
    # `inspect --verbose` names the schedule on the node's line: the same choice
    verbose = subprocess.run([kiln, "inspect", str(path), "--batch", "1", "--verbose"], capture_output=True, text=True,
                             timeout=conv_dw.zoo_run.KILN_TIMEOUT_S).stdout
    line = next((ln for ln in verbose.splitlines() if " conv3x3 " in ln), "")
    named = re.search(r"\[Winograd F\((\d)x\1, 3x3\)", line)
    if (named is None) != (u is None) or (named and int(named.group(1)) != wino):
        return False, f"; inspect --verbose says {line.strip()!r}"
    if not wino:
        return u is None, "; another schedule expected" + ("" if u is None else ", Winograd taken")
    if u is None or v is None:
        return False, "; Winograd expected, another schedule taken"
    N, C = inputs["x"].shape[:2]
    M, OH, OW = ref.shape[1:]
    a = wino + 2
    tiles = -(-OH // wino) * -(-OW // wino)
    size = int(u.group(1))
    got_a2 = next((a2 for a2 in (16, 36) if size % (a2 * C) == 0 and M <= size // (a2 * C) < M + 24), 0)
    banded = int(v.group(1)) < a * a * C * tiles * N
    want_banded = "banded" in path.name
    ok = got_a2 == a * a and banded == want_banded
    return ok, (f"; F({wino}x{wino}){' in bands' if want_banded else ''} expected" +
                ("" if ok else f", got {got_a2} points{' in bands' if banded else ''}"))


def main(argv):
    return conv_dw.run_cases(argv, build_cases, __doc__, schedule_check)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
