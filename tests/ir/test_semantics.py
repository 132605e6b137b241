#!/usr/bin/env python3
"""ir/loop.h's edge-case semantics, op by op, through all three of kiln's
implementations of them:

  llvm  `kiln run` (the LLVM JIT) with the inputs given as .npy files;
  c     `kiln emit-c`, built with cc -Werror and -fsanitize=undefined,
        float-cast-overflow (any UB report fails), run on the same files;
  fold  the same model with its inputs as initializers: the constant folder
        computes the output (`kiln inspect --ir` must show it folded).

Every result must equal the documented expectation, computed here
independently with numpy (integer arithmetic wraps in numpy too; f16 and
bf16 conversions by numpy and ml_dtypes, both round to nearest even), and,
where ONNX Runtime defines the result (NaN through Relu, Max, Min, Clip),
ORT's output too.  Comparisons are exact: these results involve no
rounding beyond the one documented conversion (NaN compares as NaN).
MaxPool: ORT's 2-D kernel keeps a NaN only when no later tap in its scan
replaces it and its 1-D kernel drops NaN, so it is checked against the
documented rule (a NaN anywhere in the window gives NaN) only.

usage: test_semantics.py KILN WORK_DIR"""
import os
import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

KILN, WORK = sys.argv[1], sys.argv[2]
nan, inf = np.nan, np.inf
I32MIN, I32MAX = -2**31, 2**31 - 1
I64MIN, I64MAX = -2**63, 2**63 - 1
BF16 = np.dtype(ml_dtypes.bfloat16)
ONNX_TYPE = {np.dtype(np.float32): T.FLOAT, np.dtype(np.float64): T.DOUBLE, np.dtype(np.float16): T.FLOAT16,
             np.dtype(np.int8): T.INT8, np.dtype(np.uint8): T.UINT8, np.dtype(np.int16): T.INT16,
             np.dtype(np.uint16): T.UINT16, np.dtype(np.int32): T.INT32, np.dtype(np.uint32): T.UINT32, np.dtype(np.int64): T.INT64,
             np.dtype(np.uint64): T.UINT64, BF16: T.BFLOAT16}


def wrap(op, a, b, dt):
    """numpy's fixed-width integer arithmetic: wraps modulo 2^bits."""
    with np.errstate(over="ignore"):
        return op(np.array(a, dt), np.array(b, dt))


def nanmax_window(x, k, s):
    """2-D max pool, a NaN in the window giving NaN (np.max propagates NaN)."""
    n, c, hh, ww = x.shape
    oh, ow = (hh - k) // s + 1, (ww - k) // s + 1
    y = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = np.max(x[:, :, i * s:i * s + k, j * s:j * s + k], axis=(2, 3))
    return y


# (name, op, attrs, inputs, constant inputs (initializers in every variant),
#  output dtype, expected, compare with ORT, folds)
CASES = []


def case(name, op, inputs, want, attrs=None, consts=None, ort=False, folds=True):
    CASES.append((name, op, attrs or {}, inputs, consts or {}, np.asarray(want), ort, folds))


