#!/usr/bin/env python3
"""Training-mode Dropout end to end, against NumPy with the mask hash
re-implemented here from its specification (passes/lower_dropout.c):

  GAMMA = 0x9E3779B97F4A7C15, mix = splitmix64's output function,
  key = mix(seed + GAMMA (stream + 1)), skey = mix(key + GAMMA step),
  r[i] = mix(skey + GAMMA (i + 1)) >> 40, kept when r[i] >= ceil(ratio 2^24),
  mask = kept / (1 - ratio) in float32.

Usage:  python3 tests/passes/test_train_dropout.py KILN_BINARY WORK_DIR

The model (onnx.helper, seeded NumPy weights): x [N,4] -> Dropout(0.25, no
seed: stream 0) -> Gemm(W1 [300,4], b1) -> Dropout(0.4, seed=11: stream 1)
-> Gemm(W2 [3,300], b2) -> y [N,3]; MSE loss, plain SGD, 4 samples = one
batch per epoch (the batch order is runtime/kiln_shuffle.h's, kiln train's and the
emitted program's alike, re-implemented as in
tests/tools/test_train_artifact.py).  The float64 reference uses the
masks recomputed here (the independent definition of which elements drop).

Checked, after one and after two SGD steps (steps 1 and 2: two different
masks per Dropout):
  - `kiln emit-c --train` (the standalone C program, built with
    cc -std=c99 -Wall -Wextra -Wpedantic -Werror): per-epoch losses within
    1e-5 relative of the reference and the parameters it writes (through
    `kiln export --params`) within 1e-5 x max(1, |p|): float32 over a few
    dozen roundings of O(1) values stays near 1e-6;
  - `kiln train` (the LLVM JIT): metrics.csv's train_loss and model.onnx's
    initializers, the same bounds;
  - the reference itself drops something: with the masks replaced by ones
    its losses differ by far more than the bound (so the check can fail);
  - inference (`kiln run`, no train pass) still treats Dropout as the
    identity: the output equals ONNX Runtime's within 1e-5.
"""

import csv
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KILN, WORK = sys.argv[1], sys.argv[2]
FAIL = []
NS, LR, SEED = 4, 0.01, 7
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
R_IN, R_H, SEED_H = np.float32(0.25), np.float32(0.4), 11


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAIL.append(what)
    return cond


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


# ---- the mask, from its specification ----

def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mask(shape, ratio, seed, stream, step):
    key = mix((seed + GAMMA * (stream + 1)) & M64)
    skey = mix((key + GAMMA * step) & M64)
    threshold = math.ceil(float(ratio) * 2.0 ** 24)
    scale = np.float32(1.0 / (1.0 - float(ratio)))
    n = int(np.prod(shape))
    keep = [(mix((skey + GAMMA * (i + 1)) & M64) >> 40) >= threshold for i in range(n)]
    return np.where(np.array(keep).reshape(shape), scale, np.float32(0)).astype(np.float64)


# ---- the model and the reference ----

rng = np.random.default_rng(99)
H = 300  # hidden width: the hidden mask (4 x 300) is one block of 1024 and a remainder (lower_dropout.c)
P0 = {"W1": rng.standard_normal((H, 4)) * 0.5, "b1": rng.standard_normal(H) * 0.1,
      "W2": rng.standard_normal((3, H)) * 0.2, "b2": rng.standard_normal(3) * 0.1}
P0 = {k: v.astype(np.float32) for k, v in P0.items()}
X = rng.standard_normal((NS, 4)).astype(np.float32)
T = rng.standard_normal((NS, 3)).astype(np.float32)


