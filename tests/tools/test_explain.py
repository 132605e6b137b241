#!/usr/bin/env python3
"""`kiln explain` (passes/explain.c, tools/cmd_explain.c) against independent
references: ONNX Runtime (feature maps read as extra outputs), float64 NumPy
forwards and central finite differences.

Usage:  python3 tests/tools/test_explain.py KILN_BINARY ZOO_CACHE_DIR WORK_DIR

Checked:
  - GAP + fully connected head (ResNet-50 from models/gen/zoo.py, and a 3-D
    CNN built here): Grad-CAM at the map A feeding GlobalAveragePool equals
    ReLU(sum_k W[c,k] A_k) / (H*W) (dScore/dA_k = W[c,k] / HW everywhere),
    A from ONNX Runtime.  Bound, per element: 2e-4 * sum_k |W[c,k] A_k| / HW:
    kiln's A agrees with ONNX Runtime's to ~1e-4 relative (models.zoo_run's
    bound) and the float32 sum over K = 2048 channels rounds by at most
    ~K * 2^-24 = 1.2e-4 of the sum of magnitudes (in practice sqrt(K) less).
  - SqueezeNet style (zoo squeezenet1_1: Conv 1x1 classifier -> ReLU -> GAP,
    no FC): at the default layer, the ReLU output A, score = mean_hw A_c, so
    cam = A_c / HW.  At --layer features.12.cat (F, before the classifier
    conv z = W F + b): dScore/dF_k = W[c,k] [z_c > 0] / HW, so
    alpha_k = W[c,k] p / HW with p the fraction of positions where z_c > 0,
    and cam = ReLU(p (z_c - b_c) / HW) = p ReLU(z_c - b_c) / HW.  Same bound.
  - A small CNN with max-pooling and a two-layer head ending in Softmax
    (built here; the map is a Conv output, not a ReLU's: a 2x2 window of
    ReLU zeros is a tie where MaxPool has no derivative and finite
    differences see half the slope): Grad-CAM and Grad-CAM++ vs the same formulas applied to
    dScore/dA from central finite differences (h = 1e-4) of a float64 NumPy
    forward of the head (piecewise linear: exact away from kinks; rounding
    ~1e-12); the score is the Softmax's input.  Bound 1e-4 of the map's
    maximum (float32 forward and backward over a few hundred terms).
  - Saliency on that CNN vs finite differences of the float64 forward of
    the whole network, max over channels of |d score / dx| (same bound).
  - Integrated gradients (zero baseline), completeness: the sum of the
    attributions vs score(x) - score(0) (float64 NumPy).  The right Riemann
    sum of S steps errs by O(1/S) on a piecewise-linear path: bound 5% of
    |score(x) - score(0)| at S = 64 and 1.5% at S = 256, and the error must
    not grow with S.
  - 3-D (depth 6 and 70): cam [1, D, H, W]; overlay_slice_NNN.png for every
    slice up to 64, else 64 spread over the depth, plus overlay.png.
  - The bundled SqueezeNet 1.0 (float16) on the kitten photo: class 281
    (tabby cat), cam.npy [1,13,13], cam_upsampled.npy [1,224,224] equal to
    a half-pixel bilinear resize of cam.npy (NumPy, 1e-5), overlay.png
    decodes (Pillow) to an RGB image, the peak inside the image.
  - Artifacts: `kiln compile --explain` (object + runtime + a C driver
    calling P_explain) and `kiln emit-c --explain` (built with cc -std=c99
    -Wall -Wextra -Wpedantic -Werror, weights as arrays and as a file) give
    the cam `kiln explain` writes, within 1e-5 of its maximum (the same
    loop IR through other code generators: only contraction / vector order
    differ), for gradcam, gradcam++ and saliency on the small CNN, and the
    same logits; --class picks another class.
  - Hostile names: a feature map named with a newline and ESC is shown
    escaped on the one summary line and in the candidates of an error.
  - Bad inputs: unknown --layer (lists candidates), --class out of range, a
    missing image: one error line, exit 1, no DIR (nor a temporary) left.
"""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

KILN, ZOO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FAILS = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def fresh(name):
    p = os.path.join(WORK, name)
    shutil.rmtree(p, ignore_errors=True)
    return p