# -- integer arithmetic wraps --
a, b = [I32MAX, I32MIN, 5, -7], [1, -1, 7, I32MIN]
case("add_i32_wraps", "Add", {"A": np.array(a, np.int32), "B": np.array(b, np.int32)}, wrap(np.add, a, b, np.int32))
case("sub_i32_wraps", "Sub", {"A": np.array(a, np.int32), "B": np.array(b, np.int32)}, wrap(np.subtract, a, b, np.int32))
a, b = [I64MIN, I64MAX, 3], [1, -1, I64MAX]
case("sub_i64_wraps", "Sub", {"A": np.array(a, np.int64), "B": np.array(b, np.int64)}, wrap(np.subtract, a, b, np.int64))
case("mul_i64_wraps", "Mul", {"A": np.array(a, np.int64), "B": np.array(b, np.int64)}, wrap(np.multiply, a, b, np.int64))
a, b = [300, -300, 181, -32768], [300, 300, 181, -1]
case("mul_i16_wraps", "Mul", {"A": np.array(a, np.int16), "B": np.array(b, np.int16)}, wrap(np.multiply, a, b, np.int16))
a, b = [65535, 300, 2], [65535, 300, 3]  # u16 * u16 overflows C's int after promotion
case("mul_u16_wraps", "Mul", {"A": np.array(a, np.uint16), "B": np.array(b, np.uint16)}, wrap(np.multiply, a, b, np.uint16))
a, b = [200, 255, 0], [100, 1, 255]
case("add_u8_wraps", "Add", {"A": np.array(a, np.uint8), "B": np.array(b, np.uint8)}, wrap(np.add, a, b, np.uint8))
a, b = [127, -128, 100], [1, -1, 100]
case("add_i8_wraps", "Add", {"A": np.array(a, np.int8), "B": np.array(b, np.int8)}, wrap(np.add, a, b, np.int8))
case("neg_i32_wraps", "Neg", {"X": np.array([I32MIN, 5, 0], np.int32)}, np.array([I32MIN, -5, 0], np.int32))
case("abs_i64_wraps", "Abs", {"X": np.array([I64MIN, -5, 7], np.int64)}, np.array([I64MIN, 5, 7], np.int64))
case("abs_u32_is_identity", "Abs", {"X": np.array([2**32 - 1, 2**31, 5], np.uint32)},
     np.array([2**32 - 1, 2**31, 5], np.uint32))

