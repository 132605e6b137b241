#!/usr/bin/env python3
"""Training as an artifact: `kiln emit-c --train`, `kiln compile --train`,
`kiln inspect --train`, `kiln export --params`, against a NumPy reference.

Usage:  python3 tests/tools/test_train_artifact.py KILN_BINARY WORK_DIR

The model (built here with onnx.helper, weights from a seeded NumPy
generator): x [N,4] -> Gemm(W1 [5,4], b1, transB) -> Gemm(W2 [3,5], b2,
transB) -> y [N,3], trained with the MSE loss on a synthetic data set (22
samples, written here with numpy.save).  The reference is float64 NumPy:
the same forward, MSE = mean((y - t)^2), its gradient by hand, SGD /
momentum / Adam as torch.optim writes them, and the batch order of
runtime/kiln_shuffle.h (splitmix64, Fisher-Yates per epoch, last short
batch dropped) re-implemented from its specification.

Checked:
  - emit-c --train: main.c + the step compile with
    cc -std=c99 -Wall -Wextra -Wpedantic -Werror; the program's per-epoch
    mean losses equal the reference's within 1e-4 relative (kiln computes
    in float32: a few hundred roundings of 6e-8 over 15 steps stay far
    below 1e-4), for SGD, momentum and Adam, float32 and uint8 x;
  - `kiln train` with the same data, seed and options prints the same
    per-epoch losses as the emitted program (1e-4 relative);
  - its parameter file, through `kiln export --params`, is an ONNX model
    whose initializers equal the reference's trained parameters within
    1e-4 * max(1, |p|) (same argument) and which ONNX Runtime runs;
  - bad data (truncated .npy, wrong shape, labels of the wrong type) is one
    error line, exit status 1, no parameter file;
  - compile --train: the object + a C driver linked with the runtime runs
    one step; its loss and the parameters in the state after it equal the
    reference's first step (1e-5 relative: one step, a handful of roundings);
  - BatchNorm in the step (its scale/bias frozen: no BN gradient yet):
    after one step the running statistics are ONNX-15's momentum * old +
    (1 - momentum) * batch statistic with the population variance, and the
    Gemm after it steps on batch-normalised activations; with
    --frozen-bn-inference the statistics stay and the running ones are used
    (1e-5 absolute: one step on O(1) values);
  - --new-classes: a Gemm head's new weight/bias equal, bit for bit, the
    nn.Linear-default init recomputed here from splitmix64(seed), and train
    like the reference; a SqueezeNet-like 1x1-Conv head gets [K,C,1,1] and y
    [N,K] (its full step needs Relu/GlobalAveragePool/LogSoftmax gradients:
    until they land the test prints SKIP naming the missing one);
  - cross-entropy: per-epoch losses vs NumPy (SKIP naming LogSoftmax until
    its gradient lands), and an out-of-range label is one error line;
  - a CNN (Conv, BatchNorm training mode, Relu, MaxPool, strided Conv, Tanh,
    GlobalAveragePool, Gemm; CE, Adam): the emitted program and kiln train
    print the same per-epoch losses (1e-4 relative);
  - inspect --train --json: trained/frozen parameter counts and bytes from
    the model's initializers, optimizer state bytes = trained bytes *
    moments (0 SGD, 1 momentum, 2 Adam), peak = workspace + state + weights.
"""

import json
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
B, NS, EPOCHS, LR, SEED = 4, 22, 3, 0.05, 7
M64 = (1 << 64) - 1


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAIL.append(what)
    return cond


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


rng = np.random.default_rng(1234)
P0 = {"W1": rng.standard_normal((5, 4)) * 0.5, "b1": rng.standard_normal(5) * 0.1,
      "W2": rng.standard_normal((3, 5)) * 0.5, "b2": rng.standard_normal(3) * 0.1}
P0 = {k: v.astype(np.float32) for k, v in P0.items()}
X = rng.standard_normal((NS, 4)).astype(np.float32)
T = rng.standard_normal((NS, 3)).astype(np.float32)
XU8 = rng.integers(0, 4, (NS, 4)).astype(np.uint8)  # small values: the loss stays moderate


def model(path):
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1", transB=1),
             helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], name="fc2", transB=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(v, k) for k, v in P0.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


# ---- the reference ----

def splitmix(s):
    s = (s + 0x9E3779B97F4A7C15) & M64
    z = s
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return s, z ^ (z >> 31)


def epoch_order(s, n):
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        s, r = splitmix(s)
        j = r % (i + 1)
        order[i], order[j] = order[j], order[i]
    return s, order


def forward(p, x):
    h = x @ p["W1"].T + p["b1"]
    return h, h @ p["W2"].T + p["b2"]


