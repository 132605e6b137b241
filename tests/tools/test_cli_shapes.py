#!/usr/bin/env python3
"""Shapes through the CLI, end to end (issue #8): each model goes through
`kiln run`, `kiln compile` (the .so, called with ctypes) and `kiln emit-c`
(the generated Makefile and example runner), and the numbers are compared
with ONNX Runtime (or numpy where ORT is the same arithmetic).

- a graph input that is also a graph output: read from the given input,
  not zeros; emit-c compiles;
- a rank-0 output (MatMul of two vectors): a .npy NumPy loads;
- `kiln run --output DIR` creates DIR (and missing parents);
- symbolic N, H, W: inspect keeps H and W symbolic (MACs unknown), --dim
  binds each, compile/emit-c without them fail naming --dim;
- an input dim of -1: a symbolic dim named x_dim2;
- inputs that decide shapes (Reshape shape, Pad pads, Clip bounds): run
  binds them from --input, compile/emit-c from --const, and without a value
  the error names the option.

Tolerance: f32 rtol 1e-4, atol 1e-5 against ORT (different summation
orders in float32); copies and integer results exact.

usage: test_cli_shapes.py KILN WORK_DIR
"""
import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

KILN, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def kiln(*args, ok=True):
    r = subprocess.run([KILN, *args], capture_output=True, text=True)
    if ok and r.returncode != 0:
        raise SystemExit(f"kiln {' '.join(args)} failed: {r.stderr}")
    return r


def fails_with(args, *needles):
    r = kiln(*args, ok=False)
    err = r.stderr.strip()
    good = r.returncode == 1 and len(err.splitlines()) == 1 and err.startswith("kiln: error: ") and \
        all(n in err for n in needles)
    check(good, f"kiln {args[0]} fails naming {needles}: {err!r}")


def save(model, name):
    path = os.path.join(WORK, name)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def close(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    ok = got.shape == want.shape and got.dtype == want.dtype and np.allclose(got, want, rtol=1e-4, atol=1e-5)
    check(ok, f"{what}: shape {got.shape} {got.dtype}, max |diff| "
              f"{np.max(np.abs(got.astype(np.float64) - want)) if got.shape == want.shape and got.size else '-'}")


def run_outputs(model, inputs, extra=()):
    """kiln run with --input NAME=FILE.npy each; returns {name: array} read
    from a --output folder kiln has to create (two levels deep)."""
    tag = os.path.splitext(os.path.basename(model))[0]
    out = os.path.join(WORK, "run-" + tag, "nested", "out")
    shutil.rmtree(os.path.join(WORK, "run-" + tag), ignore_errors=True)
    args = ["run", model, "--output", out, *extra]
    for name, arr in inputs.items():
        f = os.path.join(WORK, f"{tag}-{name}.npy")
        np.save(f, arr)
        args += ["--input", f"{name}={f}"]
    kiln(*args)
    return {f[:-4]: np.load(os.path.join(out, f)) for f in os.listdir(out)}


def emit_c_outputs(model, inputs, extra=()):
    """kiln emit-c, make, run_model on the inputs (in model input order)."""
    tag = os.path.splitext(os.path.basename(model))[0]
    d = os.path.join(WORK, "emit-" + tag)
    shutil.rmtree(d, ignore_errors=True)
    kiln("emit-c", model, "-o", d, *extra)
    r = subprocess.run(["make", "-s", "CFLAGS=-std=c99 -O1 -Wall -Wextra -Wpedantic -Werror"], cwd=d,
                       capture_output=True, text=True)
    check(r.returncode == 0, f"emit-c {tag}: generated C builds with -Werror {r.stderr[:300]!r}")
    files = []
    for name, arr in inputs.items():
        f = os.path.join(d, f"in-{name}.npy")
        np.save(f, arr)
        files.append(f)
    subprocess.run([os.path.join(d, "run_model"), *files, d], check=True)
    outs, k = [], 0
    while os.path.exists(os.path.join(d, f"output_{k}.npy")):
        outs.append(np.load(os.path.join(d, f"output_{k}.npy")))
        k += 1
    return outs


def compile_outputs(model, inputs, out_specs, extra=()):
    """kiln compile --shared; calls kiln_rt_create/run through ctypes.
    out_specs: (shape, dtype) per output, in order."""
    tag = os.path.splitext(os.path.basename(model))[0]
    d = os.path.join(WORK, "compile-" + tag)
    shutil.rmtree(d, ignore_errors=True)
    kiln("compile", model, "-o", d, "--name", "m", "--shared", *extra)
    lib = ctypes.CDLL(os.path.join(d, "libm.so"))
    handle = ctypes.c_void_p()
    layout = ctypes.c_void_p.in_dll(lib, "m_layout")
    lib.kiln_rt_create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    st = lib.kiln_rt_create(ctypes.addressof(layout), ctypes.cast(lib.m_kernels, ctypes.c_void_p),
                            os.path.join(d, "m.weights").encode(), ctypes.byref(handle))
    check(st == 0, f"compile {tag}: kiln_rt_create")
    ins = [np.ascontiguousarray(a) for a in inputs.values()]
    outs = [np.zeros(s, dt) for s, dt in out_specs]
    in_ptrs = (ctypes.c_void_p * (len(ins) + 1))(*[a.ctypes.data for a in ins])
    out_ptrs = (ctypes.c_void_p * (len(outs) + 1))(*[a.ctypes.data for a in outs])
    lib.kiln_rt_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    check(lib.kiln_rt_run(handle, in_ptrs, out_ptrs) == 0, f"compile {tag}: kiln_rt_run")
    lib.kiln_rt_destroy.argtypes = [ctypes.c_void_p]
    lib.kiln_rt_destroy(handle)
    return outs


def ort_run(model, inputs):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return s.run(None, inputs)


def opset(g, v=17):
    return h.make_model(g, opset_imports=[h.make_opsetid("", v)])


def test_input_is_output():
    g = h.make_graph([h.make_node("Relu", ["x"], ["y"], name="r")], "io",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 3])],
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 3]), h.make_tensor_value_info("y", T.FLOAT, [2, 3])])
    m = save(opset(g), "input_is_output.onnx")
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    ref = ort_run(m, {"x": x})
    got = run_outputs(m, {"x": x})
    close(got["x"], ref[0], "run: input-as-output x")
    close(got["y"], ref[1], "run: y = Relu(x) computed from the given x")
    e = emit_c_outputs(m, {"x": x})
    close(e[0], ref[0], "emit-c: output 0 (x)")
    close(e[1], ref[1], "emit-c: output 1 (y)")
    c = compile_outputs(m, {"x": x}, [((2, 3), np.float32)] * 2)
    close(c[0], ref[0], "compile: output 0 (x)")
    close(c[1], ref[1], "compile: output 1 (y)")


