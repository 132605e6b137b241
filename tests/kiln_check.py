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


def onnx_case(m, inputs, outputs, work, rng):
    """A model builder's case written out and its reference computed: m (a
    test's builder: .name, .save(path, inputs, outputs)) saved as
    WORK/NAME/model.onnx, one rng.uniform(-2, 2) float32 feed per (name,
    shape) in inputs saved beside it as NAME.npy, and ONNX Runtime's outputs
    with its graph optimisations off (the unfused reference).  Returns
    (folder, model path, feeds, ORT's outputs in `outputs` order)."""
    import os

    import numpy as np
    import onnxruntime as ort

    d = os.path.join(str(work), m.name)
    os.makedirs(d)
    path = os.path.join(d, "model.onnx")
    m.save(path, inputs, outputs)
    feeds = {n: rng.uniform(-2, 2, s).astype(np.float32) for n, s in inputs}
    for n, v in feeds.items():
        np.save(os.path.join(d, n + ".npy"), v)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(outputs, feeds)
    return d, path, feeds, ref