def reference(opt, x, t, epochs=EPOCHS, lr=LR, seed=SEED, steps=None):
    p = {k: v.astype(np.float64) for k, v in P0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    s, step, losses, first = seed, 0, [], None
    x, t = x.astype(np.float64), t.astype(np.float64)
    for _ in range(epochs):
        s, order = epoch_order(s, len(x))
        tot = []
        for b in range(len(x) // B):
            idx = order[b * B:(b + 1) * B]
            xb, tb = x[idx], t[idx]
            h, y = forward(p, xb)
            e = y - tb
            loss = np.mean(e * e)
            dy = 2 * e / e.size
            g = {"W2": dy.T @ h, "b2": dy.sum(0)}
            dh = dy @ p["W2"]
            g["W1"], g["b1"] = dh.T @ xb, dh.sum(0)
            step += 1
            for k in p:
                if opt == "sgd":
                    p[k] = p[k] - lr * g[k]
                elif opt == "momentum":
                    m[k] = 0.9 * m[k] + g[k]
                    p[k] = p[k] - lr * m[k]
                else:  # adam, torch.optim.Adam
                    m[k] = 0.9 * m[k] + 0.1 * g[k]
                    v2[k] = 0.999 * v2[k] + 0.001 * g[k] * g[k]
                    den = np.sqrt(v2[k]) / np.sqrt(1 - 0.999 ** step) + 1e-8
                    p[k] = p[k] - lr / (1 - 0.9 ** step) * m[k] / den
            tot.append(loss)
            if steps and step == steps:
                return loss, p
        losses.append(np.mean(tot))
    return losses, p


def read_losses(out):
    return [float(v) for v in re.findall(r"^epoch \d+ loss (\S+)$", out, re.M)]


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
MODEL = os.path.join(WORK, "mlp.onnx")
model(MODEL)
np.save(os.path.join(WORK, "x.npy"), X)
np.save(os.path.join(WORK, "y.npy"), T)
np.save(os.path.join(WORK, "xu8.npy"), XU8)
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]

# ---- emit-c --train ----
for opt in ("sgd", "momentum", "adam"):
    d = os.path.join(WORK, "c_" + opt)
    r = run([KILN, "emit-c", MODEL, "--train", "--loss", "mse", "--optimizer", opt, "--batch", str(B), "-o", d,
             "--name", "mlp"])
    if not check(r.returncode == 0, f"emit-c --train --optimizer {opt}: {r.stderr.strip()}"):
        continue
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "mlp.c", "mlp_weights.c", "-lm"], cwd=d)
    if not check(r.returncode == 0, f"{opt}: main.c + step build with {' '.join(CFLAGS)}: {r.stderr[:2000]}"):
        continue
    for xs, xarr in (("x.npy", X), ("xu8.npy", XU8 / 255.0)):
        if xs == "xu8.npy" and opt != "adam":
            continue
        pf = os.path.join(d, f"params_{xs}.bin")
        r = run([exe, os.path.join(WORK, xs), os.path.join(WORK, "y.npy"), "--epochs", str(EPOCHS), "--lr", str(LR),
                 "--seed", str(SEED), "--out", pf])
        got = read_losses(r.stdout)
        want, pref = reference(opt, xarr, T)
        check(r.returncode == 0 and len(got) == EPOCHS, f"{opt} {xs}: the program trains {EPOCHS} epochs ({r.stderr.strip()})")
        if len(got) == EPOCHS:
            worst = max(rel(a, b) for a, b in zip(got, want))
            check(worst <= 1e-4, f"{opt} {xs}: per-epoch losses {got} vs NumPy {[float(w) for w in want]}: "
                                 f"max rel {worst:.2e} <= 1e-4")
        # kiln train on the same data, seed and options: the same batches in
        # the same order (kiln_shuffle.h) through the same step, so the same
        # per-epoch losses within 1e-4 relative (both float32, the same
        # kernels up to the C compiler's and LLVM's rounding choices)
        data = os.path.join(d, f"data_{xs}")
        os.makedirs(data, exist_ok=True)
        shutil.copy(os.path.join(WORK, xs), os.path.join(data, "x.npy"))
        shutil.copy(os.path.join(WORK, "y.npy"), os.path.join(data, "y.npy"))
        tout = os.path.join(d, f"train_{xs}")
        shutil.rmtree(tout, ignore_errors=True)
        r = run([KILN, "train", MODEL, "--data", data, "--val-split", "0", "--loss", "mse", "--optimizer", opt,
                 "--batch", str(B), "--epochs", str(EPOCHS), "--lr", str(LR), "--seed", str(SEED), "--out", tout])
        if check(r.returncode == 0, f"{opt} {xs}: kiln train ({r.stderr.strip()})") and len(got) == EPOCHS:
            with open(os.path.join(tout, "metrics.csv")) as f:
                rows = [l.split(",") for l in f.read().split("\n")[1:] if l]
            kt = [float(row[1]) for row in rows]
            worst = max(rel(a, b) for a, b in zip(got, kt)) if len(kt) == EPOCHS else float("inf")
            check(worst <= 1e-4, f"{opt} {xs}: emitted C program's per-epoch losses {got} vs kiln train's {kt}: "
                                 f"max rel {worst:.2e} <= 1e-4")
        # parameters -> ONNX
        onx = os.path.join(d, f"trained_{xs}.onnx")
        r = run([KILN, "export", MODEL, "--params", pf, "-o", onx])
        if check(r.returncode == 0, f"{opt} {xs}: export --params ({r.stderr.strip()})"):
            inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(onx).graph.initializer}
            errs = [float(np.max(np.abs(inits[k] - pref[k]) / np.maximum(1, np.abs(pref[k])))) for k in pref]
            check(max(errs) <= 1e-4, f"{opt} {xs}: exported parameters equal NumPy's trained ones "
                                     f"(max err {max(errs):.2e} <= 1e-4 * max(1, |p|))")
            import onnxruntime as ort
            sess = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
            y = sess.run(None, {"x": X[:5]})[0]
            check(np.allclose(y, forward(pref, X[:5].astype(np.float64))[1], rtol=1e-4, atol=1e-5),
                  f"{opt} {xs}: ONNX Runtime runs the exported model, output = the reference's forward")

