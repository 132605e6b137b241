#!/usr/bin/env python3
"""Independent acceptance runner: the ONNX backend suite through `kiln run`.

The project's own conformance runners (conformance_llvm.c, conformance_c.c)
link kiln's library and feed it tensors directly.  This one sees kiln only as
a user does: for every case of ../shared/onnx-tests/{node,pytorch-converted,
pytorch-operator,simple} whose ops are all in kiln's op table (ir/ops.def),
it calls the CLI

    kiln run MODEL --input NAME=input_K.pb ... --output DIR --format pb

and compares every output file with the case's output_K.pb using numpy.  The
output files are matched by the tensor name stored in each .pb, not by file
name, so how kiln makes file names from hostile tensor names does not matter.

Tolerance (the same as the C runners, tests/conformance/execute.c):
|got - want| <= atol + rtol * |want|, f32/f64 rtol 1e-4 atol 1e-5 (single
precision rounding of differently ordered sums), f16 1e-3/1e-3, bf16
1e-2/1e-2 (their epsilons are 2^-11 and 2^-8); integers and bools exact; NaN
matches NaN, infinities must match.  Dtype and shape must match exactly.

Cases that use float8/float4/int4/int2 element types, strings, sequences or
optionals are excluded (reported with the reason, never run).

The expectations file lists every case the runner considers:
    <case> pass|known-fail|excluded [reason]
A `pass` case that fails makes the run fail.  A known-fail that passes and a
case absent from the file (a newer onnx may add cases) are reported, never
failures.  --update rewrites the file from the results: review the diff.

usage: run_cli_suite.py KILN SUITE_DIR EXPECT_FILE [--jobs N<=2] [--update]
                        [--only SUBSTRING] [--verbose]
                        [--target T] [--dedicated] [--budget SECONDS]
--target passes `--target T` to kiln run (tools/gpu_check.sh: cuda, with the
cuda_host expectations); --dedicated lifts the two-worker cap (a machine of
one's own); --budget starts no case after SECONDS (the rest are not run and
not counted).
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper

PARTS = ("node", "pytorch-converted", "pytorch-operator", "simple")
HERE = os.path.dirname(os.path.abspath(__file__))
OPS_DEF = os.path.join(HERE, "..", "..", "ir", "ops.def")
TIMEOUT_S = 300
# every program the CLI lowers is verified (ir/loop_verify.c), release builds too
os.environ["KILN_VERIFY_LOOPS"] = "1"

TP = onnx.TensorProto
EXCLUDED_TYPES = {}
for _name in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1",
              "INT4", "UINT4", "INT2", "UINT2", "STRING"):
    if hasattr(TP, _name):
        EXCLUDED_TYPES[getattr(TP, _name)] = _name.lower()


def kiln_ops():
    """ONNX op names of ir/ops.def, plus Constant (the importer turns it
    into a constant value) and Upsample (imported as Resize)."""
    ops = set(re.findall(r'^KILN_OP\(\s*\w+\s*,\s*"(\w+)"', open(OPS_DEF).read(), re.M))
    return ops | {"Constant", "Upsample"}


def type_exclusion(tp):
    """Why a TypeProto is out of scope, or None."""
    which = tp.WhichOneof("value")
    if which == "tensor_type":
        t = tp.tensor_type.elem_type
        return f"element type {EXCLUDED_TYPES[t]}" if t in EXCLUDED_TYPES else None
    if which == "sequence_type":
        return "sequence"
    if which == "optional_type":
        return "optional"
    if which is None:
        return None
    return which.replace("_type", "")


def exclusion(model):
    """Why a case is excluded, or None: excluded element types anywhere in
    the graph (inputs, outputs, value_info, initializers, constants, Cast
    targets), sequences or optionals."""
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        why = type_exclusion(vi.type)
        if why:
            return why
    for t in g.initializer:
        if t.data_type in EXCLUDED_TYPES:
            return f"element type {EXCLUDED_TYPES[t.data_type]}"
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in EXCLUDED_TYPES:
                return f"element type {EXCLUDED_TYPES[a.t.data_type]}"
            if a.name in ("to", "output_dtype", "dtype") and a.type == onnx.AttributeProto.INT \
                    and a.i in EXCLUDED_TYPES:
                return f"element type {EXCLUDED_TYPES[a.i]}"
            if a.type in (onnx.AttributeProto.STRING, onnx.AttributeProto.STRINGS) and n.op_type == "Constant":
                return "string"
    return None


def list_cases(root, ops):
    """(name, dir, model, status) for every case whose ops are all kiln's;
    status is None or the exclusion reason."""
    out = []
    for part in PARTS:
        pdir = os.path.join(root, part)
        if not os.path.isdir(pdir):
            continue
        for case in sorted(os.listdir(pdir)):
            cdir = os.path.join(pdir, case)
            mpath = os.path.join(cdir, "model.onnx")
            if not os.path.isfile(mpath):
                continue
            try:
                model = onnx.load(mpath, load_external_data=False)
            except Exception:  # noqa: BLE001 - an unreadable model is not a case of ours
                continue
            if any(n.domain not in ("", "ai.onnx") or n.op_type not in ops for n in model.graph.node):
                continue
            out.append((f"{part}/{case}", cdir, model, exclusion(model)))
    out.sort(key=lambda c: c[0])
    return out


def tolerance(dtype):
    if dtype == np.float16:
        return 1e-3, 1e-3
    if dtype.name == "bfloat16" or str(dtype) == "bfloat16":
        return 1e-2, 1e-2
    if np.issubdtype(dtype, np.floating):
        return 1e-4, 1e-5
    return 0.0, 0.0


def compare(name, got, want, want_elem):
    """None when got matches want, else one line saying how not."""
    if got.shape != want.shape:
        return f"output '{name}': shape {list(got.shape)}, expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"output '{name}': dtype {got.dtype}, expected {want.dtype}"
    if want_elem == TP.BFLOAT16:
        rtol, atol = 1e-2, 1e-2
    else:
        rtol, atol = tolerance(want.dtype)
    if got.dtype == np.bool_ or not np.issubdtype(got.dtype, np.floating) and want_elem != TP.BFLOAT16:
        bad = got != want
    else:
        g = got.astype(np.float64)
        w = want.astype(np.float64)
        with np.errstate(invalid="ignore"):
            close = np.abs(g - w) <= atol + rtol * np.abs(w)
        close |= np.isnan(g) & np.isnan(w)
        close |= np.isinf(w) & (g == w)
        bad = ~close
    if not bad.any():
        return None
    i = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.shape else ()
    return f"output '{name}': {int(bad.sum())} of {bad.size} elements differ; at {list(i)} got {got[i]!r}, expected {want[i]!r}"


def read_pb(path):
    t = TP()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t


def run_case(kiln, name, cdir, model, target="cpu", deadline=None):
    """'pass', 'fail: reason' or 'skip' (past the deadline)."""
    if deadline and time.time() > deadline:
        return "skip"
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in inits]
    outputs = [o.name for o in g.output]
    sets = sorted(d for d in os.listdir(cdir) if d.startswith("test_data_set_"))
    if not sets:
        return "fail: no test data"
    for ds in sets:
        ddir = os.path.join(cdir, ds)
        args = [kiln, "run", os.path.join(cdir, "model.onnx")] + (["--target", target] if target != "cpu" else [])
        for k, iname in enumerate(inputs):
            f = os.path.join(ddir, f"input_{k}.pb")
            if os.path.exists(f):
                args += ["--input", f"{iname}={f}"]
        with tempfile.TemporaryDirectory(prefix="kiln-cli-suite-") as tmp:
            out = os.path.join(tmp, "out")  # kiln run creates it
            args += ["--output", out, "--format", "pb"]
            try:
                r = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                return f"fail: {ds}: timed out after {TIMEOUT_S} s"
            if r.returncode != 0:
                msg = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
                if r.returncode < 0:
                    msg = f"killed by signal {-r.returncode}"
                return f"fail: {ds}: {msg}"
            got = {}
            for fn in os.listdir(out):
                t = read_pb(os.path.join(out, fn))
                got[t.name] = (numpy_helper.to_array(t), t.data_type)
            for k, oname in enumerate(outputs):
                f = os.path.join(ddir, f"output_{k}.pb")
                if not os.path.exists(f):
                    continue
                wt = read_pb(f)
                if oname not in got:
                    return f"fail: {ds}: kiln wrote no output '{oname}'"
                garr, gtype = got[oname]
                if gtype != wt.data_type:
                    return f"fail: {ds}: output '{oname}': element type {gtype}, expected {wt.data_type}"
                why = compare(oname, garr, numpy_helper.to_array(wt), wt.data_type)
                if why:
                    return f"fail: {ds}: {why}"
    return "pass"


# known-fail reasons that hold on some hosts only: a pass here does not turn
# them into `pass` on --update.  (None today: the bf16 casts that needed
# __truncsfbf2 on AVX2-only hosts are integer code now, ir/loop.h.)
HOST_DEPENDENT = "host-dependent:"


def read_expect(path):
    exp = {}
    if os.path.exists(path):
        for line in open(path):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) >= 2:
                exp[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return exp


HEADER = """\
# ONNX backend-suite expectations for tests/conformance/run_cli_suite.py: every case whose
# ops are all in ir/ops.def, run through the `kiln run` CLI and compared with numpy.
# status: pass | known-fail (reason) | excluded (float8/float4/int4/int2, string, sequence,
# optional: out of scope).  A `pass` that fails makes the test fail.
# Regenerate: run_cli_suite.py KILN SUITE_DIR <this file> --update, then review the diff.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kiln")
    ap.add_argument("suite")
    ap.add_argument("expect")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--update", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--target", default="cpu")
    ap.add_argument("--dedicated", action="store_true")
    ap.add_argument("--budget", type=float, default=0)
    a = ap.parse_args()
    jobs = max(1, a.jobs if a.dedicated else min(a.jobs, 2))  # a shared machine: two workers at most
    deadline = time.time() + a.budget if a.budget else None
    if not os.path.isdir(a.suite):
        print(f"run_cli_suite: {a.suite}: no ONNX backend suite there", file=sys.stderr)
        return 1
    kiln = os.path.abspath(a.kiln)
    cases = [c for c in list_cases(a.suite, kiln_ops()) if a.only in c[0]]
    expect = read_expect(a.expect)
    results = {}
    todo = [c for c in cases if not c[3]]
    for name, _, _, why in cases:
        if why:
            results[name] = ("excluded", why)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(run_case, kiln, n, d, m, a.target, deadline): n for n, d, m, _ in todo}
        for fut in concurrent.futures.as_completed(futs):
            n = futs[fut]
            try:
                r = fut.result()
            except Exception as e:  # noqa: BLE001 - a runner bug must name its case
                r = f"fail: runner error: {type(e).__name__}: {e}"
            if r == "skip":
                continue
            results[n] = ("pass", "") if r == "pass" else ("fail", r[6:])
            if a.verbose:
                print(f"{n}: {r}", flush=True)
    regressions, fixed, new, known = [], [], [], 0
    for n, (st, why) in sorted(results.items()):
        if st == "excluded":
            continue
        want = expect.get(n, (None, ""))[0]
        if want is None:
            new.append((n, st, why))
        elif want == "pass" and st != "pass":
            regressions.append((n, why))
        elif want == "known-fail" and st == "pass":
            fixed.append(n)
        elif st != "pass":
            known += 1
    npass = sum(1 for s, _ in results.values() if s == "pass")
    nexcl = sum(1 for s, _ in results.values() if s == "excluded")
    nrun = len(results) - nexcl
    for n, why in regressions:
        print(f"REGRESSION {n}: {why}")
    for n in fixed:
        print(f"now passes (was known-fail): {n}")
    for n, st, why in new if not a.update else []:
        print(f"new case (not in {os.path.basename(a.expect)}): {n}: {st}{': ' + why if why else ''}")
    print(f"run_cli_suite: {len(results)} cases with kiln's ops: {npass} of {nrun} pass, {nrun - npass} fail "
          f"({known} known), {nexcl} excluded; {len(regressions)} regressions")
    if a.update:
        with open(a.expect, "w") as f:
            f.write(HEADER)
            for n, (st, why) in sorted(results.items()):
                old = expect.get(n, ("", ""))
                if st == "pass" and old[0] == "known-fail" and old[1].startswith(HOST_DEPENDENT):
                    st, why = old  # fails on other hosts: keep it listed
                if st == "fail":
                    old = expect.get(n, ("", ""))
                    st, why = "known-fail", old[1] if old[0] == "known-fail" and old[1] else why
                f.write(f"{n:<70} {st:<11} {why}".rstrip() + "\n")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
