#!/usr/bin/env python3
"""--dump-after PASS and `kiln inspect --loops`: the one pipeline, visible.

    test_dump_after.py KILN SOURCE_DIR WORK_DIR

Checked, each against something kiln did not compute:
  * `--dump-after list` prints the six passes in pipeline order, on run,
    compile, emit-c and inspect; an unknown name is a one-line usage error
    (exit 2) that lists them, and writes no output folder.
  * On models/resnet8_cifar.onnx (batch 1), the dump after each pass shows
    that pass's work:
      import          graph IR, no node output has a shape yet (`?[?]`);
      infer-shapes    every node output's shape equals ONNX's own shape
                      inference (onnx.shape_inference) on the same file;
      lower           loop IR still holding divisions by 1 (`/ 1`), every
                      workspace buffer at offset 0 (not yet planned), and
                      reductions (`reduce add`, `combine`);
      expand-reduce   the same kernels with no reduction left;
      simplify-index  the same kernels without one `/ 1`;
      schedule-threads  (listed in order; its own checks: passes.test_schedule_threads)
      schedule-gpu    (listed in order; nothing on a CPU target: the CUDA
                      backend's conformance.cuda_host runs it)
      plan-memory     workspace offsets such that no two buffers live in
                      the same kernel range overlap (liveness recomputed
                      here from the dump's own loads and stores), except an
                      in-place handoff (one's last kernel is the other's
                      first, same offset and size), and the
                      same text `kiln inspect --loops` prints.
    `inspect --loops` lists the input (3072 = 1*3*32*32 f32), the output
    (10 logits) and every initializer as a weight buffer of its ONNX size,
    and one or more loops in every kernel.
  * On the hostile model (make_hostile_model.py: names with newlines,
    quotes, 5,000 bytes...), run, compile, emit-c and inspect print every
    pass's dump with names in display form: no control byte but the line
    ends, newlines in names shown as \\x0a, every line an IR line; and the
    commands of one target dump the same plan-memory text (one pipeline):
    run and compile (this host), inspect and emit-c (the C target's cores).
"""
import os
import re
import shutil
import subprocess
import sys

import onnx
from onnx import shape_inference

PASSES = ["import", "infer-shapes", "train", "per-image", "fold-batchnorm", "dense-gemm", "widen-f16", "fuse-epilogue", "fuse-pool", "layout-nchwc", "lower", "expand-reduce", "simplify-index",
          "schedule-threads", "schedule-gpu", "plan-memory"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=600, **kw)


def dump_of(stderr):
    """The text after the '# kiln: IR after' header, up to a kiln: line."""
    text = stderr.decode("latin-1")
    i = text.find("# kiln: IR after ")
    if i < 0:
        return None
    lines = text[i:].split("\n")[1:]
    out = []
    for ln in lines:
        if ln.startswith("kiln: "):
            break
        out.append(ln)
    return "\n".join(out).rstrip("\n") + "\n"


def onnx_shapes(path):
    m = shape_inference.infer_shapes(onnx.load(path))
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    return m, shapes


def buffers(text):
    """name -> (kind, numel, offset or None) from `buffer` lines."""
    out = {}
    for m in re.finditer(r"^buffer %(\S+) : (\w+)\[(\d+)\] (\w+)(?: @(\d+))?$", text, re.M):
        out[m.group(1)] = (m.group(4), int(m.group(3)), int(m.group(5)) if m.group(5) else None, m.group(2))
    return out


def kernels(text):
    """[(name, body)] in order."""
    parts = re.split(r"^kernel (\S+?):(?:  # .*)?$", text, flags=re.M)  # a fused kernel's header lists its nodes
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


DTYPE_BYTES = {"f32": 4, "f64": 8, "i64": 8, "i32": 4, "f16": 2, "bf16": 2, "u8": 1, "i8": 1, "bool": 1}