# bad data: one error line, exit 1, no parameter file
# (the program built again under ASan/UBSan: a leak or overflow on an error path fails the run)
d = os.path.join(WORK, "c_adam")
exe = os.path.join(d, "train_model_san")
r = run(["cc"] + CFLAGS + ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", exe, "main.c",
                           "mlp.c", "mlp_weights.c", "-lm"], cwd=d) if os.path.isdir(d) else None
if r is not None and check(r.returncode == 0, f"main.c builds under -fsanitize=address,undefined ({r.stderr[:1500]})"):
    raw = open(os.path.join(WORK, "x.npy"), "rb").read()
    bad = {"truncated": raw[:len(raw) - 7], "garbage": b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 40}
    for name, data in bad.items():
        open(os.path.join(WORK, name + ".npy"), "wb").write(data)
    np.save(os.path.join(WORK, "x_shape.npy"), np.zeros((NS, 5), np.float32))
    np.save(os.path.join(WORK, "y_int.npy"), np.zeros(NS, np.int64))
    np.save(os.path.join(WORK, "x_f64.npy"), X.astype(np.float64))
    for xs, ys in (("truncated.npy", "y.npy"), ("garbage.npy", "y.npy"), ("x_shape.npy", "y.npy"),
                   ("x.npy", "y_int.npy"), ("x_f64.npy", "y.npy"), ("x.npy", "truncated.npy"),
                   ("x.npy", "missing.npy")):
        pf = os.path.join(WORK, "bad_params.bin")
        r = run([exe, os.path.join(WORK, xs), os.path.join(WORK, ys), "--out", pf])
        check(r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(pf),
              f"bad data {xs} {ys}: one error line, exit 1, no parameter file ({r.stderr.strip()})")

# ---- hostile parameter names, weights in a file ----
HN = os.path.join(WORK, "hostile.onnx")
wn, bn = 'W"*/\n??=\\x%s', "b\x01\u00e9 ../../etc"
g = helper.make_graph([helper.make_node("Gemm", ["x", wn, bn], ["y"], name="fc */ \n", transB=1)], "h",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                      [numpy_helper.from_array(P0["W2"][:, :4].copy(), wn), numpy_helper.from_array(P0["b2"], bn)])
hm = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
hm.ir_version = 8
onnx.save(hm, HN)
d = os.path.join(WORK, "hostile")
r = run([KILN, "emit-c", HN, "--train", "--loss", "mse", "--batch", str(B), "--weights-file", "-o", d, "--name", "h"])
if check(r.returncode == 0, f"hostile names: emit-c --train --weights-file ({r.stderr.strip()})"):
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "h.c", "-lm"], cwd=d)
    if check(r.returncode == 0, f"hostile names: main.c builds ({r.stderr[:1500]})"):
        r = run([exe, os.path.join(WORK, "x.npy"), os.path.join(WORK, "y.npy")])
        check(r.returncode == 2 and "--weights" in r.stderr, "weights file not given: a usage error, no crash")
        pf = os.path.join(d, "p.bin")
        r = run([exe, os.path.join(WORK, "x.npy"), os.path.join(WORK, "y.npy"), "--weights", os.path.join(d, "h.weights"),
                 "--lr", "0", "--out", pf])
        onx = os.path.join(d, "p.onnx")
        r2 = run([KILN, "export", HN, "--params", pf, "-o", onx]) if r.returncode == 0 else r
        if check(r2.returncode == 0, f"hostile names: trains and exports ({r.stderr.strip()} {r2.stderr.strip()})"):
            got = {i.name: numpy_helper.to_array(i) for i in onnx.load(onx).graph.initializer}
            check(set(got) == {wn, bn} and np.array_equal(got[wn], P0["W2"][:, :4]),
                  "hostile names: the parameter file carries the exact names (lr 0: values unchanged)")