def explain(model, out, *args, expect_rc=0):
    r = subprocess.run([KILN, "explain", model, "--out", out, *args], capture_output=True, text=True)
    if r.returncode != expect_rc:
        print(r.stdout, r.stderr)
    return r


def ort_run(model_path_or_proto, feeds, extra=()):
    m = onnx.load(model_path_or_proto) if isinstance(model_path_or_proto, str) else model_path_or_proto
    for name in extra:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, feeds))), m


def init(m, name):
    for t in m.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t, base_dir=os.path.dirname(ZOO)).astype(np.float64)
    raise KeyError(name)


def zoo_model(name):
    path = os.path.join(ZOO, name + ".onnx")
    if not os.path.exists(path):
        sys.path.insert(0, os.path.join(ROOT, "models", "gen"))
        import zoo
        zoo.generate(ZOO, [name])
    return path


def summary_class(r):
    m = re.match(r"class (\d+)", r.stdout)
    return int(m.group(1)) if m else -1


# ---------------------------------------------------------------- ResNet-50

def test_resnet50():
    path = zoo_model("resnet50")
    x = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    np.save(os.path.join(WORK, "x224.npy"), x)
    out = fresh("r50")
    r = explain(path, out, "--input", "input=" + os.path.join(WORK, "x224.npy"))
    check(r.returncode == 0, "resnet50: kiln explain runs")
    if r.returncode:
        return
    res, m = ort_run(path, {"input": x}, ["layer4.2.relu3"])
    A = res["layer4.2.relu3"][0].astype(np.float64)  # [2048, 7, 7]
    c = int(np.argmax(res["logits"][0]))
    check(summary_class(r) == c, f"resnet50: explained class {summary_class(r)} = ONNX Runtime's argmax {c}")
    check("layer 'layer4.2.relu3'" in r.stdout, "resnet50: default layer is the map feeding GlobalAveragePool")
    W = init(m, "fc.weight")  # [1000, 2048] (Gemm transB)
    HW = A.shape[1] * A.shape[2]
    ref = np.maximum(np.einsum("k,khw->hw", W[c], A), 0) / HW
    scale = np.einsum("k,khw->hw", np.abs(W[c]), A) / HW
    cam = np.load(os.path.join(out, "cam.npy"))
    check(cam.shape == (1, 7, 7) and cam.dtype == np.float32, f"resnet50: cam.npy {cam.shape} {cam.dtype}")
    err = np.abs(cam[0] - ref)
    check(bool(np.all(err <= 2e-4 * scale + 1e-30)),
          f"resnet50: cam = ReLU(sum_k W[c,k] A_k)/HW (worst error {np.max(err / scale):.3g} of the bound's scale)")


# ---------------------------------------------------------------- SqueezeNet style

def test_squeezenet_style():
    path = zoo_model("squeezenet1_1")
    x = np.random.default_rng(2).random((1, 3, 224, 224), dtype=np.float32)
    np.save(os.path.join(WORK, "xs.npy"), x)
    res, m = ort_run(path, {"input": x}, ["classifier.1", "classifier.2"])
    c = int(np.argmax(res["logits"][0]))
    out = fresh("sq_default")
    r = explain(path, out, "--input", "input=" + os.path.join(WORK, "xs.npy"))
    check(r.returncode == 0 and summary_class(r) == c, f"squeezenet1_1: runs, class {c}")
    if r.returncode:
        return
    A = res["classifier.2"][0].astype(np.float64)
    HW = A.shape[1] * A.shape[2]
    cam = np.load(os.path.join(out, "cam.npy"))[0]
    ref = A[c] / HW
    check(bool(np.all(np.abs(cam - ref) <= 2e-4 * ref + 1e-7 * ref.max())),
          f"squeezenet1_1: default layer: cam = A_c / HW (max error {np.max(np.abs(cam - ref)):.3g})")
    # at the classifier's input: cam = p ReLU(z_c - b_c) / HW, for a class
    # (--class) where z_c has both signs, so that p matters
    ps = np.mean(res["classifier.1"][0] > 0, axis=(1, 2))
    c = int(np.argmin(np.abs(ps - 0.5)))
    out = fresh("sq_cat")
    r = explain(path, out, "--input", "input=" + os.path.join(WORK, "xs.npy"), "--layer", "features.12.cat",
                "--class", str(c))
    check(r.returncode == 0, "squeezenet1_1: --layer features.12.cat runs")
    if r.returncode:
        return
    z = res["classifier.1"][0, c].astype(np.float64)
    b = init(m, "classifier.1.bias")[c]
    Wc = init(m, "classifier.1.weight")[c, :, 0, 0]
    res2, _ = ort_run(path, {"input": x}, ["features.12.cat"])
    F = res2["features.12.cat"][0].astype(np.float64)
    p = np.mean(z > 0)
    ref = p * np.maximum(z - b, 0) / HW
    scale = p * np.einsum("k,khw->hw", np.abs(Wc), F) / HW
    cam = np.load(os.path.join(out, "cam.npy"))[0]
    err = np.abs(cam - ref)
    check(p > 0 and bool(np.all(err <= 2e-4 * scale + 1e-30)),
          f"squeezenet1_1: classifier input: cam = p ReLU(z_c - b_c)/HW, p = {p:.3f} "
          f"(worst {np.max(err / np.maximum(scale, 1e-30)):.3g} of the scale)")


