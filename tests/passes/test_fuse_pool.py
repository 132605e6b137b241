#!/usr/bin/env python3
"""Pooling fusion (passes/fuse_pool.c) against ONNX Runtime.

Usage:  python3 tests/passes/test_fuse_pool.py KILN_BINARY WORK_DIR

Each case is a small ONNX model with a MaxPool or AveragePool after a
Conv (and its Relu, residual Add...).  Asserted:
  * the kernel count of `kiln inspect --loops` (worked out by hand in each
    case's comment): a pool the Conv's schedule pools costs no kernel; a
    pool the pass must not fuse (overlapping windows, Indices, ceil_mode's
    partial windows, an input read twice), or one the schedule cannot pool
    (grouped convolutions, a window larger than Winograd's tile), is a
    kernel of its own;
  * `kiln inspect --verbose` says "fused into" for exactly the pools the
    pass fused;
  * `kiln run`'s outputs against ONNX Runtime (graph optimisations off, so
    ORT computes the graph as written);
  * fused against unfused kiln (KILN_FUSE_POOL=0): MaxPool's max picks one
    of the window's values, each computed by the same sums in the same
    order either way, so they must be equal bit for bit; AveragePool adds
    the window in the same row-major order and divides by the count: equal
    too.

Tolerance against ORT: weights are uniform in [-1, 1] / sqrt(fan_in) and
inputs in [-2, 2], so each output is O(1) and sums at most 288 products.
A direct sum in float32 in an order different from ORT's is within
288 * 2^-24 * sum|terms| ~ 3e-5 of it; F(4x4, 3x3) Winograd (the 32-channel
cases) weighs inputs by up to 5x5 and outputs by up to 8x8, tens of times
the direct sum's error on the outputs' scale (test_conv_winograd.py), so
rtol = atol = 2e-4.  The pool itself (a max, or a sum of at most 8 values
divided by a power of two) adds at most one rounding.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import onnx_case  # noqa: E402

F = TensorProto.FLOAT
FAILS = []
TOL = 2e-4


def check(name, cond, detail=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        FAILS.append(name)


class M:
    def __init__(self, name):
        self.name, self.nodes, self.inits, self.n = name, [], [], 0
        self.rng = np.random.default_rng(len(name) + 7)

    def op(self, op, ins, nout=1, **attrs):
        self.n += 1
        outs = [f"{op.lower()}{self.n}" + ("" if k == 0 else f"_{k}") for k in range(nout)]
        self.nodes.append(helper.make_node(op, ins, outs, name=outs[0], **attrs))
        return outs[0] if nout == 1 else outs

    def w(self, shape):
        name = f"w{len(self.inits)}"
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        self.inits.append(numpy_helper.from_array(
            (self.rng.uniform(-1, 1, shape) / np.sqrt(fan)).astype(np.float32), name))
        return name

    def conv(self, x, cin, cout, k=3, pad=1, sp=2, group=1, relu=True):
        c = self.op("Conv", [x, self.w([cout, cin // group] + [k] * sp), self.w([cout])], pads=[pad] * (2 * sp),
                    group=group)
        return self.op("Relu", [c]) if relu else c

    def save(self, path, inputs, outputs):
        g = helper.make_graph(self.nodes, self.name,
                              [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.INT64 if n.endswith("_1") else F, None)
                               for n in outputs], self.inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), path)


def pool(m, x, op="MaxPool", k=2, sp=2, **attrs):
    return m.op(op, [x], kernel_shape=[k] * sp, strides=attrs.pop("strides", [k] * sp), **attrs)


def roomy(m, x, wide):
    """x (32 channels) -> 3x3 conv to `wide` channels -> 1x1 conv back to 32:
    the wide activation is dead by the next layer, which leaves the room
    beside it that Winograd's scratch needs (plan_scratch)."""
    return m.conv(m.conv(x, 32, wide), wide, 32, k=1, pad=0)


