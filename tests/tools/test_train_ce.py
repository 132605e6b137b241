#!/usr/bin/env python3
"""kiln train with softmax cross-entropy: a 2-layer MLP (Gemm-Relu-Gemm,
an ONNX file built here) learns two Gaussian blobs to > 95% validation
accuracy with Adam, and the exported model.onnx, run by ONNX Runtime,
matches kiln's own validation outputs (val_outputs.npy; 1e-5 relative to
the largest output: float32, different summation order) and gives the
reported accuracy.  Class-weighted CE trains too.  Exits 77 (skipped) while
an op on the path has no gradient in this build (the message is printed).

usage: test_train_ce.py KILN WORK_DIR
"""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

KILN, WORK = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def blobs(n, seed):
    r = np.random.default_rng(seed)
    c = r.integers(0, 2, n)
    x = (r.normal(size=(n, 2)) + np.where(c[:, None] == 1, 1.5, -1.5)).astype(np.float32)
    return x, c.astype(np.int64)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    rng = np.random.default_rng(5)
    w1 = (rng.normal(size=(16, 2)) * 0.5).astype(np.float32)
    w2 = (rng.normal(size=(2, 16)) * 0.5).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
         helper.make_node("Relu", ["h"], ["a"], name="relu"),
         helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"], name="fc2", transB=1)], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(16, np.float32), "b1"),
         numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(2, np.float32), "b2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    mp = os.path.join(WORK, "mlp.onnx")
    onnx.save(m, mp)
    tr, va = os.path.join(WORK, "train"), os.path.join(WORK, "val")
    os.makedirs(tr); os.makedirs(va)
    xt, yt = blobs(512, 1)
    xv, yv = blobs(200, 2)
    np.save(tr + "/x.npy", xt); np.save(tr + "/y.npy", yt); np.save(va + "/x.npy", xv); np.save(va + "/y.npy", yv)
    out = os.path.join(WORK, "out")
    p = subprocess.run([KILN, "train", mp, "--data", tr, "--val", va, "--epochs", "5", "--batch", "16",
                        "--optimizer", "adam", "--lr", "0.01", "--out", out], capture_output=True, text=True, timeout=600)
    if p.returncode != 0 and "gradient" in p.stderr:
        print("SKIP: " + p.stderr.strip())
        return 77
    check(p.returncode == 0, "CE run: exit 0 (%s)" % p.stderr.strip())
    if p.returncode != 0:
        return 1
    rows = list(csv.DictReader(open(out + "/metrics.csv")))
    tl = [float(r["train_loss"]) for r in rows]
    check(tl[-1] < tl[0], "train loss falls: %s" % tl)
    check(float(rows[-1]["val_acc"]) > 0.95, "val accuracy > 95%%: %s" % rows[-1]["val_acc"])
    sess = ort.InferenceSession(out + "/model.onnx", providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": xv})[0]
    pred = np.load(out + "/val_outputs.npy")
    rel = np.abs(pred - ref).max() / np.abs(ref).max()
    check(rel < 1e-5, "model.onnx in ONNX Runtime matches val_outputs.npy (rel %.2g)" % rel)
    check(abs((ref.argmax(1) == yv).mean() - float(rows[-1]["val_acc"])) < 1e-9, "ORT accuracy = reported val_acc")
    # host validation loss (float64 log-softmax of kiln's outputs) vs numpy on ORT's outputs
    lse = np.log(np.exp(ref - ref.max(1, keepdims=True)).sum(1)) + ref.max(1)
    ce = (lse - ref[np.arange(len(yv)), yv]).mean()
    check(abs(ce - float(rows[-1]["val_loss"])) < 1e-5 * max(1, ce), "val loss = numpy CE of ORT outputs (%.6f)" % ce)
    out2 = os.path.join(WORK, "out_w")
    p = subprocess.run([KILN, "train", mp, "--data", tr, "--val", va, "--epochs", "2", "--batch", "16",
                        "--optimizer", "adam", "--lr", "0.01", "--class-weights", "1,3", "--out", out2],
                       capture_output=True, text=True, timeout=600)
    check(p.returncode == 0 and os.path.exists(out2 + "/model.onnx"), "class-weighted CE trains (%s)" % p.stderr.strip())
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
