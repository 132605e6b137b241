#!/usr/bin/env python3
"""`kiln compile --target cuda`: the artifact, checked without a GPU.

Usage: test_compile_cuda.py KILN FAKE_DRIVER_SO ZOO_DIR

1. A zoo network (SqueezeNet 1.1) compiled with the default architectures
   (no GPU here: sm_80 and sm_90) gives a cubin per architecture and PTX for
   compute_90; each cubin's ELF header says its architecture and its string
   table names every kernel; the CUDA toolkit's tools (if in /usr/local/cuda/bin) agree:
   `cuobjdump -elf` reads each cubin as its architecture and lists every
   kernel the .cu defines, and `ptxas` assembles the PTX for sm_90.
2. A small CNN's artifact used as the README says: a C program (below) built
   with `cc -std=c99 -Wall -Wextra -Werror` from PREFIX_cuda.c and
   kiln_cuda_rt.c (and ASan + UBSan), run on the fake driver (KILN_CUDA_DRIVER, kiln_cuda_rt.h's
   test hook) executing the kernels through the host emulation of the same
   .cu: 3 runs (eager, captured, graph), outputs vs ONNX Runtime
   (max|k - o| / max|o| <= 1e-4, tests/models/test_zoo_run.py's tolerance).
Exit 77 without NVRTC.
"""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from test_cuda_rt import zoo_model  # noqa: E402 (after the path insert)

KILN, FAKE, ZOO = sys.argv[1:4]
BIN = Path("/usr/local/cuda/bin")
failures = []

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "net_cuda.h"
static void *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *p = malloc((size_t)n + 1);
  if (p && fread(p, 1, (size_t)n, f) != (size_t)n) { free(p); p = NULL; }
  fclose(f);
  return p;
}
int main(int argc, char **argv) {
  char err[512];
  float y[10];
  void *w = slurp(argv[1]), *x = slurp(argv[2]);
  if (argc != 4 || !w || !x) return 2;
  kiln_cuda_rt *rt = net_cuda_open(w, err, sizeof err);
  if (!rt) { fprintf(stderr, "%s\n", err); return 1; }
  const void *in[1] = {x};
  void *out[1] = {y};
  for (int r = 0; r < 3; r++)
    if (net_cuda_run(rt, in, out, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
  kiln_cuda_rt_close(rt);
  FILE *f = fopen(argv[3], "wb");
  fwrite(y, sizeof y, 1, f);
  fclose(f);
  free(w);
  free(x);
  return 0;
}
"""


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def main():
    tmp = Path(tempfile.mkdtemp(prefix="kiln-compile-cuda-"))
    env = dict(os.environ)
    env.pop("KILN_CUDA_DRIVER", None)
    out = tmp / "sq"
    r = subprocess.run([KILN, "compile", str(zoo_model(ZOO, "squeezenet1_1")), "--target", "cuda", "--name", "sq", "-o", str(out)],
                       capture_output=True, text=True, env=env)
    if r.returncode and "NVRTC" in r.stderr:
        print("skipped: " + r.stderr.strip())
        return 77
    check(r.returncode == 0, f"kiln compile squeezenet1_1 --target cuda {r.stderr.strip()}")
    for f in ("sq_sm80.cubin", "sq_sm90.cubin", "sq_compute90.ptx", "sq.cu", "sq_cuda.c", "sq_cuda.h", "kiln_cuda_rt.c"):
        check((out / f).exists(), f"writes {f}")
    kernels = set(re.findall(r"^KILN_KERNEL\((\w+),", (out / "sq.cu").read_text(), re.M))
    check(len(kernels) > 20, f"{len(kernels)} kernels in sq.cu")
    ptx = (out / "sq_compute90.ptx").read_text()
    check(".target sm_90" in ptx and kernels == set(re.findall(r"\.entry (\w+)\(", ptx)), "the PTX: compute_90, every kernel an entry")
    if (BIN / "cuobjdump").exists():
        for arch in (80, 90):
            d = subprocess.run([str(BIN / "cuobjdump"), "-elf", str(out / f"sq_sm{arch}.cubin")], capture_output=True, text=True)
            names = set(re.findall(r"\.text\.(\w+)", d.stdout))
            check(d.returncode == 0 and f"arch = sm_{arch}" in d.stdout and kernels <= names,
                  f"cuobjdump: sq_sm{arch}.cubin is sm_{arch} with every kernel")
    for arch in (80, 90):  # without the toolkit's tools too: the ELF header and symbol names
        b = (out / f"sq_sm{arch}.cubin").read_bytes()
        flags = int.from_bytes(b[48:52], "little")
        sm = (flags >> 8) & 0xFF if b[8] >= 8 else flags & 0xFF  # EI_ABIVERSION 8 (CUDA 12.8+): SM in bits 8-15
        check(b[:4] == b"\x7fELF" and sm == arch and all(k.encode() + b"\0" in b for k in kernels),
              f"sq_sm{arch}.cubin: an ELF for sm_{sm}, naming every kernel")
    if (BIN / "ptxas").exists():
        a = subprocess.run([str(BIN / "ptxas"), "-arch=sm_90", "-o", str(tmp / "p.cubin"), str(out / "sq_compute90.ptx")],
                           capture_output=True, text=True)
        check(a.returncode == 0, f"ptxas assembles the PTX for sm_90 {a.stderr.strip()[:300]}")

    import test_cuda_rt as t  # the small CNN and ORT runner
    model = tmp / "small.onnx"
    t.small_cnn(model)
    art = tmp / "small"
    r = subprocess.run([KILN, "compile", str(model), "--target", "cuda", "--name", "net", "--arch", "sm_90", "-o", str(art)],
                       capture_output=True, text=True, env=env)
    check(r.returncode == 0, "kiln compile small --target cuda --arch sm_90")
    (art / "main.c").write_text(MAIN)
    b = subprocess.run(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined",
                        "-fno-sanitize-recover=all", "-I", str(art), "-o", str(art / "main"),
                        str(art / "main.c"), str(art / "net_cuda.c"), str(art / "kiln_cuda_rt.c"), "-ldl"], capture_output=True, text=True)
    check(b.returncode == 0, f"the artifact builds as its README says, warning-free {b.stderr.strip()[:400]}")
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    x.tofile(tmp / "x.bin")
    e = dict(env, KILN_CUDA_DRIVER=FAKE, KILN_FAKE_CUDA_EXEC=str(art / "net.cu"), KILN_FAKE_CUDA_LOG=str(tmp / "log"))
    r = subprocess.run([str(art / "main"), str(art / "net.weights"), str(tmp / "x.bin"), str(tmp / "y.bin")], capture_output=True,
                       text=True, env=e)
    check(r.returncode == 0, f"the program runs on the fake driver {r.stderr.strip()}")
    if r.returncode == 0:
        y = np.fromfile(tmp / "y.bin", dtype=np.float32).reshape(1, 10)
        ref = t.ort_run(model, {"x": x})[0]
        err = t.rel_err(y, ref)
        log = (tmp / "log").read_text().splitlines()
        check(err <= 1e-4 and log.count("capture begin mode 1") == 1 and sum(l.startswith("graph launch") for l in log) == 2,
              f"3 runs (eager, captured, graph) vs ONNX Runtime: rel err {err:.2e}")
    subprocess.run(["rm", "-rf", str(tmp)])
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
