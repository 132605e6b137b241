#!/usr/bin/env python3
"""Register tiles printed as vectors (backends/llvm/llvm_lanes.c) compute
exactly what the scalar tiles compute.

    test_tile_lanes.py KILN WORK_DIR

The LLVM printer turns W consecutive lane statements of a register tile
into one <W x float> statement (W = 16 with AVX-512, 8 with AVX2).  Lane by
lane those are the same IEEE operations in the same order, so the outputs
must be bit for bit those of KILN_LANES=0 (the scalar tiles, which SLP
vectorises as before).  For each network below, on the host and under
KILN_CPU=znver3 (AVX2):

  * `kiln run --time` reports vector statements with the default and none
    with KILN_LANES=0 (so the comparison is not vacuous);
  * the two outputs are identical (np.array_equal, NaN-free inputs);
  * both match ONNX Runtime within 1e-4 of the output's largest magnitude
    (the zoo's bound: f32 sums of up to 576 products in another order);
    the float16 network a float64 reference (given the intermediate rounded
    to float16 as kiln stores it) within 2e-3 of it (y's one rounding to
    float16, 2^-11 relative, twice over).

The networks cover each tile lowering and epilogue kind the printer sees:
a 3x3 register-blocked convolution with Relu; 1x1s (packed GEMM) with a
residual Add (the epilogue's STORE runs load a second activation); a strided 3x3 (im2col) with LeakyRelu (a
select) and Clip (min/max); a Sigmoid epilogue (exp: scalar lanes beside
vector ones); a Winograd 3x3 beside a 1x1 whose pooled output leaves it
memory (as tests/passes/test_conv_winograd.py does); float16 1x1s
(SqueezeNet's expand1x1 at 55x55), whose stores round each sum to float16 (f32(f16(x)), vector casts where the CPU
converts natively).
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from kiln_check import Checks  # noqa: E402

C = Checks()
check = C.check


def conv(rng, inits, name, x, y, cin, cout, k, stride=1, pad=0):
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) * 0.1
    inits += [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")]
    return helper.make_node("Conv", [x, name + "_w", name + "_b"], [y], name=name, kernel_shape=[k, k],
                            strides=[stride, stride], pads=[pad] * 4)


def networks(rng):
    """{name: (graph nodes, initialisers, input shape, outputs {name: shape}[, element type])}."""
    nets = {}
    i = []
    nets["conv3x3_relu"] = ([conv(rng, i, "c", "x", "t", 64, 64, 3, pad=1), helper.make_node("Relu", ["t"], ["y"])],
                            i, [1, 64, 16, 16], {"y": [1, 64, 16, 16]})
    i = []
    nets["conv1x1_residual"] = ([conv(rng, i, "a", "x", "t", 64, 64, 1), helper.make_node("Relu", ["t"], ["r"]),
                                 conv(rng, i, "b", "r", "u", 64, 64, 1), helper.make_node("Add", ["u", "r"], ["v"]),
                                 helper.make_node("Relu", ["v"], ["z"]), conv(rng, i, "c", "z", "y", 64, 64, 1)],
                                i, [1, 64, 20, 20], {"y": [1, 64, 20, 20]})
    i = []
    nets["conv_stride2_leaky_clip"] = ([conv(rng, i, "c", "x", "t", 32, 64, 3, stride=2, pad=1),
                                        helper.make_node("LeakyRelu", ["t"], ["l"], alpha=0.1),
                                        helper.make_node("Clip", ["l", "lo", "hi"], ["y"])],
                                       i + [numpy_helper.from_array(np.array(-0.5, np.float32), "lo"),
                                            numpy_helper.from_array(np.array(0.7, np.float32), "hi")],
                                       [1, 32, 30, 30], {"y": [1, 64, 15, 15]})
    i = []
    nets["conv_sigmoid"] = ([conv(rng, i, "c", "x", "t", 48, 40, 3, pad=1), helper.make_node("Sigmoid", ["t"], ["y"])],
                            i, [1, 48, 12, 12], {"y": [1, 40, 12, 12]})
    i = []
    nets["winograd_beside_1x1"] = ([conv(rng, i, "w", "x", "t", 64, 64, 3, pad=1), helper.make_node("Relu", ["t"], ["y"]),
                                    conv(rng, i, "p", "x", "q", 64, 256, 1),
                                    helper.make_node("GlobalAveragePool", ["q"], ["g"])],
                                   i, [1, 64, 28, 28], {"y": [1, 64, 28, 28], "g": [1, 256, 1, 1]})
    i = []
    w = (rng.standard_normal((48, 16, 1, 1)) / 4).astype(np.float16)
    i += [numpy_helper.from_array(w, "hw"), numpy_helper.from_array((rng.standard_normal(48) * 0.1).astype(np.float16), "hb")]
    w2 = (rng.standard_normal((16, 48, 1, 1)) / np.sqrt(48)).astype(np.float16)
    i += [numpy_helper.from_array(w2, "hw2"), numpy_helper.from_array(np.zeros(16, np.float16), "hb2")]
    nets["conv_float16"] = ([helper.make_node("Conv", ["x", "hw", "hb"], ["t"], name="h", kernel_shape=[1, 1]),
                             helper.make_node("Relu", ["t"], ["r"]),
                             helper.make_node("Conv", ["r", "hw2", "hb2"], ["y"], name="h2", kernel_shape=[1, 1])],
                            i, [1, 16, 55, 55], {"y": [1, 16, 55, 55]}, TensorProto.FLOAT16)
    return nets


def conv_f64(x, w, b, stride):
    """Unpadded convolution in float64."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    k = w.shape[2]
    h, wd = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], h, wd)) + b.astype(np.float64)[None, :, None, None]
    for i in range(k):
        for j in range(k):
            y += np.einsum("mc,nchw->nmhw", w[:, :, i, j],
                           x[:, :, i:i + stride * (h - 1) + 1:stride, j:j + stride * (wd - 1) + 1:stride])
    return y


