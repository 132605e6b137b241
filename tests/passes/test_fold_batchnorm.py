#!/usr/bin/env python3
"""fold-batchnorm keeps a model's values: kiln on models whose BNs fold vs
a reference run of the original, unfolded model.

Usage:  python3 tests/passes/test_fold_batchnorm.py KILN_BINARY WORK_DIR

The models are the golden ones (tests/passes/golden/models.py: Conv+BN,
Conv with bias+BN, depthwise Conv+BN then grouped ConvTranspose+BN,
Gemm(alpha, beta, transB)+BN, and bn_nofold, whose residual and
training-mode BNs must stay while a third folds), with their weights and
BN parameters replaced by seeded random ones (var in [0.01, 2]: small
variances give large scales, the case folding must get right).  Each case
first checks from `kiln inspect --dump-after fold-batchnorm` how many
BatchNormalization nodes are left (0, or 2 for bn_nofold): a value match
proves nothing if the pass did not run.  The reference is ONNX Runtime
(CPU) on the unfolded model; bn_nofold has a training-mode BN, which
ONNX Runtime's inference sessions do not run, so there the oracle is
onnx.reference.ReferenceEvaluator.

Tolerance: |kiln - ref| <= 1e-5 * |ref| + 1e-6 * max|ref| elementwise.
Folding reassociates (x*W)*s into x*(W*s), with W*s computed in float64
and rounded once (0.5 ulp = 6e-8 relative); each output is a float32 sum
of at most 36 products, whose rounding error is bounded by ~K*eps times
the sum of the terms' magnitudes (~4e-6 relative to that sum), not to the
result: where terms cancel, the error is relative to the output's scale,
hence the absolute term 1e-6 * max|ref|.  A wrong fold is far outside
this: a scale applied on the wrong axis or group, a dropped mean or eps,
or a missing Gemm alpha changes outputs by >= 1% (eps alone is 1e-5 of
var >= 0.01, i.e. >= 5e-4 relative on s).

Prints "PASS name: ..." or "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import models  # noqa: E402

RTOL, ATOL_SCALE = 1e-5, 1e-6
CASES = [(models.conv_bn, 0), (models.conv_bias_bn, 0), (models.grouped_bn, 0), (models.gemm_bn, 0),
         (models.bn_nofold, 2)]


def randomise(m, rng):
    inits = []
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t)
        if t.name.endswith("_var"):
            v = rng.uniform(0.01, 2.0, a.shape)
        elif t.name.endswith("_scale"):
            v = rng.uniform(-2.0, 2.0, a.shape)
        else:
            v = rng.standard_normal(a.shape)
        inits.append(numpy_helper.from_array(v.astype(np.float32), t.name))
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    return m


def shape_of(vi):
    return [d.dim_value for d in vi.type.tensor_type.shape.dim]


def bn_left(kiln, path):
    p = subprocess.run([kiln, "inspect", str(path), "--dump-after", "fold-batchnorm"], capture_output=True, text=True)
    if p.returncode:
        return None, p.stderr.strip()
    return sum(" = BatchNormalization(" in line for line in p.stderr.splitlines() + p.stdout.splitlines()), None


def run_kiln(kiln, path, feeds, tmp):
    args = [kiln, "run", str(path), "--output", str(tmp / "out")]
    for k, v in feeds.items():
        f = tmp / f"in_{k}.npy"
        np.save(f, v)
        args += ["--input", f"{k}={f}"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode:
        return None, f"kiln exited {p.returncode}: {p.stderr.strip()}"
    return {f.stem: np.load(f) for f in (tmp / "out").glob("*.npy")}, None


def main():
    kiln, work = sys.argv[1], Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(10)
    passed = failed = 0
    for make, want_left in CASES:
        name = make.__name__
        tmp = Path(tempfile.mkdtemp(dir=work))
        m = randomise(make(), rng)
        path = tmp / f"{name}.onnx"
        onnx.save(m, path)
        feeds = {i.name: rng.standard_normal(shape_of(i)).astype(np.float32) for i in m.graph.input}
        left, err = bn_left(kiln, path)
        if err is None and left != want_left:
            err = f"{left} BatchNormalization node(s) left after fold-batchnorm, expected {want_left}"
        got = None
        if err is None:
            got, err = run_kiln(kiln, path, feeds, tmp)
        if err is None:
            if want_left:
                ref = ReferenceEvaluator(m).run(None, feeds)
            else:
                ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
            worst = 0.0
            for o, r in zip(m.graph.output, ref):
                g = got.get(o.name)
                if g is None or g.shape != r.shape:
                    err = f"output {o.name}: missing or shape {None if g is None else g.shape} != {r.shape}"
                    break
                tol = RTOL * np.abs(r) + ATOL_SCALE * np.abs(r).max()
                worst = max(worst, float((np.abs(g.astype(np.float64) - r) / tol).max()))
            if err is None and worst > 1:
                err = f"largest error is {worst:.3g} x the tolerance"
        if err:
            failed += 1
            print(f"FAIL {name}: {err}")
        else:
            passed += 1
            print(f"PASS {name}: {want_left} BN left; largest error {worst:.3g} x tolerance")
    # var + eps == 0 in one channel: s would be infinite, so the pass
    # declines (the unfolded model's non-finite values are its own).
    m = models.conv_bn()
    for i, t in enumerate(m.graph.initializer):
        if t.name == "bn_var":
            a = numpy_helper.to_array(t).copy()
            a[1] = -np.float32(1e-5)  # the default epsilon, exactly
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, t.name))
    path = work / "zero_var.onnx"
    onnx.save(m, path)
    left, err = bn_left(kiln, path)
    if err or left != 1:
        failed += 1
        print(f"FAIL zero_var: {err or f'{left} BatchNormalization node(s) left, expected 1 (declined)'}")
    else:
        passed += 1
        print("PASS zero_var: var + eps == 0, the BN stays")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
