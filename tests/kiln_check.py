"""What the Python tests share: one ok/FAIL line per check, a failure
count, and kiln's test helpers loaded by path (the tests run as scripts
from ctest, not as a package).

    from kiln_check import Checks, load      # with tests/ on sys.path
    c = Checks()
    c.check(y == ref, "what was checked")
    return c.exit()                          # prints the count; 1 if any failed
"""
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class Checks:
    def __init__(self):
        self.failures = 0

    def check(self, ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        self.failures += not ok
        return ok

    def exit(self):
        print(f"{self.failures} failure(s)")
        return 1 if self.failures else 0


def load(name, relpath):
    """The module at REPO/relpath (e.g. tests/models/test_zoo_run.py)."""
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def args(argv, doc):
    """(kiln, work dir created) from `SCRIPT KILN WORK_DIR`, or None after printing doc."""
    if len(argv) != 3:
        print(doc)
        return None
    work = Path(argv[2])
    work.mkdir(parents=True, exist_ok=True)
    return argv[1], work
