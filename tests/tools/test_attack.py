#!/usr/bin/env python3
"""kiln attack (FGSM, PGD, robustness curves), against numpy and ONNX Runtime.

Models (built here with the onnx package, weights chosen, not trained):
- blobs MLP: x f32[N, 8] -> Gemm([I, -I]) -> Relu -> Gemm -> Softmax.  The
  hidden layer is relu(x), relu(-x), the second layer recombines them, so
  logits_k = x . c_k - |c_k|^2 / 2: the nearest-centre classifier of three
  Gaussian blobs (centres c_k), a clear classifier that still errs on the
  noisy points.  It ends in Softmax: kiln must attack its input logits.
- a small CNN (Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm,
  logits out, no Softmax), random weights; the bundled models/resnet8_cifar
  (BatchNorm, residual adds; random weights).
- the bundled SqueezeNet 1.0 (float16) on the kitten photo.

Checks:
- every adversarial example (adversarial.npy) stays within eps in L-inf
  exactly, float32 and the float16 SqueezeNet alike (kiln projects in
  float64 and steps a value rounded out of the ball back in: max |x' - x| <=
  eps, no tolerance), and within the clip range (--clip, or 0..255 pixels
  for the photo);
- ONNX Runtime, run on the written adversarial.npy, predicts another class
  than on the clean input (untargeted) or the target class (targeted) at the
  stated eps: blobs MLP eps 1.5 (the centres are ~3.5 apart), CNN eps 0.5,
  ResNet-8 eps 0.1 (PGD-5, inputs in [0, 1]),
  SqueezeNet eps 2 pixel units (scale 1: model units = pixels);
- the gradient sign FGSM uses equals the sign of the float64 numpy analytic
  gradient of the cross-entropy of the MLP (elements where |g| > 1e-6 max|g|);
- PGD (10 steps) reaches a cross-entropy (ONNX Runtime's, float64 on its
  probabilities) >= FGSM's at the same eps, up to 1e-5 relative (float32);
- --data: accuracy at eps 0 equals ONNX Runtime's clean accuracy exactly,
  PGD accuracy is non-increasing in eps; robustness.csv and robustness.png
  (a valid PNG) are written; also on class folders of grey PNGs (a
  brightness classifier; a last batch shorter than --batch-size);
- for --image, adversarial.png is x' converted back to pixels (rounded) and
  the reported pixel L-inf/L2 are numpy's, with scale 1 and with std 2;
- bad input (eps < 0, unknown method, class out of range, missing file,
  corrupt .npy, missing data folder, a segmentation output): one
  `kiln: error:` line, exit 1, no output folder (nor its temporary sibling).

usage: test_attack.py KILN WORK_DIR SQUEEZENET_DIR
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

KILN, WORK, SQZ = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def attack(*args):
    p = subprocess.run([KILN, "attack", *args], capture_output=True, text=True, timeout=900)
    return p.returncode, p.stdout, p.stderr


def ort_run(path, x):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def ce(probs, label):
    return -np.log(np.maximum(probs.astype(np.float64).reshape(len(probs), -1)[np.arange(len(label)), label], 1e-300))


def png_size(path):
    b = open(path, "rb").read()
    if b[:8] != b"\x89PNG\r\n\x1a\n" or b[12:16] != b"IHDR":
        return None
    # every chunk's CRC
    i = 8
    while i < len(b):
        n = struct.unpack(">I", b[i:i + 4])[0]
        if zlib.crc32(b[i + 4:i + 8 + n]) != struct.unpack(">I", b[i + 8 + n:i + 12 + n])[0]:
            return None
        i += 12 + n
    return struct.unpack(">II", b[16:24])


# ---- models ----
rng = np.random.default_rng(7)
D, K = 8, 3
centres = rng.normal(0, 1, (K, D)) * 1.4
W1 = np.concatenate([np.eye(D), -np.eye(D)], axis=1)          # x @ W1: [x, -x]
W2 = np.concatenate([centres.T, -centres.T], axis=0)          # relu(x) c - relu(-x) c = x c
b2 = -0.5 * (centres ** 2).sum(1)


def mlp_model(path):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "b2"], ["z"]), helper.make_node("Softmax", ["z"], ["prob"], axis=1)]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in ((W1, "W1"), (W2, "W2"), (b2, "b2"))]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", D])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", K])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def mlp_grad(x, label):
    """float64 analytic d CE / dx of the MLP (its float32 weights)."""
    w1, w2, bb = W1.astype(np.float32).astype(np.float64), W2.astype(np.float32).astype(np.float64), b2.astype(np.float32).astype(np.float64)
    h = x @ w1
    r = np.maximum(h, 0)
    z = r @ w2 + bb
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = p.copy()
    dz[np.arange(len(label)), label] -= 1
    dh = (dz @ w2.T) * (h > 0)
    return dh @ w1.T


def cnn_model(path):
    w = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    fc = rng.normal(0, 1, (3, 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def blobs(n, seed):
    r = np.random.default_rng(seed)
    y = r.integers(0, K, n)
    x = centres[y] + r.normal(0, 0.9, (n, D))
    return x.astype(np.float32), y.astype(np.int64)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    mlp = os.path.join(WORK, "mlp.onnx")
    cnn = os.path.join(WORK, "cnn.onnx")
    mlp_model(mlp)
    cnn_model(cnn)
    xs, ys = blobs(200, 3)
    ort_pred = ort_run(mlp, xs).argmax(1)
    clean_acc = float((ort_pred == ys).mean())
    check(0.8 < clean_acc < 1.0, f"blobs MLP: ONNX Runtime clean accuracy {clean_acc:.3f} (a classifier that errs sometimes)")

    # ---- FGSM / PGD on single inputs of the MLP ----
    n_run = [0]

    def one(model, x, *args):
        n_run[0] += 1
        f = os.path.join(WORK, f"in{n_run[0]}.npy")
        out = os.path.join(WORK, f"out{n_run[0]}")
        np.save(f, x)
        rc, so, se = attack(model, "--input", f"x={f}", "--out", out, *args)
        if rc != 0:
            check(False, f"attack {' '.join(args)} ran: {se.strip()}")
            return None, so
        return np.load(os.path.join(out, "adversarial.npy")), so

    eps = 1.5
    sign_ok = flips = pgd_ge = tgt_ok = 0
    worst_linf = worst_tgt = 0.0
    samples = [i for i in range(len(xs)) if ort_pred[i] == ys[i]][:6]
    for i in samples:
        x = xs[i:i + 1]
        c0 = int(ort_pred[i])
        xf, so = one(mlp, x, "--method", "fgsm", "--eps", str(eps))
        if xf is None:
            continue
        check(xf.dtype == np.float32 and xf.shape == x.shape, f"sample {i}: adversarial.npy f32 {x.shape}")
        dlt = xf.astype(np.float64) - x.astype(np.float64)
        worst_linf = max(worst_linf, np.abs(dlt).max())
        check(f"original     class {c0}" in so, f"sample {i}: kiln reports original class {c0}")
        g = mlp_grad(x.astype(np.float64), np.array([c0]))
        big = np.abs(g) > 1e-6 * np.abs(g).max()
        sign_ok += int(np.array_equal(np.sign(dlt[big]), np.sign(g[big])))
        pf = ort_run(mlp, xf)
        flips += int(pf.argmax(1)[0] != c0)
        xp, _ = one(mlp, x, "--method", "pgd", "--eps", str(eps), "--steps", "10")
        if xp is None:
            continue
        worst_linf = max(worst_linf, np.abs(xp.astype(np.float64) - x.astype(np.float64)).max())
        lf, lp = ce(pf, [c0])[0], ce(ort_run(mlp, xp), [c0])[0]
        pgd_ge += int(lp >= lf - 1e-5 * abs(lf))
        if lp < lf - 1e-5 * abs(lf):
            print(f"     sample {i}: PGD CE {lp:.6g} < FGSM CE {lf:.6g}")
        t = (c0 + 1) % K
        xt, _ = one(mlp, x, "--method", "pgd", "--eps", "2.5", "--steps", "20", "--target-class", str(t),
                    "--random-start", "--seed", "3")
        if xt is None:
            continue
        worst_tgt = max(worst_tgt, np.abs(xt.astype(np.float64) - x.astype(np.float64)).max())
        tgt_ok += int(ort_run(mlp, xt).argmax(1)[0] == t)
    n = len(samples)
    check(worst_linf <= eps, f"MLP: max |x' - x| = {worst_linf!r} <= eps {eps} (FGSM, PGD)")
    check(worst_tgt <= 2.5, f"MLP: max |x' - x| = {worst_tgt!r} <= eps 2.5 (targeted PGD, random start)")
    check(sign_ok == n, f"MLP: FGSM step sign = sign of the float64 analytic CE gradient on {sign_ok}/{n} samples")
    check(flips == n, f"MLP: FGSM eps {eps} changes ONNX Runtime's prediction on {flips}/{n} samples")
    check(pgd_ge == n, f"MLP: PGD-10 CE >= FGSM CE at eps {eps} on {pgd_ge}/{n} samples (ONNX Runtime, float64 CE)")
    check(tgt_ok == n, f"MLP: targeted PGD eps 2.5 (random start) makes ONNX Runtime predict the target on {tgt_ok}/{n}")

    # --clip: range and ball both hold
    x = xs[samples[0]:samples[0] + 1]
    xc, _ = one(mlp, x, "--method", "pgd", "--eps", "1", "--clip", "-1,1", "--random-start")
    if xc is not None:
        # each element in [x - 1, x + 1] intersected with [-1, 1]; where that
        # is empty (|x| > 2: the input lies outside the range) the range wins
        x64, xc64 = x.astype(np.float64), xc.astype(np.float64)
        lo, hi = np.maximum(x64 - 1, -1), np.minimum(x64 + 1, 1)
        empty = lo > hi
        ok = np.all((xc64 >= lo) & (xc64 <= hi) | empty & (xc64 == np.clip(x64, -1, 1)))
        check(bool(ok and xc.min() >= -1 and xc.max() <= 1),
              f"MLP PGD --clip -1,1 eps 1: x' in [{xc.min():.4g}, {xc.max():.4g}] and within eps of x "
              f"({int(empty.sum())} element(s) lie > 2 outside the range: clipped to it)")

    # ---- CNN (no Softmax: logits are the output) ----
    xcnn = rng.normal(0, 1, (1, 1, 8, 8)).astype(np.float32)
    c0 = int(ort_run(cnn, xcnn).argmax(1)[0])
    xa, _ = one(cnn, xcnn, "--method", "pgd", "--eps", "0.5", "--steps", "10")
    if xa is not None:
        d = np.abs(xa.astype(np.float64) - xcnn).max()
        c1 = int(ort_run(cnn, xa).argmax(1)[0])
        check(d <= 0.5 and c1 != c0, f"CNN PGD eps 0.5: max |x'-x| {d:.6g}, ONNX Runtime class {c0} -> {c1}")

    # ---- ResNet-8 (CIFAR shapes, BatchNorm, residual adds; random weights) ----
    r8 = os.path.join(os.path.dirname(SQZ), "resnet8_cifar.onnx")
    xr = np.random.default_rng(0).random((1, 3, 32, 32)).astype(np.float32)
    c0 = int(ort_run(r8, xr).argmax(1)[0])
    n_run[0] += 1
    f, out = os.path.join(WORK, "r8x.npy"), os.path.join(WORK, "r8")
    np.save(f, xr)
    rc, so, se = attack(r8, "--input", f, "--method", "pgd", "--steps", "5", "--eps", "0.1", "--clip", "0,1",
                        "--out", out)
    if rc == 0:
        xa = np.load(os.path.join(out, "adversarial.npy"))
        d = np.abs(xa.astype(np.float64) - xr).max()
        c1 = int(ort_run(r8, xa).argmax(1)[0])
        check(d <= 0.1 and xa.min() >= 0 and xa.max() <= 1 and c1 != c0,
              f"ResNet-8 PGD-5 eps 0.1 in [0,1]: max |x'-x| {d:.9g}, ONNX Runtime class {c0} -> {c1}")
    else:
        check(False, f"ResNet-8 attack ran: {se.strip()}")

    # ---- SqueezeNet on the kitten (float16, BGR, pixels 0..255) ----
    sq = os.path.join(SQZ, "squeezenet1.0-fp16.onnx")
    out = os.path.join(WORK, "kitten")
    rc, so, se = attack(sq, "--image", os.path.join(SQZ, "kitten_224.png"), "--channels", "bgr", "--scale", "1",
                        "--method", "fgsm", "--eps", "2", "--labels", os.path.join(SQZ, "imagenet-labels.txt"),
                        "--out", out)
    check(rc == 0, f"squeezenet kitten FGSM eps 2 pixels ran {se.strip()[:300]}")
    if rc == 0:
        print("\n".join("     " + l for l in so.splitlines()))
        x0 = np.load(os.path.join(out, "original.npy"))
        xa = np.load(os.path.join(out, "adversarial.npy"))
        p0, pa = ort_run(sq, x0).reshape(-1), ort_run(sq, xa).reshape(-1)
        d = np.abs(xa.astype(np.float64) - x0.astype(np.float64)).max()
        check(x0.dtype == np.float16 and xa.shape == (1, 3, 224, 224), "squeezenet: f16 [1,3,224,224] tensors")
        check(d <= 2, f"squeezenet: max |x'-x| = {d} <= 2 (f16 values, exactly)")
        check(xa.min() >= 0 and xa.max() <= 255, f"squeezenet: x' within 0..255 ({xa.min()}..{xa.max()})")
        check(int(p0.argmax()) == 281, f"squeezenet: ONNX Runtime on original.npy: class {int(p0.argmax())} (tabby 281)")
        check(int(pa.argmax()) != 281, f"squeezenet: ONNX Runtime on adversarial.npy: class {int(pa.argmax())} "
              f"p {pa.max():.3f} (tabby p {pa[281]:.3f})")
        check(png_size(os.path.join(out, "adversarial.png")) == (224, 224) and
              png_size(os.path.join(out, "perturbation.png")) == (224, 224), "squeezenet: 224x224 PNGs written")
        # adversarial.png is x' de-preprocessed (BGR NCHW, scale 1 -> RGB HWC pixels), rounded
        img = np.asarray(Image.open(os.path.join(out, "adversarial.png")).convert("RGB")).astype(np.float64)
        want = xa[0, ::-1].transpose(1, 2, 0).astype(np.float64)
        dpng = np.abs(img - want).max()
        check(dpng <= 0.5, f"squeezenet: adversarial.png = x' in pixels, rounded (max diff {dpng})")
        m = re.search(r"L-inf ([0-9.e+-]+)  L2 ([0-9.e+-]+) \(pixels", so)
        dd = xa.astype(np.float64) - x0.astype(np.float64)
        check(m is not None and abs(float(m.group(1)) - np.abs(dd).max()) <= 1e-5 * np.abs(dd).max() and
              abs(float(m.group(2)) - np.sqrt((dd ** 2).sum())) <= 1e-5 * np.sqrt((dd ** 2).sum()),
              f"squeezenet: reported pixel L-inf/L2 {m.groups() if m else None} = numpy's "
              f"{np.abs(dd).max():.6g}/{np.sqrt((dd ** 2).sum()):.6g}")

    # a preprocessing with std: tensor = pixel / 2 (range 0..127.5); eps 1
    # input unit = 2 pixels; the report and the PNG convert back to pixels
    out = os.path.join(WORK, "kitten_std")
    rc, so, se = attack(sq, "--image", os.path.join(SQZ, "kitten_224.png"), "--channels", "bgr", "--scale", "1",
                        "--std", "2,2,2", "--method", "pgd", "--steps", "2", "--eps", "1", "--out", out)
    check(rc == 0, f"squeezenet --std 2 PGD ran {se.strip()[:300]}")
    if rc == 0:
        x0 = np.load(os.path.join(out, "original.npy")).astype(np.float64)
        xa = np.load(os.path.join(out, "adversarial.npy")).astype(np.float64)
        d = np.abs(xa - x0).max()
        check(d <= 1 and xa.min() >= 0 and xa.max() <= 127.5,
              f"--std 2: max |x'-x| {d} <= 1, x' in [0, 127.5] ({xa.min()}..{xa.max()})")
        m = re.search(r"L-inf ([0-9.e+-]+)  L2 ([0-9.e+-]+) \(input units\)\n.*L-inf ([0-9.e+-]+)  L2 ([0-9.e+-]+) \(pixels", so)
        check(m is not None and abs(float(m.group(3)) - 2 * float(m.group(1))) <= 1e-5 and
              abs(float(m.group(4)) - 2 * float(m.group(2))) <= 1e-4 * float(m.group(4)),
              f"--std 2: pixel sizes are twice the input-unit sizes {m.groups() if m else None}")
        img = np.asarray(Image.open(os.path.join(out, "adversarial.png")).convert("RGB")).astype(np.float64)
        dpng = np.abs(img - 2 * xa[0, ::-1].transpose(1, 2, 0)).max()
        check(dpng <= 0.5, f"--std 2: adversarial.png = 2 x' rounded (max diff {dpng})")

    # ---- robustness curve ----
    data = os.path.join(WORK, "blobs")
    os.makedirs(data)
    np.save(os.path.join(data, "x.npy"), xs)
    np.save(os.path.join(data, "y.npy"), ys)
    out = os.path.join(WORK, "curve")
    epss = [0, 0.1, 0.25, 0.5, 1, 2]
    rc, so, se = attack(mlp, "--data", data, "--method", "pgd", "--steps", "10", "--eps", ",".join(map(str, epss)),
                        "--batch-size", "32", "--out", out)
    check(rc == 0, f"--data curve ran {se.strip()}")
    if rc == 0:
        print("\n".join("     " + l for l in so.splitlines()))
        rows = [l.split(",") for l in open(os.path.join(out, "robustness.csv")).read().splitlines()]
        acc = [int(r[2]) / int(r[3]) for r in rows[1:]]
        check(rows[0] == ["eps", "accuracy", "correct", "samples"] and len(acc) == len(epss), "robustness.csv rows")
        check(acc[0] == clean_acc, f"accuracy at eps 0 {acc[0]} == ONNX Runtime's clean accuracy {clean_acc}")
        check(all(a >= b for a, b in zip(acc, acc[1:])) and acc[-1] < acc[0],
              f"PGD accuracy non-increasing in eps: {acc}")
        check(png_size(os.path.join(out, "robustness.png")) is not None, "robustness.png is a valid PNG")

    # ---- robustness curve on class folders (grey 8x8 PNGs, values / 255) ----
    # a brightness classifier: Conv 1x1 (+1, bias -0.5 | -1, bias +0.5) ->
    # Relu -> GlobalAveragePool -> Flatten -> Gemm 10 I: class 1 "bright"
    # when the mean of relu(x - 0.5) beats that of relu(0.5 - x)
    bright = os.path.join(WORK, "bright.onnx")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"])]
    inits = [numpy_helper.from_array(np.array([1, -1], np.float32).reshape(2, 1, 1, 1), "w"),
             numpy_helper.from_array(np.array([-0.5, 0.5], np.float32), "b"),
             numpy_helper.from_array(np.array([[0, 10], [10, 0]], np.float32), "fc")]
    g = helper.make_graph(nodes, "bright", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), bright)
    folders = os.path.join(WORK, "folders")
    imgs, labs = [], []
    r2 = np.random.default_rng(11)
    for k, (name, lo, hi) in enumerate([("dark", 40, 150), ("light", 105, 215)]):
        os.makedirs(os.path.join(folders, name))
        for j in range(12):
            im = np.clip(r2.uniform(lo, hi) + r2.normal(0, 30, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(im, "L").save(os.path.join(folders, name, f"{j}.png"))
            imgs.append(im)
            labs.append(k)
    xi = (np.stack(imgs).astype(np.float32) / np.float32(255))[:, None]
    ok0 = int((ort_run(bright, xi).argmax(1) == np.array(labs)).sum())
    out = os.path.join(WORK, "curve_folders")
    rc, so, se = attack(bright, "--data", folders, "--method", "fgsm", "--eps", "0,0.05,0.2", "--clip", "0,1",
                        "--batch-size", "5", "--out", out)
    check(rc == 0, f"--data class folders ran {se.strip()}")
    if rc == 0:
        rows = [l.split(",") for l in open(os.path.join(out, "robustness.csv")).read().splitlines()[1:]]
        ok = [int(r[2]) for r in rows]
        check(ok[0] == ok0 and ok[0] > ok[1] > ok[2] and all(int(r[3]) == 24 for r in rows),
              f"class folders (24 images, batches of 5, --clip 0,1): correct {ok} of 24; at eps 0 = ONNX Runtime's {ok0}")

    # ---- bad input ----
    good = os.path.join(WORK, "good.npy")
    np.save(good, xs[:1])
    corrupt = os.path.join(WORK, "corrupt.npy")
    open(corrupt, "wb").write(open(good, "rb").read()[:90])
    seg = os.path.join(WORK, "seg.onnx")  # Conv only: [N, 2, 4, 4], a per-pixel map, not a classifier
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "seg",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), seg)
    np.save(os.path.join(WORK, "seg_x.npy"), np.zeros((1, 1, 4, 4), np.float32))
    cases = [("eps < 0", ["--input", good, "--eps", "-0.1"]),
             ("unknown method", ["--input", good, "--eps", "0.1", "--method", "bim"]),
             ("class out of range", ["--input", good, "--eps", "0.1", "--target-class", "3"]),
             ("missing file", ["--input", os.path.join(WORK, "nope.npy"), "--eps", "0.1"]),
             ("corrupt npy", ["--input", corrupt, "--eps", "0.1"]),
             ("missing data folder", ["--data", os.path.join(WORK, "nodata"), "--eps", "0,0.1"]),
             ("segmentation output", ["--input", os.path.join(WORK, "seg_x.npy"), "--eps", "0.1"], seg)]
    for what, args, *m in cases:
        out = os.path.join(WORK, "bad_out")
        rc, so, se = attack(m[0] if m else mlp, *args, "--out", out)
        lines = se.strip().splitlines()
        left = [f for f in os.listdir(WORK) if f.startswith("bad_out")]
        check(rc == 1 and len(lines) == 1 and lines[0].startswith("kiln: error:") and not left,
              f"bad input ({what}): exit {rc}, {len(lines)} line(s): {lines[:1]}, left behind: {left}")

    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
