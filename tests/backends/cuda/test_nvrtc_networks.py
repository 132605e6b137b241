#!/usr/bin/env python3
"""NVRTC compiles, and ptxas accepts, every kernel of every network (issue #12).

Usage: test_nvrtc_networks.py KILN ZOO_DIR [--jobs N] [name ...]

conformance.nvrtc covers the ONNX cases' kernels; this covers the networks':
resnet8_cifar (models/), the ten bench networks of models/gen/zoo2.py
(ALL_MODELS: generated into ZOO_DIR when a fresh clone's test cache lacks
them, as tests/models/test_zoo_run.py does) and the bundled float16
SqueezeNet (models/squeezenet/).  For each:
  1. `kiln compile MODEL --target cuda --arch sm_80,sm_90` (explicit: on a
     machine with a GPU the default would be that GPU alone): NVRTC's cubin
     for sm_80 and for sm_90, and PTX for compute_90;
  2. every kernel the .cu defines (its KILN_KERNEL lines) is a `.entry` of
     the PTX, and `ptxas -arch=sm_90` assembles that PTX;
  3. each of the three cubins (NVRTC's two, ptxas's one) is an ELF for
     EM_CUDA of its architecture whose symbol table defines every kernel as
     a global function (the ELF read here, not by cuobjdump, which the
     toolkit on these machines lacks).
Networks compile side by side (--jobs, default 2: NVRTC is single-threaded).
kiln compile --target cuda compiles inference only (no --train), so no
training graph is checked here.
Exit 77 (skipped) without NVRTC or ptxas; the first line says which.
"""
import importlib.util
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "runtime"))
from test_cuda_rt import zoo_model  # noqa: E402 (after the path insert)

EM_CUDA = 190
TIMEOUT_S = 1200


def ptxas_path():
    p = Path("/usr/local/cuda/bin/ptxas")  # as conformance.nvrtc
    return str(p) if p.exists() else shutil.which("ptxas")


def cubin_info(path):
    """(e_machine, sm, set of defined global function symbols) of an ELF64 cubin."""
    b = Path(path).read_bytes()
    if b[:4] != b"\x7fELF" or b[4] != 2:
        return None, None, set()
    machine, = struct.unpack_from("<H", b, 18)
    flags, = struct.unpack_from("<I", b, 48)
    sm = (flags >> 8) & 0xFF if b[8] >= 8 else flags & 0xFF  # EI_ABIVERSION 8 (CUDA 12.8+): SM in bits 8-15
    shoff, = struct.unpack_from("<Q", b, 40)
    shentsize, shnum = struct.unpack_from("<HH", b, 58)
    secs = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
    funcs = set()
    for s in secs:
        if s[1] != 2:  # SHT_SYMTAB
            continue
        strtab = secs[s[6]]  # sh_link
        for off in range(s[4], s[4] + s[5], s[9] or 24):
            name, info, _, shndx = struct.unpack_from("<IBBH", b, off)
            if info & 0xF == 2 and info >> 4 == 1 and shndx:  # STT_FUNC, STB_GLOBAL, defined
                start = strtab[4] + name
                funcs.add(b[start:b.index(b"\0", start)].decode())
    return machine, sm, funcs


def check_net(kiln, ptxas, name, model, work):
    """A list of failures (empty: every check passed) and a summary line."""
    out = work / name
    fails = []
    r = subprocess.run([kiln, "compile", str(model), "--target", "cuda", "--arch", "sm_80,sm_90", "--name", "net",
                        "-o", str(out)], capture_output=True, text=True, timeout=TIMEOUT_S)
    if r.returncode:
        return [f"kiln compile: {r.stderr.strip()[-600:]}"], ""
    kernels = set(re.findall(r"^KILN_KERNEL\((\w+),", (out / "net.cu").read_text(), re.M))
    ptx = out / "net_compute90.ptx"
    entries = set(re.findall(r"\.entry (\w+)\(", ptx.read_text()))
    if not kernels or entries != kernels:
        fails.append(f"PTX entries != the .cu's kernels ({len(entries)} vs {len(kernels)})")
    a = subprocess.run([ptxas, "-arch=sm_90", "-o", str(out / "ptxas_sm90.cubin"), str(ptx)], capture_output=True, text=True,
                       timeout=TIMEOUT_S)
    if a.returncode:
        fails.append(f"ptxas -arch=sm_90 rejects the PTX: {a.stderr.strip()[:600]}")
    for cubin, arch in (("net_sm80.cubin", 80), ("net_sm90.cubin", 90), ("ptxas_sm90.cubin", 90)):
        if not (out / cubin).exists():
            fails.append(f"no {cubin}")
            continue
        machine, sm, funcs = cubin_info(out / cubin)
        missing = sorted(kernels - funcs)
        if machine != EM_CUDA or sm != arch or missing:
            fails.append(f"{cubin}: machine {machine}, sm_{sm}, {len(missing)} kernels missing {missing[:3]}")
    shutil.rmtree(out, ignore_errors=True)  # (weights: up to 550 MB)
    return fails, f"{len(kernels)} kernels, sm_80 + sm_90 cubins and ptxas sm_90"


def main(argv):
    jobs = 2
    if "--jobs" in argv:
        i = argv.index("--jobs")
        jobs = int(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    kiln, zoo, only = argv[0], argv[1], argv[2:]
    ptxas = ptxas_path()
    if not ptxas:
        print("skipped: ptxas not found (/usr/local/cuda/bin or PATH)")
        return 77
    work = Path(tempfile.mkdtemp(prefix="kiln-nvrtc-nets-"))
    nets = {"resnet8_cifar": REPO / "models" / "resnet8_cifar.onnx"}
    probe = check_net(kiln, ptxas, "resnet8_cifar", nets["resnet8_cifar"], work)  # (also: is NVRTC there?)
    if probe[0] and "NVRTC" in probe[0][0] and "not found" in probe[0][0]:
        print("skipped: " + probe[0][0])
        shutil.rmtree(work, ignore_errors=True)
        return 77
    spec = importlib.util.spec_from_file_location("kiln_zoo2", REPO / "models" / "gen" / "zoo2.py")
    zoo2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo2)
    for n in zoo2.ALL_MODELS:
        nets[n] = None
    nets["squeezenet_fp16"] = REPO / "models" / "squeezenet" / "squeezenet1.0-fp16.onnx"
    if only:
        nets = {n: p for n, p in nets.items() if n in only}
    for n in nets:  # generated one at a time, before the compiles
        if nets[n] is None:
            nets[n] = zoo_model(zoo, n)
    results = {"resnet8_cifar": probe}
    todo = [n for n in nets if n not in results]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        for n, res in zip(todo, ex.map(lambda n: check_net(kiln, ptxas, n, nets[n], work), todo)):
            results[n] = res
    failed = 0
    for n in nets:
        fails, summary = results[n]
        failed += bool(fails)
        print(f"{'FAIL' if fails else 'ok  '} {n}: {'; '.join(fails) if fails else summary}")
    shutil.rmtree(work, ignore_errors=True)
    print(f"{len(nets) - failed} networks passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
