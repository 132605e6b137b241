#!/usr/bin/env python3
"""End-to-end check of the DSL model definitions in models/*.kiln.

Usage:  python3 tests/models/test_dsl_models.py KILN_BINARY WORK_DIR [name ...]

For each network (default: all of MODELS below) it
  1. runs `kiln inspect --json models/NAME.kiln` and compares the learnable
     parameter count (BatchNorm running statistics excluded) with the
     published figure, and the output shape with the expected one;
  2. runs `kiln export models/NAME.kiln -o WORK_DIR/NAME.onnx` and checks the
     file with onnx.checker (full check, with shape inference) and that its
     opset is 17 or newer;
  3. draws a batch-1 input from np.random.default_rng(0) (standard normal),
     runs the exported model in ONNX Runtime (one thread, graph
     optimisations off: the graph as written) and `kiln run` on the .kiln
     file itself, and compares the outputs: max|kiln - ort| / max|ort| must
     be <= 1e-4 (the tolerance of tests/models/test_zoo_run.py, which
     explains it), and a classifier's top-5 classes must agree.
Then it checks weights loading: LeNet-5 re-reads its own exported weights
by name from the .onnx file and from .npz archives (np.savez and
np.savez_compressed) with a different seed, and must compute exactly what
the original computes; and LeNet-5 at batch 2 must match ONNX Runtime
(the batch dim stays symbolic through the export).

A model kiln cannot compile (e.g. "X is not yet supported by kiln's code
generators") counts as FAILED with kiln's message on its line.  Prints one
line per check ("PASS ..." / "FAIL ..."), then "N passed, M failed"; the
exit status is 1 if anything failed.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
TIMEOUT_S = 1800
MAX_REL_ERR = 1e-4

# name: (published learnable parameters, output shape at batch N)
MODELS = {
    "lenet5": (61_706, ["N", 10]),
    "alexnet": (61_100_840, ["N", 1000]),      # torchvision
    "vgg16": (138_357_544, ["N", 1000]),
    "resnet18": (11_689_512, ["N", 1000]),
    "resnet50": (25_557_032, ["N", 1000]),
    "mobilenet_v2": (3_504_872, ["N", 1000]),
    "densenet121": (7_978_856, ["N", 1000]),
    "unet2d": (1_942_306, ["N", 2, 128, 128]),  # models/gen/zoo2.py's figure
    "cnn3d": (17_674, ["N", 2]),                # models/gen/zoo2.py's figure
}


class Tally:
    def __init__(self):
        self.passed = self.failed = 0

    def ok(self, what):
        self.passed += 1
        print(f"PASS {what}", flush=True)

    def fail(self, what):
        self.failed += 1
        print(f"FAIL {what}", flush=True)

    def check(self, cond, what, why=""):
        self.ok(what) if cond else self.fail(f"{what}: {why}")
        return cond


def kiln(binary, *args):
    """(returncode, stdout, stderr) of one kiln command."""
    p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT_S)
    return p.returncode, p.stdout, p.stderr.strip()


def real_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [(vi.name, [d.dim_value if d.HasField("dim_value") else None
                       for d in vi.type.tensor_type.shape.dim])
            for vi in model.graph.input if vi.name not in inits]


def run_ort(path, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_kiln(binary, model, feeds, work):
    """kiln run MODEL on feeds -> (outputs, None) or (None, error)."""
    out_dir = Path(tempfile.mkdtemp(dir=work))
    args = ["run", model, "--output", out_dir]
    for name, arr in feeds.items():
        f = out_dir / f"in_{name}.npy"
        np.save(f, arr)
        args += ["--input", f"{name}={f}"]
    rc, _, err = kiln(binary, *args)
    if rc:
        return None, err.splitlines()[0] if err else f"exit status {rc}"
    return {p.stem: np.load(p) for p in out_dir.glob("*.npy") if not p.stem.startswith("in_")}, None


def compare(t, what, got, ref):
    for name, o in ref.items():
        k = got.get(name)
        if k is None or k.shape != o.shape:
            t.fail(f"{what}: output {name}: kiln gave {None if k is None else k.shape}, ORT {o.shape}")
            continue
        err = float(np.max(np.abs(k - o)) / max(float(np.max(np.abs(o))), 1e-30))
        msg = f"{what}: output {name} {list(o.shape)}: max rel err {err:.2e}"
        if o.ndim == 2 and o.shape[1] >= 5:
            same = all((np.argsort(-k[i])[:5] == np.argsort(-o[i])[:5]).all() for i in range(o.shape[0]))
            t.check(err <= MAX_REL_ERR and same, msg + ", top-5 agree", "top-5 differ" if not same else "too large")
        else:
            t.check(err <= MAX_REL_ERR, msg, "too large")


def check_model(t, binary, name, work):
    params, out_shape = MODELS[name]
    src = MODELS_DIR / f"{name}.kiln"
    rc, out, err = kiln(binary, "inspect", "--json", src)
    if rc:
        t.fail(f"{name}: kiln inspect: {err}")
        return
    info = json.loads(out)
    t.check(info["params"] == params, f"{name}: params = {info['params']:,}", f"published {params:,}")
    t.check(info["outputs"][0]["shape"] == out_shape, f"{name}: output shape {info['outputs'][0]['shape']}",
            f"expected {out_shape}")
    onnx_path = Path(work) / f"{name}.onnx"
    rc, _, err = kiln(binary, "export", src, "-o", onnx_path)
    if rc:
        t.fail(f"{name}: kiln export: {err}")
        return
    model = onnx.load(str(onnx_path))
    try:
        onnx.checker.check_model(model, full_check=True)
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        t.check(opset >= 17, f"{name}: exported ONNX passes onnx.checker (opset {opset})", "opset < 17")
    except Exception as e:  # noqa: BLE001 - the checker's message is the finding
        t.fail(f"{name}: onnx.checker: {str(e).splitlines()[0]}")
        return
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal([d or 1 for d in dims], dtype=np.float32) for n, dims in real_inputs(model)}
    ref = run_ort(onnx_path, feeds)
    got, err = run_kiln(binary, src, feeds, work)
    if got is None:
        t.fail(f"{name}: kiln run: {err}")
        return
    compare(t, f"{name}: kiln run vs ONNX Runtime", got, ref)


LENET_WITH_WEIGHTS = """
network lenet5 {{
  weights "{weights}"
  seed 12345           # ignored: every parameter comes from the file
  input image: [N, 1, 32, 32]
  c1: conv(6, 5x5) -> tanh -> s2: avgpool(2x2)
  c3: conv(16, 5x5) -> tanh -> s4: avgpool(2x2)
  c5: conv(120, 5x5) -> tanh -> flatten
  f6: dense(84) -> tanh
  f7: dense(10)
  output logits
}}
"""


def check_weights(t, binary, work):
    """LeNet-5 reloads its exported weights by name (.onnx, .npz stored and deflated)."""
    work = Path(work)
    exported = work / "lenet5_w.onnx"
    rc, _, err = kiln(binary, "export", MODELS_DIR / "lenet5.kiln", "-o", exported)
    if rc:
        t.fail(f"weights: kiln export: {err}")
        return
    model = onnx.load(str(exported))
    arrays = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.savez(work / "lenet5_w.npz", **arrays)
    np.savez_compressed(work / "lenet5_wz.npz", **{k: v.astype(np.float64) for k, v in arrays.items()})
    feeds = {"image": np.random.default_rng(1).standard_normal([2, 1, 32, 32], dtype=np.float32)}
    ref = run_ort(exported, feeds)
    base, err = run_kiln(binary, MODELS_DIR / "lenet5.kiln", feeds, work)
    if base is None:
        t.fail(f"weights: kiln run lenet5 (batch 2): {err}")
        return
    compare(t, "lenet5 at batch 2: kiln run vs ONNX Runtime", base, ref)
    for weights in ("lenet5_w.onnx", "lenet5_w.npz", "lenet5_wz.npz"):
        src = work / f"lenet5_from_{weights.replace('.', '_')}.kiln"
        src.write_text(LENET_WITH_WEIGHTS.format(weights=weights))
        got, err = run_kiln(binary, src, feeds, work)
        if got is None:
            t.fail(f"weights from {weights}: {err}")
            continue
        same = all(np.array_equal(got[k], base[k]) for k in base)
        t.check(same, f"weights from {weights}: outputs identical to the original's", "outputs differ")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, work = sys.argv[1], Path(sys.argv[2])
    names = sys.argv[3:] or list(MODELS)
    work.mkdir(parents=True, exist_ok=True)
    t = Tally()
    for name in names:
        if name == "weights":
            check_weights(t, binary, work)
        elif name not in MODELS:
            t.fail(f"{name}: no such model (have {', '.join(MODELS)}, weights)")
        else:
            check_model(t, binary, name, work)
    if not sys.argv[3:]:
        check_weights(t, binary, work)
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
