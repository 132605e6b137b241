#!/usr/bin/env python3
"""State across runs through every way kiln runs a model (passes/state.c,
runtime/kiln_runtime.c, backends/c/c_emit.c).

Usage:  python3 tests/passes/test_state_cli.py KILN_BINARY WORK_DIR

The model: initializer `count` (f32[1,4], [0,10,20,30]) is state, updated in
place by `next = Add(count, x)` (metadata kiln.state = "count=next"); the
outputs are `next` and `y = 2 * Reshape(next)` (a Reshape of state is read
after the update).  After r runs with input x, next = count0 + r * x and
y = 2 * next, computed here in float64 NumPy (exact: small integers).

Checked:
  - `kiln run --repeat R` for R = 1, 2, 3 (state initialised once per process);
  - `kiln compile`: a C program (cc) creates two instances through the
    header API; instance A runs 3 times (1x, 2x, 3x the step), B once (1x,
    untouched by A); PREFIX_state(A) holds the state; PREFIX_reset_state
    restarts A;
  - `kiln emit-c` with const-array weights and with --weights-file: the same
    program against the generated C API (two caller-owned state blocks),
    compiled with -std=c99 -Wall -Wextra -Wpedantic -Werror, and the
    generated example main.c run on x.npy;
  - bad kiln.state metadata: one-line error, exit status 1, nothing written.
Exact equality: every value is a small integer in float32.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

COUNT0 = np.array([[0, 10, 20, 30]], np.float32)
X = np.array([[1, 2, 3, 4]], np.float32)


def model(path, state="count=next"):
    nodes = [helper.make_node("Add", ["count", "x"], ["next"], name="inc"),
             helper.make_node("Reshape", ["next", "shp"], ["flat"], name="rs"),
             helper.make_node("Mul", ["flat", "two"], ["y"], name="dbl")]
    g = helper.make_graph(nodes, "counter", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("next", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                          [numpy_helper.from_array(COUNT0, "count"),
                           numpy_helper.from_array(np.array([4], np.int64), "shp"),
                           numpy_helper.from_array(np.array([2], np.float32), "two")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.metadata_props.append(onnx.StringStringEntryProto(key="kiln.state", value=state))
    onnx.save(m, path)


def want(r):
    nxt = COUNT0.astype(np.float64) + r * X.astype(np.float64)
    return nxt.reshape(-1), 2 * nxt.reshape(-1)


FAILS = []


def check(name, cond, detail=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else ": " + detail))
    if not cond:
        FAILS.append(name)


def run(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:  # a program that failed to build
        return subprocess.CompletedProcess(cmd, 127, "", str(e))


def parse(text):
    """Lines 'TAG v0 v1 ...' -> {TAG: array}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = np.array([float(v) for v in parts[1:]])
    return out


COMPILE_DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "ctr.h"
static void show(const char *tag, const float *v, int n) {
  printf("%s", tag);
  for (int i = 0; i < n; i++) printf(" %.9g", v[i]);
  printf("\n");
}
int main(int argc, char **argv) {
  (void)argc;
  ctr_model *a, *b;
  const float x[4] = {1, 2, 3, 4};
  float next[4], y[4];
  if (ctr_create(argv[1], &a) != KILN_RT_OK || ctr_create(argv[1], &b) != KILN_RT_OK) return 1;
  for (int r = 1; r <= 3; r++) {
    if (ctr_run(a, x, next, y) != KILN_RT_OK) return 1;
    char tag[16];
    snprintf(tag, sizeof tag, "A%d", r); show(tag, next, 4);
    snprintf(tag, sizeof tag, "Y%d", r); show(tag, y, 4);
  }
  if (ctr_run(b, x, next, y) != KILN_RT_OK) return 1;
  show("B1", next, 4);
  show("SA", (const float *)ctr_state(a), 4);
  printf("BYTES %d\n", (int)CTR_STATE_BYTES);
  ctr_reset_state(a);
  if (ctr_run(a, x, next, y) != KILN_RT_OK) return 1;
  show("R1", next, 4);
  ctr_destroy(a);
  ctr_destroy(b);
  return 0;
}
"""

EMIT_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ctr.h"
static void show(const char *tag, const float *v, int n) {
  int i;
  printf("%s", tag);
  for (i = 0; i < n; i++) printf(" %.9g", v[i]);
  printf("\n");
}
static void *read_all(const char *path) {
  FILE *f;
  long len;
  char *buf;
  if (!path) return NULL;
  f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)len + 1);
  if (fread(buf, 1, (size_t)len, f) != (size_t)len) { free(buf); buf = NULL; }
  fclose(f);
  return buf;
}
int main(int argc, char **argv) {
  static unsigned char sa[CTR_STATE_SIZE], sb[CTR_STATE_SIZE], ws[CTR_WORKSPACE_SIZE];
  const float x[4] = {1, 2, 3, 4};
  float next[4], y[4];
  void *weights = read_all(argc > 1 ? argv[1] : NULL);
  const void *in[1];
  void *out[2];
  int r;
  in[0] = x;
  out[0] = next;
  out[1] = y;
  ctr_state_init(weights, sa);
  ctr_state_init(weights, sb);
  for (r = 1; r <= 3; r++) {
    char tag[16];
    if (ctr_run_v(weights, in, out, sa, ws) != 0) return 1;
    sprintf(tag, "A%d", r); show(tag, next, 4);
    sprintf(tag, "Y%d", r); show(tag, y, 4);
  }
  if (ctr_run_v(weights, in, out, sb, ws) != 0) return 1;
  show("B1", next, 4);
  free(weights);
  return 0;
}
"""


