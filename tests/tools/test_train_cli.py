#!/usr/bin/env python3
"""kiln train, end to end, against numpy and ONNX Runtime.

- Readers (--dry-run prints per-set checksums: n, float64 sum and a
  position-weighted sum of the samples as read, class counts): .npy float32
  and uint8 (/255), int64 masks, Fashion-MNIST idx files plain and gzip (28x28
  zero-padded to 32x32), class folders of grey and RGB PNGs (written here with
  zlib/struct) -- each compared with the same sums computed by numpy from the
  arrays the files were written from (rel 1e-9: float64 sums of identical
  float32 values differ only by summation order).
- Bad input: missing files, N mismatch, truncated .npy, an idx header that
  lies about N, labels out of range (npy and idx), an empty folder, a PNG of
  the wrong size, targets of the wrong shape, a corrupt checkpoint: exactly
  one `kiln: error:` line, exit 1, no OUTDIR.  Also negative labels, mask
  labels out of range, x.npy samples of the wrong shape or dtype, no
  samples, a file that is not .npy, class weights of the wrong count.
- A synthetic run (two Gaussian blobs, a linear layer, MSE to one-hot
  targets, plain SGD): the loss falls, validation accuracy > 95%; metrics.csv
  has the stated columns; curves.png is a valid 960x400 RGB PNG (chunks, CRCs,
  inflated size); model.onnx runs in ONNX Runtime and matches kiln's own
  validation outputs (val_outputs.npy) within 1e-5 relative to the largest
  output (float32, different summation order).
- Checkpoint/resume: 2 epochs then --resume to 4 give the same metrics
  (losses, accuracies, lr: the same text) and bit-identical trained weights
  as 4 epochs in one run.
- A loss that blows up (a step schedule multiplying lr by 1e20) stops with
  one error naming NaN/infinite and keeps the last good checkpoint; an
  epoch whose last step makes a parameter infinite (finite loss) is not
  checkpointed, and the kept checkpoint resumes beside a half-written
  temporary (a kill mid-checkpoint); early
  stopping; --freeze keeps a weight bit-identical.

usage: test_train_cli.py KILN WORK_DIR
"""
import csv
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
import gzip

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