# -- integer division: x / 0 == 0, MIN / -1 == MIN, truncation toward zero --
case("div_i32_edges", "Div", {"A": np.array([7, -7, 5, I32MIN, I32MIN, 0, -7], np.int32),
                              "B": np.array([0, 0, -1, -1, 2, 0, 2], np.int32)},
     np.array([0, 0, -5, I32MIN, I32MIN // 2, 0, -3], np.int32))
case("div_i64_edges", "Div", {"A": np.array([I64MIN, 9, -9, I64MAX], np.int64), "B": np.array([-1, 0, 2, -1], np.int64)},
     np.array([I64MIN, 0, -4, -I64MAX], np.int64))
case("div_i8_edges", "Div", {"A": np.array([-128, -128, 100], np.int8), "B": np.array([-1, 0, -3], np.int8)},
     np.array([-128, 0, -33], np.int8))
case("div_u8_edges", "Div", {"A": np.array([200, 7, 255], np.uint8), "B": np.array([0, 2, 255], np.uint8)},
     np.array([0, 3, 1], np.uint8))
case("div_by_constant", "Div", {"A": np.array([I32MIN, -7, 7], np.int32)}, np.array([I32MIN // 4, -1, 1], np.int32),
     consts={"B": np.array([4], np.int32)})

# -- float -> integer casts saturate, NaN -> 0, truncate toward zero --
x = np.array([nan, inf, -inf, 300, -300, 127.9, -128.9, 2.5, -2.5], np.float32)
case("cast_f32_i8", "Cast", {"X": x}, np.array([0, 127, -128, 127, -128, 127, -128, 2, -2], np.int8), {"to": T.INT8})
case("cast_f32_u8", "Cast", {"X": np.array([nan, -1, 256, 255.9, -0.5, inf], np.float32)},
     np.array([0, 0, 255, 255, 0, 255], np.uint8), {"to": T.UINT8})
case("cast_f32_i32", "Cast", {"X": np.array([nan, 3e9, -3e9, inf, -inf, 2147483520.0, -2147483648.0], np.float32)},
     np.array([0, I32MAX, I32MIN, I32MAX, I32MIN, 2147483520, I32MIN], np.int32), {"to": T.INT32})
case("cast_f32_i64", "Cast", {"X": np.array([nan, 1e19, -1e19, 2.0**63, 9223371487098961920.0, -2.0**63], np.float32)},
     np.array([0, I64MAX, I64MIN, I64MAX, 9223371487098961920, I64MIN], np.int64), {"to": T.INT64})
case("cast_f32_u64", "Cast", {"X": np.array([nan, -5, 2e19, 2.0**64, 18446742974197923840.0, -0.5], np.float32)},
     np.array([0, 0, 2**64 - 1, 2**64 - 1, 18446742974197923840, 0], np.uint64), {"to": T.UINT64})
case("cast_f64_i32", "Cast", {"X": np.array([nan, 1e10, -1e10, -2147483648.9, 2147483647.9], np.float64)},
     np.array([0, I32MAX, I32MIN, I32MIN, I32MAX], np.int32), {"to": T.INT32})

# -- f16 / bf16 conversions: nearest even, subnormals, overflow, NaN --
x = np.array([65504, 65519.99, 65520, 1e-8, 2.9802322e-08, 2.9802326e-08, 5.9604645e-08, 6.1e-5, 1.00048828125,
              1.00146484375, -0.0, -inf, nan, 3.14159, -1e6], np.float32)
with np.errstate(over="ignore"):
    case("cast_f32_f16", "Cast", {"X": x}, x.astype(np.float16), {"to": T.FLOAT16})
xb = np.array([3.3895314e38, 3.4028235e38, 1.00390625, 1.01171875, 1e-39, 9.2e-41, 1.4e-45, -0.0, -inf, nan, 3.14159,
               -1e-30], np.float32)
case("cast_f32_bf16", "Cast", {"X": xb}, xb.astype(BF16), {"to": T.BFLOAT16})
hbits = np.array([0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3c00, 0x8001], np.uint16)
case("cast_f16_f32", "Cast", {"X": hbits.view(np.float16)}, hbits.view(np.float16).astype(np.float32), {"to": T.FLOAT})

# -- NaN through Relu, Max, Min, Clip (as ONNX Runtime), MaxPool --
x = np.array([nan, -1, 0, 2, -nan, -inf], np.float32)
case("relu_nan", "Relu", {"X": x}, np.array([nan, 0, 0, 2, nan, 0], np.float32), ort=True)
a = np.array([nan, 1, nan, 2, -1, 0], np.float32)
b = np.array([1, nan, nan, -3, 5, -0.0], np.float32)
c = np.array([0, 0, 0, 9, 0, nan], np.float32)
case("max_nan", "Max", {"A": a, "B": b}, np.maximum(a, b), ort=True)
case("min_nan", "Min", {"A": a, "B": b}, np.minimum(a, b), ort=True)
case("max3_nan", "Max", {"A": a, "B": b, "C": c}, np.maximum(np.maximum(a, b), c), ort=True)
case("clip_nan", "Clip", {"X": x}, np.array([nan, -0.5, 0, 1, nan, -0.5], np.float32), ort=True,
     consts={"min": np.array(-0.5, np.float32), "max": np.array(1, np.float32)})
p = np.array([[[[1, nan, 3, 4], [5, 6, nan, 2], [nan, 1, 7, 8], [0, 1, 2, 3]]]], np.float32)
case("maxpool_nan", "MaxPool", {"X": p}, nanmax_window(p, 2, 2), {"kernel_shape": [2, 2], "strides": [2, 2]},
     folds=False)
case("maxpool_nan_overlap", "MaxPool", {"X": p}, nanmax_window(p, 2, 1), {"kernel_shape": [2, 2], "strides": [1, 1]},
     folds=False)
case("globalmaxpool_nan", "GlobalMaxPool", {"X": p}, np.max(p, axis=(2, 3), keepdims=True), folds=False)


def model(name, op, attrs, inputs, consts, want, as_initializers):
    ins, inits = [], [nh.from_array(v, k) for k, v in consts.items()]
    for k, v in inputs.items():
        if as_initializers:
            if v.dtype == BF16:
                t = h.make_tensor(k, T.BFLOAT16, v.shape, v.view(np.uint16).tobytes(), raw=True)
            else:
                t = nh.from_array(v, k)
            inits.append(t)
        else:
            ins.append(h.make_tensor_value_info(k, ONNX_TYPE[v.dtype], v.shape))
    node = h.make_node(op, list(inputs) + list(consts), ["Y"], **attrs)
    out = h.make_tensor_value_info("Y", ONNX_TYPE[want.dtype], want.shape)
    g = h.make_graph([node], name, ins, [out], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 18)])


def same(got, want):
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if want.dtype == BF16 or want.dtype == np.float16:  # bit patterns, any NaN equal
        gf, wf = got.astype(np.float32), want.astype(np.float32)
        return bool(np.all((np.isnan(gf) & np.isnan(wf)) | (got.view(np.uint16) == want.view(np.uint16))))
    if want.dtype.kind == "f":  # -0.0 == 0.0 is accepted: IEEE max/min may pick either
        return bool(np.array_equal(got, want, equal_nan=True))
    return bool(np.array_equal(got, want))


def load(path, dtype):
    y = np.load(path)
    return y.view(BF16) if dtype == BF16 else y


def run_llvm(d, name, inputs, want):
    path = os.path.join(d, "m.onnx")
    args = [KILN, "run", path, "--output", os.path.join(d, "llvm")]
    for k, v in inputs.items():
        f = os.path.join(d, k + ".npy")
        np.save(f, v.view(np.uint16) if v.dtype == BF16 else v)
        args += ["--input", f"{k}={f}"]
    os.makedirs(os.path.join(d, "llvm"), exist_ok=True)
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return load(os.path.join(d, "llvm", "Y.npy"), want.dtype)


def run_c(d, name, inputs, want):
    cdir = os.path.join(d, "c")
    subprocess.run([KILN, "emit-c", os.path.join(d, "m.onnx"), "-o", cdir, "--name", "m"], check=True,
                   stdout=subprocess.DEVNULL)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                    "-fsanitize=undefined,float-cast-overflow", "-fno-sanitize-recover=all", "-o", "run", "main.c",
                    "m.c", "m_weights.c", "-lm"], check=True, cwd=cdir)
    os.makedirs(os.path.join(cdir, "out"))
    r = subprocess.run(["./run"] + [os.path.join(d, k + ".npy") for k in inputs] + ["out"], cwd=cdir,
                       capture_output=True, text=True)
    if r.returncode or "runtime error" in r.stderr:
        raise RuntimeError("C program failed: " + r.stderr.strip()[:400])
    return load(os.path.join(cdir, "out", "output_0.npy"), want.dtype)


def run_fold(d, name, want):
    path = os.path.join(d, "mc.onnx")
    ir = subprocess.run([KILN, "inspect", "--ir", path], check=True, capture_output=True, text=True).stdout
    if "%Y" not in ir or "= const(" not in [ln for ln in ir.splitlines() if "%Y" in ln][0]:
        raise RuntimeError("not folded:\n" + ir)
    os.makedirs(os.path.join(d, "fold"), exist_ok=True)
    subprocess.run([KILN, "run", path, "--output", os.path.join(d, "fold")], check=True, stdout=subprocess.DEVNULL)
    return load(os.path.join(d, "fold", "Y.npy"), want.dtype)


def run_ort(m, inputs):
    import onnxruntime as ort
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, inputs)[0]


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    passed = failed = 0
    for name, op, attrs, inputs, consts, want, ort, folds in CASES:
        d = os.path.join(WORK, name)
        os.makedirs(d)
        m = model(name, op, attrs, inputs, consts, want, False)
        onnx.save(m, os.path.join(d, "m.onnx"))
        onnx.save(model(name, op, attrs, inputs, consts, want, True), os.path.join(d, "mc.onnx"))
        results = {}
        for how, fn in [("llvm", lambda: run_llvm(d, name, inputs, want)), ("c", lambda: run_c(d, name, inputs, want)),
                        ("fold", lambda: run_fold(d, name, want) if folds else None),
                        ("ort", lambda: run_ort(m, inputs) if ort else None)]:
            try:
                got = fn()
            except Exception as e:  # noqa: BLE001 - reported per case
                results[how] = f"error: {e}"
                continue
            if got is not None:
                results[how] = "ok" if same(got, want) else f"got {got!r}"
        bad = {k: v for k, v in results.items() if v != "ok"}
        if bad:
            failed += 1
            print(f"FAIL {name}: expected {want!r}")
            for k, v in bad.items():
                print(f"  {k}: {v}")
        else:
            passed += 1
            print(f"ok   {name} ({', '.join(results)})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