def check_runs(prefix, got, reset=True):
    for r in (1, 2, 3):
        n, y = want(r)
        check(f"{prefix}: instance A run {r}", np.array_equal(got.get(f"A{r}"), n), f"{got.get(f'A{r}')} != {n}")
        check(f"{prefix}: instance A run {r}, y", np.array_equal(got.get(f"Y{r}"), y), f"{got.get(f'Y{r}')} != {y}")
    n, _ = want(1)
    check(f"{prefix}: instance B's first run is not affected by A", np.array_equal(got.get("B1"), n), str(got.get("B1")))


def main():
    kiln, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    m = os.path.join(work, "counter.onnx")
    model(m)
    np.save(os.path.join(work, "x.npy"), X)

    # kiln run --repeat R: the state starts at count0 in each process
    for r in (1, 2, 3):
        out = os.path.join(work, f"run{r}")
        p = run([kiln, "run", m, "--input", "x=" + os.path.join(work, "x.npy"), "--repeat", str(r), "--output", out])
        ok = p.returncode == 0
        n, y = want(r)
        check(f"run --repeat {r}: next", ok and np.array_equal(np.load(os.path.join(out, "next.npy")).reshape(-1), n),
              p.stderr.strip())
        check(f"run --repeat {r}: y", ok and np.array_equal(np.load(os.path.join(out, "y.npy")), y), p.stderr.strip())

    # kiln compile: two instances through the header API
    cdir = os.path.join(work, "compiled")
    p = run([kiln, "compile", m, "-o", cdir, "--name", "ctr"])
    check("compile", p.returncode == 0, p.stderr.strip())
    with open(os.path.join(work, "drive_compiled.c"), "w") as f:
        f.write(COMPILE_DRIVER)
    exe = os.path.join(work, "drive_compiled")
    p = run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-I", cdir, "-o", exe,
             os.path.join(work, "drive_compiled.c"), os.path.join(cdir, "ctr.o"), os.path.join(cdir, "kiln_runtime.c"),
             "-lm", "-pthread"])
    check("compile: driver builds", p.returncode == 0, p.stderr.strip())
    p = run([exe, os.path.join(cdir, "ctr.weights")])
    check("compile: driver runs", p.returncode == 0, p.stderr.strip())
    got = parse(p.stdout)
    check_runs("compile", got)
    check("compile: ctr_state(A) holds A's state after 3 runs", np.array_equal(got.get("SA"), want(3)[0]), str(got.get("SA")))
    check("compile: CTR_STATE_BYTES", got.get("BYTES") is not None and got["BYTES"][0] == 64, str(got.get("BYTES")))
    check("compile: reset_state restarts A", np.array_equal(got.get("R1"), want(1)[0]), str(got.get("R1")))

    # kiln emit-c: const-array weights, and a weights file
    for mode, extra in (("arrays", []), ("weights-file", ["--weights-file"])):
        edir = os.path.join(work, "emit_" + mode)
        p = run([kiln, "emit-c", m, "-o", edir, "--name", "ctr"] + extra)
        check(f"emit-c {mode}", p.returncode == 0, p.stderr.strip())
        with open(os.path.join(work, "drive_emit.c"), "w") as f:
            f.write(EMIT_DRIVER)
        srcs = [os.path.join(edir, "ctr.c")] + ([os.path.join(edir, "ctr_weights.c")] if not extra else [])
        exe = os.path.join(edir, "drive")
        flags = ["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", edir]
        p = run(flags + ["-o", exe, os.path.join(work, "drive_emit.c")] + srcs + ["-lm"])
        check(f"emit-c {mode}: driver builds", p.returncode == 0, p.stderr.strip())
        p = run([exe] + ([os.path.join(edir, "ctr.weights")] if extra else []))
        check(f"emit-c {mode}: driver runs", p.returncode == 0, p.stderr.strip())
        check_runs(f"emit-c {mode}", parse(p.stdout))
        # the generated example main.c: one run from the initial state
        exe = os.path.join(edir, "run_model")
        p = run(flags + ["-o", exe, os.path.join(edir, "main.c")] + srcs + ["-lm"])
        check(f"emit-c {mode}: example main.c builds", p.returncode == 0, p.stderr.strip())
        outdir = os.path.join(edir, "out")
        os.makedirs(outdir, exist_ok=True)
        p = run([exe] + (["--weights", os.path.join(edir, "ctr.weights")] if extra else [])
                + [os.path.join(work, "x.npy"), outdir])
        ok = p.returncode == 0
        check(f"emit-c {mode}: example main.c output",
              ok and np.array_equal(np.load(os.path.join(outdir, "output_0.npy")).reshape(-1), want(1)[0]),
              p.stderr.strip())

    # bad metadata: one line, exit 1, no output written
    for state, msg in (("count", "is not PARAM=VALUE"), ("nosuch=next", "'nosuch' is not an initializer"),
                       ("count=nosuch", "'nosuch' is not computed by a node"),
                       ("count=next,count=y", "is named twice")):
        bad = os.path.join(work, "bad.onnx")
        model(bad, state)
        out = os.path.join(work, "bad_out")
        p = run([kiln, "run", bad, "--input", "x=" + os.path.join(work, "x.npy"), "--output", out])
        lines = p.stderr.strip().splitlines()
        check(f"bad kiln.state '{state}'", p.returncode == 1 and len(lines) == 1 and lines[0].startswith("kiln: error: ")
              and msg in lines[0] and not os.path.exists(out), p.stderr.strip())

    print(f"{len(FAILS)} failed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