# ---------------------------------------------------------------- small CNN

def small_cnn():
    rng = np.random.default_rng(7)
    P = {
        "w1": rng.normal(0, 0.5, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
        "w2": rng.normal(0, 0.3, (8, 8, 3, 3)), "b2": rng.normal(0, 0.1, 8),
        "w3": rng.normal(0, 0.1, (32, 512)), "b3": rng.normal(0, 0.1, 32),
        "w4": rng.normal(0, 0.3, (10, 32)), "b4": rng.normal(0, 0.1, 10),
    }
    P = {k: v.astype(np.float32) for k, v in P.items()}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["feat"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["mp"], ["fl"]),
        helper.make_node("Gemm", ["fl", "w3", "b3"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w4", "b4"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["prob"], axis=1),
    ]
    g = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(v, k) for k, v in P.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path = os.path.join(WORK, "small_cnn.onnx")
    onnx.save(m, path)
    return path, {k: v.astype(np.float64) for k, v in P.items()}


def conv64(x, w, b):  # x [C,H,W], 3x3, pad 1
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    H, W = x.shape[1:]
    out = np.zeros((w.shape[0], H, W))
    for i in range(3):
        for j in range(3):
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i:i + H, j:j + W])
    return out + b[:, None, None]


def head64(P, A):  # A [8,16,16] -> logits [10]
    mp = A.reshape(8, 8, 2, 8, 2).max(axis=(2, 4)).reshape(-1)
    h = np.maximum(P["w3"] @ mp + P["b3"], 0)
    return P["w4"] @ h + P["b4"]


def feat64(P, x):
    return conv64(np.maximum(conv64(x, P["w1"], P["b1"]), 0), P["w2"], P["b2"])


def net64(P, x):
    return head64(P, feat64(P, x))


def fd_grad(f, v, h=1e-4):
    g = np.zeros_like(v)
    it = np.nditer(v, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        v0 = v[i]
        v[i] = v0 + h
        fp = f(v)
        v[i] = v0 - h
        fm = f(v)
        v[i] = v0
        g[i] = (fp - fm) / (2 * h)
    return g


def test_hostile_names():
    """A feature map named with a newline and an escape sequence: the summary
    stays one line, the name shown escaped; --layer finds it by its bytes."""
    path, _ = small_cnn()
    m = onnx.load(path)
    bad = "fe\nat\x1b[31m"
    for n in m.graph.node:
        n.input[:] = [bad if v == "feat" else v for v in n.input]
        n.output[:] = [bad if v == "feat" else v for v in n.output]
    hp = os.path.join(WORK, "hostile.onnx")
    onnx.save(m, hp)
    xf = os.path.join(WORK, "x16.npy")
    np.save(xf, np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32))
    out = fresh("hostile")
    r = explain(hp, out, "--input", "x=" + xf)
    lines = r.stdout.splitlines()
    check(r.returncode == 0 and len(lines) == 1 and "\x1b" not in r.stdout and "layer 'fe" in r.stdout,
          f"hostile layer name: one escaped summary line: {lines}")
    out = fresh("hostile2")
    r = explain(hp, out, "--input", "x=" + xf, "--layer", bad)
    check(r.returncode == 0, "hostile layer name: --layer with its exact bytes")
    out = fresh("hostile3")
    r = explain(hp, out, "--input", "x=" + xf, "--layer", "nope", expect_rc=1)
    check(r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "\x1b" not in r.stderr,
          "hostile layer name: the candidate list stays one escaped line")


