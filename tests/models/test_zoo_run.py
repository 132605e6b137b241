#!/usr/bin/env python3
"""End-to-end numerical check of `kiln run` against ONNX Runtime on the zoo.

Usage:  python3 tests/models/test_zoo_run.py [--backend llvm|c|cuda-host] [--lean-memory] KILN_BINARY CACHE_DIR [name ...]

--lean-memory passes that option to `kiln run` / `kiln emit-c` (peak
workspace within the plain plan: exact scratch rooms and, where phase
planes do not fit, strided convolutions reading X in place,
passes/lower_conv_strided.c); the rest is the same.

--backend cuda-host runs `kiln run MODEL --target cuda-host` (the CUDA
backend's code through its host emulation); the rest is the same.

--backend c checks the C backend instead of `kiln run`: `kiln emit-c MODEL
--weights-file`, the generated example main.c built with
`cc -std=c99 -O3 -march=native -Wall -Wextra -Wpedantic -Werror`, run on the
same .npy inputs; same tolerance, same top-5 rule.

For each network (default: all of models/gen/zoo2.ALL_MODELS: resnet50,
mobilenetv2, vgg16_v9, densenet121, squeezenet1_1, googlenet, unet2d, cnn3d,
alexnet_v9, resnet18_dynbatch) it
  1. generates the ONNX file into CACHE_DIR (models/gen/zoo.py or zoo2.py,
     reusing files newer than the generators),
  2. draws the input from np.random.default_rng(0), standard normal, with any
     symbolic (batch) dim bound to 1,
  3. runs ONNX Runtime on one thread with graph optimisations off, so ORT
     computes the graph as written, op by op (the reference),
  4. runs `KILN_BINARY run MODEL --input NAME=FILE --output DIR` and reads
     DIR/<output>.npy,
  5. compares every output (see TOLERANCE below): max|k - o| / max|o| must be
     <= 1e-4; for a classifier output ([N, C]) the top-5 class indices (top-C
     when C < 5), in order, must be identical; for a segmentation output
     ([N, C, H, W]) the per-pixel argmax class must agree on >= 99.99% of
     pixels.
It prints one line per model, "PASS name: ..." or "FAIL name: ...", with the
error figures and the kiln and ORT run times, then "N passed, M failed" alone
on the last line; the exit status is 1 if anything failed. A model kiln cannot
compile (e.g. "Conv is not yet supported by kiln's code generators") counts
as FAILED, with kiln's error message on its line.
"""

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
ZOO2_PATH = REPO / "models" / "gen" / "zoo2.py"
KILN_TIMEOUT_S = 1200

# TOLERANCE. kiln and ORT both compute in f32 but may sum the K products of
# each dot product in different orders (blocking, SIMD lanes, FMA contraction).
# Reordering a K-term f32 sum changes it by up to about K * 2^-24 of the sum
# of the terms' magnitudes (worst case), typically sqrt(K) * 2^-24: for the
# largest reductions here (K = 3*3*512 = 4608, VGG/ResNet 3x3 convs, and 9216
# or 4096 in the AlexNet/VGG classifiers) that is ~4e-6 typical, ~3e-4 worst
# case per layer, compounding over 15-120 layers and amplified where terms
# cancel. A max error of 1e-4 relative to the largest output magnitude admits
# that, while real lowering bugs (a wrong pad, stride or channel offset, a
# missing bias) give errors of order 1e-2 to 1. The error is normalised by
# max|o| over the whole output, not per element: per-element relative error
# blows up for outputs near zero, where any absolute difference is huge
# relative to the value itself.
MAX_REL_ERR = 1e-4
TOP_K = 5
MIN_PIXEL_AGREEMENT = 0.9999


def load_zoo2():
    sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
    spec = importlib.util.spec_from_file_location("kiln_zoo2", ZOO2_PATH)
    zoo2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo2)
    return zoo2


def real_inputs(model):
    """(name, shape) of graph inputs that are not initializers; symbolic dims -> 1."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        out.append((vi.name, [d.dim_value if d.HasField("dim_value") else 1 for d in dims]))
    return out


def make_inputs(model_path):
    """Seeded standard-normal f32 inputs: name -> array."""
    model = onnx.load(str(model_path), load_external_data=False)
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(shape, dtype=np.float32)
            for name, shape in real_inputs(model)}


def run_ort(model_path, inputs):
    """Reference outputs (name -> array) and the time of one run in ms."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    sess.run(names, inputs)  # warm-up: first-run allocations
    t0 = time.perf_counter()
    outs = sess.run(names, inputs)
    return dict(zip(names, outs)), 1e3 * (time.perf_counter() - t0)