def save(path, name, nodes, inits, xshape, outs, et=TensorProto.FLOAT):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", et, xshape)],
                          [helper.make_tensor_value_info(k, et, s) for k, s in outs.items()], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def run(kiln, onx, xfile, out, env):
    r = subprocess.run([kiln, "run", onx, "--input", f"x={xfile}", "--output", out, "--time"], env=env,
                       capture_output=True, text=True)
    m = re.search(r"register tiles: (\d+) vector locals, (\d+) vector statements", r.stderr)
    return r, (int(m.group(2)) if m else None)


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(7)
    base = {k: v for k, v in os.environ.items() if k not in ("KILN_LANES", "KILN_CPU", "KILN_OPT")}
    for name, (nodes, inits, xshape, outs, *et) in networks(rng).items():
        onx = f"{work}/{name}.onnx"
        save(onx, name, nodes, inits, xshape, outs, *et)
        f16 = bool(et)
        x = rng.standard_normal(xshape).astype(np.float16 if f16 else np.float32)
        xfile = f"{work}/{name}_x.npy"
        np.save(xfile, x)
        if f16:  # float64 reference: ONNX Runtime's float16 Conv rounds more than kiln's one f16 rounding
            w, b, w2, b2 = [numpy_helper.to_array(t) for t in inits]
            r = np.maximum(conv_f64(x, w, b, 1), 0).astype(np.float16)  # kiln's stored r: one rounding
            ref = {"y": np.einsum("mc,nchw->nmhw", w2[:, :, 0, 0].astype(np.float64), r.astype(np.float64))}
        else:
            sess = ort.InferenceSession(onx, providers=["CPUExecutionProvider"])
            ref = dict(zip(outs, sess.run(list(outs), {"x": x})))
        for cpu in (None, "znver3"):
            env = dict(base, **({"KILN_CPU": cpu} if cpu else {}))
            what = f"{name} on {cpu or 'the host'}"
            res = {}
            for lanes in ("vectors", "scalars"):
                out = f"{work}/{name}-{cpu}-{lanes}"
                e = dict(env, **({"KILN_LANES": "0"} if lanes == "scalars" else {}))
                r, nvec = run(kiln, onx, xfile, out, e)
                check(r.returncode == 0, f"{what} ({lanes}): run exits 0" + (f": {r.stderr[-300:]}" if r.returncode else ""))
                if r.returncode:
                    continue
                if lanes == "vectors":
                    check(nvec is not None and nvec > 0, f"{what}: {nvec} vector statements printed (> 0)")
                else:
                    check(nvec == 0, f"{what}: KILN_LANES=0 prints {nvec} vector statements (0)")
                res[lanes] = {k: np.load(f"{out}/{k}.npy") for k in outs}
            if len(res) < 2:
                continue
            for k in outs:
                v, s = res["vectors"][k], res["scalars"][k]
                check(np.array_equal(v, s), f"{what}: output {k} bit for bit that of the scalar tiles "
                      f"(max diff {np.max(np.abs(v.astype(np.float64) - s)):.3g})")
                err = np.max(np.abs(v.astype(np.float64) - ref[k])) / np.max(np.abs(ref[k]))
                bound = 2e-3 if f16 else 1e-4
                check(v.shape == ref[k].shape and err <= bound, f"{what}: output {k} vs reference {err:.2e} <= {bound}")
    return C.exit()


if __name__ == "__main__":
    sys.exit(main())
