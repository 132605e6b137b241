#!/usr/bin/env python3
"""kiln on a machine without CUDA (issue #12), simulated on one that has it.

Usage: test_no_cuda.py KILN CONFORMANCE_NVRTC FAKE_DRIVER_SO SUITE_DIR ZOO_DIR WORK_DIR
       test_no_cuda.py --run CMD [ARG ...]    (CMD with CUDA hidden as below)

The script re-runs itself in a private mount namespace (`unshare -m` as root,
else `unshare -m --map-root-user`; neither possible: exit 77) in which the
CUDA toolkit and driver are hidden: a tmpfs over every /usr/local/cuda*,
/opt/cuda* and $CUDA_PATH/$CUDA_HOME folder, and every libnvrtc*/libcuda.so*
the loader cache (ldconfig -p) still names and every ptxas, nvcc, cuobjdump,
nvdisasm on PATH removed from a shadow of its folder (symlinks to the rest).
Before checking anything it proves the hiding worked: dlopen of libnvrtc and
libcuda fails and no ptxas runs.  Two rounds:
  ptxas   only ptxas hidden (NVRTC present): conformance.nvrtc and
          backends.cuda.nvrtc_networks skip (exit 77) instead of failing;
  all     no toolkit, no driver:
          - kiln run MODEL --target cuda (no driver), the same with --arch
            sm_90 (no NVRTC) and kiln compile MODEL --target cuda (no NVRTC)
            fail with exactly one line "kiln: error: ..." saying what is
            missing, exit 1, nothing on stdout; compile writes nothing;
          - kiln inspect MODEL --target cuda lists its launches (no NVRTC
            needed) and kiln run --target cuda-host (only cc needed) matches
            ONNX Runtime on resnet8_cifar (max|k - o| / max|o| <= 1e-4,
            tests/models/test_zoo_run.py's tolerance);
          - every CUDA test skips (exit 77): conformance.nvrtc,
            runtime.cuda_rt, tools.compile_cuda, backends.cuda.nvrtc_networks.
"""
import ctypes
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "resnet8_cifar.onnx"
TOOLS = ("ptxas", "nvcc", "cuobjdump", "nvdisasm")
LIBS = ("libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12", "libcuda.so.1", "libcuda.so")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def cuda_dirs():
    dirs = glob.glob("/usr/local/cuda*") + glob.glob("/opt/cuda*") + glob.glob("/opt/nvidia*")
    dirs += [os.environ[v] for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    return sorted({os.path.realpath(d) for d in dirs if os.path.isdir(d)})


def loose_files(mode):
    """CUDA files outside the hidden folders: [path]."""
    tools = ("ptxas",) if mode == "ptxas" else TOOLS
    dirs = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/cuda/bin"]
    found = [str(Path(d) / t) for d in dirs if d for t in tools]
    if mode == "all":
        cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        found += [l.split("=>")[-1].strip() for l in cache.splitlines()
                  if "=>" in l and (l.strip().startswith("libnvrtc") or l.strip().startswith("libcuda.so"))]
    return sorted({f for f in found if f and os.path.lexists(f)})


def hide(mode, scratch):
    """Hide the CUDA toolkit and driver (mode all) or ptxas alone (mode ptxas)."""
    mount("--make-rprivate", "/")
    mount("-t", "tmpfs", "tmpfs", scratch)
    if mode == "all":
        for d in cuda_dirs():
            mount("-t", "tmpfs", "tmpfs", d)
    by_dir = {}
    for f in loose_files(mode):
        by_dir.setdefault(os.path.realpath(os.path.dirname(f)), set()).add(os.path.basename(f))  # (cuda/bin = cuda-13.0/bin)
    for n, (d, names) in enumerate(sorted(by_dir.items())):
        orig, shadow = Path(scratch) / f"orig{n}", Path(scratch) / f"shadow{n}"
        orig.mkdir()
        shadow.mkdir()
        mount("--bind", d, str(orig))
        for e in os.listdir(orig):
            if e not in names:
                os.symlink(orig / e, shadow / e)
        mount("--bind", str(shadow), d)
    for v in ("KILN_NVRTC", "KILN_CUDA_DRIVER", "CUDA_PATH", "CUDA_HOME"):
        os.environ.pop(v, None)


def loadable(lib):
    try:
        ctypes.CDLL(lib)
        return True
    except OSError:
        return False


def runs(tool):
    try:
        return subprocess.run([tool, "--version"], capture_output=True).returncode == 0
    except OSError:
        return False


def one_line_error(r, what):
    lines = r.stderr.splitlines()
    return r.returncode == 1 and r.stdout == "" and len(lines) == 1 and lines[0].startswith("kiln: error: ") and what in lines[0]


def rc_77(cmd, what, timeout=120):
    """cmd exits 77 within timeout (a skip is quick; on timeout its whole
    process group is killed, not left compiling)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        check(False, f"{what} skips (exit 77): still running after {timeout} s")
        return
    last = (out.strip().splitlines() or err.strip().splitlines() or [""])[-1]
    check(p.returncode == 77, f"{what} skips (exit 77): rc {p.returncode}: {last[:200]}")


def inside(mode, kiln, conf_nvrtc, fake, suite, zoo, work):
    tests = REPO / "tests"
    if mode == "ptxas":
        check(not shutil.which("ptxas") and not runs("/usr/local/cuda/bin/ptxas") and loadable("libnvrtc.so"),
              "hidden: ptxas does not run, NVRTC still loads")
        rc_77([conf_nvrtc, suite, "--only", "test_relu"], "conformance.nvrtc without ptxas")
        rc_77([sys.executable, str(tests / "backends/cuda/test_nvrtc_networks.py"), kiln, zoo], "backends.cuda.nvrtc_networks without ptxas")
        return
    left = [l for l in LIBS if loadable(l)] + [t for t in TOOLS if shutil.which(t) or runs(f"/usr/local/cuda/bin/{t}")]
    check(not left, f"hidden: no libnvrtc, no libcuda, no CUDA tools ({left or 'none left'})")
    if left:
        return
    r = subprocess.run([kiln, "run", str(MODEL), "--random", "--target", "cuda"], capture_output=True, text=True)
    check(one_line_error(r, "driver"), f"kiln run --target cuda: one line naming the driver, exit 1: rc {r.returncode} {r.stderr!r}")
    r = subprocess.run([kiln, "run", str(MODEL), "--random", "--target", "cuda", "--arch", "sm_90"], capture_output=True, text=True)
    check(one_line_error(r, "NVRTC"), f"kiln run --target cuda --arch sm_90: one line naming NVRTC, exit 1: rc {r.returncode} {r.stderr!r}")
    out = Path(work) / "compiled"
    r = subprocess.run([kiln, "compile", str(MODEL), "--target", "cuda", "-o", str(out)], capture_output=True, text=True)
    check(one_line_error(r, "NVRTC") and not out.exists() and os.listdir(work) == [],
          f"kiln compile --target cuda: one line naming NVRTC, exit 1, nothing written: rc {r.returncode} {r.stderr!r}")
    r = subprocess.run([kiln, "inspect", str(MODEL), "--target", "cuda"], capture_output=True, text=True)
    check(r.returncode == 0 and "grid" in r.stdout, f"kiln inspect --target cuda lists launches: rc {r.returncode} {r.stderr.strip()}")
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(Path(work) / "x.npy", x)
    r = subprocess.run([kiln, "run", str(MODEL), "--target", "cuda-host", "--input", f"input={Path(work) / 'x.npy'}",
                        "--output", str(Path(work) / "host")], capture_output=True, text=True)
    if r.returncode == 0:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        ref = ort.InferenceSession(str(MODEL), so, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        y = np.load(Path(work) / "host" / "logits.npy").astype(np.float64)
        err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        check(err <= 1e-4, f"kiln run --target cuda-host vs ONNX Runtime: rel err {err:.2e}")
    else:
        check(False, f"kiln run --target cuda-host: rc {r.returncode} {r.stderr.strip()}")
    rc_77([conf_nvrtc, suite], "conformance.nvrtc")
    rc_77([sys.executable, str(tests / "runtime/test_cuda_rt.py"), kiln, fake, suite, zoo], "runtime.cuda_rt")
    rc_77([sys.executable, str(tests / "tools/test_compile_cuda.py"), kiln, fake, zoo], "tools.compile_cuda")
    rc_77([sys.executable, str(tests / "backends/cuda/test_nvrtc_networks.py"), kiln, zoo], "backends.cuda.nvrtc_networks")


def main(argv):
    if argv[:1] == ["--run"] and len(argv) > 1:  # any command without CUDA (a build, a test run)
        scratch = os.environ.pop("KILN_NO_CUDA_SCRATCH", "")
        if not scratch:  # (outside: the namespace's scratch mount point, removed after)
            unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-m", "--map-root-user"]
            scratch = tempfile.mkdtemp(prefix="kiln-nocuda-")
            r = subprocess.run(unshare + [sys.executable, __file__] + argv, env=dict(os.environ, KILN_NO_CUDA_SCRATCH=scratch))
            os.rmdir(scratch)
            return r.returncode
        hide("all", scratch)
        os.execvp(argv[1], argv[1:])
    if len(argv) == 8 and argv[0] == "--inside":
        mode, args = argv[1], argv[2:]
        Path(args[5]).mkdir(parents=True, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix="hide-", dir=args[5])
        hide(mode, scratch)  # (gone with the namespace)
        work = tempfile.mkdtemp(prefix=f"{mode}-", dir=args[5])
        inside(mode, *args[:5], work)
        shutil.rmtree(work, ignore_errors=True)
        print(f"{mode}: {len(failures)} failed")
        return 1 if failures else 0
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    argv = [os.path.abspath(a) for a in argv]
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-m", "--map-root-user"]
    probe = subprocess.run(unshare + ["true"], capture_output=True, text=True)
    if probe.returncode:
        print(f"skipped: cannot make a private mount namespace ({' '.join(unshare)}: {probe.stderr.strip()})")
        return 77
    rc = 0
    for mode in ("ptxas", "all"):
        print(f"== {mode}")
        sys.stdout.flush()
        r = subprocess.run(unshare + [sys.executable, __file__, "--inside", mode] + argv)
        rc |= r.returncode != 0
    print("no-CUDA checks " + ("FAILED" if rc else "passed"))
    return 1 if rc else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
