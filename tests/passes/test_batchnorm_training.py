#!/usr/bin/env python3
"""BatchNormalization in training mode keeps its statistics as outputs.

Usage:  python3 tests/passes/test_batchnorm_training.py KILN_BINARY WORK_DIR

Opset 14/15 (training_mode=1): Y, running_mean, running_var from `kiln run`
against onnx.reference.ReferenceEvaluator on the same model and inputs
(rank 2 to 5, several momenta and epsilons, one case asking only for
running_var).  ONNX Runtime's CPU provider does not implement training mode
in inference sessions, so the onnx package's reference is the oracle.

Opset 9 (output case #1: Y, mean, var, saved_mean, saved_var): the
ReferenceEvaluator's BatchNormalization_9 returns Y alone, so the five
outputs are checked against the same package's reference helper
onnx.reference.ops.op_batch_normalization._batchnorm_training_mode (saved
mean/var: the batch mean and population variance; mean/var: the running
statistics updated with momentum).

Tolerance: |kiln - ref| <= 1e-6 + 1e-5 * |ref| elementwise.  Both sides are
float32: the reference rounds each of its ~6 operations per element (and
its pairwise float32 sums over <= 360 terms) to float32 (eps 1.2e-7), kiln
sums in float64 blocks (passes/expand_reduce.c); the two differ by a few ulps,
~1e-6 relative at most, and 1e-5 leaves a 10x margin while still catching
any wrong formula (e.g. sample instead of population variance differs by
1/(n-1) >= 0.3%, momentum applied the wrong way round by >= 10%).  The
script prints each output's largest error as a fraction of that tolerance,
and the statistics' max absolute error against float64 NumPy.

Prints "PASS name: ..." or "FAIL name: ..." per case, then "N passed, M
failed"; exit status 1 if any failed.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_batch_normalization import _batchnorm_training_mode

RTOL, ATOL = 1e-5, 1e-6


def model(x_shape, attrs, outputs, opset):
    c = x_shape[1]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    ins += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [c]) for n in ("scale", "bias", "mean", "var")]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, x_shape if o == "y" else [c]) for o in outputs if o]
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], list(outputs), "bn", **attrs)
    g = helper.make_graph([node], "bn", ins, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-test")


def feeds(rng, x_shape):
    c = x_shape[1]
    return {
        "x": (rng.standard_normal(x_shape) * 2 + 0.5).astype(np.float32),
        "scale": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "bias": rng.standard_normal(c).astype(np.float32),
        "mean": rng.standard_normal(c).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, c).astype(np.float32),
    }


def run_kiln(kiln, m, inputs, work, name):
    tmp = Path(tempfile.mkdtemp(dir=work))
    path = tmp / f"{name}.onnx"
    onnx.save(m, path)
    args = [kiln, "run", str(path), "--output", str(tmp / "out")]
    for k, v in inputs.items():
        f = tmp / f"in_{k}.npy"
        np.save(f, v)
        args += ["--input", f"{k}={f}"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode:
        return None, f"kiln exited {p.returncode}: {p.stderr.strip()}"
    return {f.stem: np.load(f) for f in (tmp / "out").glob("*.npy")}, None


def f64_stats(inputs, momentum):
    x = inputs["x"].astype(np.float64)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return mean, var, inputs["mean"] * momentum + mean * (1 - momentum), inputs["var"] * momentum + var * (1 - momentum)


def compare(name, got, want, f64):
    errs, ok = [], True
    for o, ref in want.items():
        k = got.get(o)
        if k is None or k.shape != ref.shape:
            return False, f"output {o}: kiln gave {None if k is None else k.shape}, reference {ref.shape}"
        bad = np.abs(k.astype(np.float64) - ref) > ATOL + RTOL * np.abs(ref)
        e = float(np.max(np.abs(k.astype(np.float64) - ref) / (ATOL + RTOL * np.abs(ref))))
        s = f"{o} {e:.2f}x tol"
        if o in f64:
            s += f" (f64 {float(np.max(np.abs(k - f64[o]))):.1e})"
        errs.append(s)
        if bad.any():
            i = np.unravel_index(np.argmax(bad), bad.shape)
            ok = False
            errs.append(f"{o}{list(i)}: got {k[i]!r}, want {ref[i]!r}")
    return ok, ", ".join(errs)


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    kiln, work = argv[1], Path(argv[2])
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    results = []
    # opset 14/15, training_mode=1, against the ReferenceEvaluator
    cases = [
        ("rank2", (6, 3), {}, 15),
        ("rank3_momentum_0.5", (4, 5, 7), {"momentum": 0.5}, 15),
        ("rank4_eps", (3, 4, 5, 6), {"epsilon": 1e-2, "momentum": 0.8}, 15),
        ("rank5", (2, 3, 2, 3, 4), {"momentum": 0.99}, 14),
        ("batch1", (1, 2, 9, 9), {}, 15),
    ]
    for name, shape, attrs, opset in cases:
        attrs = dict(attrs, training_mode=1)
        for outputs in (("y", "running_mean", "running_var"), ("y", "", "running_var")):
            case = name + ("" if outputs[1] else "_var_only")
            m = model(shape, attrs, outputs, opset)
            inputs = feeds(rng, shape)
            ref = ReferenceEvaluator(m).run(None, inputs)
            want = {o: r.astype(np.float64) for o, r in zip([o for o in outputs if o], ref)}
            got, err = run_kiln(kiln, m, inputs, work, case)
            if err:
                results.append((False, case, err))
                continue
            _, _, rm, rv = f64_stats(inputs, attrs.get("momentum", 0.9))
            results.append((*compare(case, got, want, {"running_mean": rm, "running_var": rv}), ))
            results[-1] = (results[-1][0], case, results[-1][1])
    # opset 9: five outputs, against _batchnorm_training_mode
    for name, shape, momentum in (("opset9_rank4", (3, 4, 5, 5), 0.9), ("opset9_rank3", (5, 2, 8), 0.7)):
        outputs = ("y", "mean_out", "var_out", "saved_mean", "saved_var")
        m = model(shape, {"momentum": momentum, "epsilon": 1e-5}, outputs, 9)
        inputs = feeds(rng, shape)
        y, sm, sv, om, ov = _batchnorm_training_mode(inputs["x"], inputs["scale"], inputs["bias"], inputs["mean"],
                                                     inputs["var"], momentum=momentum, epsilon=1e-5)
        want = {"y": y, "mean_out": om, "var_out": ov, "saved_mean": sm, "saved_var": sv}
        want = {k: np.asarray(v, dtype=np.float64) for k, v in want.items()}
        got, err = run_kiln(kiln, m, inputs, work, name)
        if err:
            results.append((False, name, err))
            continue
        mean, var, rm, rv = f64_stats(inputs, momentum)
        ok, msg = compare(name, got, want, {"saved_mean": mean, "saved_var": var, "mean_out": rm, "var_out": rv})
        results.append((ok, name, msg))
    # opset 15 has no saved_mean/saved_var: a one-line error, no output
    m = model((2, 3, 4), {"training_mode": 1}, ("y", "rm", "rv", "sm", "sv"), 15)
    got, err = run_kiln(kiln, m, feeds(rng, (2, 3, 4)), work, "opset15_five_outputs")
    want = "node 'bn' (BatchNormalization): has 5 outputs, BatchNormalization gives 1 to 3 since opset 14"
    ok = got is None and want in (err or "") and err.count("\n") == 0
    results.append((ok, "opset15_five_outputs_rejected", err or "kiln accepted it"))
    passed = sum(ok for ok, _, _ in results)
    for ok, name, msg in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {msg}")
    print(f"{passed} passed, {len(results) - passed} failed (tolerance {ATOL:g} + {RTOL:g}*|ref|)")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
