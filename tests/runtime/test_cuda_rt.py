#!/usr/bin/env python3
"""`kiln run --target cuda` and its runtime (runtime/kiln_cuda_rt.c) without a GPU.

Usage: test_cuda_rt.py KILN FAKE_DRIVER_SO ONNX_TESTS_DIR ZOO_DIR [--zoo NAME ...]

The runtime opens the driver named by KILN_CUDA_DRIVER (its test hook); here
that is tests/runtime/fake_cuda_driver.c, which simulates a device on the host
and logs every driver call (KILN_FAKE_CUDA_LOG).  Checked:
  - no driver / no device / out of GPU memory / no usable image / a failing
    kernel: exit 1, nothing on stdout, exactly one line "kiln: error: ..."
    saying which (the failing kernel: its name and graph node);
  - image choice: the device's cubin; a binary-compatible older one (sm_86
    runs sm_80); else the PTX (sm_100 gets compute_90);
  - launches: the first run launches every kernel in program order with the
    grid and block the printed CUDA C states (`/* launch: ... */` above each
    KILN_KERNEL in kiln compile --target cuda's .cu), synchronising after
    each; the second run captures them as one CUDA Graph; later runs only
    launch the graph; one device allocation; copies of exactly the input,
    output and weights sizes;
  - values: with KILN_FAKE_CUDA_EXEC the fake driver runs every launch
    through the host emulation of the same .cu, so the outputs of the first
    (eager) and of graph runs are compared with the ONNX test data (ONNX
    backend-test tolerance, rtol 1e-3 / atol 1e-7) for a few conformance
    cases, and with ONNX Runtime for a small CNN and, with --zoo, zoo
    networks (max|k - o| / max|o| <= 1e-4, test_zoo_run.py's tolerance).
Exit 77 (skipped) when NVRTC is absent: only the no-driver case runs then.
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

KILN, FAKE, SUITE, ZOO = (sys.argv[1:5] + [""] * 4)[:4]  # (also imported: test_compile_cuda.py)
ZOO_NETS = sys.argv[sys.argv.index("--zoo") + 1:] if "--zoo" in sys.argv else []
REPO = Path(__file__).resolve().parents[2]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def kiln(args, env=None, timeout=1200):
    e = dict(os.environ)
    e.pop("KILN_CUDA_DRIVER", None)
    e.update(env or {})
    return subprocess.run([KILN] + args, capture_output=True, text=True, env=e, timeout=timeout)


def one_line_error(r, what):
    lines = r.stderr.splitlines()
    return (r.returncode == 1 and r.stdout == "" and len(lines) == 1 and lines[0].startswith("kiln: error: ")
            and what in lines[0])


def fake(tmp, **kw):
    env = {"KILN_CUDA_DRIVER": FAKE, "KILN_FAKE_CUDA_LOG": str(tmp / "log.txt")}
    env.update({"KILN_FAKE_CUDA_" + k.upper(): str(v) for k, v in kw.items()})
    (tmp / "log.txt").unlink(missing_ok=True)
    return env


def log(tmp):
    return (tmp / "log.txt").read_text().splitlines()


def small_cnn(path):
    """Conv (pads, stride 1) + Relu + MaxPool + Flatten + Gemm, fixed weights."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fw = numpy_helper.from_array(rng.standard_normal((10, 64)).astype(np.float32), "fw")
    fb = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fb")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv'1\x1b", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w, b, fw, fb])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def launches_of_cu(cu):
    """[(kernel, grid, block)] in the printed order: the .cu's launch comments."""
    text = Path(cu).read_text()
    pat = re.compile(r"/\* launch: grid \((\d+), (\d+), (\d+)\), block \((\d+), (\d+), (\d+)\) \*/\nKILN_KERNEL\((\w+),")
    return [(m.group(7), ",".join(m.group(1, 2, 3)), ",".join(m.group(4, 5, 6))) for m in pat.finditer(text)]


