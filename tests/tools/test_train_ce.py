#!/usr/bin/env python3
"""kiln train with softmax cross-entropy: a 2-layer MLP (Gemm-Relu-Gemm,
an ONNX file built here) learns two Gaussian blobs to > 95% validation
accuracy with Adam, and the exported model.onnx, run by ONNX Runtime,
matches kiln's own validation outputs (val_outputs.npy; 1e-5 relative to
the largest output: float32, different summation order) and gives the
reported accuracy.  Class-weighted CE trains too.  A per-pixel classifier
(3 brightness bands of 8x8 images, int64 masks) learns with Dice loss to a
validation Dice >= 0.9 and with per-pixel CE; the reported Dice, soft-Dice
loss and pixel accuracy equal numpy's on ONNX Runtime's outputs.  Exits 77 (skipped) while
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
    # ---- a per-pixel classifier (logits_k = w_k x + b_k) with Dice and CE on masks ----
    r = np.random.default_rng(9)
    def seg(n):
        x = r.random((n, 1, 8, 8), dtype=np.float32)
        return x, np.digitize(x[:, 0], [1 / 3, 2 / 3]).astype(np.int64)  # 3 brightness bands
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["xw"], name="scale"), helper.make_node("Add", ["xw", "b"], ["out"], name="shift")],
        "seg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32).reshape(1, 3, 1, 1), "w"),
         numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    sp = os.path.join(WORK, "seg.onnx")
    onnx.save(m, sp)
    st, sv = os.path.join(WORK, "seg_train"), os.path.join(WORK, "seg_val")
    os.makedirs(st); os.makedirs(sv)
    xs, ms = seg(256); xq, mq = seg(64)
    np.save(st + "/x.npy", xs); np.save(st + "/y.npy", ms); np.save(sv + "/x.npy", xq); np.save(sv + "/y.npy", mq)
    for loss in ("dice", "ce"):
        out3 = os.path.join(WORK, "seg_" + loss)
        p = subprocess.run([KILN, "train", sp, "--data", st, "--val", sv, "--epochs", "30", "--batch", "16", "--loss", loss,
                            "--optimizer", "adam", "--lr", "0.1", "--out", out3], capture_output=True, text=True, timeout=600)
        if p.returncode != 0 and "gradient" in p.stderr:
            print("SKIP (%s): %s" % (loss, p.stderr.strip()))
            continue
        check(p.returncode == 0, "segmentation, --loss %s: exit 0 (%s)" % (loss, p.stderr.strip()))
        if p.returncode:
            continue
        rows = list(csv.DictReader(open(out3 + "/metrics.csv")))
        ref = ort.InferenceSession(out3 + "/model.onnx", providers=["CPUExecutionProvider"]).run(None, {"x": xq})[0]
        pred = ref.argmax(1)
        if loss == "dice":  # hard Dice of the argmax, mean over the foreground classes, by numpy
            dice = np.mean([2 * ((pred == k) & (mq == k)).sum() / ((pred == k).sum() + (mq == k).sum()) for k in (1, 2)])
            check(abs(dice - float(rows[-1]["val_acc"])) < 1e-9 and dice >= 0.9,
                  "Dice: numpy's %.4f on ORT's output = reported %s, >= 0.9" % (dice, rows[-1]["val_acc"]))
            e = np.exp(ref - ref.max(1, keepdims=True)); pr = e / e.sum(1, keepdims=True)
            oh = np.stack([(mq == k) for k in range(3)], 1).astype(np.float64)
            soft = 1 - np.mean((2 * (pr * oh).sum((0, 2, 3)) + 1) / (pr.sum((0, 2, 3)) + oh.sum((0, 2, 3)) + 1))
            check(abs(soft - float(rows[-1]["val_loss"])) < 1e-5, "Dice val loss = numpy soft Dice (%.6f)" % soft)
        else:
            acc = (pred == mq).mean()
            check(abs(acc - float(rows[-1]["val_acc"])) < 1e-9 and acc > 0.9,
                  "per-pixel CE: pixel accuracy %.4f = reported, > 0.9" % acc)

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
