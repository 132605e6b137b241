#!/usr/bin/env python3
"""Sizes read from files are hostile: crafted .npy headers (kiln run
--input), .pb tensors (kiln run --input) and .npy entries inside a .npz
weights file (a .kiln network's `weights "w.npz"`, via kiln inspect) with
huge dims, products that overflow int64 or size_t, negative or non-numeric
dims, dims past the int64 range, over-long headers and truncated data.
Each must fail with one `kiln: error:` line naming the problem (for the
DSL, followed by its source excerpt),
exit 1 (no signal, no sanitizer report), and leave no output file; the
well-formed control of each kind must succeed.

usage: test_bad_tensor_files.py KILN WORK_DIR
"""
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper

failures = []


def npy(header, payload=b"", version=1):
    """A .npy with a verbatim header dict (padded as numpy pads it)."""
    h = header.encode()
    pre = 10 if version == 1 else 12
    pad = (64 - (pre + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    size = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + size + h + payload


def hdr(shape, descr="<f4"):
    return "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)


def expect(what, args, pattern, work, ok=False, excerpt=False):
    """excerpt: DSL errors add the source line and a caret below the error."""
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if args[0] == "run":
        args = args + ["--output", out]
    r = subprocess.run([KILN] + args, capture_output=True)
    err = r.stderr.decode(errors="replace")
    lines = err.splitlines()
    if ok:
        good = r.returncode == 0
    else:
        good = (r.returncode == 1 and len(lines) == (3 if excerpt else 1) and lines[0].startswith("kiln: error: ") and pattern in lines[0]
                and not os.listdir(out))
    print(("ok    " if good else "FAIL  ") + what + ("" if good else f" (rc {r.returncode}): {err.strip()[:400]}"))
    if not good:
        failures.append(what)


def main():
    global KILN
    KILN, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    w = lambda name, data: open(os.path.join(work, name), "wb").write(data) and os.path.join(work, name)

    # a one-input model: y = Relu(x), x: f32[2, 3]
    model = os.path.join(work, "relu.onnx")
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
    run = lambda f: ["run", model, "--input", "x=" + f]

    good = np.arange(6, dtype=np.float32).reshape(2, 3)
    expect("npy: well-formed control", run(w("good.npy", npy(hdr("(2, 3)"), good.tobytes()))), "", work, ok=True)
    cases = [
        ("huge dim", hdr("(1099511627777,)"), "out of range"),
        ("dim past int64", hdr("(99999999999999999999999,)"), "out of range"),
        ("product overflows int64", hdr("(1099511627776, 1099511627776)"), "too large"),
        ("product overflows after wrapping to 0", hdr("(4294967296, 4294967296, 4294967296)"), "too large"),
        ("product just over 2^40", hdr("(1048576, 1048577)"), "too large"),
        ("negative dim", hdr("(-1, 3)"), "non-negative"),
        ("negative dims whose product is positive", hdr("(-2, -3)"), "non-negative"),
        ("non-numeric dim", hdr("(2, x)"), "non-negative"),
        ("huge but plausible size, no data", hdr("(1073741824, 64)"), "truncated"),
        ("truncated data", hdr("(2, 3)"), "truncated"),
    ]
    for what, h, pat in cases:
        payload = good.tobytes()[:20] if what == "truncated data" else b""
        expect("npy: " + what, run(w("bad.npy", npy(h, payload))), pat, work)
    expect("npy: v2 header claiming 4 GB", run(w("bad.npy", b"\x93NUMPY\x02\x00\xff\xff\xff\xff{'descr'")),
           "header is too long", work)
    expect("npy: header shorter than it says", run(w("bad.npy", b"\x93NUMPY\x01\x00\x00\x10{'descr':")),
           "truncated .npy header", work)

    # .pb tensors: dims checked before their product is used
    def pb(dims, raw=b""):
        t = TensorProto(name="x", data_type=TensorProto.FLOAT, dims=dims, raw_data=raw)
        return t.SerializeToString()
    expect("pb: well-formed control", run(w("good.pb", pb([2, 3], good.tobytes()))), "", work, ok=True)
    expect("pb: product overflows int64", run(w("bad.pb", pb([1 << 40, 1 << 40]))), "too large", work)
    expect("pb: negative dim", run(w("bad.pb", pb([-2, -3]))), "negative dim", work)
    expect("pb: raw data shorter than the shape", run(w("bad.pb", pb([2, 3], b"\0" * 8))), "raw_data", work)

    # .npz weights of a .kiln network (frontend/dsl/dsl_weights.c)
    net = os.path.join(work, "net.kiln")
    open(net, "w").write('network n {\n  weights "w.npz"\n  input x: [1, 3, 8, 8]\n  c: conv(4, 3x3)\n}\n')
    def npz(entry):
        with zipfile.ZipFile(os.path.join(work, "w.npz"), "w", zipfile.ZIP_STORED) as z:
            z.writestr("c.weight.npy", entry)
            z.writestr("c.bias.npy", npy(hdr("(4,)"), np.zeros(4, np.float32).tobytes()))
    npz(npy(hdr("(4, 3, 3, 3)"), np.ones(108, np.float32).tobytes()))
    expect("npz: well-formed control", ["inspect", net], "", work, ok=True)
    npz_cases = [
        ("size_t overflow of numel * 8", hdr("(1099511627776, 4194304)", "<f8"), "truncated"),
        ("product overflows int64", hdr("(1099511627776, 1099511627776)"), "out of range"),
        ("negative dim", hdr("(-4, 3, 3, 3)"), "bad shape"),
        ("truncated data", hdr("(4, 3, 3, 3)"), "truncated"),
    ]
    for what, h, pat in npz_cases:
        npz(npy(h, b"\0" * 16))
        expect("npz: " + what, ["inspect", net], pat, work, excerpt=True)

    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
