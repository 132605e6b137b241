#!/usr/bin/env python3
"""widen-f16 (passes/widen_f16.c): same results, f32 storage.

Usage:  python3 tests/passes/test_widen_f16.py KILN_BINARY WORK_DIR

On a CPU target kiln keeps the f16 tensors inside an inference graph as f32
buffers holding the values the f16 tensors would hold (kiln.RoundTo after
every node that computes).  The claim is exactness, so the check is
bitwise: for the real float16 SqueezeNet (models/squeezenet, trained
weights) and the golden f16_fire model (tests/passes/golden/models.py:
Conv, Relu, MaxPool, Concat read as a graph output and by a pool, a Cast to
f16 inside, an f32 side input), the outputs of `kiln run` and `kiln run
--keep-f16` (narrow storage, the pass off) are compared bit for bit on two
seeded inputs each.  Both are also compared with ONNX Runtime (f16 in,
f16 out): an independent reference that rounds differently inside its
kernels, so the bound is not equality: TOL_ULPS f16 ulps for f16_fire,
PROB_ATOL on SqueezeNet's probabilities, whose top-1 class must agree.

Also checked on the IR (`--dump-after plan-memory`): by default no f16
buffer is left but the graph's inputs and outputs; with --keep-f16 the
workspace has f16 buffers; `--target cuda-host` keeps f16 (GPU storage
stays narrow).  And the hostile-names model (tests/tools/make_hostile_model.py)
in float16: the names the pass derives from hostile ones run, dump, and
print as C that compiles strictly, without running the payload.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import REPO, Checks, args, load  # noqa: E402

C = Checks()
check = C.check
TOL_ULPS = 4  # f16_fire, ORT vs kiln: three nodes deep, each rounding to f16 (1 ulp each) after sums in different orders
PROB_ATOL = 5e-3  # SqueezeNet's probabilities, as tests/tools/test_run_image.py: 26 f16 conv layers, input quantised to f16



def ulp16(a):
    a = np.maximum(np.abs(a.astype(np.float64)), 2.0 ** -14)
    return 2.0 ** (np.floor(np.log2(a)) - 10)


def buffers(dump):
    """{name: (dtype, kind)} of the loop IR's buffer lines."""
    out = {}
    for m in re.finditer(r"^buffer %(\S+) : (\w+)\[\d+\] (\w+)", dump, re.M):
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def hostile_f16(kiln, work):
    """tests/tools/make_hostile_model.py's model (every name hostile) in
    float16: the names widen-f16 makes from them (NAME_f32, NAME_round...)
    run, dump and print as C like any other (no payload runs)."""
    sys.path.insert(0, str(REPO / "tests" / "tools"))
    import make_hostile_model
    marker = work / "MARKER"
    m, _ = make_hostile_model.build(str(marker))
    g = m.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    path = work / "hostile16.onnx"
    path.write_bytes(m.SerializeToString())
    r = subprocess.run([kiln, "run", str(path), "--random", "--batch", "2", "--dump-after", "widen-f16"],
                       capture_output=True, text=True, errors="replace")
    check(r.returncode == 0 and "kiln.RoundTo" in r.stderr, "hostile names, f16: run and dump after widen-f16")
    out = work / "hostile16_c"
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([kiln, "emit-c", str(path), "-o", str(out), "--name", "net"], capture_output=True, text=True)
    cc = subprocess.run([os.environ.get("CC", "cc"), "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-c",
                         str(out / "net.c"), "-o", str(out / "net.o")], capture_output=True, text=True)
    check(r.returncode == 0 and cc.returncode == 0, f"hostile names, f16: emit-c compiles strictly ({cc.stderr[-200:]})")
    check(not marker.exists(), "hostile names, f16: the payload never ran")


def main(argv):
    a = args(argv, __doc__)
    if not a:
        return 2
    kiln, work = a
    zoo_run = load("zoo_run", "tests/models/test_zoo_run.py")
    golden = load("golden_models", "tests/passes/golden/models.py")
    fire = work / "f16_fire.onnx"
    fire.write_bytes(golden.f16_fire().SerializeToString())
    squeeze = REPO / "models" / "squeezenet" / "squeezenet1.0-fp16.onnx"
    rng = np.random.default_rng(20261201)
    cases = [
        ("f16_fire", fire, lambda: {"x": rng.standard_normal((1, 3, 4, 4)).astype(np.float16),
                                   "side": rng.standard_normal((1, 4, 1, 1)).astype(np.float32)}),
        ("squeezenet_fp16", squeeze, lambda: {"data_0": (rng.random((1, 3, 224, 224)) * 255).astype(np.float16)}),
    ]
    for name, path, make in cases:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for trial in range(2):
            inputs = make()
            with tempfile.TemporaryDirectory(dir=work) as t1, tempfile.TemporaryDirectory(dir=work) as t2:
                wide, _, err1 = zoo_run.run_kiln(kiln, path, inputs, t1)
                narrow, _, err2 = zoo_run.run_kiln(kiln, path, inputs, t2, extra=["--keep-f16"])
            if err1 or err2:
                check(False, f"{name} #{trial}: kiln ran ({err1 or err2})")
                continue
            ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
            for out, r in ref.items():
                a, b = wide.get(out), narrow.get(out)
                if a is None or b is None:
                    check(False, f"{name} #{trial} {out}: written by both runs")
                    continue
                check(a.dtype == np.float16 and a.shape == r.shape, f"{name} #{trial} {out}: f16{list(r.shape)}")
                diff = int((a.view(np.uint16) != b.view(np.uint16)).sum())
                check(diff == 0, f"{name} #{trial} {out}: default and --keep-f16 bitwise equal ({diff} differ)")
                delta = np.abs(a.astype(np.float64) - r.astype(np.float64))
                if r.size == 1000:  # SqueezeNet's probabilities
                    check(delta.max() <= PROB_ATOL, f"{name} #{trial} {out}: within {PROB_ATOL} of ORT (worst {delta.max():.2g})")
                    check(int(a.argmax()) == int(r.argmax()), f"{name} #{trial} {out}: top-1 {a.argmax()} = ORT's {r.argmax()}")
                else:
                    err = (delta / ulp16(r)).max()
                    check(err <= TOL_ULPS, f"{name} #{trial} {out}: within {TOL_ULPS} f16 ulps of ORT (worst {err:.1f})")

    def plan(extra):
        p = subprocess.run([kiln, "run", str(fire), "--random", "--dump-after", "plan-memory"] + extra,
                           capture_output=True, text=True)
        return buffers(p.stderr) if p.returncode == 0 else {}

    wide = plan([])
    narrow16 = [n for n, (t, k) in wide.items() if t == "f16"]
    check(wide and sorted(narrow16) == ["cat", "x", "y"], f"default: f16 buffers only x, cat, y ({narrow16})")
    kept = plan(["--keep-f16"])
    check(any(t == "f16" and k == "workspace" for t, k in kept.values()), "--keep-f16: f16 workspace buffers")
    gpu = plan(["--target", "cuda-host"])
    check(any(t == "f16" and k == "workspace" for t, k in gpu.values()), "--target cuda-host: f16 workspace buffers")
    hostile_f16(kiln, work)
    return C.exit()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