def test_scalar_output():
    g = h.make_graph([h.make_node("MatMul", ["a", "b"], ["c"], name="mm")], "dot",
                     [h.make_tensor_value_info("a", T.FLOAT, [4]), h.make_tensor_value_info("b", T.FLOAT, [4])],
                     [h.make_tensor_value_info("c", T.FLOAT, [])])
    m = save(opset(g), "scalar_output.onnx")
    a, b = np.arange(1, 5, dtype=np.float32), np.array([0.5, -1, 2, 0.25], np.float32)
    ref = ort_run(m, {"a": a, "b": b})[0]
    close(run_outputs(m, {"a": a, "b": b})["c"], ref, "run: rank-0 output as .npy")
    close(emit_c_outputs(m, {"a": a, "b": b})[0], ref, "emit-c: rank-0 output as .npy")
    close(compile_outputs(m, {"a": a, "b": b}, [((), np.float32)])[0], ref, "compile: rank-0 output")
    # the header's shape macros are valid C99 initializers, the rank-0 one too
    d = os.path.join(WORK, "compile-scalar_output")
    with open(os.path.join(d, "use.c"), "w") as f:
        f.write('#include "m.h"\nint main(void) {\n  int64_t a[] = M_A_SHAPE, c[] = M_C_SHAPE;\n'
                '  return (int)(a[0] - 4 + c[0] - 1 + M_C_RANK);\n}\n')
    r = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c", "use.c"], cwd=d,
                       capture_output=True, text=True)
    check(r.returncode == 0, f"compile: header with a rank-0 output builds with -Wpedantic -Werror {r.stderr[:300]!r}")
    hdr = open(os.path.join(WORK, "emit-scalar_output", "scalar_output.h")).read()
    check("#define SCALAR_OUTPUT_C_SHAPE {}" not in hdr, "emit-c: no empty {} initializer for the rank-0 output")


def cnn(dims):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((10, 8)).astype(np.float32)
    nodes = [h.make_node("Conv", ["x", "W"], ["c"], name="conv", strides=[2, 2], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             h.make_node("Relu", ["c"], ["r"], name="relu"),
             h.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
             h.make_node("Flatten", ["g"], ["f"], name="flat"),
             h.make_node("Gemm", ["f", "FC"], ["y"], name="fc", transB=1)]
    g = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, dims)],
                     [h.make_tensor_value_info("y", T.FLOAT, [dims[0], 10])],
                     [nh.from_array(w, "W"), nh.from_array(fc, "FC")])
    return opset(g)


