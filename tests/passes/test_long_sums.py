#!/usr/bin/env python3
"""Accuracy of long reductions (passes/expand_reduce.c) against float64 NumPy.

Usage:  python3 tests/passes/test_long_sums.py [--backend llvm|c|cuda-host] KILN_BINARY WORK_DIR [case ...]

Every op whose lowering adds many values -- ReduceSum, ReduceMean (merged
contiguous axes and non-contiguous axes), GlobalAveragePool, AveragePool
over a 64x64 window (padded), Softmax and LogSoftmax denominators,
InstanceNormalization and training-mode BatchNormalization statistics -- is
built as a one-node ONNX model and fed float32 data that is hard for a
left-to-right float32 sum: a large common offset (1000 + U(0,1)) or mixed
signs (U(-1, 3)), with 10^3 .. 10^6 terms per sum.  The reference is the
same computation in float64 NumPy on the same float32 inputs.  ONNX
Runtime (one thread, graph optimisations off) runs the same model and its
error is measured too.

TOLERANCE, per output: err = max|y - ref| / max|ref| must satisfy
  err <= 1e-6      about 17 float32 half-ulps (2^-24 = 6e-8): what a blocked
                   sum gives (each 128-term float32 block errs by at most
                   ~1e-5 of its magnitude, typically ~1e-6 * sqrt(128)/128
                   after the float64 total averages the blocks' independent
                   rounding, plus the final rounding to float32), while the
                   left-to-right float32 sum this replaces is 2e-4 off on the
                   PP-OCR case (19,200 values near 1000; the script prints
                   that naive error beside each case to show the test would
                   catch it);
  err <= 2 * ort + 2^-23
                   no worse than twice ONNX Runtime's own error on the same
                   data (the 2^-23 slack is one float32 ulp of output
                   rounding, for cases where ORT happens to be exact).
BatchNormalization in training mode is not implemented by ONNX Runtime's
CPU provider for inference sessions; where ORT cannot run a case only the
1e-6 bound applies (printed as "ort n/a").

Prints one line per case, "PASS name: ..." or "FAIL name: ...", then
"N passed, M failed"; exit status 1 if any failed.
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
BOUND = 1e-6
SLACK = 2.0 ** -23

spec = importlib.util.spec_from_file_location("zoo_run", REPO / "tests" / "models" / "test_zoo_run.py")
zoo_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zoo_run)


def offset_data(rng, shape):
    return (1000.0 + rng.random(shape)).astype(np.float32)


def mixed_data(rng, shape):
    return rng.uniform(-1.0, 3.0, shape).astype(np.float32)


def model(op, x_shape, y_shape, attrs=None, inits=(), extra_inputs=(), opset=18, extra_outputs=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape) if y_shape is not None else None)
    node = helper.make_node(op, ["x", *extra_inputs], ["y", *extra_outputs], name="n0", **(attrs or {}))
    g = helper.make_graph([node], "long_sum", [x], [y], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-test")
    m.ir_version = 8
    return m


def axes_init(axes):
    return numpy_helper.from_array(np.array(axes, dtype=np.int64), "axes")


def naive_f32_sum(v, axis):
    """Left-to-right float32 accumulation (what kiln did before blocking)."""
    return np.add.accumulate(np.moveaxis(v, axis, -1).astype(np.float32), axis=-1, dtype=np.float32)[..., -1]


# ---- cases: name -> (model, input, float64 reference, naive f32 error or None)

def reduce_case(rng, kind, shape, axes, data, mean):
    x = data(rng, shape)
    op = "ReduceMean" if mean else "ReduceSum"
    x64 = x.astype(np.float64)
    ref = x64.sum(axis=tuple(axes), keepdims=True)
    count = int(np.prod([shape[a] for a in axes]))
    if mean:
        ref = ref / count
    y_shape = [1 if i in axes else d for i, d in enumerate(shape)]
    m = model(op, shape, y_shape, {"keepdims": 1}, [axes_init(axes)], ["axes"])
    naive = None
    if len(axes) == 1:
        nv = naive_f32_sum(x, axes[0]).astype(np.float64)
        if mean:
            nv = nv / count
        naive = float(np.max(np.abs(nv - ref.squeeze(axes[0]))) / np.max(np.abs(ref)))
    return m, x, ref, naive


def build_cases(rng):
    cases = {}
    # the PP-OCRv6 det case: ReduceMean over H*W = 120*160 = 19,200 values
    x = offset_data(rng, (1, 4, 120, 160))
    ref = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    nv = naive_f32_sum(x.reshape(1, 4, -1), 2).astype(np.float64) / 19200
    cases["reduce_mean_19200_offset"] = (
        model("ReduceMean", x.shape, (1, 4, 1, 1), {"keepdims": 1}, [axes_init([2, 3])], ["axes"]), x, ref,
        float(np.max(np.abs(nv - ref.reshape(1, 4))) / np.max(np.abs(ref))))
    for n in (1000, 10000, 100000, 1000000):
        cases[f"reduce_sum_{n}_offset"] = reduce_case(rng, "sum", (n,), [0], offset_data, False)
        cases[f"reduce_sum_{n}_mixed"] = reduce_case(rng, "sum", (n,), [0], mixed_data, False)
    cases["reduce_mean_100000x3_axis0_offset"] = reduce_case(rng, "mean", (100000, 3), [0], offset_data, True)
    cases["reduce_mean_noncontiguous_offset"] = reduce_case(rng, "mean", (300, 4, 200), [0, 2], offset_data, True)

    x = offset_data(rng, (1, 3, 200, 200))
    ref = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    nv = naive_f32_sum(x.reshape(1, 3, -1), 2).astype(np.float64) / 40000
    cases["global_average_pool_40000_offset"] = (
        model("GlobalAveragePool", x.shape, (1, 3, 1, 1), opset=17), x, ref,
        float(np.max(np.abs(nv - ref.reshape(1, 3))) / np.max(np.abs(ref))))

    # AveragePool: 64x64 windows, stride 32, pads 16 (count_include_pad 0)
    x = offset_data(rng, (1, 2, 128, 128))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (16, 16), (16, 16)), constant_values=np.nan)
    oh = (128 + 32 - 64) // 32 + 1
    ref = np.empty((1, 2, oh, oh))
    for i in range(oh):
        for j in range(oh):
            w = xp[:, :, i * 32:i * 32 + 64, j * 32:j * 32 + 64]
            ref[:, :, i, j] = np.nanmean(w, axis=(2, 3))
    cases["average_pool_64x64_offset"] = (
        model("AveragePool", x.shape, (1, 2, oh, oh),
              {"kernel_shape": [64, 64], "strides": [32, 32], "pads": [16, 16, 16, 16]}, opset=17), x, ref, None)

    # Softmax / LogSoftmax over 100,000 entries: the denominator is a long sum
    for op in ("Softmax", "LogSoftmax"):
        x = rng.uniform(-2.0, 2.0, (2, 100000)).astype(np.float32)
        x64 = x.astype(np.float64)
        z = x64 - x64.max(axis=-1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))
        ref = np.exp(z - lse) if op == "Softmax" else z - lse
        cases[f"{op.lower()}_100000"] = (model(op, x.shape, x.shape, {"axis": -1}, opset=17), x, ref, None)

    # InstanceNormalization over 160*120 = 19,200 values per channel
    x = offset_data(rng, (1, 3, 160, 120))
    scale = np.array([1.0, 0.5, 2.0], np.float32)
    bias = np.array([0.0, 0.25, -1.0], np.float32)
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=(2, 3), keepdims=True)
    var = ((x64 - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    ref = (x64 - mu) / np.sqrt(var + 1e-5) * scale.reshape(1, 3, 1, 1) + bias.reshape(1, 3, 1, 1)
    cases["instance_norm_19200_offset"] = (
        model("InstanceNormalization", x.shape, x.shape, {"epsilon": 1e-5},
              [numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(bias, "B")], ["scale", "B"], opset=17),
        x, ref, None)

    # BatchNormalization, training mode: statistics over N*H*W = 4*100*100
    x = offset_data(rng, (4, 2, 100, 100))
    scale, bias = np.array([1.0, 2.0], np.float32), np.array([0.0, 0.5], np.float32)
    rmean, rvar = np.zeros(2, np.float32), np.ones(2, np.float32)
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=(0, 2, 3), keepdims=True)
    var = ((x64 - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    ref = (x64 - mu) / np.sqrt(var + 1e-5) * scale.reshape(1, 2, 1, 1) + bias.reshape(1, 2, 1, 1)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((scale, "scale"), (bias, "B"), (rmean, "mean"), (rvar, "var"))]
    cases["batch_norm_training_40000_offset"] = (
        model("BatchNormalization", x.shape, x.shape, {"epsilon": 1e-5, "training_mode": 1}, inits,
              ["scale", "B", "mean", "var"], opset=15), x, ref, None)
    return cases


def run_ort(m, x):
    try:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        return sess.run(["y"], {"x": x})[0]
    except Exception:  # e.g. training-mode BatchNormalization
        return None


def rel_err(y, ref):
    return float(np.max(np.abs(y.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def check_short_sums_plain(kiln, work):
    """Short sums (ResNet's 7x7 global pool: 49 terms) keep the single
    float32 accumulator: the emitted C has no float64 at all."""
    import subprocess
    m = model("GlobalAveragePool", (1, 8, 7, 7), (1, 8, 1, 1), opset=17)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        path = Path(tmp) / "gap49.onnx"
        onnx.save(m, path)
        proc = subprocess.run([kiln, "emit-c", str(path), "-o", str(Path(tmp) / "c"), "--name", "net"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return f"kiln emit-c exited {proc.returncode}: {proc.stderr.strip()}"
        src = (Path(tmp) / "c" / "net.c").read_text()
    return "the 49-term sum uses double" if "double" in src else None


def main(argv):
    backend = "llvm"
    if len(argv) > 1 and argv[1] == "--backend":
        backend = argv[2]
        argv = argv[:1] + argv[3:]
    if len(argv) < 3:
        sys.exit(__doc__)
    kiln, work = argv[1], Path(argv[2])
    only = set(argv[3:])
    work.mkdir(parents=True, exist_ok=True)
    cases = build_cases(np.random.default_rng(0))
    passed = failed = 0
    if not only:
        err = check_short_sums_plain(kiln, work)
        print(f"{'FAIL' if err else 'PASS'} short_sum_49_stays_float32{': ' + err if err else ''}")
        passed += not err
        failed += bool(err)
    for name, (m, x, ref, naive) in cases.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(m, path)
            if backend == "c":
                outs, _, err = zoo_run.run_c(kiln, path, {"x": x}, tmp)
            else:  # cuda-host: the GPU schedules (block reductions in shared memory) emulated
                outs, _, err = zoo_run.run_kiln(kiln, path, {"x": x}, tmp, "cuda-host" if backend == "cuda-host" else None)
        if err:
            failed += 1
            print(f"FAIL {name}: {err}")
            continue
        y = outs.get("y", outs.get("output_0"))
        if y is None or y.size != ref.size:
            failed += 1
            print(f"FAIL {name}: no output of {ref.size} values")
            continue
        y = y.reshape(ref.shape)
        k_err = rel_err(y, ref)
        o = run_ort(m, x)
        o_err = rel_err(o.reshape(ref.shape), ref) if o is not None else None
        ok = k_err <= BOUND and (o_err is None or k_err <= 2 * o_err + SLACK)
        ort_s = f"ort {o_err:.2e}" if o_err is not None else "ort n/a"
        naive_s = f", naive f32 {naive:.2e}" if naive is not None else ""
        print(f"{'PASS' if ok else 'FAIL'} {name}: kiln {k_err:.2e}, {ort_s}{naive_s} "
              f"(bound {BOUND:.0e} and 2*ort+2^-23)")
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