# ---- bad parameter files: one error line, exit 1, no ONNX written ----
import struct
good = os.path.join(WORK, "c_sgd", "params_x.npy.bin")
if os.path.exists(good):
    raw = open(good, "rb").read()

    def entry(name, dims, data, dtype=1, nbytes=None):
        nb = len(data) if nbytes is None else nbytes
        return (struct.pack("<I", len(name)) + name + struct.pack("<II", dtype, len(dims)) +
                b"".join(struct.pack("<Q", x) for x in dims) + struct.pack("<Q", nb) + data)

    bad = {"magic": b"KILNPAR2" + raw[8:], "truncated": raw[:-3], "trailing": raw + b"\0",
           "count": raw[:8] + struct.pack("<I", 5) + raw[12:],
           "unknown name": b"KILNPAR1" + struct.pack("<I", 1) + entry(b"nope", [3], b"\0" * 12),
           "dtype": b"KILNPAR1" + struct.pack("<I", 1) + entry(b"b2", [3], b"\0" * 24, dtype=11),
           "bytes": b"KILNPAR1" + struct.pack("<I", 1) + entry(b"b2", [3], b"\0" * 8),
           "huge dims": b"KILNPAR1" + struct.pack("<I", 1) + entry(b"b2", [1 << 62, 1 << 62], b"", nbytes=0),
           "twice": b"KILNPAR1" + struct.pack("<I", 2) + entry(b"b2", [3], b"\0" * 12) * 2,
           "bad shape": b"KILNPAR1" + struct.pack("<I", 1) + entry(b"b2", [7], b"\0" * 28)}
    for what, data in bad.items():
        pf, onx = os.path.join(WORK, "bad.params"), os.path.join(WORK, "bad_out.onnx")
        open(pf, "wb").write(data)
        r = run([KILN, "export", MODEL, "--params", pf, "-o", onx])
        check(r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("kiln: error: ")
              and not os.path.exists(onx), f"bad parameter file ({what}): one error line, exit 1, nothing written "
                                           f"({r.stderr.strip()})")

# ---- compile --train: one step through the object and the runtime ----
d = os.path.join(WORK, "obj")
r = run([KILN, "compile", MODEL, "--train", "--loss", "mse", "--optimizer", "adam", "--batch", str(B), "-o", d,
         "--name", "mlp"])
if check(r.returncode == 0, f"compile --train ({r.stderr.strip()})"):
    hdr = open(os.path.join(d, "mlp.h")).read()
    check("`lr`" in hdr and "`step`" in hdr and "`label`" in hdr, "compile --train: the header documents label, lr, step")
    s, order = epoch_order(SEED, NS)
    idx = order[:B]
    np.ascontiguousarray(X[idx]).tofile(os.path.join(WORK, "xb.bin"))
    np.ascontiguousarray(T[idx]).tofile(os.path.join(WORK, "tb.bin"))
    driver = os.path.join(WORK, "driver.c")
    open(driver, "w").write(r"""
#include <stdio.h>
#include <string.h>
#include "mlp.h"
static float xb[MLP_X_SIZE], tb[MLP_LABEL_SIZE], y[MLP_Y_SIZE];
int main(int argc, char **argv) {
  mlp_model *m;
  float lr = (float)LR_VALUE, step = 1, loss = 0;
  FILE *f;
  size_t bytes;
  const unsigned char *st;
  if (argc != 4) return 2;
  f = fopen(argv[1], "rb"); if (!f || fread(xb, 4, MLP_X_SIZE, f) != MLP_X_SIZE) return 3; fclose(f);
  f = fopen(argv[2], "rb"); if (!f || fread(tb, 4, MLP_LABEL_SIZE, f) != MLP_LABEL_SIZE) return 3; fclose(f);
  if (mlp_create(argv[3], &m) != KILN_RT_OK) return 4;
  if (mlp_run(m, xb, tb, &lr, &step, &loss, y) != KILN_RT_OK) return 5;
  printf("loss %.9g\n", loss);
  st = kiln_rt_state(m, &bytes);
  printf("state %zu\n", bytes);
  f = fopen("state.bin", "wb"); fwrite(st, 1, bytes, f); fclose(f);
  mlp_destroy(m);
  return 0;
}
""".replace("LR_VALUE", repr(LR)))
    exe = os.path.join(WORK, "driver")
    r = run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", d, "-o", exe, driver,
             os.path.join(d, "mlp.o"), os.path.join(d, "kiln_runtime.c"), "-lm", "-pthread"])
    if check(r.returncode == 0, f"compile --train: a C driver links the object and the runtime ({r.stderr[:2000]})"):
        r = run([exe, os.path.join(WORK, "xb.bin"), os.path.join(WORK, "tb.bin"), os.path.join(d, "mlp.weights")],
                cwd=WORK)
        m = re.search(r"^loss (\S+)$", r.stdout, re.M)
        want, pref = reference("adam", X, T, steps=1)
        check(r.returncode == 0 and m and rel(float(m.group(1)), want) <= 1e-5,
              f"compile --train: first-step loss {m.group(1) if m else r.stderr} = NumPy's {want:.9g} (1e-5 rel)")
        # the state after the step: each trained parameter at its offset (inspect --loops --train lists them)
        lo = run([KILN, "inspect", MODEL, "--loops", "--train", "--loss", "mse", "--optimizer", "adam", "--batch", str(B)])
        st = np.fromfile(os.path.join(WORK, "state.bin"), np.uint8) if r.returncode == 0 else None
        offs = dict(re.findall(r"^buffer %(\w+) : f32\[\d+\] state @(\d+)", lo.stdout, re.M))
        if check(st is not None and all(k in offs for k in pref), f"inspect --loops --train lists the state buffers ({sorted(offs)})"):
            errs = [float(np.max(np.abs(st[int(offs[k]):int(offs[k]) + 4 * pref[k].size].view(np.float32).reshape(pref[k].shape)
                                        - pref[k]))) for k in pref]
            check(max(errs) <= 1e-5, f"compile --train: parameters in the state after one Adam step = NumPy's "
                                     f"(max abs err {max(errs):.2e} <= 1e-5)")

