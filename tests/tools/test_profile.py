#!/usr/bin/env python3
"""kiln run --profile: the table's structure, not its timings.

On the bundled resnet8_cifar (1 and 2 threads) and on the hostile-names
model (make_hostile_model.py), checks that

  - the header names the runs, threads and a positive measured FMA peak;
  - every kernel of the program (the `kernel NAME:` lines of
    --dump-after plan-memory, an independent listing) has exactly one row,
    and the `#` column is each kernel's place in that listing;
  - shares sum to 100 within the rounding of the printed figures (each
    share is rounded to 0.01, so |sum - 100| <= 0.005 * rows + 0.01), and
    the total row says 100.00;
  - the MFLOP column sums to 2 x the model's MACs as `kiln inspect --json`
    counts them (each node's MACs counted on one kernel), to the printed
    rounding;
  - a row's GFLOP/s is its MFLOP / ms (rounding of the printed figures:
    rows under 0.05 ms, with two significant digits or fewer, are skipped);
  - the hostile model's node names come out escaped: no control character
    in the output, one line per kernel row;
  - without --profile no table is printed, and `kiln compile`'s object
    has no reference to the timing hook; with --image it is a one-line
    usage error; --help documents it.

usage: test_profile.py KILN SOURCE_DIR WORK_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HEADER = re.compile(r"^profile: (\d+) kernels, median of (\d+) runs?, (\d+) threads?; FMA peak ([\d.]+) GFLOP/s per core "
                    r"\(measured: FMA-chain loop, (\d+)-bit vectors\) x (\d+) = ([\d.]+) GFLOP/s$")
ROW = re.compile(r"^ *(\d+) +([\d.]+) +([\d.]+) +([\d.]+|-) +([\d.]+|-) +([\d.]+|-)  (\S+)  (.*)$")
TOTAL = re.compile(r"^total +([\d.]+) +([\d.]+) +([\d.]+)")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def kiln(*args):
    r = subprocess.run([KILN] + list(args), capture_output=True, timeout=600)
    if r.returncode != 0:
        sys.exit("kiln %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")[-2000:]))
    return r


def kernels_of(model, extra):
    err = kiln("run", model, "--random", "--dump-after", "plan-memory", *extra).stderr.decode(errors="replace")
    return re.findall(r"^kernel (\S+?):(?:  # .*)?$", err, re.M)  # a fused kernel lists its nodes


def check_profile(model, threads, extra=(), repeat=3, warmup=0):
    tag = "%s (%d threads)" % (os.path.basename(model), threads)
    raw = kiln("run", model, "--random", "--profile", "--repeat", str(repeat), "--threads", str(threads),
               "--warmup", str(warmup), *extra).stdout
    text = raw.decode("utf-8")
    bad = [c for c in text if (ord(c) < 32 and c != "\n") or ord(c) == 127]
    check(not bad, "%s: control characters in the output: %r" % (tag, bad[:5]))
    lines = text.split("\n")
    head = [i for i, l in enumerate(lines) if l.startswith("profile: ")]
    check(len(head) == 1, "%s: one header line" % tag)
    if not head:
        return
    m = HEADER.match(lines[head[0]])
    check(m is not None, "%s: header format: %r" % (tag, lines[head[0]]))
    if not m:
        return
    nk, runs, th, peak, bits, mult, total_peak = m.groups()
    check(int(runs) == repeat and int(th) == threads and int(mult) == threads, "%s: header runs/threads" % tag)
    check(float(peak) > 0 and int(bits) in (128, 256, 512), "%s: peak %s at %s bits" % (tag, peak, bits))
    check(abs(float(total_peak) - float(peak) * threads) <= 0.1 * threads + 0.05, "%s: peak x threads" % tag)
    check(lines[head[0] + 1].split()[:6] == ["#", "ms", "share%", "MFLOP", "GFLOP/s", "%peak"],
          "%s: column header %r" % (tag, lines[head[0] + 1]))
    names = kernels_of(model, extra)
    check(int(nk) == len(names), "%s: %s kernels in the header, %d in the program" % (tag, nk, len(names)))
    rows = []
    for l in lines[head[0] + 2: head[0] + 2 + len(names)]:
        r = ROW.match(l)
        check(r is not None, "%s: row format: %r" % (tag, l[:200]))
        if r:
            rows.append(r.groups())
    tot = TOTAL.match(lines[head[0] + 2 + len(names)])
    check(tot is not None, "%s: total row after the %d kernel rows" % (tag, len(names)))
    by_index = {int(r[0]): r[6] for r in rows}
    check(sorted(by_index) == list(range(len(names))), "%s: # column is a permutation of 0..%d" % (tag, len(names) - 1))
    for i, n in enumerate(names):
        check(by_index.get(i) == n, "%s: kernel %d is %s, row says %s" % (tag, i, n, by_index.get(i)))
    shares = sum(float(r[2]) for r in rows)
    check(abs(shares - 100) <= 0.005 * len(rows) + 0.01, "%s: shares sum to %.3f" % (tag, shares))
    if tot:
        check(tot.group(2) == "100.00", "%s: total share %s" % (tag, tot.group(2)))
    ms = [float(r[1]) for r in rows]
    check(ms == sorted(ms, reverse=True), "%s: rows slowest first" % tag)
    mflop = sum(float(r[3]) for r in rows if r[3] != "-")
    macs = json.loads(kiln("inspect", model, "--json", *extra).stdout)["macs"]
    check(abs(mflop - 2e-6 * macs) <= 0.0005 * len(rows) + 1e-9,
          "%s: MFLOP column sums to %.3f, inspect's MACs give %.3f" % (tag, mflop, 2e-6 * macs))
    if tot:
        check(abs(float(tot.group(3)) - 2e-6 * macs) <= 0.0005 + 1e-9, "%s: total MFLOP" % tag)
    for r in rows:
        if r[3] != "-" and float(r[1]) >= 0.05:
            want = float(r[3]) / float(r[1])
            check(abs(float(r[4]) - want) <= 0.01 * want + 0.01, "%s: %s GFLOP/s %s, MFLOP/ms %.3f" % (tag, r[6], r[4], want))
    return len(rows)


KILN, SRC, WORK = sys.argv[1:4]
os.makedirs(WORK, exist_ok=True)
resnet = os.path.join(SRC, "models", "resnet8_cifar.onnx")
n1 = check_profile(resnet, 1)
check_profile(resnet, 2)
check_profile(resnet, 1, warmup=2)  # warm-up runs stay out of the header's run count
plain = kiln("run", resnet, "--random").stdout.decode()
check("profile:" not in plain and "GFLOP/s" not in plain, "no table without --profile")

bad = subprocess.run([KILN, "run", resnet, "--image", os.path.join(SRC, "models", "squeezenet", "kitten_224.png"),
                      "--profile"], capture_output=True, text=True, timeout=600)
check(bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("kiln: error: ")
      and "--profile" in bad.stderr and not bad.stdout, "--profile with --image: one-line usage error, got %r" % bad.stderr)
help_text = kiln("run", "--help").stdout.decode()
check("--profile" in help_text and "%%" not in help_text, "--help documents --profile")
check("--warmup" in help_text, "--help documents --warmup")

# ahead-of-time objects never carry the timing calls
obj_dir = os.path.join(WORK, "aot")
shutil.rmtree(obj_dir, ignore_errors=True)  # a rerun: kiln compile will not overwrite
kiln("compile", resnet, "-o", obj_dir, "--name", "net")
syms = subprocess.run(["nm", os.path.join(obj_dir, "net.o")], capture_output=True, text=True).stdout
check("kiln_rt_parallel_for" in syms or "net_kernels" in syms, "nm lists the object's symbols")
check("kiln_rt_profile_mark" not in syms, "a compiled object calls kiln_rt_profile_mark")

import make_hostile_model  # noqa: E402  (needs onnx)
import onnx  # noqa: E402
model, _ = make_hostile_model.build(os.path.join(WORK, "marker"))
hostile = os.path.join(WORK, "hostile.onnx")
onnx.save(model, hostile)
check_profile(hostile, 1, extra=("--batch", "1"), repeat=1)
check(not os.path.exists(os.path.join(WORK, "marker")), "hostile payload ran")

if failures:
    sys.exit("%d check(s) failed" % len(failures))
print("profile: ok (resnet8_cifar: %d kernels)" % n1)
