#!/usr/bin/env python3
"""The NCHWc layout pass (passes/layout_nchwc.c) against ONNX Runtime.

Usage:  python3 tests/passes/test_layout_nchwc.py KILN_BINARY WORK_DIR

Each case is a small ONNX network of convolutions (ResNet's bottleneck,
stride-2 3x3s, downsample projections, residual Adds, a pool and a graph
output in the middle of a chain).  Asserted:
  * `kiln inspect --verbose` names the blocked layouts each case's comment
    works out by hand: how many kernels read X blocked ("X NCHWc") and how
    many write their result blocked ("Y NCHWc"), with `--layout nchwc`;
  * `kiln run`'s outputs against ONNX Runtime (graph optimisations off),
    and with `--layout nchwc` the emitted C's (cc -O3 -march=native) too;
  * with the pass off (the default, `--layout plain`) nothing is blocked, and the
    outputs match ONNX Runtime too.
The block is the target's f32 lanes: 16 with AVX-512, 8 with AVX2 (the
test runs again under KILN_CPU=znver3); the channel counts are multiples
of 16, so the expected counts hold for both.

Tolerance: weights uniform in [-1, 1] / sqrt(fan_in), inputs in [-2, 2],
so every activation is O(1); a float32 sum of at most 576 products in an
order other than ORT's differs by at most 576 * 2^-24 * sum|terms| ~ 5e-5
per layer, and Winograd's F(4x4) (the 3x3 stride-1 layers it keeps) by
tens of times a direct sum's error (test_conv_winograd.py): rtol = atol =
5e-4 after four layers.
"""

import os
import shutil
import sys

from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import onnx_case  # noqa: E402

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_fuse_pool as fuse_pool  # noqa: E402  (check, run, kiln_outputs)
import test_zoo_run as zoo_run  # noqa: E402  (emit-c, cc -O3 -march=native, run)

FAILS = fuse_pool.FAILS
TOL = 5e-4
check, run = fuse_pool.check, fuse_pool.run


class M(fuse_pool.M):
    """test_fuse_pool's builder (op, w, save) with its own seed and a 2-D
    convolution that may end in a residual Add."""

    def __init__(self, name):
        super().__init__(name)
        self.rng = np.random.default_rng(len(name) + 11)

    def conv(self, x, cin, cout, k=1, pad=0, s=1, relu=True, add=None):
        c = self.op("Conv", [x, self.w([cout, cin, k, k]), self.w([cout])], pads=[pad] * 4, strides=[s, s])
        if add:
            c = self.op("Add", [c, add])
        return self.op("Relu", [c]) if relu else c