# ---- inspect --train ----
sizes = {k: v.size for k, v in P0.items()}
for opt, moments in (("sgd", 0), ("momentum", 1), ("adam", 2)):
    for freeze in ([], ["W1"], ["W*", "b2"]):
        args = [KILN, "inspect", MODEL, "--train", "--json", "--loss", "mse", "--optimizer", opt, "--batch", str(B)]
        for f in freeze:
            args += ["--freeze", f]
        r = run(args)
        if not check(r.returncode == 0, f"inspect --train {opt} freeze {freeze} ({r.stderr.strip()})"):
            continue
        j = json.loads(r.stdout)
        import fnmatch
        fr = [k for k in sizes if any(fnmatch.fnmatchcase(k, f) for f in freeze)]
        trained = sum(sizes[k] for k in sizes if k not in fr)
        frozen = sum(sizes[k] for k in fr)
        ok = (j["trained_params"] == trained and j["trained_bytes"] == 4 * trained and j["frozen_params"] == frozen
              and j["frozen_bytes"] == 4 * frozen and j["optimizer_state_bytes"] == 4 * trained * moments
              and j["peak_bytes"] == j["workspace_bytes"] + j["state_blob_bytes"] + j["weights_bytes"]
              and j["state_blob_bytes"] >= 4 * trained * (1 + moments) and j["forward_nodes"] == 2)
        check(ok, f"inspect --train {opt} freeze {freeze}: trained {trained}, frozen {frozen}, optimizer state "
                  f"{4 * trained * moments} bytes; got {j}")
r = run([KILN, "inspect", MODEL, "--loss", "mse"])
check(r.returncode == 2 and "need --train" in r.stderr, "training options without --train: a usage error")
r = run([KILN, "inspect", MODEL, "--train", "--optimizer", "adagrad"])
check(r.returncode == 2 and "--optimizer" in r.stderr, "an unknown optimizer: a usage error naming the option")
r = run([KILN, "inspect", MODEL, "--train", "--momentum", "nan"])
check(r.returncode == 2 and "--momentum" in r.stderr, "--momentum nan: a usage error")