def output_file(out_dir, name):
    """The file `kiln run --output` writes for output NAME (see tools/cmd_run.c)."""
    safe = "".join("_" if c in "/\\" else c for c in name)
    if safe.startswith("."):
        safe = "_" + safe[1:]
    return Path(out_dir) / f"{safe}.npy"


def run_kiln(kiln, model_path, inputs, work, target=None, extra=()):
    """Returns (outputs dict, {"compile_ms", "run_ms"}, None) or (None, None, error).
    extra: more `kiln run` options."""
    args = [kiln, "run", str(model_path)] + (["--target", target] if target else []) + list(extra)
    for name, array in inputs.items():
        path = Path(work) / f"input_{len(args)}.npy"
        np.save(path, array)
        args += ["--input", f"{name}={path}"]
    out_dir = Path(work) / "out"
    out_dir.mkdir()
    args += ["--output", str(out_dir)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=KILN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, None, f"kiln run timed out after {KILN_TIMEOUT_S}s"
    if proc.returncode != 0:
        msg = proc.stderr.strip() or proc.stdout.strip()
        return None, None, f"kiln run exited {proc.returncode}: {msg[-600:]}"
    m = re.search(r"compiled in ([\d.]+) ms; ran in ([\d.]+) ms", proc.stdout)
    times = {"compile_ms": float(m.group(1)), "run_ms": float(m.group(2))} if m else {}
    outs = {}
    for path in out_dir.glob("*.npy"):
        outs[path.stem] = np.load(path)
    return outs, times, None


def run_c(kiln, model_path, inputs, work, extra=()):
    """The C backend: emit-c (with `extra` options), cc -O3 -march=native, run the example main."""
    out = Path(work) / "c"
    proc = subprocess.run([kiln, "emit-c", str(model_path), "-o", str(out), "--weights-file", "--name", "net"] + list(extra),
                          capture_output=True, text=True, timeout=KILN_TIMEOUT_S)
    if proc.returncode != 0:
        return None, None, f"kiln emit-c exited {proc.returncode}: {proc.stderr.strip()[-600:]}"
    cc = os.environ.get("CC", "cc")
    t0 = time.perf_counter()
    proc = subprocess.run([cc, "-std=c99", "-O3", "-march=native", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                           "-o", str(out / "run_model"), str(out / "main.c"), str(out / "net.c"), "-lm"],
                          capture_output=True, text=True, timeout=KILN_TIMEOUT_S)
    compile_ms = 1e3 * (time.perf_counter() - t0)
    if proc.returncode != 0:
        return None, None, f"cc failed on the generated C: {proc.stderr.strip()[-600:]}"
    args = [str(out / "run_model"), "--weights", str(out / "net.weights")]
    for i, (name, array) in enumerate(inputs.items()):
        path = Path(work) / f"input_{i}.npy"
        np.save(path, array)
        args.append(str(path))
    res = Path(work) / "out"
    res.mkdir()
    args.append(str(res))
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=KILN_TIMEOUT_S)
    run_ms = 1e3 * (time.perf_counter() - t0)
    if proc.returncode != 0:
        return None, None, f"generated program exited {proc.returncode}: {proc.stderr.strip()[-600:]}"
    outs = {f"output_{k}": np.load(res / f"output_{k}.npy") for k in range(len(list(res.glob("output_*.npy"))))}
    return outs, {"compile_ms": compile_ms, "run_ms": run_ms}, None


