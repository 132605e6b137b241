#!/usr/bin/env python3
"""End-to-end check of `kiln inspect --json` against the model zoo.

Usage:  python3 tests/models/test_zoo_inspect.py KILN_BINARY CACHE_DIR [name ...]

Generates the zoo models (models/gen/zoo.py, imported by path) into CACHE_DIR,
reusing files that are newer than zoo.py, then runs
`KILN_BINARY inspect --json MODEL` on each and compares the one JSON object
kiln prints with zoo.EXPECTED, which zoo.py computes independently of kiln:
params, bn_stats, macs, opset, and each input's and output's name, dtype and
shape (a symbolic dim is its name string, e.g. ["N", 3, 224, 224]). Every
check prints "PASS model: ..." or "FAIL model: expected X got Y"; the last
line is "N passed, M failed", and the exit status is 1 if anything failed.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ZOO_PATH = REPO / "models" / "gen" / "zoo.py"
SCALAR_FIELDS = ("params", "bn_stats", "macs", "opset")
IO_FIELDS = ("name", "dtype", "shape")
INSPECT_TIMEOUT_S = 600


class Tally:
    """Prints one line per check and counts the results."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, model, what, expected, got):
        if expected == got:
            self.passed += 1
            print(f"PASS {model}: {what} = {json.dumps(got)}")
        else:
            self.failed += 1
            print(f"FAIL {model}: {what}: expected {json.dumps(expected)} got {json.dumps(got)}")

    def fail(self, model, why):
        self.failed += 1
        print(f"FAIL {model}: {why}")

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def load_zoo():
    sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
    spec = importlib.util.spec_from_file_location("kiln_zoo", ZOO_PATH)
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    return zoo


def run_inspect(kiln, model_path):
    """Returns (report dict, None) or (None, reason for failure)."""
    try:
        proc = subprocess.run([kiln, "inspect", "--json", str(model_path)],
                              capture_output=True, text=True, timeout=INSPECT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"kiln inspect timed out after {INSPECT_TIMEOUT_S}s"
    if proc.returncode != 0:
        return None, f"kiln inspect exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        return None, f"stdout is not one JSON object ({e}): {proc.stdout[:200]!r}"
    if not isinstance(report, dict):
        return None, f"stdout JSON is not an object: {proc.stdout[:200]!r}"
    return report, None


def check_io(tally, model, kind, expected, got):
    """Compare the "inputs" or "outputs" lists entry by entry."""
    if not isinstance(got, list):
        tally.check(model, kind, expected, got)
        return
    tally.check(model, f"{kind} count", len(expected), len(got))
    for i, (exp, act) in enumerate(zip(expected, got)):
        act = act if isinstance(act, dict) else {}
        for field in IO_FIELDS:
            tally.check(model, f"{kind}[{i}].{field}", exp[field], act.get(field))


def check_model(tally, model, expected, report):
    for field in SCALAR_FIELDS:
        tally.check(model, field, expected[field], report.get(field))
    check_io(tally, model, "inputs", expected["inputs"], report.get("inputs"))
    check_io(tally, model, "outputs", expected["outputs"], report.get("outputs"))


def main(argv):
    if len(argv) < 3:
        print(__doc__.split("Usage:")[1].split("\n\n")[0].strip(), file=sys.stderr)
        return 2
    kiln, cache_dir, names = argv[1], argv[2], argv[3:]
    tally = Tally()
    if not (os.path.isfile(kiln) and os.access(kiln, os.X_OK)):
        print(f"ERROR: kiln binary {kiln!r} does not exist or is not executable",
              file=sys.stderr)
        tally.fail("setup", f"kiln binary {kiln!r} not found")
        return tally.summary()
    zoo = load_zoo()
    paths = zoo.generate(cache_dir, names or None, log=lambda msg: print(f"# {msg}"))
    for model, path in paths.items():
        report, error = run_inspect(kiln, path)
        if error:
            tally.fail(model, error)
        else:
            check_model(tally, model, zoo.EXPECTED[model], report)
    return tally.summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
