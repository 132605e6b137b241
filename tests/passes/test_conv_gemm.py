#!/usr/bin/env python3
"""Conv as a GEMM (passes/lower_conv_im2col.c, lower_conv_gemmt.c) against float64 NumPy.

Usage:  python3 tests/passes/test_conv_gemm.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

The im2col schedule takes one-group convolutions of 64K multiply-adds or
more with at most 4 input channels and at most 64 products per output
(3x3 stems, stride 2) and 1x1
stride-1 unpadded ones with 8..31 input channels; its tile is MB output
channels by VL positions (8 x 48 or 6 x 64 f32 with 64-byte vectors, 6 x 16
with 32-byte ones: run it under KILN_CPU=znver3 for the AVX2 shape), with
a short block where MB does not divide M, tail tiles of whole vectors and
of the last few positions, and supertiles when the packed rows outgrow
half the L2.  The transposed ("GEMM") schedule takes 1x1 convolutions on
small maps with many channels: vectors over output channels, weights
re-laid out in blocks of them.  Cases land on each of those tails and
cover odd sizes, N=2, pads (asymmetric), strides, dilation, 1-D and 3-D,
f64, f16, no bias, and fused epilogues (Relu, Clip, residual Add + Relu),
which the schedule applies at its final store.

TOLERANCE, per output element with reference r (float64 NumPy of the
definition, passes/conv_def.h, on the same inputs; f16 values widen
exactly):
  conv:  |y - r| <= n * u * S + u_out * |r|
with n = C/group * taps products, S = |b| + sum |w * x|, u the unit
roundoff of the compute type (2^-24 f32, 2^-53 f64; f16 computes in f32)
and u_out the output's (2^-11 for f16).  That is the worst-case bound for
a floating-point sum of n terms in any order (Higham, "Accuracy and
Stability", 4.2) plus the final rounding.  Relu and Clip are 1-Lipschitz
and exact, so the bound carries through them.  A residual Add (y = conv +
r2, then Relu) adds one rounding of its result: + u_out * |conv + r2|
(the conv value itself is rounded to the output type first, as the
unfused graph stores it, already counted).  A wrong index or a dropped
term errs by the size of a term, far above the bound.

Prints "PASS name: ..." or "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


zoo_run = load("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
blocks = load("conv_blocks", REPO / "tests" / "passes" / "test_conv_blocks.py")

# case-name prefix -> a buffer only that schedule makes (1x1 in place makes none)
SCHEDULE_MARK = {"im2col_": ".im2col :", "gemmt_": "w.blocked :"}

ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16}


def case(rng, x_shape, M, K, strides=None, dils=None, pads=None, bias=True, dt=np.float32, epi=None):
    """A Conv node (group 1), then epi: None, "relu", "clip" (0..6) or "add_relu" (a second input added, then Relu)."""
    sp = len(K)
    strides, dils = strides or [1] * sp, dils or [1] * sp
    pads = pads or [0] * (2 * sp)
    C = x_shape[1]
    x = rng.uniform(-1, 1, x_shape).astype(dt)
    w = rng.uniform(-1, 1, (M, C, *K)).astype(dt)
    b = rng.uniform(-1, 1, (M,)).astype(dt) if bias else None
    ref, s, n = blocks.conv_ref(x, w, b, strides, dils, pads, 1)
    t = ONNX_TYPE[dt]
    u = 2.0 ** -53 if dt == np.float64 else 2.0 ** -24
    out_u = 2.0 ** -11 if dt == np.float16 else u
    tol = n * u * s + out_u * np.abs(ref)
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    conv_out = "y" if epi is None else "c"
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), [conv_out], name="conv",
                              kernel_shape=list(K), strides=strides, dilations=dils, pads=pads)]
    ins = [helper.make_tensor_value_info("x", t, list(x_shape))]
    feeds = {"x": x}
    if epi == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
        ref = np.maximum(ref, 0)
    elif epi == "clip":
        inits += [numpy_helper.from_array(np.array(0, dt), "lo"), numpy_helper.from_array(np.array(6, dt), "hi")]
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip"))
        ref = np.clip(ref, 0, 6)
    elif epi == "add_relu":
        r2 = rng.uniform(-1, 1, ref.shape).astype(dt)
        feeds["r"] = r2
        ins.append(helper.make_tensor_value_info("r", t, list(ref.shape)))
        nodes.append(helper.make_node("Add", ["c", "r"], ["a"], name="add"))
        nodes.append(helper.make_node("Relu", ["a"], ["y"], name="relu"))
        ref = ref + r2.astype(np.float64)
        tol = tol + out_u * np.abs(ref)
        ref = np.maximum(ref, 0)
    g = helper.make_graph(nodes, "conv_gemm", ins, [helper.make_tensor_value_info("y", t, list(ref.shape))],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln-test")
    m.ir_version = 8
    return m, feeds, ref, tol


def build_cases(rng):
    c = {}
    # ---- im2col: stems (<= 4 input channels, several taps) ----
    # SqueezeNet-like 3x3 stride 2 unpadded, odd size, N=2, 64 channels (8 x 48 tiles), Relu fused
    c["im2col_3x3_s2_n2_relu"] = case(rng, (2, 3, 23, 21), 64, [3, 3], strides=[2, 2], epi="relu")
    # stride-2 pack rows of 35 and 33 outputs: whole groups of lanes (each tap's loads every other
    # element), then one group overlapping the last (taps 0 and 2 read 35 columns, tap 1 of the
    # padded row 34); rows of 32: whole groups only
    c["im2col_3x3_s2_w71_groups"] = case(rng, (1, 3, 20, 71), 16, [3, 3], strides=[2, 2], pads=[0, 1, 0, 0])
    c["im2col_3x3_s2_w65_whole"] = case(rng, (1, 2, 41, 65), 16, [3, 3], strides=[2, 2], epi="relu")
    # MobileNetV2-like 3x3 stride 2 pad 1, 32 channels, Clip(0, 6)
    c["im2col_3x3_s2_pad1_clip"] = case(rng, (1, 3, 17, 19), 32, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                        epi="clip")
    # ResNet-like 7x7 stride 2 pad 3 (K = 147: the register path, kept as a neighbour's check)
    c["stem_7x7_s2_pad3_m13"] = case(rng, (1, 3, 30, 30), 13, [7, 7], strides=[2, 2], pads=[3, 3, 3, 3])
    # one input channel, 5x5 pad 2, no bias
    c["im2col_c1_5x5_nobias"] = case(rng, (1, 1, 11, 12), 32, [5, 5], pads=[2, 2, 2, 2], bias=False)
    # 4 channels, dilation 2, stride (2, 1), asymmetric pads
    c["im2col_c4_dil2_asym"] = case(rng, (1, 4, 14, 13), 40, [3, 3], strides=[2, 1], dils=[2, 2],
                                    pads=[0, 1, 2, 1])
    # 10000 positions of 27 rows: two supertiles, the second short, and a tail of 16 positions
    c["im2col_supertiles"] = case(rng, (1, 3, 100, 100), 8, [3, 3], pads=[1, 1, 1, 1])
    # chunks of output rows whose 27 Xc rows fit the L2, each packed and multiplied in one
    # iteration of the parallel loop over (image, chunk): 227 rows of 230 positions (24.8 KB
    # of Xc a row) end in a short chunk (84 + 84 + 59 rows with a 2 MB L2, 21-row chunks
    # and a tail of 17 with 512 KB)
    c["im2col_chunks_n2_tail"] = case(rng, (2, 3, 227, 230), 8, [3, 3], pads=[1, 1, 1, 1], epi="relu")
    # a 3-D stem whose one row of depth (130 x 130 positions, 1.8 MB of Xc) outgrows the
    # L2: chunks of one row
    c["im2col_3d_chunks_minrows"] = case(rng, (1, 1, 10, 130, 130), 8, [3, 3, 3], pads=[1, 1, 1, 1, 1, 1])
    # 1-D and 3-D
    c["im2col_1d_k5_s2"] = case(rng, (2, 2, 601), 16, [5], strides=[2], pads=[2, 1])
    c["im2col_3d_3x3x3"] = case(rng, (1, 2, 5, 6, 7), 7, [3, 3, 3], pads=[1, 1, 1, 1, 1, 1])
    # residual Add + Relu fused at the store; f64; f16
    c["im2col_3x3_add_relu"] = case(rng, (1, 3, 15, 16), 12, [3, 3], pads=[1, 1, 1, 1], epi="add_relu")
    c["im2col_f64_3x3_s2"] = case(rng, (1, 3, 19, 19), 32, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                  dt=np.float64)
    c["im2col_f16_3x3_s2_relu"] = case(rng, (1, 3, 21, 21), 24, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                       dt=np.float16, epi="relu")
    # ---- im2col: 1x1 stride 1 unpadded with 8..31 input channels, X read in place ----
    c["1x1_c16_m96_clip"] = case(rng, (1, 16, 15, 15), 96, [1, 1], epi="clip")
    c["1x1_c8_m15_n2_nobias"] = case(rng, (2, 8, 19, 17), 15, [1, 1], bias=False)
    c["1x1_c24_m20_add_relu"] = case(rng, (1, 24, 11, 13), 20, [1, 1], epi="add_relu")
    c["1x1_c16_f16"] = case(rng, (1, 16, 17, 17), 16, [1, 1], dt=np.float16)
    c["1x1_c31_1d"] = case(rng, (1, 31, 377), 6, [1])
    # ---- transposed GEMM: 1x1 stride 1 unpadded, >= 32 input products, <= 169 positions ----
    # 40 channels: a block of 48 lanes (64 with AVX-512, 16s with AVX2) storing 40; 169 positions
    c["gemmt_13x13_m40_relu"] = case(rng, (1, 64, 13, 13), 40, [1, 1], epi="relu")
    # N=2, 100 channels (one full block and a tail), residual Add + Relu, 7x7
    c["gemmt_7x7_n2_m100_add_relu"] = case(rng, (2, 48, 7, 7), 100, [1, 1], epi="add_relu")
    # 15 positions: tiles of 6, 6 and 3; no bias
    c["gemmt_5x3_nobias"] = case(rng, (1, 33, 5, 3), 16, [1, 1], bias=False)
    c["gemmt_1d_clip"] = case(rng, (1, 40, 50), 64, [1], epi="clip")
    c["gemmt_f64_6x6"] = case(rng, (1, 32, 6, 6), 24, [1, 1], dt=np.float64)
    # f16 X stays off the gemmt schedule (it would convert X at every read:
    # lower_conv_gemmt.c); the values are still checked on the path that takes it
    c["f16_1x1_7x7"] = case(rng, (1, 40, 7, 7), 32, [1, 1], dt=np.float16)
    # 13x13 by 128 channels: the largest map the schedule takes, two blocks
    c["gemmt_13x13_m128"] = case(rng, (1, 96, 13, 13), 128, [1, 1], epi="relu")
    # ---- transposed GEMM over im2col rows: taps, strides or pads on a map whose positions
    # leave a partial vector (49, 169...), at least one whole block of channels ----
    c["gemmt_3x3_pad1_7x7_m128_relu"] = case(rng, (1, 64, 7, 7), 128, [3, 3], pads=[1, 1, 1, 1], epi="relu")
    # stride 2 (14 -> 7), two images (the images' loop outside the parallel one), a block and a tail of 16
    c["gemmt_3x3_s2_n2_m80_add_relu"] = case(rng, (2, 32, 14, 14), 80, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                             epi="add_relu")
    # ResNet's downsample: 1x1 stride 2, 13x13 -> 7x7
    c["gemmt_1x1_s2_downsample"] = case(rng, (1, 64, 13, 13), 64, [1, 1], strides=[2, 2])
    # 512 channels x 9 taps = 4608 products: k in chunks whose weights fill half the L1 (48 of
    # 96 rows of 64 floats with AVX-512's 48 KB; 256-row chunks of 16 lanes with AVX2's 32 KB),
    # the sums kept in Yt between them; one
    # block, so the last chunk's prefetch of the next block is clamped to the weights' end
    c["gemmt_kchunks_3x3_c512"] = case(rng, (1, 512, 7, 7), 64, [3, 3], pads=[1, 1, 1, 1])
    # two blocks of 64 channels (AVX-512; eight of 16 with AVX2), 2304 products in chunks, Relu
    # after the last one: every chunk prefetches the next, the first block's last the second's first
    c["gemmt_kchunks_2blocks_3x3_c256_relu"] = case(rng, (1, 256, 7, 7), 128, [3, 3], pads=[1, 1, 1, 1], epi="relu")
    c["gemmt_3x3_dil2_asym_11x12"] = case(rng, (1, 40, 12, 13), 64, [3, 3], dils=[2, 2], pads=[2, 1, 1, 2])
    c["gemmt_f64_3x3_7x7"] = case(rng, (1, 32, 7, 7), 64, [3, 3], pads=[1, 1, 1, 1], dt=np.float64, epi="clip")
    c["gemmt_1d_k3_pad1"] = case(rng, (1, 40, 60), 64, [3], pads=[1, 1])
    # ---- 1x1s at 14x14 (196 positions) with 256 channels or more in and out ----
    # X (256 x 196) outweighs a quarter of W (256 x 256), and 4 blocks are fewer than the fixed
    # C target's 8 cores: the threads split the positions too, in chunks of whole 6-position
    # tiles (32 tiles; the last chunk takes the 4 left over)
    c["gemmt_14x14_c256_m256_add_relu_split"] = case(rng, (1, 256, 14, 14), 256, [1, 1], epi="add_relu")
    # 1000 channels: W outweighs X 4 times and 16 blocks (15 and a tail of 40) fill the
    # cores twice: the threads split the blocks only
    c["gemmt_14x14_c256_m1000_relu"] = case(rng, (1, 256, 14, 14), 1000, [1, 1], epi="relu")
    # ResNet-50's layer3 downsample shape, smaller: 1x1 stride 2, 28x28 -> 14x14, over im2col rows
    c["gemmt_1x1_s2_14x14_c256_m512_split"] = case(rng, (1, 256, 28, 28), 512, [1, 1], strides=[2, 2])
    return c


def check_schedule(kiln, name, path):
    """The schedule the case is named after took it: its scratch buffer is in the loop IR."""
    marker = next((m for p, m in SCHEDULE_MARK.items() if name.startswith(p)), None)
    if not marker:
        return None
    dump = subprocess.run([kiln, "inspect", "--loops", str(path)], capture_output=True, text=True).stdout
    if marker not in dump:
        return f"the loop IR has no '{marker}' buffer: another schedule took the case"
    # the transposed GEMM's tiles prefetch the weights of the next chunk or block (a tile
    # of the block's first ones, unless the block is all there is)
    if name.startswith("gemmt_kchunks") and not re.search(r"prefetch %w\.blocked\[", dump):
        return "the transposed GEMM's tiles prefetch nothing"
    # positions in chunks across the threads where the blocks are few or X outweighs a
    # quarter of W (for the fixed C target's 8 cores, which `inspect` lowers for)
    if name.startswith("gemmt_14x14") or name.startswith("gemmt_1x1_s2_14x14"):
        verbose = subprocess.run([kiln, "inspect", str(path), "--verbose"], capture_output=True, text=True).stdout
        split = "transposed GEMM" in verbose and re.search(r"positions in \d+ chunks", verbose) is not None
        if split != name.endswith("_split"):
            return f"threads split positions: {split}, expected {name.endswith('_split')}"
    return None


def main(argv):
    return blocks.main(argv, build_cases, check_schedule)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
