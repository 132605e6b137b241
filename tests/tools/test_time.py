#!/usr/bin/env python3
"""`kiln run/compile --time`: where compilation spends its time, and the
optimisation tiers it reports (backends/llvm/llvm_optimise.c).

    test_time.py KILN SOURCE_DIR WORK_DIR

Checked on models/resnet8_cifar.onnx (batch 1):
  * compile --time prints one `kiln: time: STAGE W ms wall C ms cpu` line
    per stage, in pipeline order: the seven passes of --dump-after list,
    then llvm-ir, llvm-verify, llvm-optimise-heavy, llvm-optimise-tiled,
    llvm-optimise-light, llvm-link, llvm-codegen, write, and total; run
    --time the same with llvm-codegen-jit and no write.  KILN_OPT=O3 (one
    tier) has no tiled-tier, light-tier or link stage.
  * The stages tile the command: total CPU time = the sum of the stages'
    CPU times, up to the printed rounding (0.05 ms a line) plus 1 ms.  CPU,
    not wall: on a loaded machine the process can be descheduled between
    the last stage's line and the total's (seen: 22 ms).
  * Timing observes and does not change: without --time no time line is
    printed; the object compile writes is byte-identical with and without
    --time; run's outputs are bit-identical with and without --time.
  * Tiers do not change results: run's outputs with two tiers and with one
    (KILN_OPT=O3) are bit-identical.  No fast-math flag is ever set, so
    LLVM may not reassociate or contract differently at O2 and O3; any
    difference would be a bug, hence no tolerance.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np

PASSES = ["import", "infer-shapes", "train", "per-image", "fold-batchnorm", "dense-gemm", "widen-f16", "fuse-epilogue", "fuse-pool", "layout-nchwc", "lower", "expand-reduce", "simplify-index", "schedule-threads", "schedule-gpu", "plan-memory"]
LLVM = ["llvm-ir", "llvm-verify", "llvm-optimise-heavy", "llvm-optimise-tiled", "llvm-optimise-light", "llvm-link"]
LINE = re.compile(r"^kiln: time: (\S+) +([0-9.]+) ms wall +([0-9.]+) ms cpu$")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def stages(stderr):
    """[(name, wall ms, cpu ms)] from the time lines; None if a time line is malformed."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("kiln: time:"):
            m = LINE.match(line)
            if not m:
                return None
            out.append((m.group(1), float(m.group(2)), float(m.group(3))))
    return out


def check_tiling(st, what):
    parts = [c for name, _, c in st if name != "total"]
    total = [c for name, _, c in st if name == "total"]
    check(len(total) == 1 and abs(total[0] - sum(parts)) <= 0.05 * len(st) + 1.0,
          f"{what}: total CPU {total} = sum of the stages {sum(parts):.1f} ms")


def main():
    kiln, src, work = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model = os.path.join(src, "models", "resnet8_cifar.onnx")
    env = dict(os.environ)
    env.pop("KILN_OPT", None)

    def sh(args, extra_env=None):
        e = dict(env, **(extra_env or {}))
        return subprocess.run(args, capture_output=True, text=True, timeout=600, env=e)

    # compile, with and without --time
    timed = sh([kiln, "compile", "--time", model, "-o", f"{work}/timed", "--name", "net"])
    plain = sh([kiln, "compile", model, "-o", f"{work}/plain", "--name", "net"])
    check(timed.returncode == 0 and plain.returncode == 0, f"compile exits 0 ({timed.stderr[-300:]}{plain.stderr[-300:]})")
    st = stages(timed.stderr)
    check(st is not None, "every compile time line is well formed")
    st = st or []
    names = [n for n, _, _ in st]
    want = PASSES + LLVM + ["llvm-codegen", "write", "total"]
    check(names == want, f"compile stages in order: {names}")
    check(all(w >= 0 and c >= 0 for _, w, c in st), "compile times are non-negative")
    check_tiling(st, "compile")
    check("kiln: time:" not in plain.stderr, "no time line without --time")
    with open(f"{work}/timed/net.o", "rb") as a, open(f"{work}/plain/net.o", "rb") as b:
        check(a.read() == b.read(), "the object is byte-identical with and without --time")

    # run, with and without --time, two tiers and one
    outs = {}
    for label, args, extra in [("timed", ["--time"], None), ("plain", [], None), ("one-tier", ["--time"], {"KILN_OPT": "O3"})]:
        r = sh([kiln, "run", model, "--random", "--output", f"{work}/run-{label}", *args], extra)
        check(r.returncode == 0, f"run ({label}) exits 0 {r.stderr[-300:]}")
        outs[label] = {f: np.load(os.path.join(f"{work}/run-{label}", f))
                       for f in sorted(os.listdir(f"{work}/run-{label}"))} if r.returncode == 0 else {}
        st = stages(r.stderr) or []
        names = [n for n, _, _ in st]
        if label == "timed":
            check(names == PASSES + LLVM + ["llvm-codegen-jit", "total"], f"run stages in order: {names}")
            check_tiling(st, "run")
        elif label == "one-tier":
            check(names == PASSES + ["llvm-ir", "llvm-verify", "llvm-optimise-heavy", "llvm-codegen-jit", "total"],
                  f"KILN_OPT=O3: one tier, no link: {names}")
        else:
            check(names == [], "run: no time line without --time")
    ref = outs["plain"]
    check(len(ref) >= 1, f"run wrote its outputs: {sorted(ref)}")
    for label in ("timed", "one-tier"):
        same = sorted(outs[label]) == sorted(ref) and all(
            outs[label][f].dtype == ref[f].dtype and outs[label][f].tobytes() == ref[f].tobytes() for f in ref)
        check(same, f"run outputs bit-identical: plain vs {label}")

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
