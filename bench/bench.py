#!/usr/bin/env python3
"""CPU inference benchmark: kiln against ONNX Runtime on the model zoo.

Usage:  python3 bench/bench.py [--models a,b] [--threads 1,2] [--batch 1,8] [--runs N] KILN_BINARY CACHE_DIR

For each model (default: every network of models/gen/zoo2.ALL_MODELS, then
the bundled real float16 SqueezeNet, `squeezenet_fp16`) the ONNX file is
generated into CACHE_DIR (reused when newer than the generators) and its
input drawn from np.random.default_rng(0), standard normal, in the input's
own element type (float16 for squeezenet_fp16). The real model is read from
../shared/models (next to the repository) or else models/squeezenet/; if
neither has it, it is skipped with a message.

For each batch size B (--batch, default 1): a model whose batch dim is
symbolic gets a batch-B input (kiln binds it from the input file); a model
with a fixed batch of 1 is rewritten with batch B on its inputs and outputs
(and its intermediate shape annotations dropped) into a temporary copy, both
ORT and kiln run that copy. A model whose graph hard-codes the batch (a
Reshape to [1, -1]) then fails in ORT or kiln, and the row says so.

Then, for each thread count T (default 1):

  ORT    ONNX Runtime, CPU execution provider, ORT_ENABLE_ALL graph
         optimisations, intra_op_num_threads=T (inter-op 1, sequential
         execution); 3 warm-up runs, then the median wall time of N runs
         of session.run (N = --runs, default 10).
  kiln   `KILN_BINARY run MODEL --input NAME=FILE --repeat N --warmup 3 [--threads T]`:
         3 warm-up runs, then the median of N runs of the compiled model as kiln prints it
         ("ran in Y ms (median)"; compilation is timed separately and not
         included; its own "compiled in X ms", wall time from after the
         model and inputs are read, is the compile-s column).
         --threads and --warmup are passed only when `kiln run --help` lists them;
         otherwise kiln runs single-threaded once per model and that figure
         is reported on every thread-count row, marked "(1T)".

  kiln-C `KILN_BINARY emit-c MODEL --weights-file --threads --name net
         --vector-bytes V --cores C` (V: the host's vectors, 64 with AVX-512,
         32 with AVX2, 16 otherwise; C: its logical CPUs; as a vendor
         targeting this CPU would pass them: with the default 8 cores the C
         keeps 8 slots of per-core scratch, and GoogLeNet's conv2 3x3 finds
         no room for Winograd's),
         compiled with `cc -std=c99 -O3 -march=native` into bench/c_harness.c,
         which times net_run_v / net_run_parallel (T threads on the
         runtime's pool, runtime/kiln_runtime.c) the same way: 3 warm-up runs, median of N.  Also reported:
         the code size of the compiled net.o (`size`, text+data, weights
         excluded: they are a separate file) and the workspace bytes
         (kiln's memory plan, NET_WORKSPACE_SIZE).  --no-c skips it.

  peak   bench/fma_peak.c, compiled with `cc -O2 -march=native`: the host's
         FMA throughput on its widest vectors with T threads (best of 5
         trials); "% peak" is kiln's GFLOP/s as a share of it.

GFLOP/s = 2 * MACs * B / time, with MACs from `kiln inspect --json MODEL`
("macs": Conv, ConvTranspose, Gemm and MatMul multiply-accumulates; the
elementwise ops, pooling and normalisation are not counted). If inspect
fails, the generators' own figure (zoo.EXPECTED / zoo2.EXPECTED) is used and
the row is marked with "*".

The header names the CPU and whether it has AVX-512 or AVX2 (from the
flags in /proc/cpuinfo) and the FMA peaks. The table is printed as
Markdown: model | batch | threads | ORT ms | kiln ms | kiln/ORT | kiln
GFLOP/s | % peak | ORT GFLOP/s | compile s | C columns (a ratio below 1
means kiln is faster). A model kiln cannot compile shows "fail" and its error is listed
under the table. See bench/README.md for the caveats.
"""

import argparse
import functools
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
ZOO2_PATH = REPO / "models" / "gen" / "zoo2.py"
# The bundled real float16 network: the shared copy first, then the repository's.
REAL_MODELS = {
    "squeezenet_fp16": [REPO.parent / "shared" / "models" / "squeezenet1.0-fp16.onnx",
                        REPO / "models" / "squeezenet" / "squeezenet1.0-fp16.onnx"],
}
ONNX_TO_NUMPY = {1: np.float32, 10: np.float16, 11: np.float64}
WARMUP_RUNS = 3
KILN_TIMEOUT_S = 3600