def check_resnet(kiln, src, work):
    model = os.path.join(src, "models", "resnet8_cifar.onnx")
    m, want = onnx_shapes(model)
    dumps = {}
    for p in PASSES:
        r = sh([kiln, "inspect", "--dump-after", p, model])
        check(r.returncode == 0, f"inspect --dump-after {p}: exit 0 ({r.stderr[-300:]!r})")
        dumps[p] = dump_of(r.stderr) or ""
        check(dumps[p] != "", f"inspect --dump-after {p}: a dump on stderr")
    node_line = re.compile(r"^  %(\S+) : (\S+) = (\w+)\(", re.M)
    imp = node_line.findall(dumps["import"])
    check(len(imp) == len(m.graph.node), f"import: one line per node ({len(imp)} vs {len(m.graph.node)})")
    check(all(t == "?[?]" for _, t, _ in imp), "import: no node output has a shape yet")
    inf = node_line.findall(dumps["infer-shapes"])
    check(len(inf) == len(m.graph.node), "infer-shapes: one line per node")
    bad = [(n, t) for n, t, _ in inf
           if n not in want or t != "f32[" + ",".join(str(d) for d in want[n]) + "]"]
    check(not bad and len(inf) > 0, f"infer-shapes: every shape equals ONNX shape inference (mismatches: {bad[:3]})")
    div1 = re.compile(r"/ 1(?![0-9])")
    check(len(div1.findall(dumps["lower"])) > 0, "lower: loop IR with `/ 1` left for the simplifier")
    check(not div1.search(dumps["simplify-index"]), "simplify-index: no `/ 1` left")
    red = re.compile(r"= reduce (add|max|min|max_nan|min_nan) from |^\s*combine ", re.M)
    check(len(red.findall(dumps["lower"])) > 0, "lower: loop IR with reductions (GlobalAveragePool, Gemm)")
    check(not red.search(dumps["expand-reduce"]), "expand-reduce: no reduction left")
    check([k for k, _ in kernels(dumps["lower"])] == [k for k, _ in kernels(dumps["expand-reduce"])],
          "lower/expand-reduce: the same kernels")
    ks_l, ks_s = kernels(dumps["lower"]), kernels(dumps["simplify-index"])
    check(len(ks_l) > 0 and [k for k, _ in ks_l] == [k for k, _ in ks_s], "lower/simplify-index: the same kernels")
    ws = [b for b in buffers(dumps["simplify-index"]).values() if b[0] == "workspace"]
    check(ws and all(b[2] == 0 for b in ws), "simplify-index: workspace not yet planned (all @0)")
    plan = dumps["plan-memory"]
    bufs = buffers(plan)
    ks = kernels(plan)
    # live ranges in steps, as passes/plan_memory.c defines them: each
    # top-level statement of a CPU kernel (a line indented two spaces, with
    # the deeper lines under it) is a step of its own, since a threaded loop
    # joins before the next statement starts (this CPU dump has no GPU launch)
    steps = []
    for _, body in ks:
        for line in body.splitlines():
            if re.match(r"^  \S", line):
                steps.append("")
            if steps and line.strip():
                steps[-1] += line + "\n"
    live = {}
    for k, body in enumerate(steps):
        for name in re.findall(r"%(\S+?)\[", body):
            lo, hi = live.get(name, (k, k))
            live[name] = (min(lo, k), max(hi, k))
    wsb = [(n, b) for n, b in bufs.items() if b[0] == "workspace" and n in live]
    clash = []
    for i, (n1, b1) in enumerate(wsb):
        for n2, b2 in wsb[i + 1:]:
            (l1, h1), (l2, h2) = live[n1], live[n2]
            if l1 <= h2 and l2 <= h1:  # live together
                e1, e2 = b1[2] + b1[1] * DTYPE_BYTES[b1[3]], b2[2] + b2[1] * DTYPE_BYTES[b2[3]]
                # in place (passes/plan_inplace.c): the step that reads
                # one last writes the other over it, same place and size
                handoff = (h1 == l2 or h2 == l1) and b1[2] == b2[2] and e1 == e2
                if b1[2] < e2 and b2[2] < e1 and not handoff:
                    clash.append((n1, n2))
    check(len(wsb) > 5 and not clash, f"plan-memory: buffers live together do not overlap ({clash[:3]})")
    check(any(b[2] for _, b in wsb), "plan-memory: workspace offsets assigned")
    r = sh([kiln, "inspect", "--loops", model])
    loops = r.stdout.decode("latin-1")
    check(r.returncode == 0 and loops == plan, "inspect --loops prints the program after plan-memory")
    lb = buffers(loops)
    check(lb.get("input", (None, 0))[:2] == ("input", 3072), "inspect --loops: input buffer f32[3072]")
    check(lb.get("logits", (None, 0))[:2] == ("output", 10), "inspect --loops: output buffer f32[10]")
    # fold-batchnorm replaces a Conv's weight W by W_bnfold (same size) and
    # drops the BN's four parameters; the lowering re-lays a Gemm's constant
    # transB weight W as W.T or W.chunked (same size); every other
    # initializer stays as is, but
    # for a Winograd 3x3 convolution's, which W.winograd (or
    # W_bnfold.winograd) replaces
    bn_params = {x for n in m.graph.node if n.op_type == "BatchNormalization" for x in n.input[1:]}
    # (U = G W GT: 16 or 36 points x M rounded up to blocks of 6 x C floats)
    numel = {i.name: int(__import__("math").prod(i.dims)) for i in m.graph.initializer}
    dims = {i.name: list(i.dims) for i in m.graph.initializer}

    def winograd(n):
        if len(dims[n]) != 4 or dims[n][2:] != [3, 3]:
            return False
        sizes = {t * -(-dims[n][0] // 6) * 6 * dims[n][1] for t in (16, 36)}
        return any(lb.get(w + ".winograd", (None, -1))[0] == "weight" and lb[w + ".winograd"][1] in sizes
                   for w in (n, n + "_bnfold"))

    missing = [n for n, k in numel.items() if n not in bn_params
               and lb.get(n, (None, -1))[:2] != ("weight", k) and lb.get(n + "_bnfold", (None, -1))[:2] != ("weight", k)
               and all(lb.get(n + s, (None, -1))[:2] != ("weight", k) for s in (".T", ".chunked")) and not winograd(n)]
    check(not missing and bn_params, f"inspect --loops: every initializer a weight of its ONNX size (not: {missing[:3]})")
    check(not [n for n in bn_params if n in lb], "inspect --loops: the BatchNorm parameters folded away")
    ks = kernels(loops)
    check(ks and all(re.search(r"^\s+(parallel )?for ", body, re.M) for _, body in ks),
          f"inspect --loops: {len(ks)} kernels, each with loops")


IR_LINE = re.compile(r"^(graph |  input |  param |  const |  %|  output |buffer %|kernel |  )")


def check_hostile(kiln, src, work):
    sys.path.insert(0, os.path.join(src, "tests", "tools"))
    import make_hostile_model
    model, _ = make_hostile_model.build(os.path.join(work, "MARKER"))
    path = os.path.join(work, "hostile.onnx")
    onnx.save(model, path)
    plans = {}
    for cmd in ("inspect", "run", "compile", "emit-c"):
        for p in PASSES:
            args = [kiln, cmd, "--dump-after", p, path]
            if cmd in ("compile", "emit-c"):
                out = os.path.join(work, f"{cmd}-{p}")
                shutil.rmtree(out, ignore_errors=True)
                args += ["-o", out]
            if cmd == "run":
                args += ["--random"]
            if cmd == "inspect":  # keeps a symbolic batch symbolic: bind it to lower
                args += ["--batch", "1"]
            r = sh(args)
            d = dump_of(r.stderr)
            ok = r.returncode == 0 and d is not None
            check(ok, f"hostile: {cmd} --dump-after {p}: exit 0 with a dump ({r.stderr[-200:]!r})")
            if not ok:
                continue
            raw = r.stderr.decode("latin-1")
            check(all(c == "\n" or 32 <= ord(c) != 127 for c in raw),
                  f"hostile: {cmd} {p}: no control bytes in stderr")
            check("\\x0a" in d, f"hostile: {cmd} {p}: a newline in a name shown as \\x0a")
            stray = [ln[:60] for ln in d.splitlines() if ln and not IR_LINE.match(ln)]
            check(not stray, f"hostile: {cmd} {p}: every dump line is an IR line ({stray[:2]})")
            if p == "plan-memory":
                plans[cmd] = d
    r = sh([kiln, "inspect", "--dump-after", "lower", path])
    err = r.stderr.decode("latin-1")
    check(r.returncode == 0 and err.startswith("kiln: note: --dump-after lower printed nothing") and err.count("\n") == 1,
          "hostile: inspect with the batch symbolic: a one-line note instead of a loop-IR dump")
    # inspect and emit-c shape the program for the C target's cores (8 by
    # default), run and compile for this host's: schedules with a scratch
    # slot a core (Winograd, bands, strided pools) differ between the two
    check(len(plans) == 4 and plans["inspect"] == plans["emit-c"] and plans["run"] == plans["compile"],
          "hostile: inspect and emit-c dump the same program after plan-memory, and so do run and compile")


def check_control_bytes(kiln, work):
    """Control bytes in a graph name, a value name, a node name and a
    symbolic dim's name: every one shown as \\xHH in the graph IR."""
    from onnx import TensorProto, helper
    x, y, dim = "in\nput", "out\x7f", "B\x1b[31m"
    g = helper.make_graph([helper.make_node("Relu", [x], [y], name="re\rlu")], "g\x07raph",
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [dim, 4])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, [dim, 4])])
    path = os.path.join(work, "ctl.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    for p in ("import", "infer-shapes"):
        r = sh([kiln, "inspect", "--ir", "--dump-after", p, path])
        d = dump_of(r.stderr) or ""
        want = ['graph "g\\x07raph"', "%in\\x0aput : f32[B\\x1b[31m,4]", "%out\\x7f", "# re\\x0dlu"]
        check(r.returncode == 0 and all(w in d for w in want) and
              all(c == "\n" or 32 <= ord(c) != 127 for c in r.stderr.decode("latin-1")),
              f"control bytes: {p} dump shows every name escaped ({d!r})")


def check_usage(kiln, src, work):
    model = os.path.join(src, "models", "resnet8_cifar.onnx")
    for cmd in ("run", "compile", "emit-c", "inspect"):
        r = sh([kiln, cmd, "--dump-after", "list"])
        check(r.returncode == 0 and r.stdout.decode().split() == PASSES, f"{cmd} --dump-after list: the passes in order")
        out = os.path.join(work, f"bogus-{cmd}")
        args = [kiln, cmd, "--dump-after", "bogus", model] + (["-o", out] if cmd in ("compile", "emit-c") else [])
        r = sh(args)
        err = r.stderr.decode("latin-1")
        check(r.returncode == 2 and err.count("\n") == 1 and err.startswith("kiln: error: ") and "'bogus'" in err
              and all(p in err for p in PASSES) and not r.stdout,
              f"{cmd} --dump-after bogus: one-line usage error listing the passes ({err!r})")
        check(not os.path.exists(out), f"{cmd} --dump-after bogus: no output written")
        r = sh([kiln, cmd, model, "--dump-after"])
        check(r.returncode == 2 and r.stderr.decode().count("\n") == 1, f"{cmd} --dump-after without a value: usage error")


def main():
    kiln, src, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    check_usage(kiln, src, work)
    check_resnet(kiln, src, work)
    check_hostile(kiln, src, work)
    check_control_bytes(kiln, work)
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