def compare(name, ref, got):
    """Returns (ok, description) for one output."""
    if got.shape != ref.shape:
        return False, f"{name}: shape {list(got.shape)}, ORT has {list(ref.shape)}"
    if got.dtype != ref.dtype:
        return False, f"{name}: dtype {got.dtype}, ORT has {ref.dtype}"
    if not np.all(np.isfinite(got)):
        return False, f"{name}: {int(np.size(got) - np.isfinite(got).sum())} non-finite values"
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    diff = float(np.abs(got64 - ref64).max()) if ref.size else 0.0
    scale = float(np.abs(ref64).max()) if ref.size else 0.0
    rel = diff / scale if scale > 0 else diff
    ok = rel <= MAX_REL_ERR
    parts = [f"{name}: max rel err {rel:.2e} (max|diff| {diff:.2e}, max|ort| {scale:.3g})"]
    if ref.ndim == 2:  # classifier logits [N, C]
        k = min(TOP_K, ref.shape[1])
        top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :k]
        top_got = np.argsort(-got, axis=1, kind="stable")[:, :k]
        same = bool(np.array_equal(top_ref, top_got))
        ok &= same
        if same:
            parts.append(f"top-{k} equal {top_ref[0].tolist()}")
        else:
            parts.append(f"top-{k} DIFFER: ORT {top_ref[0].tolist()} kiln {top_got[0].tolist()}")
    elif ref.ndim == 4:  # segmentation logits [N, C, H, W]
        agree = float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))
        ok &= agree >= MIN_PIXEL_AGREEMENT
        parts.append(f"argmax agrees on {100 * agree:.4f}% of pixels "
                     f"(need {100 * MIN_PIXEL_AGREEMENT:.2f}%)")
    if rel > MAX_REL_ERR:
        parts.append(f"error above {MAX_REL_ERR:g}")
    return ok, ", ".join(parts)


def check_model(kiln, name, path, backend="llvm", extra=()):
    """Returns (ok, the report line's text after "PASS name: ")."""
    inputs = make_inputs(path)
    ref, ort_ms = run_ort(path, inputs)
    with tempfile.TemporaryDirectory(prefix=f"kiln_zoo_run_{name}_") as work:
        if backend == "c":
            got, times, error = run_c(kiln, path, inputs, work, extra)
        else:
            got, times, error = run_kiln(kiln, path, inputs, work, "cuda-host" if backend == "cuda-host" else None,
                                         extra)
    if error:
        return False, f"{error} (ORT {ort_ms:.1f} ms)"
    results = []
    for k, (out_name, ref_array) in enumerate(ref.items()):
        key = f"output_{k}" if backend == "c" else output_file("", out_name).stem
        if key not in got:
            results.append((False, f"{out_name}: kiln wrote no {key}.npy"))
        else:
            results.append(compare(out_name, ref_array, got[key]))
    ok = all(r[0] for r in results)
    timing = (f"kiln {times['run_ms']:.1f} ms (compile {times['compile_ms']:.0f} ms)"
              if times else "kiln time not reported")
    return ok, "; ".join(r[1] for r in results) + f"; {timing}, ORT {ort_ms:.1f} ms"


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("Usage:")[1].split("\n\n")[0].strip(), file=sys.stderr)
        return 2
    backend = "llvm"
    if len(argv) > 2 and argv[1] == "--backend":
        backend, argv = argv[2], argv[:1] + argv[3:]
        if backend not in ("llvm", "c", "cuda-host"):
            print(f"FAIL setup: unknown backend {backend!r}")
            return 2
    extra = ()
    if len(argv) > 1 and argv[1] == "--lean-memory":
        extra, argv = ("--lean-memory",), argv[:1] + argv[2:]
    if len(argv) < 3:
        print(__doc__.split("Usage:")[1].split("\n\n")[0].strip(), file=sys.stderr)
        return 2
    kiln, cache_dir, names = argv[1], argv[2], argv[3:]
    if not (os.path.isfile(kiln) and os.access(kiln, os.X_OK)):
        print(f"FAIL setup: kiln binary {kiln!r} does not exist or is not executable")
        print("0 passed, 1 failed")
        return 1
    return run_models(cache_dir, names, lambda name, path: check_model(kiln, name, path, backend, extra))


def run_models(cache_dir, names, check):
    """check(name, path) -> (ok, text) for each network (default: all of
    zoo2.ALL_MODELS), generated into cache_dir first; one PASS/FAIL line
    each, then "N passed, M failed"; returns the exit status."""
    zoo2 = load_zoo2()
    passed = failed = 0
    for name in names or zoo2.ALL_MODELS:
        try:
            path = zoo2.generate_any(cache_dir, [name], log=lambda m: print(f"# {m}"))[name]
            ok, text = check(name, path)
        except Exception as e:  # a generator or ORT problem fails this model only
            ok, text = False, f"{type(e).__name__}: {e}"
        print(f"{'PASS' if ok else 'FAIL'} {name}: {text}", flush=True)
        passed, failed = passed + ok, failed + (not ok)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
