#!/usr/bin/env python3
"""Hostile names on the terminal (issue #8 follow-up): a model whose graph
name, producer, symbolic dim, inputs, weights, values, nodes and outputs hold
newlines, carriage returns, ESC sequences (colour, clear screen, window
title), other control bytes, DEL, backslashes (one spelling `\\x0a`),
quotes, C1 CSI, a bidi override, valid UTF-8, invalid UTF-8 and a 5,000
character name, saved under a file name with a newline and an ESC in it.

  kiln inspect (summary, --verbose, --ir)  every line printable, valid
      UTF-8, as many lines as the graph's structure says (and as a twin
      model with plain names gives), each name shown in display form;
  kiln inspect --json  one line that json.loads (strict) parses, with the
      names, producer, symbolic dim and path exactly as in the model (the
      invalid UTF-8 one as U+FFFD per byte);
  kiln run --random    the same checks on its summary; with --input FILE,
      the top-5 class indices are numpy's;
  errors               an unknown op on a hostile node, and an input file of
      the wrong shape for the hostile input: one printable line naming it.

The display form (ir/text_escape.h) is re-implemented here from its rules
(`\\` for a backslash; \\xHH for control bytes, DEL, invalid UTF-8 and the
bytes of C1 controls, U+2028/9 and bidi controls; other UTF-8 kept), so the
expected text is not kiln's own.

usage: test_terminal_names.py KILN WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

failures = []

BAD = b"\xff\xfe\xc0\xaf"  # invalid UTF-8 (Python also decodes it to 4 x U+FFFD)
PLACEHOLDER = b"@BAD"  # same length as the bytes it stands for, patched in after serialising
assert len(PLACEHOLDER) == len(BAD)

NAMES = {  # role -> hostile name (str; PLACEHOLDER later becomes BAD)
    "graph": "g\n\x1b[2J\x1b[Hgraph",
    "producer": "prod\r\nkiln: error: forged\x1b]0;pwned\x07",
    "sym": "N\x1b[31m\n",
    "x": "in\nput\x1b[1m\\x0a",
    "w": "we\x08\x08ight\x7f\"q'",
    "t": "tmp\x01\x02\x0b\x0c\x1f\\",
    "s": "sum\u009b31m\u202eevil",
    "n_relu": "relu\r\x1b[Kforged line",
    "n_add": "add\n",
    "n_sig": "L" * 5000,
    "n_neg": "neg\\" + PLACEHOLDER.decode(),
    "n_abs": "caf\u00e9 \u2713 \u2028sep",
    "y1": "out\n1\x1b[0m",
    "y2": "out" + PLACEHOLDER.decode() + "2",
    "y3": "O" * 4999 + "\x1b",
}
CLASSES = 8


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def display(b):
    """The display form of bytes b, as text (ir/text_escape.h's rules)."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        if c == 0x5C:
            out.append("\\\\")
            i += 1
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
            i += 1
        elif c < 0x80:
            out.append("\\x%02x" % c)
            i += 1
        else:
            ch = None
            for n in (2, 3, 4):
                try:
                    ch = b[i:i + n].decode("utf-8")
                    break
                except UnicodeDecodeError:
                    pass
            if ch is None:
                out.append("\\x%02x" % c)
                i += 1
                continue
            cp = ord(ch)
            active = 0x80 <= cp <= 0x9F or cp in (0x2028, 0x2029) or 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069
            out.append("".join("\\x%02x" % x for x in b[i:i + n]) if active else ch)
            i += n
    return "".join(out)


def raw(name):
    """The name's bytes as they are in the model."""
    return name.encode().replace(PLACEHOLDER, BAD)


def build(names):
    n = names
    x = helper.make_tensor_value_info(n["x"], TensorProto.FLOAT, [n["sym"], CLASSES])
    outs = [helper.make_tensor_value_info(n[k], TensorProto.FLOAT, [n["sym"], CLASSES]) for k in ("y1", "y2", "y3")]
    w = numpy_helper.from_array(np.linspace(0.1, 0.8, CLASSES, dtype=np.float32), n["w"])
    nodes = [
        helper.make_node("Relu", [n["x"]], [n["t"]], name=n["n_relu"]),
        helper.make_node("Add", [n["t"], n["w"]], [n["s"]], name=n["n_add"]),
        helper.make_node("Sigmoid", [n["s"]], [n["y1"]], name=n["n_sig"]),
        helper.make_node("Neg", [n["t"]], [n["y2"]], name=n["n_neg"]),
        helper.make_node("Abs", [n["x"]], [n["y3"]], name=n["n_abs"]),
    ]
    g = helper.make_graph(nodes, n["graph"], [x], outs, [w])
    m = helper.make_model(g, producer_name=n["producer"], opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def save(model, path):
    data = model.SerializeToString()
    data = data.replace(PLACEHOLDER, BAD)  # same length: the protobuf stays well formed
    with open(path, "wb") as f:
        f.write(data)


def kiln_run(kiln, args):
    return subprocess.run([kiln] + args, capture_output=True, timeout=300)


def clean(tag, r, want_lines=None, allow_stderr=False):
    """stdout/stderr: valid UTF-8, no control byte but the newline, no
    active character; stdout has want_lines lines.  Returns stdout text."""
    for stream, data in (("stdout", r.stdout), ("stderr", r.stderr)):
        bad = [b for b in data if (b < 0x20 and b != 0x0A) or b == 0x7F]
        try:
            text = data.decode("utf-8")
            active = [c for c in text if display(c.encode()) != c and c not in "\n\\"]
        except UnicodeDecodeError:
            text, active = None, ["invalid UTF-8"]
        check(not bad and not active,
              f"{tag}: {stream} has no raw control byte or active character ({bad[:5]}, {active[:5]})")
        check(text is None or not text or text.endswith("\n"), f"{tag}: {stream} ends with a newline")
    if not allow_stderr:
        check(r.stderr == b"", f"{tag}: nothing on stderr ({r.stderr[:100]!r})")
    if want_lines is not None:
        got = r.stdout.count(b"\n")
        check(got == want_lines, f"{tag}: {got} lines, the structure says {want_lines}")
    return r.stdout.decode("utf-8", errors="replace")


def main():
    kiln, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    path = os.path.join(work, "m\n\x1b[31mevil.onnx")
    twin = os.path.join(work, "plain.onnx")
    save(build(NAMES), path)
    plain = {k: k if k != "sym" else "N" for k in NAMES}
    save(build(plain), twin)
    shown = {k: display(raw(v)) for k, v in NAMES.items()}
    nin, nw, nnodes, nout = 1, 1, 5, 3

    # ---- kiln inspect: summary and --verbose ----
    # model, format, inputs, outputs, nodes, ops, params, MACs, memory
    summary_lines = 2 + nin + nout + 5
    for mode, extra in (("summary", []), ("--verbose", ["--verbose"])):
        want = summary_lines + (1 + nnodes if extra else 0)
        r = kiln_run(kiln, ["inspect", path] + extra)
        check(r.returncode == 0, f"inspect {mode}: exit 0 ({r.returncode})")
        out = clean(f"inspect {mode}", r, want)
        rt = kiln_run(kiln, ["inspect", twin] + extra)
        check(rt.stdout.count(b"\n") == want, f"inspect {mode}: the plain twin has {want} lines too")
        keys = ["x", "y1", "y2", "y3", "producer", "sym"] + (["n_relu", "n_add", "n_sig", "n_neg", "n_abs"] if extra else [])
        for k in keys:
            check(shown[k] in out, f"inspect {mode}: {k} shown as {shown[k][:40]!r}")
        check(display(path.encode()) in out, "inspect: the file name in display form")

    # ---- kiln inspect --ir: graph, inputs, used weights, nodes, outputs ----
    r = kiln_run(kiln, ["inspect", "--ir", path])
    check(r.returncode == 0, "inspect --ir: exit 0")
    out = clean("inspect --ir", r, 1 + nin + nw + nnodes + nout)
    check(kiln_run(kiln, ["inspect", "--ir", twin]).stdout.count(b"\n") == 1 + nin + nw + nnodes + nout,
          "inspect --ir: the plain twin has as many lines")
    for k in NAMES:
        if k != "producer":  # the IR does not show the producer
            check(shown[k] in out, f"inspect --ir: {k} shown as {shown[k][:40]!r}")

    # ---- kiln inspect --json ----
    r = kiln_run(kiln, ["inspect", "--json", path])
    check(r.returncode == 0, "inspect --json: exit 0")
    clean("inspect --json", r, 1)
    try:
        doc = json.loads(r.stdout.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        doc = None
        check(False, f"inspect --json parses: {e}")
    if doc is not None:
        def exact(k):
            return raw(NAMES[k]).decode("utf-8", errors="replace")
        check(doc["model"] == path, "json: model path round-trips exactly")
        check(doc["producer"] == exact("producer"), "json: producer round-trips exactly")
        check([i["name"] for i in doc["inputs"]] == [exact("x")], "json: input name round-trips exactly")
        check(doc["inputs"][0]["shape"] == [exact("sym"), CLASSES], "json: symbolic dim name round-trips exactly")
        check([o["name"] for o in doc["outputs"]] == [exact(k) for k in ("y1", "y2", "y3")],
              "json: output names exact (y2's invalid bytes as U+FFFD each)")
        check(exact("y2") == "out" + "\ufffd" * 4 + "2", "json: (the U+FFFD reading of y2 is 4 replacement characters)")

    # ---- kiln run --random: compiled line, then per output a line and its top-5 ----
    r = kiln_run(kiln, ["run", path, "--random"])
    check(r.returncode == 0, f"run --random: exit 0 ({r.stderr[:200]!r})")
    out = clean("run --random", r, 1 + 2 * nout)
    for k in ("y1", "y2", "y3"):
        check(f"output {shown[k]} : f32[1,{CLASSES}]  min " in out,
              f"run --random: output {k} shown as {shown[k][:40]!r}")

    # ---- kiln run --input FILE: top-5 against numpy ----
    x = np.random.default_rng(8).uniform(0.05, 1.0, (1, CLASSES)).astype(np.float32)
    np.save(os.path.join(work, "x.npy"), x)
    r = kiln_run(kiln, ["run", path, "--input", os.path.join(work, "x.npy")])
    out = clean("run --input", r, 1 + 2 * nout)
    lines = out.split("\n")
    w = np.linspace(0.1, 0.8, CLASSES, dtype=np.float32)
    want_by_out = {"y1": 1 / (1 + np.exp(-(x[0].astype(np.float64) + w))), "y2": -x[0].astype(np.float64),
                   "y3": x[0].astype(np.float64)}
    for k, vals in want_by_out.items():
        top = list(np.argsort(-vals, kind="stable")[:5])
        at = [i for i, ln in enumerate(lines) if ln.startswith(f"output {shown[k]} : ")]
        got = None
        if at and at[0] + 1 < len(lines) and "top-5:" in lines[at[0] + 1]:
            got = [int(t.split()[0][1:]) for t in lines[at[0] + 1].split("top-5:")[1].split("  ") if t.strip()]
        check(got == [int(i) for i in top], f"run --input: top-5 of {k} is numpy's {top} (got {got})")

    # ---- errors: one printable line naming the hostile thing ----
    bad_model = build(NAMES)
    bad_model.graph.node[4].op_type = "NoSuchOp"  # the node named "caf\u00e9 \u2713 \u2028sep"
    bad = os.path.join(work, "bad\x1b[0m.onnx")
    save(bad_model, bad)
    for tag, args, key in (("inspect unknown op", ["inspect", bad], "n_abs"),
                           ("run unknown op", ["run", bad, "--random"], "n_abs"),
                           ("run wrong input shape", ["run", path, "--input",
                                                      os.path.join(work, "x3.npy")], "x")):
        if "x3.npy" in args[-1]:
            np.save(args[-1], np.zeros((1, 3), np.float32))
        r = kiln_run(kiln, args)
        clean(tag, r, 0, allow_stderr=True)
        err = r.stderr.decode("utf-8", errors="replace")
        check(r.returncode == 1 and err.startswith("kiln: error: ") and err.count("\n") == 1,
              f"{tag}: exit 1, one 'kiln: error:' line ({err[:80]!r})")
        check(f"'{shown[key]}'" in err, f"{tag}: names {key} as '{shown[key]}'")

    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
