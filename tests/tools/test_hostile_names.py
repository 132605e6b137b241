#!/usr/bin/env python3
"""Hostile names end to end: a model whose every string attacks the code
kiln generates (make_hostile_model.py) goes through

  emit-c   built with its Makefile (as written, and with -Werror added), with
           cc -std=c99 -Wall -Wextra -Wpedantic -Werror (gcc and clang), run
           through the example main.c;
  compile  its header included by a host built with the same -Werror flags,
           linked with the object and runtime, run;
  run      kiln run with every input given by name, on the CPU and with
           --target cuda-host (the CUDA printer's source, built with cc);

and each must give ONNX Runtime's outputs and never create the marker file
that the model's payloads `touch`.  Also checked: the `_NAME` macros of both
headers hold the model's names byte for byte, every `#define` in a header is
defined once, and the example runner's usage line shows names escaped.

The same model with the batch bound to 2 (every input batched) runs one
image at a time (passes/per_image.c): emit-c's per-image loop built with
-Werror and run, and kiln run on two threads (image slots).

A control first compiles the raw payload inside a comment, as kiln once did,
and checks it does create the marker: the payload is live, so its absence
later means kiln neutralised it.  A second, payload-only model (plain tensor
names, hostile node names) is built with the generated Makefile and run: a
printer that pasted node names raw would compile it and run the payload
(kiln before this test, at 19e1a5b, does: the marker appears).  Errors that
name hostile nodes or inputs must stay one printable line.

The model here has the wide Gemm too (make_hostile_model's wide_gemm): its
B is re-laid chunk-major into a weight named `<B>.chunked`, a name kiln
derives from a hostile one, which must appear only escaped.

Tolerance: |kiln - ORT| <= 1e-5 + 1e-5 |ORT|, elementwise.  Both compute in
float32; the longest dot product is 27 terms (3x3x3 Conv) and the largest
mean 64 terms, so summation-order and FMA differences stay near 1e-6.

usage: test_hostile_names.py KILN WORK_DIR
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_hostile_model  # noqa: E402

FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror"]
RTOL = ATOL = 1e-5
failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def sh(args, **kw):
    r = subprocess.run(args, capture_output=True, **kw)
    if r.returncode != 0:
        print(f"command failed ({r.returncode}): {' '.join(map(str, args))[:300]}")
        print(r.stdout.decode(errors="replace")[-2000:], r.stderr.decode(errors="replace")[-2000:])
    return r


def compare(tag, got, want):
    ok = len(got) == len(want)
    worst = 0.0
    for g, w in zip(got, want):
        g = np.asarray(g, dtype=np.float64).reshape(w.shape)
        worst = max(worst, float(np.max(np.abs(g - w) / (ATOL + RTOL * np.abs(w)))))
        ok = ok and np.allclose(g, w, rtol=RTOL, atol=ATOL)
    check(ok, f"{tag}: {len(got)} outputs match ONNX Runtime (worst error {worst:.3g} of the tolerance)")


def run_file_name(name):
    """kiln run's file for an output (tools/cli.h, kiln_file_name_for)."""
    b = name.encode()
    bad = lambda i, c: c < 0x20 or c == 0x7F or c in b"/\\" or (i == 0 and c == ord("."))
    if 1 <= len(b) <= 200 and not any(bad(i, c) for i, c in enumerate(b)):
        return name
    cut = min(len(b), 100)
    while 0 < cut < len(b) and b[cut] & 0xC0 == 0x80:
        cut -= 1
    h = 2166136261
    for c in b:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    base = bytes(ord("_") if bad(i, c) else c for i, c in enumerate(b[:cut]))
    return (base + (b"_" if base else b"") + b"h%08x" % h).decode()


def defines(header):
    names = re.findall(r"^#define\s+(\w+)", header, re.M)
    dup = sorted({n for n in names if names.count(n) > 1})
    return names, dup


def name_macros(header, prefix_upper):
    """The NAME macros in declaration order (inputs, then outputs)."""
    return re.findall(r"^#define\s+(" + prefix_upper + r"_\w+_NAME)\s", header, re.M)


def host_print_names(macros, names):
    """C lines writing each short enough NAME macro's bytes to stdout (C99
    string literals stop at 4095 characters, so -Wpedantic rejects longer)."""
    lines = []
    for mac, n in zip(macros, names):
        if len(n.encode()) < 4000:
            lines.append(f'  fwrite({mac}, 1, sizeof {mac} - 1, stdout); fputc(0, stdout);')
    return "\n".join(lines)


