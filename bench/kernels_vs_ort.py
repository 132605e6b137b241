#!/usr/bin/env python3
"""Per kernel, kiln against ONNX Runtime on one model: where each one's time goes.

Usage:  python3 bench/kernels_vs_ort.py [--threads T] [--rounds R] [--top K] [--scaling T2] KILN_BINARY MODEL.onnx

bench.py says how the whole networks compare; this says which kernels make
the difference.  Both runtimes time every kernel of their own:

  kiln   `KILN_BINARY run MODEL --random --repeat 15 --warmup 3 --threads T --profile`,
         R times: each kernel's least time over the R runs' medians.
  ORT    CPU execution provider, ORT_ENABLE_ALL, intra_op_num_threads=T,
         enable_profiling; 15 runs a round after 3 warm-up runs, R rounds:
         each node's least "kernel_time" event.

The rounds alternate (kiln, ORT, kiln, ORT...), so a disturbance on a noisy
host hits both; least times are the figure least moved by it.

The two runtimes fuse differently, so kernels are matched through the ONNX
graph.  ORT names a fused node after one of the nodes it covers (a Conv's
BatchNormalization or Relu, "_nchwc" appended when it re-laid it out); kiln
lists every node its kernel computes, but not a BatchNormalization it folded
into the weights.  Each ORT node is given to the kiln kernel that lists it,
else to the kernel of the node that produced its first input (and so on up
the graph: a folded BatchNormalization goes to its Conv's kernel).  A row is
one kiln kernel with the ORT nodes it took; ORT nodes no kernel took (layout
reorders: "ReorderInput", "ReorderOutput") are summed on a row of their own.

Rows are sorted by kiln - ORT (kiln's largest losses first).  The input is
np.random.default_rng(0) standard normal, as bench.py draws it for ORT; kiln
draws its own (--random): a kernel's time does not depend on the values.

--scaling T2 times both at T threads and at T2 in the same alternating
rounds and prints, per kiln kernel, both runtimes' times and speedups
(time at T / time at T2), sorted by what kiln's kernel loses against a
perfect speedup (time at T2 - time at T * T/T2): where threads wait on
each other (uneven parallel chunks) or on memory.
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

KERNEL_ROW = re.compile(r"\s*(\d+)\s+([\d.]+)\s+[\d.]+\s+\S+\s+\S+\s+\S+\s+(\S+)\s+(.*)$")


def kiln_kernels(kiln, model, threads, out):
    """{kernel: least ms so far}, and {kernel: [node names]} from one profiled run."""
    res = subprocess.run([kiln, "run", model, "--random", "--repeat", "15", "--warmup", "3", "--threads", str(threads), "--profile"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"kernels_vs_ort: kiln failed: {res.stderr.strip()}")
    nodes = {}
    for ln in res.stdout.splitlines():
        m = KERNEL_ROW.match(ln)
        if not m:
            continue
        k, ms = m.group(3), float(m.group(2))
        out[k] = min(out.get(k, ms), ms)
        nodes[k] = re.findall(r"(\S+) \([A-Za-z]+\)", m.group(4))
    return nodes


def ort_round(model, threads, out, work):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(work, "ort")
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feeds = {}
    rng = np.random.default_rng(0)
    for i in s.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        dtype = np.float16 if "float16" in i.type else np.float32
        feeds[i.name] = rng.standard_normal(shape).astype(dtype)
    for _ in range(3):
        s.run(None, feeds)
    for _ in range(15):
        s.run(None, feeds)
    path = s.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            runs[e["name"][: -len("_kernel_time")]].append(e["dur"] / 1000.0)
    # the first 3 runs are warm-up: each node's last 15 events are the timed runs
    for name, durs in runs.items():
        ms = min(durs[-15:])
        out[name] = min(out.get(name, ms), ms)


def owner_map(model, kiln_nodes):
    """ONNX node name -> the kiln kernel that computes it (or its producer's)."""
    g = onnx.load(model, load_external_data=False).graph
    producer = {}
    for n in g.node:
        for o in n.output:
            producer[o] = n
    kernel_of = {}
    for k, names in kiln_nodes.items():
        for nm in names:
            kernel_of[nm] = k
    by_name = {n.name: n for n in g.node}

    def owner(name):
        n, seen = by_name.get(name), 0
        while n is not None and seen < 64:
            if n.name in kernel_of:
                return kernel_of[n.name]
            n = producer.get(n.input[0]) if n.input else None
            seen += 1
        return None

    return owner


def ort_base(name):
    """An ORT node name without the prefix and suffixes its optimisers add
    (float16 models: the f32 kernel between its inserted Casts is
    "InsertedPrecisionFreeCast_" + its name)."""
    prefix = "InsertedPrecisionFreeCast_"
    if name.startswith(prefix):
        name = name[len(prefix):]
    for suffix in ("_nchwc", "_token"):
        i = name.find(suffix)
        if i > 0:
            name = name[:i]
    return name


def named_copy(model, work):
    """model, or a copy in work whose unnamed nodes are named after their
    first output: the two runtimes name unnamed nodes differently (kiln by
    op type, ORT by op type and position), so the kernels would not match
    (the bundled float16 SqueezeNet has no node names)."""
    m = onnx.load(model)
    if all(n.name for n in m.graph.node):
        return model
    taken = {n.name for n in m.graph.node}
    for n in m.graph.node:
        if not n.name and n.output and n.output[0] not in taken:
            n.name = n.output[0]
            taken.add(n.name)
    path = os.path.join(work, os.path.basename(model))
    onnx.save(m, path)
    return path


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kiln")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--top", type=int, default=25, help="rows to print (kiln's largest losses first)")
    ap.add_argument("--scaling", type=int, default=0, metavar="T2",
                    help="also time at T2 threads and print each kernel's speedup, kiln's and ORT's")
    a = ap.parse_args(argv)
    counts = [a.threads] + ([a.scaling] if a.scaling else [])
    kiln_ms, ort_ms, nodes = {t: {} for t in counts}, {t: {} for t in counts}, {}
    with tempfile.TemporaryDirectory() as work:
        a.model = named_copy(a.model, work)
        for _ in range(a.rounds):
            for t in counts:
                nodes = kiln_kernels(a.kiln, a.model, t, kiln_ms[t])
                ort_round(a.model, t, ort_ms[t], work)
        owner = owner_map(a.model, nodes)
    ort_of = {}  # thread count -> {kiln kernel: (ORT ms, ORT nodes)}
    for t in counts:
        took = collections.defaultdict(list)
        for name, ms in ort_ms[t].items():
            took[owner(ort_base(name))].append((name, ms))
        ort_of[t] = {k: (sum(ms for _, ms in v), ", ".join(n for n, _ in v)) for k, v in took.items()}
    if a.scaling:
        print_scaling(a, counts, kiln_ms, ort_ms, ort_of)
    else:
        print_table(a, kiln_ms[a.threads], ort_ms[a.threads], ort_of[a.threads])