def test_symbolic_dims():
    m = save(cnn(["N", 3, "H", "W"]), "sym_nhw.onnx")
    r = kiln("inspect", m)
    check("f32[N,3,H,W]" in r.stdout, "inspect: input keeps N, H, W symbolic")
    check("MACs      unknown" in r.stdout and "H, W" in r.stdout, "inspect: MACs unknown while H, W are symbolic")
    v = kiln("inspect", m, "--verbose").stdout
    check("f32[N,8,floor((H-1)/2)+1,floor((W-1)/2)+1]" in v, "inspect --verbose: conv output extent as a formula")
    r = kiln("inspect", m, "--batch", "1")
    check("f32[1,3,H,W]" in r.stdout, "inspect --batch 1 binds only the batch dim")
    r = kiln("inspect", m, "--dim", "H=32", "--dim", "W=48", "--batch", "2")
    # conv 3x3 s2 p1 -> 16x24 (8 out channels, 27 MACs each) + gemm 8x10, per item; x2 batch
    check("f32[2,3,32,48]" in r.stdout and f"{2 * (16 * 24 * 8 * 27 + 80):,}" in r.stdout,
          f"inspect --dim H=32 --dim W=48 --batch 2: shapes and MACs {r.stdout.splitlines()[-2:]}")
    fails_with(["inspect", m, "--dim", "Q=3"], "--dim Q", "N, H, W")
    fails_with(["emit-c", m, "-o", os.path.join(WORK, "never")], "'H'", "--dim H=")
    fails_with(["compile", m, "-o", os.path.join(WORK, "never")], "'H'", "--dim H=")
    check(not os.path.exists(os.path.join(WORK, "never")), "failed emit-c/compile leave no folder")
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 28)).astype(np.float32)
    ref = ort_run(m, {"x": x})[0]
    close(run_outputs(m, {"x": x})["y"], ref, "run: N, H, W bound from the input file")
    dims = ("--dim", "H=20", "--dim", "W=28", "--batch", "2")
    close(emit_c_outputs(m, {"x": x}, dims)[0], ref, "emit-c --dim H=20 --dim W=28 --batch 2")
    close(compile_outputs(m, {"x": x}, [((2, 10), np.float32)], dims)[0], ref, "compile --dim H=20 --dim W=28 --batch 2")
    # H and W differ from each other and from N: binding one must not bind the others
    x2 = np.random.default_rng(2).standard_normal((3, 3, 9, 17)).astype(np.float32)
    close(emit_c_outputs(m, {"x": x2}, ("--dim", "H=9", "--dim", "W=17", "--dim", "N=3"))[0], ort_run(m, {"x": x2})[0],
          "emit-c --dim N=3 --dim H=9 --dim W=17")


def test_symbolic_resize():
    g = h.make_graph([h.make_node("Resize", ["x", "", "sc"], ["y"], name="up", mode="nearest")], "up",
                     [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 3, "H2", "W2"])],
                     [nh.from_array(np.array([1, 1, 2, 2], np.float32), "sc")])
    m = save(opset(g), "sym_resize.onnx")
    check("f32[N,3,2*(H),2*(W)]" in kiln("inspect", m).stdout, "inspect: Resize x2 of symbolic H, W")
    check("f32[N,3,10,14]" in kiln("inspect", m, "--dim", "H=5", "--dim", "W=7").stdout, "inspect --dim: Resize x2")
    x = np.random.default_rng(4).standard_normal((1, 3, 5, 7)).astype(np.float32)
    close(run_outputs(m, {"x": x})["y"], ort_run(m, {"x": x})[0], "run: Resize of symbolic H, W bound from the file")


def test_minus_one_dim():
    mm = cnn([1, 3, 5, 5])
    for d in (2, 3):
        mm.graph.input[0].type.tensor_type.shape.dim[d].Clear()
        mm.graph.input[0].type.tensor_type.shape.dim[d].dim_value = -1
    path = os.path.join(WORK, "minus_one.onnx")
    onnx.save(mm, path)  # the checker rejects -1; ORT and kiln read it
    r = kiln("inspect", path)
    check("f32[1,3,x_dim2,x_dim3]" in r.stdout, "inspect: dim -1 is the symbolic dim x_dimK")
    x = np.random.default_rng(3).standard_normal((1, 3, 12, 10)).astype(np.float32)
    ref = ort_run(path, {"x": x})[0]
    close(run_outputs(path, {"x": x})["y"], ref, "run: dim -1 bound from the input file")
    close(emit_c_outputs(path, {"x": x}, ("--dim", "x_dim2=12", "--dim", "x_dim3=10"))[0], ref,
          "emit-c --dim x_dim2=12 --dim x_dim3=10")


