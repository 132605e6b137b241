#!/usr/bin/env python3
"""Golden before/after IR tests for every pass of the pipeline.

    run_golden.py KILN GOLDEN_DIR WORK_DIR [--update] [--pass PASS]

For each pass P of the pipeline that has a file GOLDEN_DIR/P.cases, and
each case line in it (`[NAME:] MODEL [kiln inspect options]`, `#`
comments), kiln
runs `kiln inspect MODEL --dump-after X OPTIONS` and the dump is compared
byte for byte with two files:

    GOLDEN_DIR/P/NAME.before   the IR after the pass before P (the input P sees)
    GOLDEN_DIR/P/NAME.after    the IR after P

NAME is MODEL without its extension unless the line names it (a model
used twice with different options).  A reviewer reads `diff NAME.before
NAME.after` to see what P does; a change to P (or to anything before it)
shows up as a diff against the files.  MODEL is a file in GOLDEN_DIR/models
(`.kiln` networks) or one of the ONNX models models.py builds into
WORK_DIR/models.  The pass order comes from `kiln inspect --dump-after list`,
so a new pass needs no change here: add P.cases and run --update.

Also checked, for every case:
  * kiln exits 0 and prints nothing on stderr but the one dump;
  * the dump is the same from a second run with the model at another path
    and KILN_CPU=x86-64 (no pointers, paths or host CPU in the dumps);
  * the pass changes something (after != before beyond the header line):
    a case must show the pass at work;
  * goldens stay readable: at most MAX_LINES lines each;
  * no golden file without a case line, no .cases file for an unknown pass.

--update rewrites the goldens from the current kiln (and deletes stale
ones); review every changed file with `git diff tests/passes/golden` before
committing: an update is an intended change of a pass's output, never a
way to make the test pass.
"""
import argparse
import difflib
import os
import shutil
import subprocess
import sys

MAX_LINES = 150
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
    return cond


def passes_in_order(kiln):
    r = subprocess.run([kiln, "inspect", "--dump-after", "list"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        sys.exit("run_golden: `kiln inspect --dump-after list` failed: " + r.stderr.strip())
    return [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]


def read_cases(path):
    cases = []
    with open(path, encoding="utf-8") as f:
        for ln in f:
            ln = ln.split("#", 1)[0].split()
            name = None
            if ln and ln[0].endswith(":"):
                name, ln = ln[0][:-1], ln[1:]
            if ln:
                cases.append((name or os.path.splitext(ln[0])[0], ln[0], ln[1:]))
    return cases


def dump(kiln, model, pass_name, opts, env=None):
    """The dump after pass_name, or (None, why)."""
    r = subprocess.run([kiln, "inspect", model, "--dump-after", pass_name] + opts,
                       capture_output=True, timeout=300, env=env)
    err = r.stderr.decode("utf-8", "replace")
    if r.returncode != 0:
        return None, f"exit {r.returncode}: {err.strip()[-400:]}"
    if not err.startswith("# kiln: IR after " + pass_name + "\n"):
        return None, f"stderr does not start with the dump header: {err[:200]!r}"
    if "\nkiln:" in err:
        return None, f"stderr holds more than the dump: {err[err.index(chr(10) + 'kiln:'):][:200]!r}"
    return err, None


def show_diff(want, got, path):
    lines = list(difflib.unified_diff(want.splitlines(True), got.splitlines(True), path, "kiln now", n=2))
    sys.stdout.writelines(lines[:80])
    if len(lines) > 80:
        print(f"... ({len(lines) - 80} more diff lines)")


def body(text):
    return text.split("\n", 1)[1] if "\n" in text else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("golden")
    ap.add_argument("work")
    ap.add_argument("--update", action="store_true", help="rewrite the golden files (review the diff!)")
    ap.add_argument("--pass", dest="only", help="only this pass's cases")
    a = ap.parse_args()
    kiln = os.path.abspath(a.kiln)
    order = passes_in_order(kiln)
    check(len(order) >= 2, f"--dump-after list names the passes ({', '.join(order)})")

    models = os.path.join(a.work, "models")
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(models)
    subprocess.run([sys.executable, os.path.join(a.golden, "models.py"), models], check=True)
    elsewhere = os.path.join(a.work, "elsewhere")
    os.makedirs(elsewhere)
    env2 = dict(os.environ, KILN_CPU="x86-64")

    for f in sorted(os.listdir(a.golden)):
        if f.endswith(".cases"):
            check(f[:-6] in order, f"{f}: names a pass of the pipeline")

    for i, p in enumerate(order):
        cases_file = os.path.join(a.golden, p + ".cases")
        if (a.only and p != a.only) or not os.path.exists(cases_file):
            continue
        prev = order[i - 1] if i > 0 else None
        outdir = os.path.join(a.golden, p)
        os.makedirs(outdir, exist_ok=True)
        expected = set()
        for name, model, opts in read_cases(cases_file):
            if not check(f"{name}.after" not in expected, f"{p}/{name}: one case of this name"):
                continue
            expected.add(f"{name}.after")
            src = os.path.join(a.golden, "models", model)
            if not os.path.exists(src):
                src = os.path.join(models, model)
            if not check(os.path.exists(src), f"{p}: {model} exists (golden models/ or models.py)"):
                continue
            copy = os.path.join(elsewhere, model)
            shutil.copyfile(src, copy)
            got = {}
            for which, stage in (("before", prev), ("after", p)):
                if stage is None:
                    continue
                text, why = dump(kiln, src, stage, opts)
                if not check(text is not None, f"{p}/{name}.{which}: kiln inspect --dump-after {stage} {' '.join(opts)}"
                             + ("" if text is not None else f" ({why})")):
                    continue
                text2, _ = dump(kiln, copy, stage, opts, env2)
                check(text2 == text, f"{p}/{name}.{which}: the same dump from another path with KILN_CPU=x86-64")
                got[which] = text
            if "before" in got and "after" in got:
                check(body(got["before"]) != body(got["after"]), f"{p}/{name}: the pass changes the IR")
            for which, text in got.items():
                path = os.path.join(outdir, f"{name}.{which}")
                expected.add(os.path.basename(path))
                nlines = text.count("\n")
                check(nlines <= MAX_LINES, f"{p}/{name}.{which}: {nlines} lines (at most {MAX_LINES})")
                if a.update:
                    old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
                    if old != text:
                        with open(path, "w", encoding="utf-8") as f:
                            f.write(text)
                        print(f"updated {path}")
                    continue
                if not check(os.path.exists(path), f"{p}/{name}.{which}: golden file exists (run with --update)"):
                    continue
                want = open(path, encoding="utf-8").read()
                if not check(want == text, f"{p}/{name}.{which}: dump equals the golden file"):
                    show_diff(want, text, path)
        for f in sorted(os.listdir(outdir)):
            if f not in expected:
                if a.update:
                    os.remove(os.path.join(outdir, f))
                    print(f"removed stale {os.path.join(outdir, f)}")
                else:
                    check(False, f"{p}/{f}: a golden file with no case in {p}.cases")

    if failures:
        print(f"\n{len(failures)} check(s) failed.  If the change of a pass's output is intended, run\n"
              f"  {sys.argv[0]} {a.kiln} {a.golden} {a.work} --update\n"
              "and review `git diff tests/passes/golden` before committing.")
        return 1
    print("all golden dumps match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