def run(*args):
    p = subprocess.run([KILN, "train", *args], capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def model(path, layers, in_shape, out_name="out"):
    """A Flatten? + Gemm network; layers: list of (W, b, act)."""
    nodes, inits, cur = [], [], "x"
    if len(in_shape) > 2:
        nodes.append(helper.make_node("Flatten", [cur], ["flat"], name="flatten"))
        cur = "flat"
    for i, (w, b, act) in enumerate(layers):
        out = out_name if i == len(layers) - 1 and not act else "h%d" % i
        inits += [numpy_helper.from_array(w, "W%d" % i), numpy_helper.from_array(b, "b%d" % i)]
        nodes.append(helper.make_node("Gemm", [cur, "W%d" % i, "b%d" % i], [out], name="fc%d" % i, transB=1))
        cur = out
        if act:
            a = out_name if i == len(layers) - 1 else "a%d" % i
            nodes.append(helper.make_node(act, [cur], [a], name="act%d" % i))
            cur = a
    nout = layers[-1][0].shape[0]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape[1:]])],
                          [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", nout])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def conv_model(path, cin, cout, hw):
    """1x1 Conv: output [N, cout, H, W] (a per-pixel classifier, for masks)."""
    w = np.ones((cout, cin, 1, 1), np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["out"], name="conv")], "c",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, hw, hw])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", cout, hw, hw])],
                          [numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def sums(x, y, ncls):
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    wx = np.arange(x.size) % 97 + 1
    wy = np.arange(y.size) % 97 + 1
    return {"xsum": x.sum(), "xwsum": (x * wx).sum(), "ysum": y.sum(), "ywsum": (y * wy).sum(),
            "classes": ",".join(str(int((y == k).sum())) for k in range(ncls))}


def dry(model_path, data, expect, what, extra=()):
    rc, out, err = run(model_path, "--data", data, "--out", os.path.join(WORK, "never"), "--dry-run", "--val-split", "0", "--batch", "2",
                       *extra)
    if rc != 0:
        check(False, "%s: dry run failed: %s" % (what, err.strip()))
        return
    line = out.strip().splitlines()[0]
    got = dict(kv.split("=", 1) for kv in line.split()[1:])
    ok = int(got["n"]) == expect["n"] and got.get("classes") == expect["classes"]
    for k in ("xsum", "xwsum", "ysum", "ywsum"):
        ok &= abs(float(got[k]) - expect[k]) <= 1e-9 * max(1.0, abs(expect[k]))
    check(ok and not os.path.exists(os.path.join(WORK, "never")), "%s: reader matches numpy (%s)" % (what, line[:90]))


def bad(args, what, needle):
    out_dir = os.path.join(WORK, "bad_out")
    shutil.rmtree(out_dir, ignore_errors=True)
    rc, out, err = run(*args, "--batch", "2", "--out", out_dir)
    lines = [l for l in err.splitlines() if l.strip()]
    check(rc == 1 and len(lines) == 1 and lines[0].startswith("kiln: error:") and needle in lines[0]
          and not os.path.exists(out_dir), "%s -> %s" % (what, lines[0] if lines else "rc %d, no message" % rc))


def png_bytes(img):
    """img: HxW uint8 (grey) or HxWx3 (RGB) -> PNG bytes (zlib, struct)."""
    h, w = img.shape[:2]
    ctype = 0 if img.ndim == 2 else 2
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, t = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        assert crc == zlib.crc32(t + body) & 0xffffffff, "bad CRC"
        if t == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        if t == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    raw = zlib.decompress(idat)
    return w, h, depth, ctype, len(raw) == h * (1 + 3 * w)


def idx_bytes(arr, magic):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(np.uint8).tobytes()


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    rng = np.random.default_rng(7)
    W = lambda *s: (rng.normal(size=s) * 0.1).astype(np.float32)
    img_model = model(os.path.join(WORK, "img.onnx"), [(W(3, 16), np.zeros(3, np.float32), None)], [None, 1, 4, 4])
    rgb_model = model(os.path.join(WORK, "rgb.onnx"), [(W(3, 48), np.zeros(3, np.float32), None)], [None, 3, 4, 4])
    mnist_model = model(os.path.join(WORK, "mn.onnx"), [(W(10, 1024), np.zeros(10, np.float32), None)], [None, 1, 32, 32])
    seg_model = conv_model(os.path.join(WORK, "seg.onnx"), 1, 3, 4)

    # ---- readers ----
    d = os.path.join(WORK, "npy_f32"); os.makedirs(d)
    x = rng.random((10, 1, 4, 4), dtype=np.float32); y = rng.integers(0, 3, 10).astype(np.int64)
    np.save(d + "/x.npy", x); np.save(d + "/y.npy", y)
    dry(img_model, d, dict(n=10, **sums(x, y, 3)), "npy float32 + int64 ids")
    d = os.path.join(WORK, "npy_u8"); os.makedirs(d)
    xu = rng.integers(0, 256, (12, 1, 4, 4)).astype(np.uint8); y = rng.integers(0, 3, 12).astype(np.int64)
    np.save(d + "/x.npy", xu); np.save(d + "/y.npy", y)
    dry(img_model, d, dict(n=12, **sums(xu.astype(np.float32) / np.float32(255), y, 3)), "npy uint8 (/255)")
    d = os.path.join(WORK, "npy_mask"); os.makedirs(d)
    x = rng.random((5, 1, 4, 4), dtype=np.float32); m = rng.integers(0, 3, (5, 4, 4)).astype(np.int64)
    np.save(d + "/x.npy", x); np.save(d + "/y.npy", m)
    dry(seg_model, d, dict(n=5, **sums(x, m, 3)), "npy int64 masks N x H x W")
    for gz in (False, True):
        d = os.path.join(WORK, "idx_gz" if gz else "idx"); os.makedirs(d)
        im = rng.integers(0, 256, (7, 28, 28)).astype(np.uint8); lab = rng.integers(0, 10, 7).astype(np.uint8)
        op = gzip.open if gz else open
        sfx = ".gz" if gz else ""
        with op(d + "/train-images-idx3-ubyte" + sfx, "wb") as f: f.write(idx_bytes(im, 0x803))
        with op(d + "/train-labels-idx1-ubyte" + sfx, "wb") as f: f.write(idx_bytes(lab, 0x801))
        pad = np.zeros((7, 1, 32, 32), np.float32); pad[:, 0, 2:30, 2:30] = im.astype(np.float32) / np.float32(255)
        dry(mnist_model, d, dict(n=7, **sums(pad, lab, 10)), "idx%s 28x28 padded to 32x32" % (" .gz" if gz else ""))
    d = os.path.join(WORK, "png"); xs, ys = [], []
    for k, cls in enumerate(["ankle", "bag", "coat"]):  # classes in name order
        os.makedirs(os.path.join(d, cls))
        for i in range(2 + k):
            g = rng.integers(0, 256, (4, 4)).astype(np.uint8)
            open(os.path.join(d, cls, "%d.png" % i), "wb").write(png_bytes(g))
            xs.append(g.astype(np.float32) / np.float32(255)); ys.append(k)
    order = []  # files are read sorted by name within a class: 0.png, 1.png ... (single digits)
    dry(img_model, d, dict(n=len(ys), **sums(np.stack(xs), np.array(ys), 3)), "PNG class folders (grey)")
    d = os.path.join(WORK, "png_rgb"); xs, ys = [], []
    for k, cls in enumerate(["a", "b"]):
        os.makedirs(os.path.join(d, cls))
        for i in range(2):
            c = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
            open(os.path.join(d, cls, "%d.png" % i), "wb").write(png_bytes(c))
            xs.append(c.transpose(2, 0, 1).astype(np.float32) / np.float32(255)); ys.append(k)
    dry(rgb_model, d, dict(n=4, **sums(np.stack(xs), np.array(ys), 3)), "PNG class folders (RGB, CHW)")

    # ---- bad input ----
    base = os.path.join(WORK, "npy_f32")
    bad([img_model, "--data", os.path.join(WORK, "nowhere")], "missing data folder", "no such folder")
    d = os.path.join(WORK, "no_y"); os.makedirs(d); shutil.copy(base + "/x.npy", d)
    bad([img_model, "--data", d], "x.npy without y.npy", "y.npy")
    d = os.path.join(WORK, "n_mismatch"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((10, 1, 4, 4), np.float32)); np.save(d + "/y.npy", np.zeros(9, np.int64))
    bad([img_model, "--data", d], "N mismatch (10 samples, 9 labels)", "9 targets for 10 samples")
    d = os.path.join(WORK, "trunc"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((10, 1, 4, 4), np.float32)); np.save(d + "/y.npy", np.zeros(10, np.int64))
    data = open(d + "/x.npy", "rb").read(); open(d + "/x.npy", "wb").write(data[:-100])
    bad([img_model, "--data", d], "truncated x.npy", "x.npy")
    d = os.path.join(WORK, "range"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((10, 1, 4, 4), np.float32)); np.save(d + "/y.npy", np.array([0, 1, 2, 0, 1, 3, 0, 0, 0, 0]))
    bad([img_model, "--data", d], "npy label out of range", "label 3 at index 5 is out of range for the model's 3 classes")
    d = os.path.join(WORK, "negative"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((4, 1, 4, 4), np.float32)); np.save(d + "/y.npy", np.array([0, -1, 1, 2]))
    bad([img_model, "--data", d], "negative label", "label -1 at index 1 is out of range")
    d = os.path.join(WORK, "mask_range"); os.makedirs(d)
    mk = np.zeros((4, 4, 4), np.int64); mk[3, 0, 3] = 5
    np.save(d + "/x.npy", np.zeros((4, 1, 4, 4), np.float32)); np.save(d + "/y.npy", mk)
    bad([seg_model, "--data", d], "mask label out of range", "sample 3: label 5 at element 3 is out of range")
    d = os.path.join(WORK, "x_shape"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((4, 1, 5, 5), np.float32)); np.save(d + "/y.npy", np.zeros(4, np.int64))
    bad([img_model, "--data", d], "x.npy samples of the wrong shape", "samples are 1 x 5 x 5 but the model's input wants 1 x 4 x 4")
    d = os.path.join(WORK, "x_f64"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((4, 1, 4, 4))); np.save(d + "/y.npy", np.zeros(4, np.int64))
    bad([img_model, "--data", d], "float64 x.npy", "float32 or uint8")
    d = os.path.join(WORK, "no_samples"); os.makedirs(d)
    np.save(d + "/x.npy", np.zeros((0, 1, 4, 4), np.float32)); np.save(d + "/y.npy", np.zeros(0, np.int64))
    bad([img_model, "--data", d], "x.npy with no samples", "holds no samples")
    d = os.path.join(WORK, "not_npy"); os.makedirs(d)
    open(d + "/x.npy", "wb").write(b"not a numpy file at all" * 8); np.save(d + "/y.npy", np.zeros(4, np.int64))
    bad([img_model, "--data", d], "x.npy that is not .npy", "not a .npy file")
    bad([img_model, "--data", base, "--class-weights", "1,2"], "2 class weights for 3 classes", "2 weights for the model's 3 classes")
    d = os.path.join(WORK, "lying"); os.makedirs(d)
    im = np.zeros((3, 28, 28), np.uint8)
    hdr = struct.pack(">IIII", 0x803, 10 ** 6, 28, 28)  # claims a million images (784 MB), holds 3
    open(d + "/train-images-idx3-ubyte", "wb").write(hdr + im.tobytes())
    open(d + "/train-labels-idx1-ubyte", "wb").write(idx_bytes(np.zeros(3, np.uint8), 0x801))
    bad([mnist_model, "--data", d], "idx header lying about N", "truncated")
    d = os.path.join(WORK, "idx_range"); os.makedirs(d)
    open(d + "/train-images-idx3-ubyte", "wb").write(idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x803))
    open(d + "/train-labels-idx1-ubyte", "wb").write(idx_bytes(np.array([1, 12, 0], np.uint8), 0x801))
    bad([mnist_model, "--data", d], "idx label out of range", "label 12 at index 1")
    d = os.path.join(WORK, "empty"); os.makedirs(d)
    bad([img_model, "--data", d], "empty folder", "no training data")
    d = os.path.join(WORK, "png_size"); os.makedirs(d + "/a")
    open(d + "/a/0.png", "wb").write(png_bytes(np.zeros((5, 4), np.uint8)))
    bad([img_model, "--data", d], "PNG of the wrong size", "0.png: the image is 4x5")
    bad([seg_model, "--data", base], "class ids for a per-pixel model", "targets do not fit")
    bad([img_model, "--data", base, "--loss", "mse"], "int64 class ids for --loss mse", "float32")
    d = os.path.join(WORK, "nan_x"); os.makedirs(d)
    np.save(d + "/x.npy", np.full((4, 2), np.nan, np.float32)); np.save(d + "/y.npy", np.zeros((4, 2), np.float32))
    lin0 = model(os.path.join(WORK, "lin0.onnx"), [(W(2, 2), np.zeros(2, np.float32), None)], [None, 2])
    bad([lin0, "--data", d, "--loss", "mse", "--val-split", "0"], "NaN loss in the first epoch: no OUTDIR", "the loss is NaN")

    # ---- a synthetic run: 2 blobs, linear layer, MSE to one-hot ----
    def blobs(n, seed):
        r = np.random.default_rng(seed)
        c = r.integers(0, 2, n)
        x = (r.normal(size=(n, 2)) + np.where(c[:, None] == 1, 1.5, -1.5)).astype(np.float32)
        return x, np.eye(2, dtype=np.float32)[c], c
    tr, va = os.path.join(WORK, "blobs"), os.path.join(WORK, "blobs_val")
    os.makedirs(tr); os.makedirs(va)
    xt, yt, _ = blobs(512, 1); xv, yv, cv = blobs(200, 2)
    np.save(tr + "/x.npy", xt); np.save(tr + "/y.npy", yt); np.save(va + "/x.npy", xv); np.save(va + "/y.npy", yv)
    w0 = W(2, 2)
    lin = model(os.path.join(WORK, "lin.onnx"), [(w0, np.zeros(2, np.float32), None)], [None, 2])
    common = [lin, "--data", tr, "--val", va, "--loss", "mse", "--optimizer", "sgd", "--lr", "0.05", "--batch", "16",
              "--seed", "3"]
    out_a = os.path.join(WORK, "run_a")
    rc, out, err = run(*common, "--epochs", "4", "--out", out_a)
    check(rc == 0, "synthetic run: exit 0 (%s)" % err.strip())
    if rc == 0:
        lines = [l for l in out.splitlines() if l.startswith("epoch ")]
        check(len(lines) == 4 and lines[0].startswith("epoch 1/4  train loss ") and " val loss " in lines[0]
              and lines[0].endswith(" s"), "progress line per epoch: %r" % lines[0])
        rows = list(csv.DictReader(open(out_a + "/metrics.csv")))
        check(list(rows[0].keys()) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "lr"],
              "metrics.csv columns")
        tl = [float(r["train_loss"]) for r in rows]
        check(len(rows) == 4 and tl[-1] < tl[0] * 0.5, "train loss falls: %s" % tl)
        check(float(rows[-1]["val_acc"]) > 0.95, "val accuracy > 95%%: %s" % rows[-1]["val_acc"])
        w, h, depth, ctype, size_ok = read_png(out_a + "/curves.png")
        check((w, h, depth, ctype) == (960, 400, 8, 2) and size_ok, "curves.png: valid 960x400 RGB PNG")
        pred = np.load(out_a + "/val_outputs.npy")
        sess = ort.InferenceSession(out_a + "/model.onnx", providers=["CPUExecutionProvider"])
        ref = sess.run(None, {sess.get_inputs()[0].name: xv})[0]
        err_max = np.abs(pred - ref).max() / np.abs(ref).max()
        check(pred.shape == (200, 2) and err_max < 1e-5, "model.onnx in ONNX Runtime matches val_outputs.npy (rel %.2g)" % err_max)
        acc = (ref.argmax(1) == cv).mean()
        check(abs(acc - float(rows[-1]["val_acc"])) < 1e-9, "ORT accuracy %.4f = reported val_acc" % acc)
        wt = numpy_helper.to_array(next(i for i in onnx.load(out_a + "/model.onnx").graph.initializer if i.name == "W0"))
        check(not np.array_equal(wt, w0), "model.onnx holds trained (changed) weights")

        # ---- checkpoint / resume ----
        out_b = os.path.join(WORK, "run_b")
        rc1, _, e1 = run(*common, "--epochs", "2", "--out", out_b)
        rc2, o2, e2 = run(*common, "--epochs", "4", "--out", out_b, "--resume")
        rows_b = list(csv.DictReader(open(out_b + "/metrics.csv"))) if rc1 == 0 and rc2 == 0 else []
        key = lambda rs: [(r["epoch"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"], r["lr"]) for r in rs]
        check(rc1 == 0 and rc2 == 0 and "resumed" in o2 and key(rows_b) == key(rows),
              "resume after 2 epochs gives the uninterrupted run's metrics (%s %s)" % (e1.strip(), e2.strip()))
        inits = lambda p: {i.name: numpy_helper.to_array(i).tobytes() for i in onnx.load(p).graph.initializer}
        check(rc2 == 0 and inits(out_b + "/model.onnx") == inits(out_a + "/model.onnx"), "resumed weights bit-identical")
        ck = out_b + "/checkpoint.bin"
        data = bytearray(open(ck, "rb").read()); data[100] ^= 1; open(ck, "wb").write(bytes(data))
        rc3, _, e3 = run(*common, "--epochs", "5", "--out", out_b, "--resume")
        check(rc3 == 1 and e3.startswith("kiln: error:") and "corrupt" in e3 and len(e3.strip().splitlines()) == 1,
              "corrupt checkpoint -> one error: %s" % e3.strip())

        def fnv64(b):
            h = 0xcbf29ce484222325
            for x in b:
                h = ((h ^ x) * 0x100000001b3) & 0xffffffffffffffff
            return h
        good = bytearray(data); good[100] ^= 1  # undo the flip
        lying = bytearray(good[:-8]); lying[80:88] = struct.pack("<q", 1 << 40)  # nmetrics (after magic, layout, epoch, step, prng[4], best, bad): 2^40 rows
        for blob, what in ((bytes(good[:50]), "truncated checkpoint"), (b"XXXX" + bytes(good[4:]), "checkpoint with a bad magic"),
                           (bytes(lying) + struct.pack("<Q", fnv64(lying)), "checkpoint lying about its metrics (valid checksum)")):
            open(ck, "wb").write(blob)
            rc4, _, e4 = run(*common, "--epochs", "5", "--out", out_b, "--resume")
            check(rc4 == 1 and e4.startswith("kiln: error:") and len(e4.strip().splitlines()) == 1,
                  "%s -> one error: %s" % (what, e4.strip()))

    # ---- a .kiln network (seeded initializers) trains and exports ----
    kp = os.path.join(WORK, "lin.kiln")
    open(kp, "w").write("network lin {\n  input x: [N, 2]\n  fc: dense(2)\n  output fc\n}\n")
    out_k = os.path.join(WORK, "run_kiln")
    rc, out, err = run(kp, "--data", tr, "--val", va, "--loss", "mse", "--lr", "0.05", "--batch", "16", "--epochs", "3",
                       "--out", out_k)
    if rc == 0:
        sess = ort.InferenceSession(out_k + "/model.onnx", providers=["CPUExecutionProvider"])
        ref = sess.run(None, {"x": xv})[0]
        pred = np.load(out_k + "/val_outputs.npy")
        rel = np.abs(pred - ref).max() / np.abs(ref).max()
        rows = list(csv.DictReader(open(out_k + "/metrics.csv")))
        check(rel < 1e-5 and float(rows[-1]["val_acc"]) > 0.95,
              ".kiln model: trained, model.onnx in ORT matches (rel %.2g), val acc %s" % (rel, rows[-1]["val_acc"]))
    else:
        check(False, ".kiln model run failed: %s" % err.strip())

    # ---- killed at random moments (mid-checkpoint too): the checkpoint left always resumes ----
    out_k9 = os.path.join(WORK, "run_kill")
    ok = True
    for i, delay in enumerate((0.01, 0.05, 0.2)):
        args = [KILN, "train", *common, "--epochs", "100000", "--out", out_k9] + (["--resume"] if i else [])
        before = os.path.getmtime(out_k9 + "/checkpoint.bin") if i else 0
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while time.time() - t0 < 60 and p.poll() is None and (not os.path.exists(out_k9 + "/checkpoint.bin") or
                                                              os.path.getmtime(out_k9 + "/checkpoint.bin") == before):
            time.sleep(0.002)  # until this run has written a checkpoint, then a while more
        time.sleep(delay)
        ok &= p.poll() is None
        p.kill()
        p.wait()
    rc, out, err = run(*common, "--epochs", "1", "--out", out_k9, "--resume")
    check(ok and rc == 0 and "resumed" in out, "SIGKILL during training x3: checkpoint.bin still resumes (%s)" % err.strip())

    # ---- divergence, early stop, freeze ----
    out_c = os.path.join(WORK, "run_nan")
    rc, out, err = run(*common, "--epochs", "3", "--lr-schedule", "step:1:1e20", "--out", out_c)
    rows = list(csv.DictReader(open(out_c + "/metrics.csv"))) if os.path.exists(out_c + "/metrics.csv") else []
    check(rc == 1 and len(err.strip().splitlines()) == 1 and ("NaN" in err or "infinite" in err) and
          os.path.exists(out_c + "/checkpoint.bin") and len(rows) >= 1, "diverging loss stops, keeps checkpoint: %s" % err.strip())
    # the last step of an epoch makes W infinite (lr 3e38 in epoch 2) with a
    # finite loss: that epoch's checkpoint is not written, the kept one resumes
    d = os.path.join(WORK, "inf_w"); os.makedirs(d)
    np.save(d + "/x.npy", np.ones((4, 2), np.float32)); np.save(d + "/y.npy", np.full((4, 2), 100, np.float32))
    out_i = os.path.join(WORK, "run_inf")
    blow = [lin0, "--data", d, "--loss", "mse", "--val-split", "0", "--batch", "4", "--lr", "1e-3", "--out", out_i]
    rc, out, err = run(*blow, "--lr-schedule", "step:1:3e41", "--epochs", "3")
    rows = list(csv.DictReader(open(out_i + "/metrics.csv"))) if os.path.exists(out_i + "/metrics.csv") else []
    check(rc == 1 and len(err.strip().splitlines()) == 1 and "epoch 2 left 'W0' NaN or infinite" in err and
          "keeps epoch 1" in err and len(rows) == 1, "parameters made infinite by an epoch's last step: %s" % err.strip())
    # killed mid-checkpoint: a half-written temporary beside checkpoint.bin (kiln_write_durable renames only
    # a complete file), then --resume from the kept epoch-1 checkpoint with a sane lr
    ck = open(out_i + "/checkpoint.bin", "rb").read()
    open(out_i + "/checkpoint.bin.tmp.99999", "wb").write(ck[:len(ck) // 2])
    rc, out, err = run(*blow, "--epochs", "2", "--resume")
    rows = list(csv.DictReader(open(out_i + "/metrics.csv"))) if rc == 0 else []
    check(rc == 0 and "resumed from" in out and "1 epochs done" in out and len(rows) == 2 and
          all(np.isfinite(float(r["train_loss"])) for r in rows),
          "kept checkpoint (and a half-written temporary beside it) resumes: %s" % err.strip())
    out_d = os.path.join(WORK, "run_early")
    rc, out, err = run(lin, "--data", tr, "--val", va, "--loss", "mse", "--lr", "0", "--batch", "16", "--epochs", "6",
                       "--early-stop", "2", "--out", out_d)
    rows = list(csv.DictReader(open(out_d + "/metrics.csv"))) if rc == 0 else []
    check(rc == 0 and "early stop" in out and len(rows) == 3, "early stop after 2 epochs without improvement (%d epochs)" % len(rows))
    out_e = os.path.join(WORK, "run_freeze")
    rc, out, err = run(*common, "--epochs", "2", "--freeze", "W*", "--out", out_e)
    if rc == 0:
        got = {i.name: numpy_helper.to_array(i) for i in onnx.load(out_e + "/model.onnx").graph.initializer}
        check(np.array_equal(got["W0"], w0) and np.any(got["b0"] != 0), "--freeze W*: W0 bit-identical, b0 trained")
    else:
        check(False, "--freeze run failed: %s" % err.strip())

    # ---- augmentation: seeded, and resumable (the PRNG is in the checkpoint) ----
    d = os.path.join(WORK, "aug"); os.makedirs(d)
    r2 = np.random.default_rng(11)
    c = r2.integers(0, 2, 96)
    x = r2.random((96, 1, 4, 4), dtype=np.float32) * 0.2
    x[c == 1, 0, :, :2] += 0.8  # class 1: bright left half
    np.save(d + "/x.npy", x); np.save(d + "/y.npy", np.eye(2, dtype=np.float32)[c])
    img2 = model(os.path.join(WORK, "img2.onnx"), [(W(2, 16), np.zeros(2, np.float32), None)], [None, 1, 4, 4])
    aug = [img2, "--data", d, "--loss", "mse", "--lr", "0.05", "--batch", "8", "--augment", "flip,crop:1,rotate:10,intensity:0.1"]
    out_f, out_g = os.path.join(WORK, "aug_full"), os.path.join(WORK, "aug_resumed")
    rc1, o1, e1 = run(*aug, "--epochs", "3", "--out", out_f)
    rc2, _, e2 = run(*aug, "--epochs", "1", "--out", out_g)
    rc3, _, e3 = run(*aug, "--epochs", "3", "--out", out_g, "--resume")
    ok = rc1 == rc2 == rc3 == 0
    if ok:
        key = lambda p: [(r["train_loss"], r["val_loss"], r["lr"]) for r in csv.DictReader(open(p + "/metrics.csv"))]
        ok = key(out_f) == key(out_g)
    check(ok, "augmented run resumed after 1 epoch = uninterrupted (%s %s %s)" % (e1.strip(), e2.strip(), e3.strip()))
    out_h = os.path.join(WORK, "aug_plain")
    rc4, _, _ = run(*aug[:-2], "--epochs", "3", "--out", out_h)
    check(rc4 == 0 and rc1 == 0 and open(out_h + "/metrics.csv").read().splitlines()[1].split(",")[1] !=
          open(out_f + "/metrics.csv").read().splitlines()[1].split(",")[1], "--augment changes the training batches")

    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
