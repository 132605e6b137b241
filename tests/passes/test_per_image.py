#!/usr/bin/env python3
"""per-image (passes/per_image.c): batch N run as N one-image runs.

Usage:  python3 tests/passes/test_per_image.py KILN_BINARY

Small networks built here with onnx.helper, at batch 3 (and the symbolic
batch bound by --batch), each run by `kiln run --threads 2` (LLVM JIT:
images at once, one a thread, kiln_program.image_slots) and by the C
that `kiln emit-c` writes (compiled with cc), and compared with ONNX
Runtime on the same seeded inputs:

  * image-wise networks (Conv/BN/Relu/pools/Concat/Flatten/Gemm/Softmax, the
    PyTorch flatten x.view(x.size(0), -1) whose folded shape spells the
    batch, a residual Add with a broadcast constant, float16) must be
    rewritten -- `kiln inspect --loops` says "one image at a time" -- and
    match ORT within 1e-5 of max|y| (float32: the sums are the same
    products in a different order at most; float16: 2e-3, one f16 rounding
    per stored tensor, as tests/passes/test_f16_conv.py argues);
  * networks that mix images (a Concat along the batch axis, a ReduceMean
    over it, a Transpose moving it, a Gemm whose B is a run-time input, a
    BatchNormalization in training mode: the batch's statistics) must
    keep the batch-N program (no such line) and still match ORT;
  * `kiln run --profile` on a rewritten network sums each kernel over the
    images: the MFLOP column totals the batch's 2 x MACs (kiln inspect);
  * `kiln compile --shared` at batch 3: the header gives the batch's
    shapes, and the object, run through kiln_runtime on two threads,
    matches ORT.

Each assertion can fail: without the Reshape fix the flatten network's
second image would be read at the wrong place (a shape error or wrong
values), and with the pass applied to a mixing network ORT disagrees.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

KILN = sys.argv[1]
B = 3
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


rng = np.random.default_rng(7)


def weight(name, shape, dtype=np.float32):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(dtype), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def model(name, nodes, inputs, outputs, inits):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def fire():
    """SqueezeNet's fire module with BN and a pool, a fixed batch of 3."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c0", "s", "b", "m", "v"], ["n0"]),
        helper.make_node("Relu", ["n0"], ["r0"]),
        helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Conv", ["p0", "w1"], ["e1"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["p0", "w3"], ["e3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["e1", "e3"], ["cat"], axis=1),
        helper.make_node("Relu", ["cat"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["l"], transB=1),
        helper.make_node("Softmax", ["l"], ["y"], axis=1),
    ]
    c = 8
    inits = [weight("w0", [c, 3, 3, 3]), numpy_helper.from_array(np.linspace(0.5, 1.5, c).astype(np.float32), "s"),
             weight("b", [c]), weight("m", [c]), numpy_helper.from_array(np.linspace(0.5, 2, c).astype(np.float32), "v"),
             weight("w1", [6, c, 1, 1]), weight("w3", [6, c, 3, 3]), weight("fw", [10, 12]), weight("fb", [10])]
    return model("fire", nodes, [vi("x", [B, 3, 33, 33])], [vi("y", [B, 10])], inits)


