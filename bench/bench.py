#!/usr/bin/env python3
"""CPU inference benchmark: kiln against ONNX Runtime on the model zoo.

Usage:  python3 bench/bench.py [--models a,b] [--threads 1,2] [--runs N] KILN_BINARY CACHE_DIR

For each model (default: every network of models/gen/zoo2.ALL_MODELS) the
ONNX file is generated into CACHE_DIR (reused when newer than the generators)
and its input drawn from np.random.default_rng(0), standard normal, batch 1.
Then, for each thread count T (default 1):

  ORT    ONNX Runtime, CPU execution provider, ORT_ENABLE_ALL graph
         optimisations, intra_op_num_threads=T (inter-op 1, sequential
         execution); 3 warm-up runs, then the median wall time of N runs
         of session.run (N = --runs, default 10).
  kiln   `KILN_BINARY run MODEL --input NAME=FILE --repeat N [--threads T]`:
         the median of N runs of the compiled model as kiln prints it
         ("ran in Y ms (median)"; compilation is timed separately and not
         included). --threads is passed only when `kiln run --help` lists it;
         otherwise kiln runs single-threaded once per model and that figure
         is reported on every thread-count row, marked "(1T)".

  kiln-C `KILN_BINARY emit-c MODEL --weights-file --threads --name net`,
         compiled with `cc -std=c99 -O3 -march=native` into bench/c_harness.c,
         which times net_run_v / net_run_parallel (T threads on the
         runtime's pool, runtime/kiln_runtime.c) the same way: 3 warm-up runs, median of N.  Also reported:
         the code size of the compiled net.o (`size`, text+data, weights
         excluded: they are a separate file) and the workspace bytes
         (kiln's memory plan, NET_WORKSPACE_SIZE).  --no-c skips it.

GFLOP/s = 2 * MACs / time, with MACs from `kiln inspect --json MODEL`
("macs": Conv, ConvTranspose, Gemm and MatMul multiply-accumulates; the
elementwise ops, pooling and normalisation are not counted). If inspect
fails, the generators' own figure (zoo.EXPECTED / zoo2.EXPECTED) is used and
the row is marked with "*".

The table is printed as Markdown: model | threads | ORT ms | kiln ms |
kiln/ORT | kiln GFLOP/s | ORT GFLOP/s (a ratio below 1 means kiln is
faster). A model kiln cannot compile shows "fail" and its error is listed
under the table. See bench/README.md for the caveats.
"""

import argparse
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
WARMUP_RUNS = 3
KILN_TIMEOUT_S = 3600


def load_zoo2():
    sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
    spec = importlib.util.spec_from_file_location("kiln_zoo2", ZOO2_PATH)
    zoo2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo2)
    return zoo2


def make_inputs(model_path):
    """Seeded standard-normal f32 inputs for the graph's real inputs (batch 1)."""
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    inputs = {}
    for vi in model.graph.input:
        if vi.name not in inits:
            shape = [d.dim_value if d.HasField("dim_value") else 1
                     for d in vi.type.tensor_type.shape.dim]
            inputs[vi.name] = rng.standard_normal(shape, dtype=np.float32)
    return inputs


