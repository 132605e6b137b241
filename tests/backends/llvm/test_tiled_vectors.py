#!/usr/bin/env python3
"""The tiled tier's tailored pipeline (backends/llvm/llvm_optimise.c) still
vectorises the register tiles, on the host and under KILN_CPU=znver3 (AVX2).

    test_tiled_vectors.py KILN WORK_DIR

Register-tile kernels (kernel flag explicit_vectors, set by the
convolution lowerings) skip default<O3>: their pipeline has no loop
vectoriser; the printer writes the tile's lanes as vectors
(backends/llvm/llvm_lanes.c) and the SLP vectoriser groups what it leaves
scalar.  Should the vectors get lost, the kernel would still compute the
right values, just 8 or 16 times slower; so this test reads the machine
code.  For a 3x3 and a 1x1 convolution (64 channels, the register path),
compiled with `kiln compile` (an ELF object) once with the tiers and once
with KILN_OPT=O3 (every kernel through default<O3>, kiln's old pipeline):

  * packed single-precision FMAs (vfmadd...ps) on the target's widest
    registers: at least one tile's worth (6 rows x 4 zmm vectors with
    AVX-512, 6 x 2 ymm with AVX2), and at least half as many as O3 emits
    (an unroller may double a loop; scalar code would have next to none);
  * no more scalar FMAs (vfmadd...ss) than O3 emits;
  * znver3 code uses no zmm register at all;
  * `kiln run` on both targets matches a float64 numpy convolution
    (max|k - ref| <= 1e-4 max|ref|, the zoo's tolerance: f32 sums of 576
    products in another order).
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def model(path, k, pad, rng):
    w = (rng.standard_normal((64, 64, k, k)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[pad] * 4, name=f"conv{k}")
    g = helper.make_graph([conv], f"conv{k}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 16, 16])],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return w.astype(np.float64), b.astype(np.float64)


def reference(x, w, b, pad):
    k = w.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((1, 64, 16, 16)) + b[None, :, None, None]
    for i in range(k):
        for j in range(k):
            y += np.einsum("mc,nchw->nmhw", w[:, :, i, j], xp[:, :, i:i + 16, j:j + 16])
    return y


def fmas(obj):
    """{(mnemonic kind 'ps'/'ss', register 'zmm'/'ymm'/'xmm'): count} over the object's code."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True, check=True).stdout
    n = {}
    for line in out.splitlines():
        m = re.search(r"\tvfn?m(?:add|sub)\d+(ps|ss)\s+.*?%(zmm|ymm|xmm)", line)
        if m:
            n[m.groups()] = n.get(m.groups(), 0) + 1
    return n


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64, 16, 16)).astype(np.float32)
    np.save(f"{work}/x.npy", x)
    # KILN_SPATIAL_SPLIT=0: the 1x1's threads split output channels, as when
    # this test was written; split by positions (X outweighs W 4 times), each
    # block runs a 2-trip loop of tiles that O3 unrolls and the tiers do not,
    # and "half O3's count" would measure that loop, not the tile's vectors
    base = {k: v for k, v in os.environ.items() if k not in ("KILN_OPT", "KILN_CPU")}
    base["KILN_SPATIAL_SPLIT"] = "0"
    for k, pad in ((3, 1), (1, 0)):
        onx = f"{work}/conv{k}.onnx"
        w, b = model(onx, k, pad, rng)
        ref = reference(x, w, b, pad)
        for cpu in (None, "znver3"):
            env = dict(base, **({"KILN_CPU": cpu} if cpu else {}))
            name = f"conv{k}x{k} on {cpu or 'the host'}"
            counts = {}
            for opt in ("tiers", "O3"):
                e = dict(env, **({"KILN_OPT": "O3"} if opt == "O3" else {}))
                d = f"{work}/conv{k}-{cpu}-{opt}"
                r = subprocess.run([kiln, "compile", onx, "-o", d, "--name", "net"], env=e, capture_output=True, text=True)
                check(r.returncode == 0, f"{name} ({opt}): compile exits 0 {r.stderr[-300:]}")
                counts[opt] = fmas(f"{d}/net.o") if r.returncode == 0 else {}
            t, o = counts["tiers"], counts["O3"]
            wide = "zmm" if ("ps", "zmm") in o else "ymm"
            tile = 24 if wide == "zmm" else 12
            print(f"     {name}: FMAs with tiers {t}, with KILN_OPT=O3 {o}")
            pt, po = t.get(("ps", wide), 0), o.get(("ps", wide), 0)
            check(pt >= tile and 2 * pt >= po, f"{name}: packed {wide} FMAs {pt} >= a tile ({tile}) and >= half O3's {po}")
            scalar_t = sum(v for (kind, _), v in t.items() if kind == "ss")
            scalar_o = sum(v for (kind, _), v in o.items() if kind == "ss")
            check(scalar_t <= scalar_o, f"{name}: scalar FMAs {scalar_t} <= O3's {scalar_o}")
            if cpu == "znver3":
                check(wide == "ymm" and not any(reg == "zmm" for _, reg in t), f"{name}: AVX2 code, no zmm register")
            out = f"{work}/out{k}-{cpu}"
            r = subprocess.run([kiln, "run", onx, "--input", f"x={work}/x.npy", "--output", out], env=env,
                               capture_output=True, text=True)
            check(r.returncode == 0, f"{name}: run exits 0 {r.stderr[-300:]}")
            if r.returncode == 0:
                y = np.load(f"{out}/y.npy").astype(np.float64)
                err = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
                check(y.shape == ref.shape and err <= 1e-4, f"{name}: max|kiln - float64 numpy| / max|ref| = {err:.2e} <= 1e-4")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
