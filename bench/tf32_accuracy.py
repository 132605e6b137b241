#!/usr/bin/env python3
"""The accuracy cost of --tf32, measured (README, CUDA section).

Usage: tf32_accuracy.py KILN MODEL.onnx [--image PNG [--variants N]] [--seeds N] [--as-compiled]

Runs MODEL through `kiln run --target cuda-host` with and without --tf32 and
compares its (first) output with a float64 evaluation of the same network
done here in numpy, straight from the ONNX definitions of its ops (Conv,
BatchNormalization, Relu, Add, MaxPool, GlobalAveragePool, Flatten, Gemm,
Concat, Dropout, Softmax: what ResNet-50 and SqueezeNet use).  Reported per
input: max |y - y64| / max |y64|, whether the top-1 class agrees and how many
of the top-5 classes agree (as sets).

Every Conv output is made a graph output too, so no Conv has a fused
epilogue (fuse-epilogue stops at a value with a second reader) and every
f32 Conv takes the implicit-GEMM GPU schedule -- the one --tf32 changes --
as all will once fused epilogues reach it; the extra outputs change no
value (--as-compiled: the model as it is, only its unfused convolutions
take the tensor cores).  A float16 model (the bundled SqueezeNet) is evaluated with its
weights widened to float32 (exact), so its convolutions are f32 ones.
Inputs: --image (BGR 0..255, SqueezeNet's convention; --variants N: also
its mirror image and shifts by a few pixels, N inputs in all) or random
normal ones (--seeds N of them, seeds 0..N-1).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def to_f32(m):
    for t in m.graph.initializer:
        if t.data_type == TensorProto.FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT


def attrs(n):
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def conv(x, w, b, a):
    g = a.get("group", 1)
    k = w.shape[2:]
    s = a.get("strides", [1, 1])
    d = a.get("dilations", [1, 1])
    p = a.get("pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])))
    N, C, H, W = xp.shape
    Ho = (H - (d[0] * (k[0] - 1) + 1)) // s[0] + 1
    Wo = (W - (d[1] * (k[1] - 1) + 1)) // s[1] + 1
    M, Cg = w.shape[:2]
    Mg = M // g
    y = np.zeros((N, M, Ho, Wo))
    for gi in range(g):
        xs = xp[:, gi * Cg:(gi + 1) * Cg]
        for i in range(k[0]):
            for j in range(k[1]):
                patch = xs[:, :, i * d[0]:i * d[0] + s[0] * Ho:s[0], j * d[1]:j * d[1] + s[1] * Wo:s[1]]
                y[:, gi * Mg:(gi + 1) * Mg] += np.einsum("mc,nchw->nmhw", w[gi * Mg:(gi + 1) * Mg, :, i, j], patch)
    return y + (b[None, :, None, None] if b is not None else 0)


def maxpool(x, a):
    k, s = a["kernel_shape"], a.get("strides", [1, 1])
    p = a.get("pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])), constant_values=-np.inf)
    H, W = xp.shape[2:]
    if a.get("ceil_mode", 0):
        Ho, Wo = -(-(H - k[0]) // s[0]) + 1, -(-(W - k[1]) // s[1]) + 1
        xp = np.pad(xp, ((0, 0), (0, 0), (0, s[0]), (0, s[1])), constant_values=-np.inf)
    else:
        Ho, Wo = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1
    y = np.full(x.shape[:2] + (Ho, Wo), -np.inf)
    for i in range(k[0]):
        for j in range(k[1]):
            y = np.maximum(y, xp[:, :, i:i + s[0] * Ho:s[0], j:j + s[1] * Wo:s[1]])
    return y


def reference(m, feeds):
    env = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer}
    env.update({k: v.astype(np.float64) for k, v in feeds.items()})
    for n in m.graph.node:
        a, i = attrs(n), [env[x] if x else None for x in n.input]
        op = n.op_type
        if op == "Conv": y = conv(i[0], i[1], i[2] if len(i) > 2 else None, a)
        elif op == "BatchNormalization":
            sh = (1, -1, 1, 1)
            y = (i[0] - i[3].reshape(sh)) / np.sqrt(i[4].reshape(sh) + a.get("epsilon", 1e-5)) * i[1].reshape(sh) + i[2].reshape(sh)
        elif op == "Relu": y = np.maximum(i[0], 0)
        elif op == "Add": y = i[0] + i[1]
        elif op == "MaxPool": y = maxpool(i[0], a)
        elif op == "GlobalAveragePool": y = i[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Flatten": y = i[0].reshape(i[0].shape[0], -1)
        elif op == "Gemm":
            A = i[0].T if a.get("transA", 0) else i[0]
            B = i[1].T if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * A @ B + (a.get("beta", 1.0) * i[2] if len(i) > 2 else 0)
        elif op == "Concat": y = np.concatenate(i, axis=a["axis"])
        elif op == "Dropout": y = i[0]
        elif op == "Softmax":
            ax = a.get("axis", 1)
            flat = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
            e = np.exp(flat - flat.max(axis=1, keepdims=True))
            y = (e / e.sum(axis=1, keepdims=True)).reshape(i[0].shape)
        else: raise SystemExit(f"tf32_accuracy: no float64 reference for {op}")
        env[n.output[0]] = y
    return env[m.graph.output[0].name]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("model")
    ap.add_argument("--image")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--variants", type=int, default=1)
    ap.add_argument("--as-compiled", action="store_true")
    args = ap.parse_args()
    m = onnx.load(args.model)
    to_f32(m)
    out_name = m.graph.output[0].name
    inits = {t.name for t in m.graph.initializer}
    inp = [v for v in m.graph.input if v.name not in inits][0]
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    for n in m.graph.node:
        if n.op_type == "Conv" and not args.as_compiled:
            m.graph.output.append(helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None))
    feeds_list = []
    if args.image:
        from PIL import Image
        img = np.asarray(Image.open(args.image).convert("RGB").resize((shape[3], shape[2])), dtype=np.float32)
        x0 = img[:, :, ::-1].transpose(2, 0, 1)[None]  # BGR, 0..255
        shifts = [(0, 0, False), (0, 0, True), (8, 0, False), (0, 8, False), (-8, 0, False), (0, -8, False),
                  (8, 8, True), (-8, -8, True)]
        for dy, dx, flip in shifts[:max(1, args.variants)]:
            x = np.roll(x0, (dy, dx), axis=(2, 3))
            feeds_list.append((f"image{' mirrored' if flip else ''} shifted ({dy},{dx})",
                               (x[:, :, :, ::-1] if flip else x).copy()))
    else:
        for s in range(args.seeds):
            feeds_list.append((f"random seed {s}", np.random.default_rng(s).standard_normal(shape).astype(np.float32)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(m, path)
        ins = subprocess.run([args.kiln, "inspect", path, "--target", "cuda", "--tf32", "--loops"], capture_output=True,
                             text=True).stdout
        print(f"{os.path.basename(args.model)}: {sum(n.op_type == 'Conv' for n in m.graph.node)} convolutions, "
              f"{ins.count('mma_m16n8k8_tf32')} on TF32 tensor cores with --tf32")
        for label, x in feeds_list:
            xf = os.path.join(tmp, "x.npy")
            np.save(xf, x)
            ref = reference(m, {inp.name: x}).reshape(-1)
            top5 = np.argsort(-ref)[:5]
            for flag in ([], ["--tf32"]):
                od = os.path.join(tmp, "out" + "".join(flag))
                r = subprocess.run([args.kiln, "run", path, "--input", f"{inp.name}={xf}", "--target", "cuda-host",
                                    "--output", od] + flag, capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(f"kiln failed: {r.stderr.strip()}")
                y = np.load(os.path.join(od, out_name + ".npy")).astype(np.float64).reshape(-1)
                err = np.abs(y - ref).max() / np.abs(ref).max()
                t5 = np.argsort(-y)[:5]
                print(f"  {label} {'tf32' if flag else 'fp32'}: max|y - y64|/max|y64| = {err:.3g}, "
                      f"top-1 {'agrees' if t5[0] == top5[0] else 'DIFFERS'} ({t5[0]} vs {top5[0]}), "
                      f"top-5 {len(set(t5) & set(top5))}/5")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