def kiln_has_threads(kiln):
    proc = subprocess.run([kiln, "run", "--help"], capture_output=True, text=True)
    return "--threads" in proc.stdout


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
    """Median ms of `runs` session.run calls after WARMUP_RUNS warm-up calls."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    for _ in range(WARMUP_RUNS):
        sess.run(None, inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def time_kiln(kiln, model_path, input_files, threads, runs):
    """(median run ms, compile ms, None) or (None, None, error message)."""
    args = [kiln, "run", str(model_path), "--repeat", str(runs)]
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


def build_c(kiln, model_path, work):
    """emit-c + cc -O3 -march=native; (harness path, code bytes, workspace bytes, None) or error."""
    out = Path(work) / "c"
    proc = subprocess.run([kiln, "emit-c", str(model_path), "-o", str(out), "--weights-file", "--threads",
                           "--name", "net"], capture_output=True, text=True)
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
    p.add_argument("--runs", type=int, default=10, help="timed runs per measurement (default 10)")
    p.add_argument("--no-c", action="store_true", help="skip the C backend column")
    args = p.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",") if t]
    if not args.threads or min(args.threads) < 1 or args.runs < 1:
        p.error("--threads and --runs take positive integers")
    return args


def main(argv):
    args = parse_args(argv)
    if not (os.path.isfile(args.kiln) and os.access(args.kiln, os.X_OK)):
        print(f"error: kiln binary {args.kiln!r} does not exist or is not executable",
              file=sys.stderr)
        return 2
    zoo2 = load_zoo2()
    models = args.models.split(",") if args.models else zoo2.ALL_MODELS
    threaded = kiln_has_threads(args.kiln)
    version = subprocess.run([args.kiln, "--version"], capture_output=True, text=True)
    print(f"# {cpu_model()}, {os.cpu_count()} logical CPUs; onnxruntime {ort.__version__}; "
          f"{version.stdout.strip()}")
    print(f"# batch 1, f32; median of {args.runs} runs (ORT after {WARMUP_RUNS} warm-up runs); "
          f"kiln {'--threads T' if threaded else 'single-threaded (no --threads option)'}")
    print("| model | threads | ORT ms | kiln ms | kiln/ORT | kiln GFLOP/s | ORT GFLOP/s "
          "| kiln-C ms | C/ORT | C/LLVM | C code bytes | workspace bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    errors, fallback_macs = [], []
    for name in models:
        path = zoo2.generate_any(args.cache_dir, [name], log=lambda m: None)[name]
        macs, mark = kiln_macs(args.kiln, path), ""
        if macs is None:
            record = zoo2.EXPECTED.get(name) or zoo2.zoo.EXPECTED.get(name)
            macs, mark = record["macs"], "*"
            fallback_macs.append(name)
        inputs = make_inputs(path)
        with tempfile.TemporaryDirectory(prefix=f"kiln_bench_{name}_") as work:
            files = {}
            for i, (input_name, array) in enumerate(inputs.items()):
                files[input_name] = Path(work) / f"input{i}.npy"
                np.save(files[input_name], array)
            single = None  # kiln's one single-threaded result when it has no --threads
            harness = code = ws = None
            if not args.no_c:
                harness, code, ws, err = build_c(args.kiln, path, work)
                if err:
                    errors.append((name, err))
            for threads in args.threads:
                ort_ms = time_ort(path, inputs, threads, args.runs)
                if threaded:
                    kiln_ms, _, err = time_kiln(args.kiln, path, files, threads, args.runs)
                    note = ""
                else:
                    if single is None:
                        single = time_kiln(args.kiln, path, files, None, args.runs)
                    kiln_ms, _, err = single
                    note = " (1T)"
                if err and (name, err) not in errors:
                    errors.append((name, err))
                kiln_cell = f"{kiln_ms:.2f}{note}" if kiln_ms else "fail"
                ratio = f"{kiln_ms / ort_ms:.2f}" if kiln_ms else "-"
                c_ms = time_c(harness, Path(work) / "c" / "net.weights", threads, args.runs) if harness else None
                c_cells = (f"{c_ms:.2f} | {c_ms / ort_ms:.2f} | {c_ms / kiln_ms:.2f} | {code} | {ws}"
                           if c_ms and kiln_ms else "- | - | - | - | -")
                print(f"| {name}{mark} | {threads} | {ort_ms:.2f} | {kiln_cell} | {ratio} | "
                      f"{gflops(macs, kiln_ms)} | {gflops(macs, ort_ms)} | {c_cells} |", flush=True)
    if fallback_macs:
        print(f"# * kiln inspect failed on {', '.join(fallback_macs)}: "
              "MACs from the generators' analysis")
    for name, err in errors:
        print(f"# kiln failed on {name}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
