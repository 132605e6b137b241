#!/usr/bin/env python3
"""Regenerates the ONNX backend conformance suite when ../shared/onnx-tests
is not available (a user's clone): node/ and simple/ from the onnx package's
test-case generators, pytorch-converted/ and pytorch-operator/ copied from
the data the package ships.  Same layout as the shared suite:
CASE/model.onnx + CASE/test_data_set_N/{input,output}_K.pb.

The suite depends on the onnx version (each release adds cases and may
change data), and the expectations files (tests/conformance/*.expect) were
made on ../shared/onnx-tests.  That suite's case list lies between onnx
1.22.0 and 1.23.0: all 1,765 node cases of 1.22.0 plus 37 newer ones, none
of the 82 further cases 1.23.0 adds (1,942 cases in all; 1.23.x gives
2,027).  So the suite is regenerated with onnx ONNX_VERSION (1.22.0), the
newest release whose every case is in the expectations files; cases a
suite has and the expectations file lacks are reported as NEW by the
runners, never failed.  tools/test.sh installs that version into a private
directory (tools/install-deps.sh --suite-onnx DIR), leaving the onnx used as
a test oracle alone.

Usage: python3 tests/conformance/generate_suite.py OUT_DIR
       python3 tests/conformance/generate_suite.py --onnx-version   (prints the pin)
"""
ONNX_VERSION = "1.22.0"
import os
import shutil
import sys
import warnings

if __name__ == "__main__" and sys.argv[1:] == ["--onnx-version"]:
    print(ONNX_VERSION)
    sys.exit(0)

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402


def write_case(out_dir, case):
    d = os.path.join(out_dir, case.kind, case.name)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets or []):
        ds = os.path.join(d, f"test_data_set_{i}")
        os.makedirs(ds)
        for kind, values, infos in (("input", inputs, case.model.graph.input),
                                    ("output", outputs, case.model.graph.output)):
            for j, v in enumerate(values):
                name = infos[j].name if j < len(infos) else ""
                if isinstance(v, onnx.TensorProto):
                    t = v
                else:
                    try:
                        t = numpy_helper.from_array(v, name)
                    except Exception:  # sequences, maps, optionals: not tensors
                        continue
                with open(os.path.join(ds, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())


def main(out_dir):
    if onnx.__version__ != ONNX_VERSION:
        sys.exit(f"generate_suite.py: onnx {onnx.__version__} is imported, the suite needs onnx {ONNX_VERSION} "
                 f"(tools/install-deps.sh --suite-onnx DIR, then PYTHONPATH=DIR)")
    import onnx.backend.test.case.model as model_cases
    import onnx.backend.test.case.node as node_cases
    warnings.simplefilter("ignore")
    n = 0
    for case in list(node_cases.collect_testcases(None)) + list(model_cases.collect_testcases()):
        if case.kind == "real" or case.model is None:
            continue
        write_case(out_dir, case)
        n += 1
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for part in ("pytorch-converted", "pytorch-operator"):
        src = os.path.join(data, part)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(out_dir, part), dirs_exist_ok=True)
            n += len(os.listdir(src))
    print(f"generated {n} conformance cases in {out_dir} (onnx {onnx.__version__})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
