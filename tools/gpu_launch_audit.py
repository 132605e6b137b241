#!/usr/bin/env python3
"""Lists the GPU kernels that run large work on a handful of threads.

Usage:  python3 tools/gpu_launch_audit.py [--threads T] [--train] KILN_BINARY MODEL.onnx [MODEL.onnx ...]

For each model it runs `KILN_BINARY inspect --target cuda MODEL` (with
--train: the training step's kernels, `inspect --train`) and reads
every launch line: name, grid, block, node, and `work` (the launch's
estimated operations: loads, stores and arithmetic, index arithmetic free;
passes/schedule_threads.c's kiln_schedule_work).  A launch is flagged when
its grid is one block of at most T threads (default 32) and its work exceeds 131072
operations (about 64k elements copied, a load and a store each, or 64k
multiply-adds).  It prints one line per flagged launch, then per model the
number of launches and of flagged ones, and the total on the last line.
"""
import re
import subprocess
import sys

LAUNCH = re.compile(r"^  (\w+) +grid \((\d+), (\d+), (\d+)\)  block \((\d+), (\d+), (\d+)\)(?:  node '(.*)' \((\S+)\))?  work (\d+)$")
WORK_MIN = 131072


def audit(kiln, model, threads_max, train):
    cmd = [kiln, "inspect", "--target", "cuda"] + (["--train"] if train else []) + [model]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{model}: kiln inspect failed: {r.stderr.strip()}")
        return 0, 0
    n = flagged = 0
    for line in r.stdout.splitlines():
        m = LAUNCH.match(line)
        if not m:
            continue
        n += 1
        g = [int(m.group(i)) for i in (2, 3, 4)]
        b = [int(m.group(i)) for i in (5, 6, 7)]
        work = int(m.group(10))
        if g[0] * g[1] * g[2] == 1 and b[0] * b[1] * b[2] <= threads_max and work > WORK_MIN:
            flagged += 1
            print(f"  {m.group(1)}: grid {g} block {b} work {work} node '{m.group(8)}' ({m.group(9)})")
    print(f"{model}: {n} launches, {flagged} of <= 1 block x {threads_max} threads with work > {WORK_MIN}")
    return n, flagged


def main():
    args, threads_max, train = sys.argv[1:], 32, False
    while args and args[0].startswith("--"):
        if args[0] == "--train":
            train, args = True, args[1:]
        elif args[0] == "--threads" and len(args) > 1 and args[1].isdigit():
            threads_max, args = int(args[1]), args[2:]
        else:
            break
    if len(args) < 2 or args[0].startswith("--"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    total = 0
    for model in args[1:]:
        total += audit(args[0], model, threads_max, train)[1]
    print(f"total flagged: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