def cases():
    """(model, inputs, outputs, kernels, pools fused, environment)"""
    out = []
    # VGG's shape: 3x3 conv (32 -> 32 channels) + Relu + 2x2 MaxPool after
    # two layers that leave room: Winograd F(2x2) over the whole plane, the
    # pool in its output transform: 3 kernels; F(4x4) the same
    for tile in ("", "4"):
        m = M("winograd_maxpool" + tile)
        y = pool(m, m.conv(roomy(m, "x", 512), 32, 32))
        out.append((m, [("x", [2, 32, 32, 32])], [y], 3, 1, {"KILN_WINOGRAD": tile}))
    # less room: Winograd in bands of tile rows, the pool in each band's output
    m = M("winograd_banded_maxpool")
    y = pool(m, m.conv(roomy(m, "x", 256), 32, 32))
    out.append((m, [("x", [1, 32, 32, 32])], [y], 3, 1, {}))
    # F(4x4) on a 15x15 map (the last tile row and column hold 3 outputs:
    # one window, the pool's floor drops row and column 14) with a residual
    # Add before the Relu: 3 kernels, the Add's Neg a fourth
    m = M("winograd_residual_odd")
    b = roomy(m, "x", 512)
    c = m.conv(b, 32, 32, relu=False)
    y = pool(m, m.op("Relu", [m.op("Add", [c, m.op("Neg", [b])])]))
    out.append((m, [("x", [1, 32, 15, 15])], [y], 4, 1, {"KILN_WINOGRAD": "4"}))
    # a 4x4 window on F(2x2)'s 2x2 tiles: lowered without the pool, 4 kernels
    m = M("winograd_window_too_big")
    y = pool(m, m.conv(roomy(m, "x", 512), 32, 32), k=4)
    out.append((m, [("x", [1, 32, 32, 32])], [y], 4, 1, {"KILN_WINOGRAD": "2"}))
    # the register path in bands of rows (KILN_CONV_BANDS), each band's
    # windows pooled out of its scratch: one kernel.  Bands of 3 rows become
    # 2 (whole windows a band); 13 rows leave a short last band whose
    # row 12 the pool's floor drops; "2s": bands over the whole packed input
    for bands, rows in (("2", 12), ("3", 13), ("2s", 13)):
        m = M("register_banded_pool_" + bands)
        y = pool(m, m.conv("x", 16, 16))
        out.append((m, [("x", [1, 16, rows, 11])], [y], 1, 1, {"KILN_CONV_BANDS": bands}))
    # 3-D in bands of 2 depth slices, AveragePool 2x2x2
    m = M("register_banded_pool3d")
    y = pool(m, m.conv("x", 4, 8, sp=3), op="AveragePool", sp=3)
    out.append((m, [("x", [2, 4, 7, 6, 6])], [y], 1, 1, {"KILN_CONV_BANDS": "2"}))
    # register path (16 channels: no Winograd), AveragePool, 10x9 map (floor drops column 8)
    m = M("register_avgpool")
    y = pool(m, m.conv("x", 16, 24), op="AveragePool")
    out.append((m, [("x", [1, 16, 10, 9])], [y], 1, 1, {}))
    # few channels (sums kept in the output), MaxPool without a Relu
    m = M("direct_maxpool_norelu")
    y = pool(m, m.conv("x", 3, 5, relu=False))
    out.append((m, [("x", [1, 3, 8, 8])], [y], 1, 1, {}))
    # 1x1 convolution reading X in place, 4x4 pool
    m = M("pointwise_pool4")
    y = pool(m, m.conv("x", 16, 16, k=1, pad=0), k=4)
    out.append((m, [("x", [1, 16, 12, 12])], [y], 1, 1, {}))
    # the 3-D CNN's shape: Conv3d 3x3x3 + Relu + 2x2x2 MaxPool: one kernel
    m = M("conv3d_maxpool")
    y = pool(m, m.conv("x", 4, 8, sp=3), sp=3)
    out.append((m, [("x", [1, 4, 6, 8, 6])], [y], 1, 1, {}))
    # 1-D: Conv1d + AveragePool 2
    m = M("conv1d_avgpool")
    y = pool(m, m.conv("x", 8, 16, sp=1), op="AveragePool", sp=1)
    out.append((m, [("x", [1, 8, 33])], [y], 1, 1, {}))
    # fused in the graph, lowered without: a grouped convolution (2 groups) -> 2 kernels
    m = M("grouped_split")
    y = pool(m, m.conv("x", 8, 8, group=2))
    out.append((m, [("x", [1, 8, 8, 8])], [y], 2, 1, {}))
    # fused in the graph, lowered without: one input channel (the depthwise
    # form's shape: LeNet's and the training demo's first layer) -> 2 kernels
    m = M("one_channel_split")
    y = pool(m, m.conv("x", 1, 4, pad=0))
    out.append((m, [("x", [2, 1, 12, 12])], [y], 2, 1, {}))
    # not fused: overlapping windows (3x3 stride 2, ResNet's and SqueezeNet's) -> 2 kernels
    m = M("overlapping_nofuse")
    y = pool(m, m.conv("x", 16, 16), k=3, strides=[2, 2])
    out.append((m, [("x", [1, 16, 9, 9])], [y], 2, 0, {}))
    # not fused: ceil_mode with a partial last window (9 = 2*4 + 1) -> 2 kernels
    m = M("ceil_partial_nofuse")
    y = pool(m, m.conv("x", 16, 16), ceil_mode=1)
    out.append((m, [("x", [1, 16, 9, 9])], [y], 2, 0, {}))
    # not fused: the Relu's output is read twice (pool and a graph output) -> 2 kernels
    m = M("read_twice_nofuse")
    r = m.conv("x", 16, 16)
    y = pool(m, r)
    out.append((m, [("x", [1, 16, 8, 8])], [y, r], 2, 0, {}))
    # not fused: MaxPool's Indices output is asked for -> 2 kernels
    m = M("indices_nofuse")
    y, i = m.op("MaxPool", [m.conv("x", 16, 16)], nout=2, kernel_shape=[2, 2], strides=[2, 2])
    out.append((m, [("x", [1, 16, 8, 8])], [y, i], 2, 0, {}))
    # GlobalAveragePool after a 1x1 Conv + Relu on a 7x7 map (MobileNetV2's
    # and ResNet-50's last layer: the transposed GEMM, 1024 channels, so
    # at least 16 blocks of channels and no chunks of positions on 8
    # cores or fewer): pooled from the GEMM's scratch, one kernel
    m = M("gemmt_gap")
    y = m.op("GlobalAveragePool", [m.conv("x", 64, 1024, k=1, pad=0)])
    out.append((m, [("x", [1, 64, 7, 7])], [y], 1, 1, {}))
    # the same with a residual Add before the Relu (ResNet-50's
    # layer4.2.conv3), two images: one kernel, the Add's Neg a second
    m = M("gemmt_residual_gap")
    c = m.conv("x", 64, 1024, k=1, pad=0, relu=False)
    s = m.op("Neg", ["x2"])
    y = m.op("GlobalAveragePool", [m.op("Relu", [m.op("Add", [c, s])])])
    out.append((m, [("x", [2, 64, 7, 7]), ("x2", [2, 1024, 7, 7])], [y], 2, 1, {}))
    # a 3x3 Conv at 13x13 (SqueezeNet's map; the GEMM over im2col rows),
    # no Relu: one kernel
    m = M("gemmt_im2col_gap")
    y = m.op("GlobalAveragePool", [m.conv("x", 16, 1024, relu=False)])
    out.append((m, [("x", [1, 16, 13, 13])], [y], 1, 1, {}))
    # fused in the graph, lowered without: a 14x14 map (the register
    # path) -> 2 kernels; so is a 3-D one (3-D CNN's head) -> 2 kernels
    m = M("register_gap_split")
    y = m.op("GlobalAveragePool", [m.conv("x", 32, 64, k=1, pad=0)])
    out.append((m, [("x", [1, 32, 14, 14])], [y], 2, 1, {}))
    m = M("conv3d_gap_split")
    y = m.op("GlobalAveragePool", [m.conv("x", 4, 8, sp=3)])
    out.append((m, [("x", [1, 4, 5, 6, 7])], [y], 2, 1, {}))
    # not fused: the Relu before the pool is also a graph output -> 2 kernels
    m = M("gap_read_twice_nofuse")
    r = m.conv("x", 64, 1024, k=1, pad=0)
    y = m.op("GlobalAveragePool", [r])
    out.append((m, [("x", [1, 64, 7, 7])], [y, r], 2, 0, {}))
    # two stages back to back (U-Net's encoder): conv, conv+pool, conv+pool -> 3 kernels
    m = M("two_stages")
    a = pool(m, m.conv(m.conv("x", 32, 32), 32, 32))
    y = pool(m, m.conv(a, 32, 48), op="AveragePool")
    out.append((m, [("x", [1, 32, 20, 20])], [y], 3, 2, {}))
    return out