def model(path):
    nodes = [helper.make_node("Dropout", ["x", "r_in"], ["xd"], name="drop_in"),
             helper.make_node("Gemm", ["xd", "W1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Dropout", ["h", "r_h"], ["hd"], name="drop_h", seed=SEED_H),
             helper.make_node("Gemm", ["hd", "W2", "b2"], ["y"], name="fc2", transB=1)]
    inits = [numpy_helper.from_array(v, k) for k, v in P0.items()]
    inits += [numpy_helper.from_array(np.array(R_IN, np.float32), "r_in"),
              numpy_helper.from_array(np.array(R_H, np.float32), "r_h")]
    g = helper.make_graph(nodes, "dropmlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def splitmix(s):
    s = (s + GAMMA) & M64
    return s, mix(s)


def epoch_order(s, n):
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        s, r = splitmix(s)
        j = r % (i + 1)
        order[i], order[j] = order[j], order[i]
    return s, order


def reference(steps, dropout=True):
    """Losses and parameters after `steps` SGD steps, in the batch order of
    runtime/kiln_shuffle.h (both the emitted C program's and kiln train's)."""
    p = {k: v.astype(np.float64) for k, v in P0.items()}
    s, losses = SEED, []
    for step in range(1, steps + 1):
        s, order = epoch_order(s, NS)
        xb, tb = X[order].astype(np.float64), T[order].astype(np.float64)
        mx = mask(xb.shape, R_IN, 0, 0, step) if dropout else 1.0
        xd = xb * mx
        h = xd @ p["W1"].T + p["b1"]
        mh = mask(h.shape, R_H, SEED_H, 1, step) if dropout else 1.0
        hd = h * mh
        y = hd @ p["W2"].T + p["b2"]
        e = y - tb
        losses.append(float(np.mean(e * e)))
        dy = 2 * e / e.size
        g = {"W2": dy.T @ hd, "b2": dy.sum(0)}
        dh = (dy @ p["W2"]) * mh
        g["W1"], g["b1"] = dh.T @ xd, dh.sum(0)
        p = {k: p[k] - LR * g[k] for k in p}
    return losses, p


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


def params_close(got, want, what):
    errs = [float(np.max(np.abs(got[k] - want[k]) / np.maximum(1, np.abs(want[k])))) for k in want]
    check(max(errs) <= 1e-5, f"{what}: parameters = NumPy's (max err {max(errs):.2e} <= 1e-5 x max(1, |p|))")


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
MODEL = os.path.join(WORK, "dropmlp.onnx")
model(MODEL)
np.save(os.path.join(WORK, "x.npy"), X)
np.save(os.path.join(WORK, "y.npy"), T)

# the reference really drops: masks of ones give other losses, and each step draws a new mask
ref2, _ = reference(2)
ones2, _ = reference(2, dropout=False)
check(min(rel(a, b) for a, b in zip(ref2, ones2)) > 1e-2,
      f"the reference's dropout matters: losses {ref2} vs {ones2} without it")
m1, m2 = mask((NS, H), R_H, SEED_H, 1, 1), mask((NS, H), R_H, SEED_H, 1, 2)
check(0 < np.count_nonzero(m1) < m1.size and not np.array_equal(m1, m2), "the hidden masks of steps 1 and 2 differ")

# ---- emit-c --train: the standalone C program ----
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
d = os.path.join(WORK, "c")
r = run([KILN, "emit-c", MODEL, "--train", "--loss", "mse", "--optimizer", "sgd", "--batch", str(NS), "-o", d,
         "--name", "dm"])
if check(r.returncode == 0, f"emit-c --train ({r.stderr.strip()})"):
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "dm.c", "dm_weights.c", "-lm"], cwd=d)
    if check(r.returncode == 0, f"main.c + step build with {' '.join(CFLAGS)} ({r.stderr[:2000]})"):
        for steps in (1, 2):
            pf = os.path.join(d, f"params{steps}.bin")
            r = run([exe, os.path.join(WORK, "x.npy"), os.path.join(WORK, "y.npy"), "--epochs", str(steps),
                     "--lr", str(LR), "--seed", str(SEED), "--out", pf])
            got = [float(v) for v in re.findall(r"^epoch \d+ loss (\S+)$", r.stdout, re.M)]
            want, pref = reference(steps)
            if not check(r.returncode == 0 and len(got) == steps, f"C program, {steps} step(s) ({r.stderr.strip()})"):
                continue
            worst = max(rel(a, b) for a, b in zip(got, want))
            check(worst <= 1e-5, f"C program, {steps} step(s): losses {got} = NumPy's {want} (max rel {worst:.2e})")
            onx = os.path.join(d, f"trained{steps}.onnx")
            r = run([KILN, "export", MODEL, "--params", pf, "-o", onx])
            if check(r.returncode == 0, f"export --params ({r.stderr.strip()})"):
                inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(onx).graph.initializer}
                params_close(inits, pref, f"C program, {steps} step(s)")

# ---- kiln train: the JIT ----
for steps in (1, 2):
    out = os.path.join(WORK, f"train{steps}")
    r = run([KILN, "train", MODEL, "--data", WORK, "--val", WORK, "--epochs", str(steps), "--batch", str(NS),
             "--optimizer", "sgd", "--lr", str(LR), "--loss", "mse", "--seed", str(SEED), "--out", out])
    if not check(r.returncode == 0, f"kiln train, {steps} step(s) ({r.stderr.strip()[-2000:]})"):
        continue
    want, pref = reference(steps)
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    got = [float(row["train_loss"]) for row in rows]
    check(len(got) == steps and max(rel(a, b) for a, b in zip(got, want)) <= 1e-5,
          f"kiln train, {steps} step(s): train losses {got} = NumPy's {want}")
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(os.path.join(out, "model.onnx")).graph.initializer}
    params_close(inits, pref, f"kiln train, {steps} step(s)")

# ---- inference: Dropout is still the identity ----
r = run([KILN, "run", MODEL, "--input", "x=" + os.path.join(WORK, "x.npy"), "--batch", str(NS), "--output",
         os.path.join(WORK, "inf")])
if check(r.returncode == 0, f"kiln run (inference) ({r.stderr.strip()})"):
    got = np.load(os.path.join(WORK, "inf", "y.npy"))
    import onnxruntime as ort
    sess = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": X})[0]
    err = float(np.max(np.abs(got - want)))
    check(err <= 1e-5, f"inference output = ONNX Runtime's (Dropout the identity; max abs err {err:.2e})")

if FAIL:
    print(f"{len(FAIL)} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("all checks passed")