def load_zoo2():
    sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
    spec = importlib.util.spec_from_file_location("kiln_zoo2", ZOO2_PATH)
    zoo2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo2)
    return zoo2


def make_inputs(model_path, batch=1):
    """Seeded standard-normal inputs for the graph's real inputs, in their own
    element type: the first dim is the batch (B), other symbolic dims 1."""
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    inputs = {}
    for vi in model.graph.input:
        if vi.name not in inits:
            shape = [d.dim_value if d.HasField("dim_value") else 1
                     for d in vi.type.tensor_type.shape.dim]
            if shape:
                shape[0] = batch
            dtype = ONNX_TO_NUMPY.get(vi.type.tensor_type.elem_type, np.float32)
            inputs[vi.name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    return inputs


def rebatched(model_path, batch, work):
    """model_path itself when batch is 1 or its batch dims are symbolic; else a
    copy in work with batch on the inputs' and outputs' first dim."""
    if batch == 1:
        return model_path
    model = onnx.load(str(model_path))
    inits = {t.name for t in model.graph.initializer}
    changed = False
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in inits and dims and dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
            changed = True
    if not changed:
        return model_path
    del model.graph.value_info[:]  # inferred for batch 1
    out = Path(work) / f"{Path(model_path).stem}_b{batch}.onnx"
    onnx.save(model, str(out))
    return out


def cpu_isa():
    """AVX-512, AVX2 or SSE, from /proc/cpuinfo's flags."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    if "avx512f" in flags:
                        return "AVX-512"
                    return "AVX2" if {"avx2", "fma"} <= flags else "SSE (no AVX2)"
    except OSError:
        pass
    return "unknown ISA"


def host_vector_bytes():
    """emit-c's --vector-bytes for this CPU (see cpu_isa)."""
    return {"AVX-512": "64", "AVX2": "32"}.get(cpu_isa(), "16")


def fma_peaks(threads_list, work):
    """{T: GFLOP/s} from bench/fma_peak.c, or ({}, error message)."""
    exe = Path(work) / "fma_peak"
    cc = os.environ.get("CC", "cc")
    proc = subprocess.run([cc, "-std=c11", "-O2", "-march=native", "-pthread", str(REPO / "bench" / "fma_peak.c"),
                           "-o", str(exe)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {}, f"cc failed on fma_peak.c: {proc.stderr.strip()[-300:]}"
    peaks = {}
    for t in threads_list:
        out = subprocess.run([str(exe), str(t)], capture_output=True, text=True).stdout
        m = re.search(r"gflops=([\d.]+)", out)
        if m:
            peaks[t] = float(m.group(1))
    return peaks, None


@functools.lru_cache(maxsize=None)
def kiln_run_has(kiln, option):
    """Whether `kiln run --help` lists option (older binaries lack --threads, --warmup)."""
    proc = subprocess.run([kiln, "run", "--help"], capture_output=True, text=True)
    return option in proc.stdout


def kiln_macs(kiln, model_path):
    """MACs from `kiln inspect --json`, or None if kiln cannot inspect the model."""
    proc = subprocess.run([kiln, "inspect", "--json", str(model_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    try:
        return int(json.loads(proc.stdout)["macs"])
    except (ValueError, KeyError, TypeError):
        return None


def time_ort(model_path, inputs, threads, runs):
    """(median ms of `runs` session.run calls after WARMUP_RUNS warm-ups, None),
    or (None, error) when ONNX Runtime cannot load or run the model."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        for _ in range(WARMUP_RUNS):
            sess.run(None, inputs)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, inputs)
            times.append(1e3 * (time.perf_counter() - t0))
    except Exception as e:  # onnxruntime raises its own exception types
        return None, f"ONNX Runtime: {str(e).splitlines()[0][:300]}"
    return statistics.median(times), None


def time_kiln(kiln, model_path, input_files, threads, runs):
    """(median run ms, compile ms, None) or (None, None, error message)."""
    args = [kiln, "run", str(model_path), "--repeat", str(runs)]
    if kiln_run_has(kiln, "--warmup"):  # the same warm-up as ORT's
        args += ["--warmup", str(WARMUP_RUNS)]
    for name, path in input_files.items():
        args += ["--input", f"{name}={path}"]
    if threads is not None:
        args += ["--threads", str(threads)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=KILN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {KILN_TIMEOUT_S}s"
    if proc.returncode != 0:
        msg = proc.stderr.strip() or proc.stdout.strip()
        return None, None, f"exited {proc.returncode}: {msg[-400:]}"
    m = re.search(r"compiled in ([\d.]+) ms; ran in ([\d.]+) ms", proc.stdout)
    if not m:
        return None, None, f"no timing line in its output: {proc.stdout[:200]!r}"
    return float(m.group(2)), float(m.group(1)), None


def build_c(kiln, model_path, work, batch=1):
    """emit-c + cc -O3 -march=native; (harness path, code bytes, workspace bytes, None) or error."""
    out = Path(work) / f"c{batch}"
    proc = subprocess.run([kiln, "emit-c", str(model_path), "-o", str(out), "--weights-file", "--threads",
                           "--name", "net", "--batch", str(batch), "--vector-bytes", host_vector_bytes(),
                           "--cores", str(os.cpu_count() or 1)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, None, None, f"emit-c failed: {proc.stderr.strip()[-300:]}"
    cc = os.environ.get("CC", "cc")
    flags = ["-std=c99", "-O3", "-march=native"]
    obj = out / "net.o"
    harness = out / "harness"
    for cmd in ([cc, *flags, "-c", str(out / "net.c"), "-o", str(obj)],
                [cc, *flags, "-pthread", "-I", str(out), "-I", str(REPO / "runtime"), str(REPO / "bench" / "c_harness.c"),
                 str(REPO / "runtime" / "kiln_runtime.c"), str(obj), "-o", str(harness), "-lm"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, None, None, f"cc failed: {proc.stderr.strip()[-300:]}"
    size = subprocess.run(["size", str(obj)], capture_output=True, text=True).stdout.split("\n")[1].split()
    code = int(size[0]) + int(size[1])
    ws = int(re.search(r"#define NET_WORKSPACE_SIZE (\d+)", (out / "net.h").read_text()).group(1))
    return harness, code, ws, None


def time_c(harness, weights, threads, runs):
    proc = subprocess.run([str(harness), str(weights), str(threads), str(runs)], capture_output=True, text=True,
                          timeout=KILN_TIMEOUT_S)
    m = re.search(r"median_ms ([\d.]+)", proc.stdout)
    return float(m.group(1)) if m else None


def gflops(macs, ms):
    return f"{2 * macs / (ms * 1e6):.1f}" if macs and ms else "-"


def share_of_peak(macs, ms, peak):
    return f"{100 * 2 * macs / (ms * 1e6) / peak:.0f}%" if macs and ms and peak else "-"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kiln", metavar="KILN_BINARY")
    p.add_argument("cache_dir", metavar="CACHE_DIR")
    p.add_argument("--models", help="comma-separated model names (default: all)")
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--no-c", action="store_true", help="skip the C backend column")
    args = p.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t]
        args.batch = [int(b) for b in args.batch.split(",") if b]
    except ValueError:
        p.error("--threads and --batch take comma-separated positive integers")
    if not args.threads or min(args.threads) < 1 or not args.batch or min(args.batch) < 1 or args.runs < 1:
        p.error("--threads, --batch and --runs take positive integers")
    return args


def model_path_for(zoo2, cache_dir, name):
    """(path, None), or (None, why it is skipped)."""
    if name in REAL_MODELS:
        for path in REAL_MODELS[name]:
            if path.is_file():
                return path, None
        return None, "not found in " + " or ".join(str(p) for p in REAL_MODELS[name])
    return zoo2.generate_any(cache_dir, [name], log=lambda m: None)[name], None


def main(argv):
    args = parse_args(argv)
    if not (os.path.isfile(args.kiln) and os.access(args.kiln, os.X_OK)):
        print(f"error: kiln binary {args.kiln!r} does not exist or is not executable",
              file=sys.stderr)
        return 2
    zoo2 = load_zoo2()
    models = args.models.split(",") if args.models else zoo2.ALL_MODELS + list(REAL_MODELS)
    threaded = kiln_run_has(args.kiln, "--threads")
    version = subprocess.run([args.kiln, "--version"], capture_output=True, text=True)
    with tempfile.TemporaryDirectory(prefix="kiln_bench_peak_") as work:
        peaks, peak_err = fma_peaks(args.threads, work)
    print(f"# {cpu_model()} ({cpu_isa()}), {os.cpu_count()} logical CPUs; onnxruntime {ort.__version__}; "
          f"{version.stdout.strip()}")
    print("# FMA peak (bench/fma_peak.c, f32): " +
          (", ".join(f"{t} thread{'s' if t > 1 else ''} {g:.1f} GFLOP/s" for t, g in peaks.items())
           if peaks else f"not measured ({peak_err})"))
    print(f"# f32 unless the model is float16; median of {args.runs} runs (ORT after {WARMUP_RUNS} warm-up runs); "
          f"kiln {'--threads T' if threaded else 'single-threaded (no --threads option)'}; "
          "compile s: kiln run's own compile time")
    print("| model | batch | threads | ORT ms | kiln ms | kiln/ORT | kiln GFLOP/s | % peak | ORT GFLOP/s | compile s "
          "| kiln-C ms | C/ORT | C/LLVM | C code bytes | workspace bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    errors, fallback_macs, skipped = [], [], []
    for name in models:
        base_path, why = model_path_for(zoo2, args.cache_dir, name)
        if base_path is None:
            skipped.append((name, why))
            print(f"# skipped {name}: {why}", flush=True)
            continue
        macs1, mark = kiln_macs(args.kiln, base_path), ""
        if macs1 is None:
            record = zoo2.EXPECTED.get(name) or zoo2.zoo.EXPECTED.get(name) or {}
            macs1, mark = record.get("macs"), "*"
            fallback_macs.append(name)
        for batch in args.batch:
            with tempfile.TemporaryDirectory(prefix=f"kiln_bench_{name}_") as work:
                path = rebatched(base_path, batch, work)
                macs = macs1 * batch if macs1 else None
                inputs = make_inputs(path, batch)
                files = {}
                for i, (input_name, array) in enumerate(inputs.items()):
                    files[input_name] = Path(work) / f"input{i}.npy"
                    np.save(files[input_name], array)
                single = None  # kiln's one single-threaded result when it has no --threads
                harness = code = ws = None
                if not args.no_c:
                    harness, code, ws, err = build_c(args.kiln, path, work, batch)
                    if err:
                        errors.append((f"{name} batch {batch}", err))
                for threads in args.threads:
                    ort_ms, ort_err = time_ort(path, inputs, threads, args.runs)
                    if ort_err and (f"{name} batch {batch}", ort_err) not in errors:
                        errors.append((f"{name} batch {batch}", ort_err))
                    if threaded:
                        kiln_ms, compile_ms, err = time_kiln(args.kiln, path, files, threads, args.runs)
                        note = ""
                    else:
                        if single is None:
                            single = time_kiln(args.kiln, path, files, None, args.runs)
                        kiln_ms, compile_ms, err = single
                        note = " (1T)"
                    if err and (f"{name} batch {batch}", err) not in errors:
                        errors.append((f"{name} batch {batch}", err))
                    ort_cell = f"{ort_ms:.2f}" if ort_ms else "fail"
                    kiln_cell = f"{kiln_ms:.2f}{note}" if kiln_ms else "fail"
                    ratio = f"{kiln_ms / ort_ms:.2f}" if kiln_ms and ort_ms else "-"
                    compile_cell = f"{compile_ms / 1e3:.2f}" if compile_ms else "-"
                    c_ms = (time_c(harness, Path(work) / f"c{batch}" / "net.weights", threads, args.runs)
                            if harness else None)
                    c_cells = (f"{c_ms:.2f} | {c_ms / ort_ms:.2f} | {c_ms / kiln_ms:.2f} | {code} | {ws}"
                               if c_ms and kiln_ms and ort_ms else "- | - | - | - | -")
                    print(f"| {name}{mark} | {batch} | {threads} | {ort_cell} | {kiln_cell} | {ratio} | "
                          f"{gflops(macs, kiln_ms)} | {share_of_peak(macs, kiln_ms, peaks.get(threads))} | "
                          f"{gflops(macs, ort_ms)} | {compile_cell} | {c_cells} |", flush=True)
    if fallback_macs:
        print(f"# * kiln inspect failed on {', '.join(fallback_macs)}: "
              "MACs from the generators' analysis")
    for name, err in errors:
        print(f"# failed on {name}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