def test_shape_inputs():
    nodes = [h.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
             h.make_node("Pad", ["r", "pads"], ["p"], name="pad"),
             h.make_node("Clip", ["p", "lo", "hi"], ["y"], name="clip")]
    g = h.make_graph(nodes, "shape_inputs",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 6]), h.make_tensor_value_info("shape", T.INT64, [3]),
                      h.make_tensor_value_info("pads", T.INT64, [6]), h.make_tensor_value_info("lo", T.FLOAT, []),
                      h.make_tensor_value_info("hi", T.FLOAT, [])],
                     [h.make_tensor_value_info("y", T.FLOAT, [4, 3, 4])])
    m = save(opset(g, 18), "shape_inputs.onnx")
    ins = {"x": np.linspace(-3, 3, 12, dtype=np.float32).reshape(2, 6),
           "shape": np.array([3, 2, 2], np.int64), "pads": np.array([0, 1, 0, 1, 0, 2], np.int64),
           "lo": np.array(-1.5, np.float32), "hi": np.array(2.0, np.float32)}
    ref = ort_run(m, ins)[0]
    close(run_outputs(m, ins)["y"], ref, "run: Reshape shape, Pad pads, Clip bounds bound from --input")
    consts = []
    for name in ("shape", "pads", "lo", "hi"):
        f = os.path.join(WORK, f"const-{name}.npy")
        np.save(f, ins[name])
        consts += ["--const", f"{name}={f}"]
    close(emit_c_outputs(m, {"x": ins["x"]}, consts)[0], ref, "emit-c --const shape/pads/lo/hi")
    close(compile_outputs(m, {"x": ins["x"]}, [(ref.shape, np.float32)], consts)[0], ref, "compile --const shape/pads/lo/hi")
    fails_with(["emit-c", m, "-o", os.path.join(WORK, "never2"), *consts[:6]], "input 'hi'", "--const hi=FILE", "compile time")
    fails_with(["compile", m, "-o", os.path.join(WORK, "never2"), *consts[2:]], "input 'shape'", "--const shape=FILE")
    xf = os.path.join(WORK, "shape_inputs-x.npy")
    fails_with(["run", m, "--input", f"x={xf}", "--random"], "--input shape=FILE")
    bad = os.path.join(WORK, "const-bad.npy")
    np.save(bad, np.array([5, 5], np.int64))
    fails_with(["emit-c", m, "-o", os.path.join(WORK, "never2"), "--const", f"shape={bad}", *consts[2:]], "input 'shape'")
    fails_with(["emit-c", m, "-o", os.path.join(WORK, "never2"), "--const", f"nosuch={bad}"], "no input named 'nosuch'")


def test_output_dir():
    g = h.make_graph([h.make_node("Relu", ["x"], ["y"], name="r")], "relu",
                     [h.make_tensor_value_info("x", T.FLOAT, [3])], [h.make_tensor_value_info("y", T.FLOAT, [3])])
    m = save(opset(g), "relu.onnx")
    f = os.path.join(WORK, "relu-x.npy")
    np.save(f, np.array([-1, 0, 1], np.float32))
    out = os.path.join(WORK, "fresh", "a", "b")
    shutil.rmtree(os.path.join(WORK, "fresh"), ignore_errors=True)
    kiln("run", m, "--input", f"x={f}", "--output", out)
    check(os.listdir(out) == ["y.npy"], "run --output creates a missing folder holding only the outputs")
    check(not [e for e in os.listdir(os.path.dirname(out)) if e != "b"], "no temporary folder left beside it")
    kiln("run", m, "--input", f"x={f}", "--output", out)  # an existing folder is fine too
    open(os.path.join(WORK, "afile"), "w").close()
    fails_with(["run", m, "--input", f"x={f}", "--output", os.path.join(WORK, "afile")], "not a folder")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    for t in (test_input_is_output, test_scalar_output, test_output_dir, test_symbolic_dims, test_symbolic_resize,
              test_minus_one_dim,
              test_shape_inputs):
        print(f"-- {t.__name__}", flush=True)
        t()
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