def cases():
    """(model, inputs, outputs, kernels reading X blocked, kernels writing Y blocked)"""
    out = []
    # ResNet-50's bottleneck with a projection: c1 (1x1 + Relu) feeds the
    # 3x3 stride-1 (Winograd's: plain), so c1 writes plain; the 3x3 writes
    # plain; c3 (1x1, + the projection's sum, + Relu) writes blocked, read by
    # c4 (blocked X); the projection writes blocked (c3's residual); c4's
    # result is the graph output: plain.  Read blocked: c4; written: c3, proj.
    m = M("bottleneck")
    a = m.conv("x", 64, 64)
    b = m.conv(a, 64, 64, k=3, pad=1)
    p = m.conv("x", 64, 128, relu=False)
    c = m.conv(b, 64, 128, add=p)
    y = m.conv(c, 128, 64)
    out.append((m, [("x", [1, 64, 14, 14])], [y], 1, 2))
    # A 3x3 from 16 channels (too few for Winograd), a 5x5, a 1x1 stride 2
    # (reading a blocked X every other position), a 1x1 to 48 channels,
    # batch 2, border tiles (pads 1 and 2 on rows of 30): every value
    # between the first and the last conv blocked.  Read blocked: c2, c3,
    # c4; written: c1..c3.
    m = M("chain")
    a = m.conv("x", 16, 32, k=3, pad=1)
    b = m.conv(a, 32, 32, k=5, pad=2)
    c = m.conv(b, 32, 64, s=2)
    y = m.conv(c, 64, 48, relu=False)
    out.append((m, [("x", [2, 16, 29, 30])], [y], 3, 3))
    # Strided windows (ResNet's stride-2 3x3) and maps of 13x13 or fewer
    # positions keep their plain schedules, which won (bench/README): a
    # stride-2 3x3 between 1x1s, then 1x1s on a 12x12 map: nothing blocked.
    m = M("kept_plain")
    a = m.conv("x", 32, 32)
    b = m.conv(a, 32, 64, k=3, pad=1, s=2)
    c = m.conv(b, 64, 64)
    y = m.conv(c, 64, 32, relu=False)
    out.append((m, [("x", [1, 32, 24, 24])], [y], 0, 0))
    # One value (a) read by a stride-2 3x3 (plain only), a 1x1 stride 2
    # and a MaxPool (plain only): a stays plain; l is a graph output: plain;
    # the 1x1's result r is the residual of c, whose result c4 reads.
    # Read blocked: c4; written: r and c.
    m = M("mixed_readers")
    a = m.conv("x", 32, 64)
    l = m.conv(a, 64, 64, k=3, pad=1, s=2)
    r = m.conv(a, 64, 64, k=1, s=2)
    q = m.op("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = m.conv(l, 64, 64, add=r)
    y = m.conv(c, 64, 32, relu=False)
    out.append((m, [("x", [1, 32, 40, 44])], [y, q, l], 1, 2))
    # A residual chain: c2's result (c1's added) read by c3 as X and by c3
    # and c4 as their residual; c5 reads c4's and writes the graph output.
    # Read blocked: c2..c5; written: c1..c4.
    m = M("residual_chain")
    a = m.conv("x", 48, 64)
    b = m.conv(a, 64, 64, add=a)
    c = m.conv(b, 64, 64, add=b)
    d = m.conv(c, 64, 64, add=b)
    y = m.conv(d, 64, 32, relu=False)
    out.append((m, [("x", [1, 48, 24, 24])], [y], 4, 4))
    # The same ending in a residual Add as the graph output: the last
    # convolution's result is plain, so its residual (b) must be plain, so
    # b's convolution and every operand before it: nothing blocked.
    m = M("residual_to_output")
    a = m.conv("x", 48, 64)
    b = m.conv(a, 64, 64, add=a)
    c = m.conv(b, 64, 64, add=b)
    y = m.conv(c, 64, 64, relu=False, add=b)
    out.append((m, [("x", [1, 48, 24, 24])], [y], 0, 0))
    return out


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(17)
    for m, inputs, outputs, xblk, yblk in cases():
        d, path, feeds, ref = onnx_case(m, inputs, outputs, work, rng)
        for tag, flags, want in (("nchwc", ["--layout", "nchwc"], (xblk, yblk)), ("plain", [], (0, 0))):
            p = run([kiln, "inspect", path, "--verbose"] + flags)
            got = (p.stdout.count("X NCHWc"), p.stdout.count("Y NCHWc"))
            check(f"{m.name} [{tag}]: kernels reading / writing NCHWc {want}", p.returncode == 0 and got == want,
                  f"{got}; {p.stderr.strip()}")
            res, err = fuse_pool.kiln_outputs(kiln, path, d, inputs, outputs, tag, None, flags)
            for k, name in enumerate(outputs):
                g, r = res[k], ref[k]
                ok = g is not None and g.shape == r.shape
                detail = err if g is None else f"shape {g.shape}" if not ok else f"max diff {np.max(np.abs(g - r))}"
                check(f"{m.name} [{tag}]: {name} == ORT (rtol = atol = {TOL})",
                      ok and np.allclose(g, r, rtol=TOL, atol=TOL), detail)
            if not flags:
                continue
            cw = os.path.join(d, "emit_c")
            os.makedirs(cw)
            res, _, err = zoo_run.run_c(kiln, path, feeds, cw, extra=flags)
            for k, name in enumerate(outputs):
                g, r = (res or {}).get(f"output_{k}"), ref[k]
                ok = g is not None and g.shape == r.shape
                detail = err if g is None else f"shape {g.shape}" if not ok else f"max diff {np.max(np.abs(g - r))}"
                check(f"{m.name} [{tag}, emitted C]: {name} == ORT (rtol = atol = {TOL})",
                      ok and np.allclose(g, r, rtol=TOL, atol=TOL), detail)
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