def run(cmd, env=None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env)
    except OSError as e:
        return subprocess.CompletedProcess(cmd, 127, "", str(e))


def kiln_outputs(kiln, path, d, inputs, outputs, tag, env, flags=()):
    od = os.path.join(d, tag)
    p = run([kiln, "run", path, "--output", od] + list(flags) + sum([["--input", f"{n}={os.path.join(d, n + '.npy')}"]
                                                      for n, _ in inputs], []), env)
    got = []
    for name in outputs:
        f = os.path.join(od, name + ".npy")
        got.append(np.load(f) if p.returncode == 0 and os.path.exists(f) else None)
    return got, p.stderr.strip()


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(13)
    for m, inputs, outputs, kernels, fused, extra in cases():
        env = dict(os.environ, **extra)
        d, path, feeds, ref = onnx_case(m, inputs, outputs, work, rng)
        p = run([kiln, "inspect", path, "--loops"], env)
        got_k = sum(1 for line in p.stdout.splitlines() if line.startswith("kernel "))
        check(f"{m.name}: {kernels} kernels", p.returncode == 0 and got_k == kernels, f"{got_k} kernels; {p.stderr.strip()}")
        p = run([kiln, "inspect", path, "--verbose"], env)
        got_f = sum(1 for line in p.stdout.splitlines() if "Pool " in line and "(fused into" in line)
        check(f"{m.name}: {fused} pools fused", p.returncode == 0 and got_f == fused, f"{got_f}; {p.stderr.strip()}")
        got, err = kiln_outputs(kiln, path, d, inputs, outputs, "fused", env)
        plain, err2 = kiln_outputs(kiln, path, d, inputs, outputs, "unfused", dict(env, KILN_FUSE_POOL="0"))
        for k, name in enumerate(outputs):
            g, u, r = got[k], plain[k], ref[k]
            ok = g is not None and g.shape == r.shape
            if r.dtype == np.int64:
                check(f"{m.name}: {name} == ORT", ok and np.array_equal(g, r), err)
                continue
            detail = err if g is None else f"shape {g.shape}" if not ok else f"max diff {np.max(np.abs(g - r))}"
            check(f"{m.name}: {name} == ORT (rtol = atol = {TOL})", ok and np.allclose(g, r, rtol=TOL, atol=TOL), detail)
            same = ok and u is not None and u.shape == g.shape and np.array_equal(g, u)
            check(f"{m.name}: {name} fused == unfused, bit for bit", same,
                  err2 if u is None else "" if not ok else f"max diff {np.max(np.abs(g - u))}")
    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