def print_table(a, kiln_ms, ort_ms, ort_of):
    rows = []
    for k, ms in kiln_ms.items():
        o, names = ort_of.get(k, (0.0, ""))
        rows.append((ms - o, k, ms, o, names))
    rows.sort(reverse=True)
    kt, ot = sum(kiln_ms.values()), sum(ort_ms.values())
    print(f"# {os.path.basename(a.model)}, {a.threads} thread(s), least of {a.rounds} rounds; "
          f"sum of kernels: kiln {kt:.2f} ms, ORT {ot:.2f} ms (kiln/ORT {kt / ot:.2f})")
    print("| kiln kernel | kiln ms | ORT ms | kiln - ORT | ORT nodes |")
    print("|---|---:|---:|---:|---|")
    for d, k, ms, o, names in rows[: a.top]:
        print(f"| {k} | {ms:.3f} | {o:.3f} | {d:+.3f} | {names} |")
    if None in ort_of:
        o, names = ort_of[None]
        print(f"| (ORT only) | - | {o:.3f} | | {names} |")
    wins = sum(d for d, *_ in rows if d < 0)
    losses = sum(d for d, *_ in rows if d > 0)
    print(f"\nkiln ahead by {-wins:.2f} ms on its faster kernels, behind by {losses:.2f} ms on its slower ones")


def print_scaling(a, counts, kiln_ms, ort_ms, ort_of):
    t1, t2 = counts
    rows = []
    for k, ms1 in kiln_ms[t1].items():
        ms2 = kiln_ms[t2].get(k)
        if ms2 is None:
            continue
        o1, o2 = ort_of[t1].get(k, (0.0, ""))[0], ort_of[t2].get(k, (0.0, ""))[0]
        rows.append((ms2 - ms1 * t1 / t2, k, ms1, ms2, o1, o2))
    rows.sort(reverse=True)

    def speedup(x, y):
        return f"{x / y:.2f}" if x > 0 and y > 0 else "-"

    k1, k2 = sum(kiln_ms[t1].values()), sum(kiln_ms[t2].values())
    o1, o2 = sum(ort_ms[t1].values()), sum(ort_ms[t2].values())
    print(f"# {os.path.basename(a.model)}, {t1} -> {t2} threads, least of {a.rounds} rounds; sums of kernels: "
          f"kiln {k1:.2f} -> {k2:.2f} ms ({speedup(k1, k2)}x), ORT {o1:.2f} -> {o2:.2f} ms ({speedup(o1, o2)}x)")
    print(f"| kiln kernel | kiln ms, {t1} | kiln ms, {t2} | kiln speedup | ORT ms, {t1} | ORT ms, {t2} | ORT speedup "
          "| kiln ms lost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for lost, k, ms1, ms2, x1, x2 in rows[: a.top]:
        print(f"| {k} | {ms1:.3f} | {ms2:.3f} | {speedup(ms1, ms2)} | {x1:.3f} | {x2:.3f} | {speedup(x1, x2)} "
              f"| {lost:+.3f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