def test_small_cnn():
    path, P = small_cnn()
    x = np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32)
    xf = os.path.join(WORK, "x16.npy")
    np.save(xf, x)
    x64 = x[0].astype(np.float64)
    res, _ = ort_run(path, {"x": x}, ["z"])
    check(np.allclose(net64(P, x64), res["z"][0], rtol=1e-5, atol=1e-5), "small CNN: NumPy forward = ONNX Runtime")
    c = int(np.argmax(res["z"][0]))
    A = feat64(P, x64)
    g = fd_grad(lambda a: head64(P, a)[c], A.copy())  # dScore/dA, float64
    # Grad-CAM
    out = fresh("cnn_gradcam")
    r = explain(path, out, "--input", "x=" + xf)
    check(r.returncode == 0 and summary_class(r) == c and "layer 'feat'" in r.stdout,
          f"small CNN: gradcam runs at 'feat', class {c}")
    m = re.search(r"score (\S+)", r.stdout)
    check(m is not None and abs(float(m.group(1)) - res["z"][0, c]) <= 1e-4 * abs(res["z"][0, c]),
          "small CNN: the score is the Softmax's input (logit)")
    ref = np.maximum(np.einsum("k,khw->hw", g.mean(axis=(1, 2)), A), 0)
    if r.returncode == 0:
        cam = np.load(os.path.join(out, "cam.npy"))[0]
        err = np.max(np.abs(cam - ref))
        check(ref.max() > 0 and err <= 1e-4 * ref.max(), f"small CNN: Grad-CAM vs finite differences (error {err:.3g}, max {ref.max():.3g})")
    # Grad-CAM++: a = g^2 / (2 g^2 + sum A g^3), w = sum a ReLU(g)
    out = fresh("cnn_gradcampp")
    r = explain(path, out, "--input", "x=" + xf, "--method", "gradcam++")
    g2, g3 = g * g, g * g * g
    den = 2 * g2 + A.sum(axis=(1, 2))[:, None, None] * g3
    a = np.where(den != 0, g2 / np.where(den != 0, den, 1), 0)
    w = (a * np.maximum(g, 0)).sum(axis=(1, 2))
    ref = np.maximum(np.einsum("k,khw->hw", w, A), 0)
    if r.returncode == 0:
        cam = np.load(os.path.join(out, "cam.npy"))[0]
        err = np.max(np.abs(cam - ref))
        check(ref.max() > 0 and err <= 1e-4 * ref.max(), f"small CNN: Grad-CAM++ vs finite differences (error {err:.3g}, max {ref.max():.3g})")
    else:
        check(False, "small CNN: gradcam++ runs")
    # saliency
    gx = fd_grad(lambda v: net64(P, v)[c], x64.copy())
    out = fresh("cnn_saliency")
    r = explain(path, out, "--input", "x=" + xf, "--method", "saliency")
    ref = np.abs(gx).max(axis=0)
    if r.returncode == 0:
        cam = np.load(os.path.join(out, "cam.npy"))
        up = np.load(os.path.join(out, "cam_upsampled.npy"))
        err = np.max(np.abs(cam[0] - ref))
        check(cam.shape == (1, 16, 16) and np.array_equal(cam, up), "small CNN: saliency map at the input's size")
        check(err <= 1e-4 * ref.max(), f"small CNN: saliency vs finite differences (error {err:.3g}, max {ref.max():.3g})")
    else:
        check(False, "small CNN: saliency runs")
    # integrated gradients: completeness
    delta = net64(P, x64)[c] - net64(P, np.zeros_like(x64))[c]
    errs = {}
    for S in (64, 256):
        out = fresh(f"cnn_ig{S}")
        r = explain(path, out, "--input", "x=" + xf, "--method", "integrated-gradients", "--steps", str(S))
        if r.returncode:
            check(False, f"small CNN: integrated gradients S={S} runs")
            return
        attr = np.load(os.path.join(out, "attributions.npy")).astype(np.float64)
        cam = np.load(os.path.join(out, "cam.npy"))
        check(attr.shape == (1, 3, 16, 16) and np.allclose(cam[0], attr[0].sum(axis=0), rtol=1e-5, atol=1e-7),
              f"small CNN: S={S}: attributions [1,3,16,16], cam = their channel sum")
        errs[S] = abs(attr.sum() - delta) / abs(delta)
    check(errs[64] <= 0.05 and errs[256] <= 0.015 and errs[256] <= errs[64] + 1e-6,
          f"integrated gradients: completeness error {errs[64]:.3g} (S=64), {errs[256]:.3g} (S=256) of "
          f"|score(x) - score(0)| = {abs(delta):.4g}")