# ---- BatchNorm in the training step (forward part: its gradient lands separately) ----
# x [4,3,2,2] -> BatchNormalization(momentum 0.8) -> Flatten -> Gemm(W [2,12]) -> y; BN's scale and
# bias frozen, so no gradient flows through BN.  One epoch of one batch, SGD: the running statistics
# in the parameter file must be ONNX-15's momentum * old + (1 - momentum) * batch statistic with the
# population variance (PyTorch would fold in the unbiased one: n / (n - 1) = 16/15 larger, which the
# 1e-5 bound tells apart), and W's step must use the batch-normalised activations.
def bn_model(path):
    r = np.random.default_rng(5)
    inits = {"bn_scale": r.uniform(0.5, 1.5, 3), "bn_bias": r.standard_normal(3) * 0.1,
             "bn_mean": r.standard_normal(3) * 0.2, "bn_var": r.uniform(0.5, 2, 3),
             "W": r.standard_normal((2, 12)) * 0.3, "b": np.zeros(2)}
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    nodes = [helper.make_node("BatchNormalization", ["x", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["h"],
                              name="bn", momentum=0.8, epsilon=1e-5),
             helper.make_node("Flatten", ["h"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "bnnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])
    m.ir_version = 8
    onnx.save(m, path)
    return {k: v.astype(np.float64) for k, v in inits.items()}


BNM = os.path.join(WORK, "bn.onnx")
bp = bn_model(BNM)
bx = np.random.default_rng(6).standard_normal((4, 3, 2, 2)).astype(np.float32) * 2 + 1
bt = np.random.default_rng(7).standard_normal((4, 2)).astype(np.float32)
np.save(os.path.join(WORK, "bx.npy"), bx)
np.save(os.path.join(WORK, "bt.npy"), bt)
for mode in ("training", "inference"):
    d = os.path.join(WORK, "bn_" + mode)
    extra = ["--frozen-bn-inference"] if mode == "inference" else []
    r = run([KILN, "emit-c", BNM, "--train", "--loss", "mse", "--freeze", "bn_*", "--batch", "4", "-o", d,
             "--name", "bn"] + extra)
    if not check(r.returncode == 0, f"BN {mode}: emit-c --train ({r.stderr.strip()})"):
        continue
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "bn.c", "bn_weights.c", "-lm"], cwd=d)
    if not check(r.returncode == 0, f"BN {mode}: builds with strict flags ({r.stderr[:1500]})"):
        continue
    pf = os.path.join(d, "p.bin")
    r = run([exe, os.path.join(WORK, "bx.npy"), os.path.join(WORK, "bt.npy"), "--epochs", "1", "--lr", "0.1",
             "--out", pf])
    onx = os.path.join(d, "p.onnx")
    r2 = run([KILN, "export", BNM, "--params", pf, "-o", onx]) if r.returncode == 0 else r
    if not check(r2.returncode == 0, f"BN {mode}: trains one step and exports ({r.stderr.strip()} {r2.stderr.strip()})"):
        continue
    got = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(onx).graph.initializer}
    x64 = bx.astype(np.float64)
    if mode == "training":
        mu, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))  # population variance (ONNX ReduceVar)
        want_mean, want_var = 0.8 * bp["bn_mean"] + 0.2 * mu, 0.8 * bp["bn_var"] + 0.2 * var
    else:
        mu, var = bp["bn_mean"], bp["bn_var"]
        want_mean, want_var = mu, var
    h = (x64 - mu[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5) * bp["bn_scale"][None, :, None, None] \
        + bp["bn_bias"][None, :, None, None]
    f = h.reshape(4, 12)
    e = f @ bp["W"].T + bp["b"] - bt
    dy = 2 * e / e.size
    want_w = bp["W"] - 0.1 * dy.T @ f
    em = np.max(np.abs(got["bn_mean"] - want_mean)) + np.max(np.abs(got["bn_var"] - want_var))
    check(em <= 1e-5, f"BN {mode}: running statistics after one step = "
                      f"{'momentum * old + (1 - momentum) * batch (population var)' if mode == 'training' else 'unchanged'}"
                      f" (max abs err {em:.2e} <= 1e-5)")
    ew = np.max(np.abs(got["W"] - want_w))
    check(ew <= 1e-5, f"BN {mode}: W's step uses the {'batch' if mode == 'training' else 'running'} statistics "
                      f"(max abs err {ew:.2e} <= 1e-5)")
    for k in ("bn_scale", "bn_bias"):
        check(np.array_equal(got[k], bp[k]), f"BN {mode}: frozen {k} unchanged")

# ---- --new-classes on a Gemm head: trained end to end; initial values reproduced here ----
def head_init(seed, k, fan_in, n_w, n_b):
    s, out = seed, []
    for _ in range(n_w + n_b):
        s, z = splitmix(s)
        u = (z >> 11) * 2.0 ** -53
        out.append(np.float32((2 * u - 1) / np.sqrt(fan_in)))
    return np.array(out[:n_w], np.float32).reshape(k, fan_in), np.array(out[n_w:], np.float32)


K_NEW = 6
tn = np.random.default_rng(9).standard_normal((NS, K_NEW)).astype(np.float32)
np.save(os.path.join(WORK, "y6.npy"), tn)
d = os.path.join(WORK, "head")
r = run([KILN, "emit-c", MODEL, "--train", "--loss", "mse", "--new-classes", str(K_NEW), "--head-seed", "42",
         "--freeze", "?1", "--batch", str(B), "-o", d, "--name", "mlp"])
if check(r.returncode == 0, f"--new-classes {K_NEW}: emit-c --train ({r.stderr.strip()})"):
    hdr = open(os.path.join(d, "mlp.h")).read()
    check(re.search(r"output 1: 'y', f32\[4,6\]", hdr) is not None and re.search(r"input 1: 'label', f32\[4,6\]", hdr),
          f"--new-classes {K_NEW}: the step's y and label are [4,{K_NEW}]")
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "mlp.c", "mlp_weights.c", "-lm"], cwd=d)
    if check(r.returncode == 0, f"--new-classes: builds ({r.stderr[:1500]})"):
        for lr in (0.0, LR):
            pf = os.path.join(d, f"p{lr}.bin")
            r = run([exe, os.path.join(WORK, "x.npy"), os.path.join(WORK, "y6.npy"), "--epochs", "2", "--lr", str(lr),
                     "--seed", "3", "--out", pf])
            onx = os.path.join(d, f"p{lr}.onnx")
            r2 = run([KILN, "export", MODEL, "--params", pf, "-o", onx]) if r.returncode == 0 else r
            if not check(r2.returncode == 0, f"--new-classes lr {lr}: trains and exports ({r.stderr.strip()} {r2.stderr.strip()})"):
                continue
            got = {i.name: numpy_helper.to_array(i) for i in onnx.load(onx).graph.initializer}
            w0, b0 = head_init(42, K_NEW, 5, K_NEW * 5, K_NEW)
            if lr == 0.0:
                check(np.array_equal(got["W2"], w0) and np.array_equal(got["b2"], b0) and got["W2"].shape == (K_NEW, 5),
                      "--new-classes: the head is nn.Linear's default init (U(+-1/sqrt(fan_in))) from splitmix64(seed 42), "
                      "bit for bit")
                check(np.array_equal(got["W1"], P0["W1"]) and np.array_equal(got["b1"], P0["b1"]),
                      "--new-classes: the frozen body keeps its weights")
            else:
                # reference: frozen W1/b1, SGD on the new head
                p = {"W1": P0["W1"].astype(np.float64), "b1": P0["b1"].astype(np.float64),
                     "W2": w0.astype(np.float64), "b2": b0.astype(np.float64)}
                s = 3
                for _ in range(2):
                    s, order = epoch_order(s, NS)
                    for bi in range(NS // B):
                        idx = order[bi * B:(bi + 1) * B]
                        h, y = forward(p, X[idx].astype(np.float64))
                        dy = 2 * (y - tn[idx]) / y.size
                        p["W2"], p["b2"] = p["W2"] - LR * dy.T @ h, p["b2"] - LR * dy.sum(0)
                err = max(float(np.max(np.abs(got[k] - p[k]))) for k in ("W2", "b2"))
                check(err <= 1e-5, f"--new-classes: the new head trains like the NumPy reference (max abs err {err:.2e})")

# ---- --new-classes on a SqueezeNet-like conv head (1x1 Conv -> Relu -> GlobalAveragePool -> Flatten) ----
def squeeze_model(path):
    r = np.random.default_rng(11)
    inits = {"c1.w": r.standard_normal((8, 3, 3, 3)) * 0.2, "c1.b": np.zeros(8),
             "cls.w": r.standard_normal((1000, 8, 1, 1)) * 0.1, "cls.b": np.zeros(1000)}
    nodes = [helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"], name="relu1"),
             helper.make_node("Conv", ["ar", "cls.w", "cls.b"], ["c"], name="classifier"),
             helper.make_node("Relu", ["c"], ["cr"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["cr"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["y"], name="flat")]
    g = helper.make_graph(nodes, "squeezy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1000])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


SQ = os.path.join(WORK, "squeezy.onnx")
squeeze_model(SQ)
r = run([KILN, "inspect", SQ, "--train", "--new-classes", "2", "--freeze", "c1.*", "--batch", "2",
         "--dump-after", "infer-shapes"])
shapes = dict(re.findall(r"%(\S+) : (f32\[[^\]]*\])", r.stderr))
check(shapes.get("cls.w") == "f32[2,8,1,1]" and shapes.get("cls.b") == "f32[2]" and shapes.get("y") == "f32[2,2]"
      and shapes.get("c1.w") == "f32[8,3,3,3]",
      f"--new-classes 2 on a 1x1-Conv head: cls.w [2,8,1,1], cls.b [2], y [2,2] ({ {k: shapes.get(k) for k in ('cls.w', 'cls.b', 'y')} })")
if r.returncode == 0:
    j = json.loads(run([KILN, "inspect", SQ, "--train", "--json", "--new-classes", "2", "--freeze", "c1.*",
                        "--batch", "2"]).stdout)
    check(j["trained_params"] == 2 * 8 + 2 and j["frozen_params"] == 8 * 27 + 8,
          f"--new-classes 2: trained = the new head (18), frozen = conv1 (224): {j}")
else:
    m = re.search(r"no gradient for (\w+)", r.stderr)
    print(f"SKIP --new-classes conv head: the training step needs {m.group(1) if m else '?'}'s gradient, not in kiln "
          f"yet ({r.stderr.strip().splitlines()[-1]})")
    check(m is not None, "--new-classes conv head: the only failure is a named missing gradient")

# ---- cross-entropy (needs LogSoftmax's gradient) ----
lab = np.random.default_rng(13).integers(0, 3, NS).astype(np.int64)
np.save(os.path.join(WORK, "lab.npy"), lab)
d = os.path.join(WORK, "ce")
r = run([KILN, "emit-c", MODEL, "--train", "--loss", "ce", "--optimizer", "sgd", "--batch", str(B), "-o", d,
         "--name", "mlp"])
m = re.search(r"no gradient for (\w+)", r.stderr)
if r.returncode != 0 and m:
    print(f"SKIP cross-entropy: {m.group(1)}'s gradient is not in kiln yet ({r.stderr.strip()})")
elif check(r.returncode == 0, f"CE: emit-c --train ({r.stderr.strip()})"):
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "mlp.c", "mlp_weights.c", "-lm"], cwd=d)
    if check(r.returncode == 0, f"CE: builds ({r.stderr[:1500]})"):
        r = run([exe, os.path.join(WORK, "x.npy"), os.path.join(WORK, "lab.npy"), "--epochs", str(EPOCHS), "--lr",
                 str(LR), "--seed", str(SEED), "--out", os.path.join(d, "p.bin")])
        got = read_losses(r.stdout)
        p = {k: v.astype(np.float64) for k, v in P0.items()}
        s, want = SEED, []
        for _ in range(EPOCHS):
            s, order = epoch_order(s, NS)
            tot = []
            for bi in range(NS // B):
                idx = order[bi * B:(bi + 1) * B]
                xb = X[idx].astype(np.float64)
                h, y = forward(p, xb)
                z = y - y.max(1, keepdims=True)
                logp = z - np.log(np.exp(z).sum(1, keepdims=True))
                tot.append(-np.mean(logp[np.arange(B), lab[idx]]))
                dy = (np.exp(logp) - np.eye(3)[lab[idx]]) / B
                g = {"W2": dy.T @ h, "b2": dy.sum(0)}
                dh = dy @ p["W2"]
                g["W1"], g["b1"] = dh.T @ xb, dh.sum(0)
                for k in p:
                    p[k] = p[k] - LR * g[k]
            want.append(np.mean(tot))
        ok = len(got) == EPOCHS and max(rel(a, b) for a, b in zip(got, want)) <= 1e-4
        check(ok, f"CE: per-epoch losses {got} = NumPy's {[float(w) for w in want]} (1e-4 rel)")
np.save(os.path.join(WORK, "bad_lab.npy"), np.full(NS, 3, np.int64))
if os.path.exists(os.path.join(WORK, "ce", "train_model")):
    r = run([os.path.join(WORK, "ce", "train_model"), os.path.join(WORK, "x.npy"), os.path.join(WORK, "bad_lab.npy"),
             "--out", os.path.join(WORK, "ce", "q.bin")])
    check(r.returncode == 1 and "not a class" in r.stderr and not os.path.exists(os.path.join(WORK, "ce", "q.bin")),
          f"CE: a label outside 0..2 is one error line ({r.stderr.strip()})")

# ---- a CNN (Conv, BatchNorm in training mode, Relu, MaxPool, Tanh, GAP, Gemm) with
# CE and Adam: the emitted program and kiln train, same data, seed and options,
# print the same per-epoch losses (1e-4 relative; both float32, same step) ----
def cnn_model(path):
    g0 = np.random.default_rng(21)
    inits = {"cw1": g0.normal(0, 0.3, (4, 1, 3, 3)), "cb1": g0.normal(0, 0.1, 4),
             "bs": 1 + g0.normal(0, 0.1, 4), "bb": g0.normal(0, 0.1, 4), "bm": np.zeros(4), "bv": np.ones(4),
             "cw2": g0.normal(0, 0.3, (6, 4, 3, 3)), "cb2": g0.normal(0, 0.1, 6),
             "fw": g0.normal(0, 0.4, (3, 6)), "fb": np.zeros(3)}
    nodes = [helper.make_node("Conv", ["x", "cw1", "cb1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bs", "bb", "bm", "bv"], ["n1"], name="bn1"),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "cw2", "cb2"], ["c2"], name="conv2", strides=[2, 2]),
             helper.make_node("Tanh", ["c2"], ["t2"], name="tanh2"),
             helper.make_node("GlobalAveragePool", ["t2"], ["g2"], name="gap"),
             helper.make_node("Flatten", ["g2"], ["f2"], name="flat"),
             helper.make_node("Gemm", ["f2", "fw", "fb"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


CNN = os.path.join(WORK, "cnn.onnx")
cnn_model(CNN)
cdata = os.path.join(WORK, "cnn_data")
os.makedirs(cdata, exist_ok=True)
gc = np.random.default_rng(22)
cx = gc.random((44, 1, 12, 12)).astype(np.float32)
cy = gc.integers(0, 3, 44).astype(np.int64)
np.save(os.path.join(cdata, "x.npy"), cx)
np.save(os.path.join(cdata, "y.npy"), cy)
d = os.path.join(WORK, "cnn_c")
r = run([KILN, "emit-c", CNN, "--train", "--loss", "ce", "--optimizer", "adam", "--batch", "8", "-o", d, "--name", "cnn"])
if check(r.returncode == 0, f"CNN: emit-c --train ({r.stderr.strip()})"):
    exe = os.path.join(d, "train_model")
    r = run(["cc"] + CFLAGS + ["-o", exe, "main.c", "cnn.c", "cnn_weights.c", "-lm"], cwd=d)
    if check(r.returncode == 0, f"CNN: builds ({r.stderr[:1500]})"):
        r = run([exe, os.path.join(cdata, "x.npy"), os.path.join(cdata, "y.npy"), "--epochs", "3", "--lr", "0.01",
                 "--seed", "5", "--out", os.path.join(d, "p.bin")])
        got = read_losses(r.stdout)
        tout = os.path.join(d, "train")
        r2 = run([KILN, "train", CNN, "--data", cdata, "--val-split", "0", "--loss", "ce", "--optimizer", "adam",
                  "--batch", "8", "--epochs", "3", "--lr", "0.01", "--seed", "5", "--out", tout])
        if check(r.returncode == 0 and r2.returncode == 0 and len(got) == 3,
                 f"CNN: the program and kiln train run ({r.stderr.strip()} {r2.stderr.strip()})"):
            with open(os.path.join(tout, "metrics.csv")) as f:
                kt = [float(l.split(",")[1]) for l in f.read().split("\n")[1:] if l]
            worst = max(rel(a, b) for a, b in zip(got, kt)) if len(kt) == 3 else float("inf")
            check(worst <= 1e-4 and got[-1] < got[0], f"CNN: emitted program's losses {got} = kiln train's {kt} "
                                                     f"(max rel {worst:.2e} <= 1e-4), and they go down")

r = run([KILN, "emit-c", MODEL, "--train", "--loss", "mse", "--output", os.path.join(WORK, "out_dir"), "--loss-output", "y"])
check(r.returncode == 0 and os.path.exists(os.path.join(WORK, "out_dir", "main.c")),
      f"emit-c --train: --output stays the folder, --loss-output names the output ({r.stderr.strip()})")
r = run([KILN, "inspect", MODEL, "--train", "--loss", "mse", "--output", "nope"])
check(r.returncode == 1 and "no output named 'nope'" in r.stderr, "inspect --train --output NAME: an unknown output is an error")
print(f"\n{len(FAIL)} check(s) failed" if FAIL else "\nall checks passed")
sys.exit(1 if FAIL else 0)
