#!/usr/bin/env python3
"""A/B two kiln commands kernel by kernel: least times over alternating rounds.

Usage:  python3 bench/ab_kernels.py OLD NEW MODEL.onnx ROUNDS [THREADS] [all]

OLD and NEW are kiln binaries (or wrapper scripts adding options or
environment, e.g. `exec build/kiln "$@" --lean-memory`).  Each round runs
`OLD run MODEL --random --repeat 15 --warmup 3 --threads T --profile`, then NEW's
(--warmup only where `run --help` lists it: binaries older than it lack it);
every kernel keeps its least median over the rounds.  On a noisy 2-vCPU
host, alternating rounds and least times are what separate a 3% change
from the neighbours' load.  Prints the 12 kernels that moved most (every
kernel with `all`), then both sums of kernel minima and the rounds' totals.
"""
import re
import subprocess
import sys


def main(argv):
    if len(argv) < 5:
        sys.exit(__doc__)
    old, new, model, rounds = argv[1], argv[2], argv[3], int(argv[4])
    threads = argv[5] if len(argv) > 5 else "1"
    best, tot = {}, {}
    warm = {b: ["--warmup", "3"] if "--warmup" in subprocess.run([b, "run", "--help"], capture_output=True,
                                                                  text=True).stdout else [] for b in (old, new)}
    for _ in range(rounds):
        for tag, b in (("old", old), ("new", new)):
            out = subprocess.run([b, "run", model, "--random", "--repeat", "15", *warm[b], "--threads", threads, "--profile"],
                                 capture_output=True, text=True).stdout
            for ln in out.splitlines():
                m = re.match(r"\s*(\d+)\s+([\d.]+)\s+[\d.]+\s+\S+\s+\S+\s+\S+\s+(\S+)", ln)
                if m:
                    k = best.setdefault(m.group(3), {})
                    k[tag] = min(k.get(tag, 1e9), float(m.group(2)))
                m = re.match(r"total\s+([\d.]+)", ln)
                if m:
                    tot.setdefault(tag, []).append(float(m.group(1)))
    rows = sorted(best.items(), key=lambda kv: -abs(kv[1].get("new", 0) - kv[1].get("old", 0)))
    for k, v in (rows if len(argv) > 6 else rows[:12]):
        print(f"{k:50s} old {v.get('old', 0):8.4f} new {v.get('new', 0):8.4f}")
    so = sum(v.get("old", 0) for v in best.values())
    sn = sum(v.get("new", 0) for v in best.values())
    print(f"sum of minima: old {so:.3f} new {sn:.3f}; totals old {sorted(tot.get('old', []))} "
          f"new {sorted(tot.get('new', []))}")


if __name__ == "__main__":
    main(sys.argv)