# ---------------------------------------------------------------- 3-D

def test_3d():
    _test_3d(6)
    _test_3d(70)  # more slices than overlays: 64, spread over the depth


def _test_3d(depth):
    rng = np.random.default_rng(5)
    w1 = rng.normal(0, 0.5, (6, 1, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 6).astype(np.float32)
    w2 = rng.normal(0, 0.5, (4, 6)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 6),
             helper.make_node("Relu", ["c1"], ["vol"]),
             helper.make_node("GlobalAveragePool", ["vol"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["fl"]),
             helper.make_node("Gemm", ["fl", "w2", "b2"], ["z"], transB=1)]
    g = helper.make_graph(nodes, "cnn3d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, depth, 10, 12])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
                          [numpy_helper.from_array(v, k) for k, v in {"w1": w1, "b1": b1, "w2": w2, "b2": b2}.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path = os.path.join(WORK, "cnn3d_small.onnx")
    onnx.save(m, path)
    x = rng.random((1, 1, depth, 10, 12), dtype=np.float32)
    np.save(os.path.join(WORK, "x3d.npy"), x)
    out = fresh("vol")
    r = explain(path, out, "--input", "x=" + os.path.join(WORK, "x3d.npy"))
    check(r.returncode == 0 and "peak (z " in r.stdout, "3-D: runs, peak (z, y, x)")
    if r.returncode:
        return
    res, _ = ort_run(path, {"x": x}, ["vol"])
    A = res["vol"][0].astype(np.float64)
    c = int(np.argmax(res["z"][0]))
    ref = np.maximum(np.einsum("k,kdhw->dhw", w2[c].astype(np.float64), A), 0) / A[0].size
    scale = np.einsum("k,kdhw->dhw", np.abs(w2[c]).astype(np.float64), A) / A[0].size
    cam = np.load(os.path.join(out, "cam.npy"))
    check(cam.shape == (1, depth, 10, 12) and bool(np.all(np.abs(cam[0] - ref) <= 2e-4 * scale + 1e-30)),
          f"3-D (depth {depth}): cam = ReLU(sum_k W[c,k] A_k)/(DHW)")
    files = sorted(os.listdir(out))
    n = min(depth, 64)
    slices = [(2 * k + 1) * depth // (2 * n) if depth > 64 else k for k in range(n)]
    want = sorted(["cam.npy", "cam_upsampled.npy", "overlay.png"] + [f"overlay_slice_{z:03d}.png" for z in slices])
    check(files == want and len(set(slices)) == n, f"3-D (depth {depth}): {len(files)} files, {n} slice overlays")


# ---------------------------------------------------------------- artifacts

DRIVER_OBJ = r"""
#include <stdio.h>
#include <stdlib.h>
#include "cnn.h"
int main(int argc, char **argv) {
  static float x[CNN_X_SIZE], cam[CNN_CAM_SIZE], logits[CNN_LOGITS_SIZE];
  int64_t cls[CNN_CLASS_SIZE];
  cnn_model *m;
  FILE *f = fopen(argv[2], "rb");
  if (!f || fread(x, sizeof x, 1, f) != 1) return 3;
  fclose(f);
  cls[0] = atoi(argv[3]);
  if (cnn_create(argv[1], &m) != KILN_RT_OK) return 4;
#ifdef GRAD
  static float grad[CNN_X_SIZE];
  if (cnn_explain(m, x, cls, cam, logits, grad) != KILN_RT_OK) return 5;
#else
  if (cnn_explain(m, x, cls, cam, logits) != KILN_RT_OK) return 5;
#endif
  f = fopen(argv[4], "wb");
  fwrite(cam, sizeof cam, 1, f);
  fwrite(logits, sizeof logits, 1, f);
  fclose(f);
  cnn_destroy(m);
  return 0;
}
"""

DRIVER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include "cnn.h"
static unsigned char ws[CNN_WORKSPACE_SIZE];
int main(int argc, char **argv) {
  static float x[CNN_X_SIZE], cam[CNN_CAM_SIZE], logits[CNN_LOGITS_SIZE];
  int64_t cls[CNN_CLASS_SIZE];
  FILE *f = fopen(argv[2], "rb");
  (void)argc;
  if (!f || fread(x, sizeof x, 1, f) != 1) return 3;
  fclose(f);
  cls[0] = atoi(argv[3]);
#ifdef WEIGHTS_FILE
  static unsigned char weights[CNN_WEIGHTS_SIZE];
  f = fopen(argv[1], "rb");
  if (!f || fread(weights, sizeof weights, 1, f) != 1) return 4;
  fclose(f);
#endif
#ifdef GRAD
  static float grad[CNN_X_SIZE];
#endif
  if (cnn_explain(
#ifdef WEIGHTS_FILE
      weights,
#endif
      x, cls, cam, logits,
#ifdef GRAD
      grad,
#endif
      ws) != 0) return 5;
  f = fopen(argv[4], "wb");
  fwrite(cam, sizeof cam, 1, f);
  fwrite(logits, sizeof logits, 1, f);
  fclose(f);
  return 0;
}
"""


def test_artifacts():
    path, _ = small_cnn()
    x = np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32)
    xf = os.path.join(WORK, "x16.npy")
    np.save(xf, x)
    xraw = os.path.join(WORK, "x16.bin")
    x.tofile(xraw)
    res, _ = ort_run(path, {"x": x}, ["z"])
    for method, cls in [("gradcam", -1), ("gradcam++", -1), ("saliency", -1), ("gradcam", 7)]:
        out = fresh("art_ref")
        r = explain(path, out, "--input", "x=" + xf, "--method", method, "--class", str(cls))
        if r.returncode:
            check(False, f"artifacts: kiln explain --method {method}")
            continue
        ref = np.load(os.path.join(out, "cam.npy")).reshape(-1)
        tag = f"{method} class {cls}"
        grad = ["-DGRAD"] if method == "saliency" else []
        variants = [("compile", []), ("emit-c", []), ("emit-c", ["--weights-file"])]
        for cmd, extra in variants:
            d = fresh("art")
            r = subprocess.run([KILN, cmd, path, "--explain", "--method", method, "--name", "cnn", "-o", d, *extra],
                               capture_output=True, text=True)
            if r.returncode:
                check(False, f"artifacts: kiln {cmd} --explain {tag}: {r.stderr.strip()}")
                continue
            src = os.path.join(d, "driver.c")
            exe = os.path.join(d, "driver")
            if cmd == "compile":
                with open(src, "w") as f:
                    f.write(DRIVER_OBJ)
                cc = ["cc", "-O1", *grad, "-I", d, "-o", exe, src, os.path.join(d, "cnn.o"),
                      os.path.join(d, "kiln_runtime.c"), "-lm", "-pthread"]
                weights = os.path.join(d, "cnn.weights")
            else:
                with open(src, "w") as f:
                    f.write(DRIVER_C)
                wf = ["-DWEIGHTS_FILE"] if extra else []
                srcs = [os.path.join(d, "cnn.c")] + ([] if extra else [os.path.join(d, "cnn_weights.c")])
                cc = ["cc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1",
                      *grad, *wf, "-I", d, "-o", exe, src, *srcs, "-lm"]
                weights = os.path.join(d, "cnn.weights")
            b = subprocess.run(cc, capture_output=True, text=True)
            if b.returncode:
                check(False, f"artifacts: {cmd} {' '.join(extra)} {tag} builds: {b.stderr[:2000]}")
                continue
            outf = os.path.join(d, "cam.bin")
            rr = subprocess.run([exe, weights, xraw, str(cls), outf], capture_output=True, text=True)
            if rr.returncode:
                check(False, f"artifacts: {cmd} {tag} driver exit {rr.returncode}")
                continue
            got = np.fromfile(outf, dtype=np.float32)
            cam, logits = got[:ref.size], got[ref.size:]
            err = np.max(np.abs(cam - ref))
            check(ref.max() > 0 and err <= 1e-5 * ref.max() and np.allclose(logits, res["z"][0], rtol=1e-5, atol=1e-5),
                  f"artifacts: {cmd} {' '.join(extra)} --explain {tag}: cam = kiln explain's (error {err:.3g} of max {ref.max():.3g})")


# ---------------------------------------------------------------- the kitten, bad inputs

def resize_half_pixel(a, oh, ow):  # bilinear, align_corners=False, edges clamped (ONNX Resize linear half_pixel)
    def weights(n_in, n_out):
        xs = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.minimum(np.floor(xs).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        f = np.where(i0 == n_in - 1, 0, xs - i0)
        M = np.zeros((n_out, n_in))
        M[np.arange(n_out), i0] += 1 - f
        M[np.arange(n_out), i1] += f
        return M
    return weights(a.shape[0], oh) @ a @ weights(a.shape[1], ow).T


def test_kitten():
    from PIL import Image
    model = os.path.join(ROOT, "models", "squeezenet", "squeezenet1.0-fp16.onnx")
    img = os.path.join(ROOT, "models", "squeezenet", "kitten_224.png")
    labels = os.path.join(ROOT, "models", "squeezenet", "imagenet-labels.txt")
    common = ["--image", img, "--channels", "bgr", "--scale", "1", "--labels", labels]
    out = fresh("kitten")
    r = explain(model, out, *common)
    check(r.returncode == 0 and summary_class(r) == 281 and "tabby" in r.stdout, f"kitten: class 281: {r.stdout.strip()}")
    if r.returncode:
        return
    cam = np.load(os.path.join(out, "cam.npy"))
    up = np.load(os.path.join(out, "cam_upsampled.npy"))
    check(cam.shape == (1, 13, 13) and up.shape == (1, 224, 224) and cam.dtype == np.float32,
          f"kitten: cam {cam.shape}, cam_upsampled {up.shape}")
    ref = resize_half_pixel(cam[0].astype(np.float64), 224, 224)
    check(np.max(np.abs(up[0] - ref)) <= 1e-5 * np.max(np.abs(ref)), "kitten: cam_upsampled = half-pixel bilinear resize")
    im = Image.open(os.path.join(out, "overlay.png"))
    im.load()
    check(im.mode == "RGB" and im.size[0] > 224 and im.size[1] >= 224, f"kitten: overlay.png decodes ({im.mode} {im.size})")
    m = re.search(r"peak \(y (\d+), x (\d+)\) of 224x224", r.stdout)
    check(m is not None and 0 <= int(m.group(1)) < 224 and 0 <= int(m.group(2)) < 224 and
          up[0, int(m.group(1)), int(m.group(2))] == up.max(), "kitten: the peak is the map's maximum, inside the image")
    # saliency on the photo
    out = fresh("kitten_sal")
    r = explain(model, out, *common, "--method", "saliency")
    check(r.returncode == 0 and summary_class(r) == 281 and np.load(os.path.join(out, "cam.npy")).shape == (1, 224, 224),
          "kitten: saliency [1,224,224]")
    # bad inputs: one line, exit 1, nothing left
    for what, args, needle in [
        ("unknown layer", ["--layer", "nope"], "no value named 'nope'"),
        ("class out of range", ["--class", "1000"], "out of range"),
    ]:
        out = fresh("bad")
        r = explain(model, out, *common, *args, expect_rc=1)
        lines = r.stderr.strip().splitlines()
        left = [f for f in os.listdir(WORK) if f.startswith("bad")]
        check(r.returncode == 1 and len(lines) == 1 and needle in lines[0] and lines[0].startswith("kiln: error: ")
              and not left, f"bad input ({what}): {lines}")
    out = fresh("bad")
    r = explain(model, out, "--image", os.path.join(WORK, "missing.png"), expect_rc=1)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 1 and len(lines) == 1 and not os.path.exists(out), f"bad input (missing image): {lines}")
    r = explain(model, out, *common, "--layer", "conv10_2", "--method", "saliency", expect_rc=2)
    check(r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, "usage error: --layer with saliency")


def main():
    os.makedirs(WORK, exist_ok=True)
    only = sys.argv[4:]
    for name, fn in [("kitten", test_kitten), ("small_cnn", test_small_cnn), ("3d", test_3d),
                     ("artifacts", test_artifacts), ("hostile", test_hostile_names),
                     ("squeezenet_style", test_squeezenet_style), ("resnet50", test_resnet50)]:
        if not only or name in only:
            fn()
    if FAILS:
        print(f"{len(FAILS)} check(s) failed")
        return 1
    print("all explain checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