def ort_run(model, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def run_exec(tmp, model, name, inputs, extra=()):
    """kiln compile --target cuda (the .cu), then kiln run --target cuda on the
    fake driver executing it; {output name: array} of the last of 3 runs (a
    graph replay) and of a single (eager) run."""
    out = tmp / ("c_" + name)
    r = kiln(["compile", str(model), "--target", "cuda", "--name", "net", "-o", str(out)] + list(extra))
    if r.returncode:
        return None, r.stderr.strip()
    args = []
    for k, v in inputs.items():
        np.save(tmp / f"in_{name}_{k}.npy", v)
        args += ["--input", f"{k}={tmp / f'in_{name}_{k}.npy'}"]
    res = []
    for repeat in ("1", "3"):
        od = tmp / f"o_{name}_{repeat}"
        r = kiln(["run", str(model), "--target", "cuda", "--repeat", repeat, "--output", str(od)] + args + list(extra),
                 env=fake(tmp, exec=out / "net.cu"))
        if r.returncode:
            return None, r.stderr.strip()
        res.append({p.stem: np.load(p) for p in od.glob("*.npy")})
    return res, ""


def rel_err(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    tmp = Path(tempfile.mkdtemp(prefix="kiln-cudart-"))
    model = tmp / "small.onnx"
    small_cnn(model)
    r = kiln(["run", str(model), "--random", "--target", "cuda"], env={"KILN_CUDA_DRIVER": "/nonexistent/libcuda.so.1"})
    check(one_line_error(r, "--target cuda: no CUDA driver (/nonexistent/libcuda.so.1)"), "no driver: one line, exit 1")
    r = kiln(["run", str(model), "--random", "--target", "cuda"], env=fake(tmp))
    if r.returncode and "NVRTC" in r.stderr:
        print("NVRTC not available: " + r.stderr.strip() + " -- the rest is skipped")
        check(one_line_error(r, "NVRTC"), "no NVRTC: one line, exit 1")
        return 77 if not failures else 1

    r = kiln(["run", str(model), "--random", "--target", "cuda"], env=fake(tmp, devices=0))
    check(one_line_error(r, "no CUDA device"), "no device: one line, exit 1")
    r = kiln(["run", str(model), "--random", "--target", "cuda"], env=fake(tmp, mem=1000))
    check(one_line_error(r, "out of GPU memory"), "out of memory at cuMemAlloc: one line, exit 1")
    for arch, want in (("90", "sm_90 cubin"), ("86", "sm_80 cubin"), ("100", "compute_90 PTX")):
        r = kiln(["run", str(model), "--random", "--target", "cuda", "--arch", "sm_80,sm_90"], env=fake(tmp, arch=arch))
        check(r.returncode == 0 and f"GPU code: {want}" in r.stdout, f"device sm_{arch} runs the {want}")
    r = kiln(["run", str(model), "--random", "--target", "cuda", "--arch", "sm_80,sm_90"], env=fake(tmp, arch=75))
    check(one_line_error(r, "the GPU is sm_75") and "PTX does not load" in r.stderr, "sm_75: no cubin, PTX too new: one line")
    r = kiln(["run", str(model), "--random", "--target", "cuda", "--arch", "sm_90"], env=fake(tmp, arch=100, no_ptx=1))
    check(one_line_error(r, "the GPU is sm_100") and "PTX does not load" in r.stderr, "PTX rejected: one line")
    r = kiln(["run", str(model), "--random", "--target", "cuda", "--arch", "sm_8x"], env=fake(tmp))
    check(r.returncode == 2 and "--arch" in r.stderr, "bad --arch: usage error")

    # launch order, shapes, graph capture, copies
    out = tmp / "c_small"
    r = kiln(["compile", str(model), "--target", "cuda", "--name", "net", "-o", str(out)])
    check(r.returncode == 0, "kiln compile --target cuda")
    files = sorted(p.name for p in out.iterdir())
    check(files == sorted(["README.txt", "kiln_cuda_host.h", "kiln_cuda_rt.c", "kiln_cuda_rt.h", "net.cu", "net.h", "net.weights",
                           "net_compute90.ptx", "net_cuda.c", "net_cuda.h", "net_sm80.cubin", "net_sm90.cubin"]),
          f"compile writes the .cu, cubins, PTX, loader, runtime: {files}")
    want = launches_of_cu(out / "net.cu")
    ins = kiln(["inspect", str(model), "--target", "cuda"])
    shown = [(m.group(1), m.group(2).replace(" ", ""), m.group(3).replace(" ", ""))
             for m in re.finditer(r"^  (\w+) +grid \(([\d, ]+)\)  block \(([\d, ]+)\)", ins.stdout, re.M)]
    check(shown == want, "kiln inspect --target cuda lists the same launches")
    r = kiln(["run", str(model), "--random", "--target", "cuda", "--repeat", "4"], env=fake(tmp))
    check(r.returncode == 0, "4 runs on the fake driver")
    L = log(tmp)
    got = [(l.split()[1], l.split()[3], l.split()[5]) for l in L if l.startswith("launch ")]
    check(len(want) > 0 and got == want, f"run 1 launches the {len(want)} kernels in order with the printed grid/block")
    first = L.index(next(l for l in L if l.startswith("launch ")))
    seq = [l for l in L[first:] if l.startswith(("launch", "sync"))][: 2 * len(want)]
    check(seq == [x for k in got for x in (f"launch {k[0]} grid {k[1]} block {k[2]}", "sync")],
          "run 1 synchronises after every kernel")
    cap = [(l.split()[1], l.split()[3], l.split()[5]) for l in L if l.startswith("capture ") and "grid" in l]
    check(cap == want, "run 2 captures the same launches as a graph")
    check(sum(l.startswith("capture begin") for l in L) == 1 and f"capture end {len(want)} kernels" in L
          and L.count("graph instantiate") == 1, "one capture, one instantiation")
    check(L.count(f"graph launch {len(want)} kernels") == 3, "runs 2-4 launch the graph")
    check(sum(l.startswith("alloc") for l in L) == 1, "one device allocation")
    check(L.count("htod async 768") == 4 and L.count("dtoh async 40") == 4, "each run copies 768 input and 40 output bytes")
    check(f"htod {(out / 'net.weights').stat().st_size}" in L, "the weights are copied once, whole")
    check(L[-3:] == ["free", "module unload", "ctx release"], "everything released")
    k1 = want[1][0]
    r = kiln(["run", str(model), "--random", "--target", "cuda"], env=fake(tmp, fail=k1))
    check(one_line_error(r, f"kernel '{k1}'") and "node '" in r.stderr and "launch failure" in r.stderr,
          f"a failing kernel is named with its graph node: {r.stderr.strip()}")
    check("\x1b" not in r.stderr, "model strings in the error line are made printable")

    # values: the fake driver executes the kernels through the host emulation
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    res, why = run_exec(tmp, model, "small_exec", {"x": x})
    ref = ort_run(model, {"x": x})[0]
    for i, what in enumerate(("eager run", "graph run")):
        e = rel_err(res[i]["y"], ref) if res else float("inf")
        check(e <= 1e-4, f"small CNN vs ONNX Runtime, {what}: rel err {e:.2e} {why}")
    cases = ["test_conv_with_strides_padding", "test_maxpool_2d_pads", "test_gemm_default_matrix_bias", "test_softmax_axis_1",
             "test_averagepool_2d_pads", "test_batchnorm_epsilon", "test_globalaveragepool", "test_concat_2d_axis_1"]
    for c in cases:
        d = Path(SUITE) / "node" / c
        m = onnx.load(d / "model.onnx")
        inits = {i.name for i in m.graph.initializer}
        names = [i.name for i in m.graph.input if i.name not in inits]
        ins = {n: numpy_helper.to_array(onnx.load_tensor(d / "test_data_set_0" / f"input_{k}.pb")) for k, n in enumerate(names)}
        outs = [numpy_helper.to_array(onnx.load_tensor(d / "test_data_set_0" / f"output_{k}.pb")) for k in range(len(m.graph.output))]
        res, why = run_exec(tmp, d / "model.onnx", c, ins)
        ok = res is not None and all(
            np.allclose(res[i][o.name], outs[k], rtol=1e-3, atol=1e-7) for i in (0, 1) for k, o in enumerate(m.graph.output))
        check(ok, f"{c}: eager and graph runs match the ONNX test data {why}")
    for net in ZOO_NETS:
        mp = Path(ZOO) / f"{net}.onnx"
        m = onnx.load(mp)
        i0 = m.graph.input[0]
        shape = [d.dim_value if d.dim_value else 1 for d in i0.type.tensor_type.shape.dim]
        xin = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        refs = ort_run(mp, {i0.name: xin})
        res, why = run_exec(tmp, mp, net, {i0.name: xin}, extra=("--batch", "1"))
        errs = [rel_err(res[1][o.name], refs[k]) for k, o in enumerate(m.graph.output)] if res else [float("inf")]
        check(max(errs) <= 1e-4, f"{net} (batch 1) vs ONNX Runtime, graph run: rel err {max(errs):.2e} {why}")
    subprocess.run(["rm", "-rf", str(tmp)])
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
