#!/usr/bin/env python3
"""Strided Conv reading X in place (passes/lower_conv_strided.c) against float64 NumPy.

Usage:  KILN_STRIDED=1 python3 tests/passes/test_conv_strided.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

The schedule is taken by `--lean-memory` where the register path's phase
planes do not fit; KILN_STRIDED=1 (set by this script when unset) takes it
wherever the shape allows, so every case below runs through it and is
checked to name it (`kiln inspect --verbose`, the fixed C target).  A
one-node model's plan leaves no room for the slots' rows of sums, so each
sum is stored straight into Y; KILN_STRIDED=1r keeps the rows (Yt) and
their copy out, the form larger networks get.

A tile is PB = 6 consecutive outputs of one row by RV output channels (64
with 64-byte vectors, 16 under KILN_CPU=znver3); the taps along a row are
unrolled, a tile at either end of a row has its columns known and takes
zero for those outside X, and a test per (channel, kernel row) skips rows
outside X.  The cases land on: left and right border tiles (pads 1 and 3,
asymmetric pads), rows whose windows leave X at the top and the bottom,
rows of fewer outputs than a tile, several tiles between the borders, a
last block of channels short of RV (M = 80: 64 + 16), batch 2, strides 2,
3 and 4, 1x1, 3x3, 5x5, 7x7 and 11x11 kernels, f32 and f64, bias or none.
Every output map has more than 169 positions or whole vectors of them, so
the transposed GEMM over im2col rows (lower_conv_gemmt.c, small maps) does
not take it first.

Tolerance: test_conv_blocks.py's (the classical bound for a sum of n
products in any order plus the final rounding).

Prints "PASS name: ..." or "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_conv_blocks as conv_blocks  # noqa: E402  (its case builder, reference and runner)

case = conv_blocks.case


def build_cases(rng):
    c = {}
    # ResNet's stride-2 3x3: pad 1 (left tile's first column outside X, top row's first kernel row)
    c["3x3_s2_p1_m64"] = case(rng, (1, 8, 29, 33), 64, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    # a short last block of channels (64 + 16), asymmetric pads, a bottom row leaving X
    c["3x3_s2_asym_m80"] = case(rng, (1, 6, 29, 30), 80, [3, 3], strides=[2, 2], pads=[0, 1, 2, 1])
    # a 7x7 stem from 3 channels: pad 3, several tiles between the borders (row of 20 outputs)
    c["7x7_s2_stem"] = case(rng, (1, 3, 34, 40), 64, [7, 7], strides=[2, 2], pads=[3, 3, 3, 3])
    # 1x1 stride 2 (a downsample), batch 2, no bias, 70 channels (64 + 6)
    c["1x1_s2_batch2_m70"] = case(rng, (2, 40, 29, 29), 70, [1, 1], strides=[2, 2], bias=False)
    # stride 3, 5x5, pad 2; stride 4, 11x11 (AlexNet's stem shape, small)
    c["5x5_s3_p2"] = case(rng, (1, 4, 44, 43), 64, [5, 5], strides=[3, 3], pads=[2, 2, 2, 2])
    c["11x11_s4_p2"] = case(rng, (1, 3, 71, 75), 64, [11, 11], strides=[4, 4], pads=[2, 2, 2, 2])
    # rows of fewer outputs than a tile (3 columns out); a wide row (31 outputs: many tiles)
    c["3x3_s2_narrow"] = case(rng, (1, 16, 120, 6), 64, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c["3x3_s2_wide"] = case(rng, (1, 16, 21, 61), 64, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    # different strides per dim
    c["3x3_s2x3"] = case(rng, (1, 5, 30, 50), 64, [3, 3], strides=[2, 3], pads=[1, 1, 1, 1])
    # f64: RV = 32 lanes of doubles with 64-byte vectors
    c["f64_3x3_s2_m40"] = case(rng, (1, 5, 29, 31), 40, [3, 3], strides=[2, 2], pads=[1, 1, 1, 1], dt=np.float64)
    return c


def strided_check(kiln, name, path):
    proc = subprocess.run([kiln, "inspect", str(path), "--verbose"], capture_output=True, text=True, timeout=300)
    line = next((ln.strip() for ln in proc.stdout.splitlines() if "Conv" in ln and "[" in ln), "")
    if "reading X in place, weights blocked" not in line:
        return "not the strided schedule: " + (line or proc.stderr.strip()[-300:])
    return None


if __name__ == "__main__":
    os.environ.setdefault("KILN_STRIDED", "1")
    sys.exit(conv_blocks.main(sys.argv, cases=build_cases, check=strided_check))