def main():
    kiln, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    marker = os.path.join(work, "MARKER")
    model_path = os.path.join(work, "hostile.onnx")
    model, s = make_hostile_model.build(marker, wide_gemm=True)
    import onnx
    onnx.save(model, model_path)
    in_names = [i.name for i in model.graph.input]
    out_names = [o.name for o in model.graph.output]
    printable = [n for n in in_names + out_names if len(n.encode()) < 4000]

    # control: the payload, pasted raw into a comment, does run
    with open(os.path.join(work, "control.c"), "w") as f:
        f.write("#include <stdlib.h>\n/* node " + s["payload"] + " */\nint main(void) { return 0; }\n")
    r = sh(["cc", "-o", os.path.join(work, "control"), os.path.join(work, "control.c")])
    if r.returncode == 0:
        sh([os.path.join(work, "control")])
    check(os.path.exists(marker), "control: the payload unescaped in a comment creates the marker")
    if os.path.exists(marker):
        os.unlink(marker)

    rng = np.random.default_rng(7)
    shapes = [[1, 3, 8, 8], [1, 4, 8, 8], [1, 4, 1, 1]]
    xs = [rng.standard_normal(sh_).astype(np.float32) for sh_ in shapes]
    for k, x in enumerate(xs):
        np.save(os.path.join(work, f"in{k}.npy"), x)
        x.tofile(os.path.join(work, f"in{k}.f32"))
    want = [o.astype(np.float64) for o in
            ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, dict(zip(in_names, xs)))]

    # ---- emit-c ----
    ec = os.path.join(work, "ec")
    r = sh([kiln, "emit-c", model_path, "-o", ec])
    check(r.returncode == 0, "emit-c succeeds")
    if r.returncode == 0:
        header = open(os.path.join(ec, "hostile.h"), encoding="latin-1").read()
        source = open(os.path.join(ec, "hostile.c"), encoding="latin-1").read()
        check(re.search(r"/\* \\x2a\\x2f gemm\.w.*\.chunked \*/", source) is not None,
              "emit-c: the wide Gemm's chunk-major copy of B, named `<B>.chunked`, appears only escaped")
        for fn in os.listdir(ec):
            data = open(os.path.join(ec, fn), "rb").read()
            check(all(b in (9, 10) or 32 <= b < 127 for b in data), f"emit-c: {fn} is printable ASCII")
        _, dup = defines(header)
        check(not dup, f"emit-c header: every macro defined once {dup[:3]}")
        r = sh(["make", "-C", ec])
        check(r.returncode == 0, "emit-c: the generated Makefile builds run_model")
        r = sh(["make", "-C", ec, "-B", "CFLAGS=" + " ".join(FLAGS)])
        check(r.returncode == 0, "emit-c: the generated Makefile builds with -Werror")
        srcs = [os.path.join(ec, f) for f in ("main.c", "hostile.c", "hostile_weights.c")]
        for cc in ("gcc", "clang-19"):
            if not shutil.which(cc):
                check(False, f"{cc} is installed")
                continue
            exe = os.path.join(ec, "run_" + cc)
            r = sh([cc] + FLAGS + ["-o", exe] + srcs + ["-lm"])
            check(r.returncode == 0, f"emit-c: {cc} {' '.join(FLAGS)} builds main.c and the model")
            if r.returncode:
                continue
            od = os.path.join(ec, "out_" + cc)
            os.makedirs(od)
            r = sh([exe] + [os.path.join(work, f"in{k}.npy") for k in range(3)] + [od])
            check(r.returncode == 0, f"emit-c: run_model ({cc}) runs")
            if r.returncode == 0:
                compare(f"emit-c ({cc})", [np.load(os.path.join(od, f"output_{k}.npy")) for k in range(len(want))], want)
            r = subprocess.run([exe], capture_output=True)
            usage = r.stderr
            check(r.returncode == 2 and usage.startswith(b"usage:") and usage.count(b"\n") == 1 and
                  all(32 <= b < 127 for b in usage[:-1]),
                  f"emit-c: run_model ({cc}) prints a one-line, printable usage")
        macros = name_macros(header, "HOSTILE")
        check(len(macros) == len(in_names) + len(out_names), "emit-c header: a NAME macro per input and output")
        host = os.path.join(ec, "names.c")
        with open(host, "w") as f:
            f.write('#include <stdio.h>\n#include "hostile.h"\nint main(void) {\n' +
                    host_print_names(macros, in_names + out_names) + "\n  return 0;\n}\n")
        r = sh(["cc"] + FLAGS + ["-o", host[:-2], host])
        got = sh([host[:-2]]).stdout.split(b"\0")[:-1] if r.returncode == 0 else []
        check(got == [n.encode() for n in printable], "emit-c header: NAME macros hold the names byte for byte")

    # ---- emit-c --weights-file --threads: outlined parallel bodies, blob weights ----
    eb = os.path.join(work, "ec_blob")
    r = sh([kiln, "emit-c", model_path, "-o", eb, "--weights-file", "--threads", "--name", "net"])
    check(r.returncode == 0, "emit-c --weights-file --threads succeeds")
    if r.returncode == 0:
        exe = os.path.join(eb, "run_model")
        r = sh(["cc"] + FLAGS + ["-o", exe, os.path.join(eb, "main.c"), os.path.join(eb, "net.c"), "-lm"])
        check(r.returncode == 0, f"emit-c --weights-file --threads: builds with cc {' '.join(FLAGS)}")
        if r.returncode == 0:
            od = os.path.join(eb, "out")
            os.makedirs(od)
            r = sh([exe, "--weights", os.path.join(eb, "net.weights")] +
                   [os.path.join(work, f"in{k}.npy") for k in range(3)] + [od])
            check(r.returncode == 0, "emit-c --weights-file --threads: run_model runs")
            if r.returncode == 0:
                compare("emit-c --weights-file --threads",
                        [np.load(os.path.join(od, f"output_{k}.npy")) for k in range(len(want))], want)

    # ---- compile ----
    co = os.path.join(work, "co")
    r = sh([kiln, "compile", model_path, "-o", co])
    check(r.returncode == 0, "compile succeeds")
    if r.returncode == 0:
        header = open(os.path.join(co, "hostile.h"), encoding="latin-1").read()
        check(all(32 <= ord(c) < 127 or c == "\n" for c in header), "compile: hostile.h is printable ASCII")
        _, dup = defines(header)
        check(not dup, f"compile header: every macro defined once {dup[:3]}")
        macros = name_macros(header, "HOSTILE")
        check(len(macros) == len(in_names) + len(out_names), "compile header: a NAME macro per input and output")
        nout = len(out_names)
        sizes = [int(np.prod(sh_)) for sh_ in shapes] + [int(np.prod(w.shape)) for w in want]
        host = os.path.join(co, "host.c")
        body = ['#include <stdio.h>', '#include <stdlib.h>', '#include "hostile.h"',
                'static float *load(const char *path, long n) {',
                '  float *p = malloc((size_t)n * sizeof *p); FILE *f = fopen(path, "rb");',
                '  if (!p || !f || fread(p, sizeof *p, (size_t)n, f) != (size_t)n) exit(3);',
                '  fclose(f); return p; }',
                'int main(int argc, char **argv) {',
                '  hostile_model *m; kiln_rt_status st; int i;',
                f'  float *in[3], *out[{nout}]; long sizes[] = {{{", ".join(map(str, sizes))}}};',
                '  if (argc != 6) return 2;',
                '  for (i = 0; i < 3; i++) in[i] = load(argv[2 + i], sizes[i]);',
                f'  for (i = 0; i < {nout}; i++) out[i] = calloc((size_t)sizes[3 + i], sizeof(float));',
                '  if (hostile_create(argv[1], &m) != KILN_RT_OK) return 4;',
                '  st = hostile_run(m, in[0], in[1], in[2], ' + ", ".join(f"out[{k}]" for k in range(nout)) + ');',
                '  hostile_destroy(m);',
                '  if (st != KILN_RT_OK) return 5;',
                '  { FILE *f = fopen(argv[5], "wb");',
                f'    for (i = 0; i < {nout}; i++) fwrite(out[i], sizeof(float), (size_t)sizes[3 + i], f);',
                '    fclose(f); }',
                host_print_names(macros, in_names + out_names),
                '  return 0;', '}', '']
        open(host, "w").write("\n".join(body))
        exe = os.path.join(co, "host")
        r = sh(["cc"] + FLAGS + ["-I", co, "-o", exe, host, os.path.join(co, "hostile.o"),
                                 os.path.join(co, "kiln_runtime.c"), "-lm", "-pthread"])
        check(r.returncode == 0, f"compile: a host including hostile.h builds with cc {' '.join(FLAGS)}")
        if r.returncode == 0:
            outf = os.path.join(co, "out.f32")
            r = sh([exe, os.path.join(co, "hostile.weights")] + [os.path.join(work, f"in{k}.f32") for k in range(3)] +
                   [outf])
            check(r.returncode == 0, "compile: the host runs")
            if r.returncode == 0:
                flat = np.fromfile(outf, dtype=np.float32)
                got, off = [], 0
                for w in want:
                    got.append(flat[off:off + w.size])
                    off += w.size
                compare("compile", got, want)
                check(r.stdout.split(b"\0")[:-1] == [n.encode() for n in printable],
                      "compile header: NAME macros hold the names byte for byte")

    # ---- run, on the CPU and through the CUDA printer's host emulation ----
    # (--target cuda-host prints the model as CUDA C and compiles it with cc:
    # the same names land in that source)
    for tag, extra in (("run", []), ("run --target cuda-host", ["--target", "cuda-host"])):
        rd = os.path.join(work, "run" if not extra else "run_cuda_host")
        os.makedirs(rd)
        args = [kiln, "run", model_path, "--output", rd] + extra
        for k, n in enumerate(in_names):
            args += ["--input", f"{n}={os.path.join(work, f'in{k}.npy')}"]
        r = sh(args)
        check(r.returncode == 0, f"{tag} succeeds with every input given by its hostile name")
        if r.returncode == 0:
            files = sorted(os.listdir(rd))
            check(len(files) == len(out_names), f"{tag}: one file per output ({len(files)} files)")
            got = []
            for n in out_names:
                f = os.path.join(rd, run_file_name(n) + ".npy")
                check(os.path.exists(f), f"{tag}: output {ascii(n)[:40]} is in {os.path.basename(f)[:60]}")
                got.append(np.load(f) if os.path.exists(f) else np.full(1, np.nan))
            compare(tag, got, want)

    # ---- compile --target cuda: the loader puts node names in C string
    # literals and the model path in comments (NVRTC compiles the .cu; cc
    # builds and runs the loader; the marker check at the end covers both) ----
    cu = os.path.join(work, "cuda_co")
    r = sh([kiln, "compile", model_path, "--target", "cuda", "--arch", "sm_80", "-o", cu])
    if r.returncode != 0 and b"NVRTC (libnvrtc.so, the CUDA toolkit) not found" in r.stderr:
        print("skip compile --target cuda: no NVRTC on this machine")
    else:
        check(r.returncode == 0, f"compile --target cuda succeeds ({r.stderr[-200:]!r})")
        if r.returncode == 0:
            files = sorted(os.listdir(cu))
            check(all(f.startswith(("hostile", "kiln_cuda_")) or f == "README.txt" for f in files),
                  f"compile --target cuda: every file is named from the prefix, none from the model ({files})")
            main_c = os.path.join(cu, "main.c")
            open(main_c, "w").write('#include "hostile_cuda.h"\nint main(void) { return 0; }\n')
            exe = os.path.join(cu, "loader")
            r = sh(["cc"] + FLAGS + ["-I", cu, "-o", exe, main_c, os.path.join(cu, "hostile_cuda.c"),
                                     os.path.join(cu, "kiln_cuda_rt.c"), "-ldl"])
            check(r.returncode == 0, f"compile --target cuda: the loader builds with cc {' '.join(FLAGS)} "
                                     f"({r.stderr[-300:]!r})")
            if r.returncode == 0:
                check(sh([exe]).returncode == 0, "compile --target cuda: a program linking the loader runs")

    # ---- errors that name hostile strings stay one printable line ----
    bad = os.path.join(work, "bad.onnx")
    m2 = onnx.ModelProto()
    m2.CopyFrom(model)
    m2.graph.node[5].op_type = "NoSuchOp"  # the node named "??/\n" + payload
    onnx.save(m2, bad)
    for cmd in (["run", bad, "--random"], ["compile", bad, "-o", os.path.join(work, "bad_co")],
                ["emit-c", bad, "-o", os.path.join(work, "bad_ec")],
                ["run", model_path, "--input", f"{in_names[0]}={os.path.join(work, 'in1.npy')}"]):
        r = subprocess.run([kiln] + cmd, capture_output=True)
        err = r.stderr
        check(r.returncode == 1 and err.startswith(b"kiln: error: ") and err.count(b"\n") == 1 and
              all(32 <= b < 127 for b in err[:-1]) and not os.path.exists(os.path.join(work, "bad_co")) and
              not os.path.exists(os.path.join(work, "bad_ec")),
              f"kiln {cmd[0]} error naming a hostile node or input: one printable line ({err[:70]!r}...)")

    # ---- payloads alone (plain tensor names): code that compiles must not run them ----
    quiet = os.path.join(work, "quiet.onnx")
    onnx.save(make_hostile_model.build(marker, payload_only=True, wide_gemm=True)[0], quiet)
    qe = os.path.join(work, "quiet_ec")
    r = sh([kiln, "emit-c", quiet, "-o", qe])
    if r.returncode == 0:
        r = sh(["make", "-C", qe])
    if r.returncode == 0:
        od = os.path.join(qe, "out")
        os.makedirs(od)
        r = sh([os.path.join(qe, "run_model")] + [os.path.join(work, f"in{k}.npy") for k in range(3)] + [od])
    check(r.returncode == 0, "payload-only model: emit-c, make, run_model")
    if r.returncode == 0:
        compare("payload-only model (emit-c)", [np.load(os.path.join(od, f"output_{k}.npy")) for k in range(len(want))],
                want)

    # ---- a hostile model file name: comments, Makefile, and the default prefix ----
    evil = os.path.join(work, '_9 ?\?\\ *x\n"y".onnx')
    shutil.copy(quiet, evil)
    ev = os.path.join(work, "evil_ec")
    r = sh([kiln, "emit-c", evil, "-o", ev])
    heads = [f for f in os.listdir(ev) if f.endswith(".h")] if r.returncode == 0 else []
    check(len(heads) == 1 and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*\.h", heads[0]) is not None,
          f"hostile file name: the default prefix is an unreserved identifier {heads}")
    if heads:
        r = sh(["make", "-C", ev, "CFLAGS=" + " ".join(FLAGS)])
        check(r.returncode == 0, "hostile file name: the generated Makefile builds with -Werror")

    # ---- one image at a time (passes/per_image.c) at batch 2: the per-image
    # loops in the emitted C and the LLVM entry, a Reshape-free graph whose
    # every node is image-wise, the names as hostile as above ----
    batched_path = os.path.join(work, "hostile_b2.onnx")
    bmodel, _ = make_hostile_model.build(marker, wide_gemm=True, batched=True)
    onnx.save(bmodel, batched_path)
    bx = [rng.standard_normal([2] + sh_[1:]).astype(np.float32) for sh_ in shapes]
    for k, x in enumerate(bx):
        np.save(os.path.join(work, f"b2_in{k}.npy"), x)
    bwant = [o.astype(np.float64) for o in
             ort.InferenceSession(batched_path, providers=["CPUExecutionProvider"]).run(None, dict(zip(in_names, bx)))]
    r = sh([kiln, "inspect", batched_path, "--loops", "--batch", "2"])
    check(r.returncode == 0 and b"# one image at a time: the kernels run 2 times" in r.stdout,
          "batch 2: the program runs one image at a time")
    be = os.path.join(work, "b2_ec")
    r = sh([kiln, "emit-c", batched_path, "-o", be, "--batch", "2", "--name", "net"])
    check(r.returncode == 0, "batch 2: emit-c succeeds")
    if r.returncode == 0:
        src = open(os.path.join(be, "net.c"), "rb").read()
        check(b"one image at a time" in src, "batch 2: the emitted C loops over the images")
        check(all(b in (9, 10) or 32 <= b < 127 for b in src), "batch 2: the emitted C is printable ASCII")
        r = sh(["make", "-C", be, "CFLAGS=" + " ".join(FLAGS)])
        check(r.returncode == 0, "batch 2: the generated Makefile builds with -Werror")
        if r.returncode == 0:
            od = os.path.join(work, "b2_ec_out")
            os.makedirs(od)
            r = sh([os.path.join(be, "run_model")] + [os.path.join(work, f"b2_in{k}.npy") for k in range(len(bx))] + [od])
            check(r.returncode == 0, "batch 2: run_model runs")
            if r.returncode == 0:
                compare("batch 2 (emit-c)", [np.load(os.path.join(od, f"output_{k}.npy")) for k in range(len(bwant))],
                        bwant)
    rd = os.path.join(work, "b2_run")
    os.makedirs(rd)
    args = [kiln, "run", batched_path, "--output", rd, "--threads", "2"]
    for k, n in enumerate(in_names):
        args += ["--input", f"{n}={os.path.join(work, f'b2_in{k}.npy')}"]
    r = sh(args)
    check(r.returncode == 0, "batch 2: kiln run --threads 2 succeeds (image slots)")
    if r.returncode == 0:
        got = [np.load(os.path.join(rd, run_file_name(n) + ".npy")) for n in out_names]
        compare("batch 2 (run)", got, bwant)

    check(not os.path.exists(marker), "no payload ran: the marker file does not exist")
    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