def torch_flatten():
    """A symbolic batch, x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze
    -> Concat -> Reshape, a residual Add of a broadcast constant, Linear."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "bias"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shp"], axis=0),
        helper.make_node("Reshape", ["p", "shp"], ["f"]),
        helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1),
    ]
    inits = [weight("w", [4, 2, 3, 3]), weight("bias", [4, 1, 1]), weight("fw", [5, 64]),
             numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"), ints("axes0", [0]), ints("minus1", [-1])]
    return model("torch_flatten", nodes, [vi("x", ["N", 2, 8, 8])], [vi("y", ["N", 5])], inits)


def fp16_pair():
    """float16 Conv -> Relu -> Conv with a batch of 3."""
    h = TensorProto.FLOAT16
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w1"], ["y"], kernel_shape=[1, 1]),
    ]
    inits = [weight("w0", [8, 4, 3, 3], np.float16), weight("w1", [4, 8, 1, 1], np.float16)]
    return model("fp16_pair", nodes, [vi("x", [B, 4, 10, 10], h)], [vi("y", [B, 4, 10, 10], h)], inits)


def mixing():
    """Four ways to mix images; none may run one image at a time."""
    cat0 = model("concat_batch", [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
                                  helper.make_node("Concat", ["c", "x"], ["y"], axis=0)],
                 [vi("x", [B, 4, 5, 5])], [vi("y", [2 * B, 4, 5, 5])], [weight("w", [4, 4, 1, 1])])
    mean0 = model("mean_batch", [helper.make_node("Relu", ["x"], ["r"]),
                                 helper.make_node("ReduceMean", ["r"], ["m"], axes=[0], keepdims=1),
                                 helper.make_node("Sub", ["x", "m"], ["y"])],
                  [vi("x", [B, 4, 5, 5])], [vi("y", [B, 4, 5, 5])], [])
    trans = model("transpose_batch", [helper.make_node("Relu", ["x"], ["r"]),
                                      helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0, 2, 3]),
                                      helper.make_node("Transpose", ["t"], ["y"], perm=[1, 0, 2, 3])],
                  [vi("x", [B, 4, 5, 5])], [vi("y", [B, 4, 5, 5])], [])
    gemm_in = model("gemm_input_b", [helper.make_node("Gemm", ["x", "u"], ["y"], transB=1)],
                    [vi("x", [B, 6]), vi("u", [B, 6])], [vi("y", [B, B])], [])
    c = 4
    bn_train = model("bn_training_mode", [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"],
                                                           training_mode=1)],
                     [vi("x", [B, c, 5, 5])], [vi("y", [B, c, 5, 5])],
                     [weight("s", [c]), weight("b", [c]), weight("m", [c]),
                      numpy_helper.from_array(np.ones(c, np.float32), "v")])
    bn_train.opset_import[0].version = 15
    return [cat0, mean0, trans, gemm_in, bn_train]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def inputs_for(m):
    feeds = {}
    for v in m.graph.input:
        shape = [d.dim_value if d.HasField("dim_value") else B for d in v.type.tensor_type.shape.dim]
        dt = np.float16 if v.type.tensor_type.elem_type == TensorProto.FLOAT16 else np.float32
        feeds[v.name] = rng.standard_normal(shape).astype(dt)
    return feeds


def try_one(m, work, want_images, tol):
    name = m.graph.name
    path = os.path.join(work, name + ".onnx")
    onnx.save(m, path)
    feeds = inputs_for(m)
    args = []
    for k, x in feeds.items():
        f = os.path.join(work, f"{name}_{k}.npy")
        np.save(f, x)
        args += ["--input", f"{k}={f}"]
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
    loops = run([KILN, "inspect", path, "--loops", "--batch", str(B)])
    check(loops.returncode == 0, f"{name}: kiln inspect --loops: {loops.stderr.strip()[:200]}")
    said = f"# one image at a time: the kernels run {B} times" in loops.stdout
    check(said == want_images, f"{name}: one image at a time: {said}, want {want_images}")
    od = os.path.join(work, name + "_out")
    r = run([KILN, "run", path, *args, "--output", od, "--batch", str(B), "--threads", "2"])
    check(r.returncode == 0, f"{name}: kiln run: {r.stderr.strip()[:200]}")
    if r.returncode:
        return
    for i, o in enumerate(m.graph.output):
        got = np.load(os.path.join(od, o.name + ".npy")).astype(np.float64)
        want = ref[i].astype(np.float64)
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30) if got.shape == want.shape else float("inf")
        check(err <= tol, f"{name}: kiln run {o.name} {got.shape} vs ORT: {err:.2e} of max|y| (<= {tol:g})")
    if not shutil.which("cc"):
        return
    cdir = os.path.join(work, name + "_c")
    e = run([KILN, "emit-c", path, "-o", cdir, "--batch", str(B)])
    check(e.returncode == 0, f"{name}: kiln emit-c: {e.stderr.strip()[:200]}")
    src = open(os.path.join(cdir, name + ".c")).read() if e.returncode == 0 else ""
    looped = "one image at a time" in src
    check(looped == want_images, f"{name}: emitted C loops over the images: {looped}, want {want_images}")
    b = run(["make", "-s", "-C", cdir])
    check(b.returncode == 0, f"{name}: make: {b.stderr.strip()[:300]}")
    if b.returncode:
        return
    cout = os.path.join(work, name + "_cout")
    os.makedirs(cout, exist_ok=True)
    ins = [os.path.join(work, f"{name}_{v.name}.npy") for v in m.graph.input]
    c = run([os.path.join(cdir, "run_model"), *ins, cout])
    check(c.returncode == 0, f"{name}: run_model: {c.stderr.strip()[:200]}")
    for i, o in enumerate(m.graph.output):
        if c.returncode:
            break
        got = np.load(os.path.join(cout, f"output_{i}.npy")).astype(np.float64).reshape(ref[i].shape)
        want = ref[i].astype(np.float64)
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
        check(err <= tol, f"{name}: emitted C {o.name} vs ORT: {err:.2e} of max|y| (<= {tol:g})")


def aot(work):
    """kiln compile --shared at batch 3, run through kiln_runtime with ctypes
    on two threads: the object's entry loops over the images as the JIT's."""
    import ctypes
    m = torch_flatten()
    path = os.path.join(work, "aot_net.onnx")
    onnx.save(m, path)
    out = os.path.join(work, "aot")
    r = run([KILN, "compile", path, "-o", out, "--batch", str(B), "--shared"])
    check(r.returncode == 0, f"kiln compile --shared: {r.stderr.strip()[:200]}")
    if r.returncode:
        return
    header = open(os.path.join(out, "aot_net.h")).read()
    check(f"f32[{B},2,8,8]" in header and f"f32[{B},5]" in header, "the header's shapes are the whole batch's")
    lib = ctypes.CDLL(os.path.join(out, "libaot_net.so"))
    model_p = ctypes.c_void_p()
    lib.kiln_rt_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    rc = lib.kiln_rt_create(ctypes.cast(lib.aot_net_layout, ctypes.c_void_p), ctypes.cast(lib.aot_net_kernels, ctypes.c_void_p),
                            os.path.join(out, "aot_net.weights").encode(), ctypes.byref(model_p))
    check(rc == 0, f"kiln_rt_create: {rc}")
    if rc:
        return
    lib.kiln_rt_set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.kiln_rt_set_threads(model_p, 2)
    x = rng.standard_normal((B, 2, 8, 8)).astype(np.float32)
    y = np.full((B, 5), np.nan, np.float32)
    ins = (ctypes.c_void_p * 1)(x.ctypes.data)
    outs = (ctypes.c_void_p * 1)(y.ctypes.data)
    lib.kiln_rt_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    check(lib.kiln_rt_run(model_p, ins, outs) == 0, "kiln_rt_run")
    lib.kiln_rt_destroy.argtypes = [ctypes.c_void_p]
    lib.kiln_rt_destroy(model_p)
    want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    err = np.abs(y.astype(np.float64) - want).max() / np.abs(want).max()
    check(err <= 1e-5, f"compiled object, batch {B} on 2 threads, vs ORT: {err:.2e} of max|y| (<= 1e-05)")


def profile_sums(work):
    m = fire()
    path = os.path.join(work, "fire_profile.onnx")
    onnx.save(m, path)
    ins = run([KILN, "inspect", path])
    macs = int(re.search(r"MACs\s+[\d.]+ \w \(([\d,]+)\)", ins.stdout).group(1).replace(",", ""))
    r = run([KILN, "run", path, "--random", "--profile", "--repeat", "3"])
    check(r.returncode == 0 and "one image at a time: each kernel ran 3 times" in r.stdout,
          "kiln run --profile says each kernel ran once per image")
    total = re.search(r"^total\s+[\d.]+\s+[\d.]+\s+([\d.]+)", r.stdout, re.M)
    got = float(total.group(1)) if total else -1
    check(abs(got - 2e-6 * macs) <= 2e-3 * 2e-6 * macs + 1e-3,
          f"profile MFLOP total {got} = 2 x MACs of the batch ({2e-6 * macs:.3f})")


def main():
    work = tempfile.mkdtemp(prefix="kiln_per_image_")
    try:
        try_one(fire(), work, True, 1e-5)
        try_one(torch_flatten(), work, True, 1e-5)
        try_one(fp16_pair(), work, True, 2e-3)
        for m in mixing():
            try_one(m, work, False, 1e-5)
        profile_sums(work)
        if shutil.which("cc"):
            aot(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all per-image checks passed")


if __name__ == "__main__":
    main()
