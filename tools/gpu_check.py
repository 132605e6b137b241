#!/usr/bin/env python3
"""The GPU check's steps (tools/gpu_check.sh runs them; README: CUDA section).

  gpu_check.py prep REF_DIR ZOO_DIR SUITE_DIR
      On a machine with ONNX Runtime (this one): the reference outputs a GPU
      machine without network compares against.  For each network of NETS:
      its input (np.random.default_rng(0), standard normal, batch 1) and ONNX
      Runtime's CPU outputs (one thread, graph optimisations off, as
      tests/models/test_zoo_run.py), the model's sha256, and the model file
      itself when it is small (CARRY_MB); the others are regenerated there by
      models/gen/zoo2.py and checked against the sha256.  Also
      onnx-tests.tar.xz: the ONNX backend cases the CUDA host emulation
      passes (tests/conformance/cuda_host.expect).  REF_DIR must be carried to
      the GPU machine (`run`'s carry: build/gpu-ref).
  gpu_check.py accuracy KILN REF_DIR CACHE_DIR
      Every network through `kiln run --target cuda` against its reference:
      max|k - o| / max|o| <= 1e-4 and identical top-5 (test_zoo_run.py's
      tolerance and its justification).
  gpu_check.py timing KILN REF_DIR CACHE_DIR
      ResNet-50, MobileNetV2 and the 3-D CNN at batch 1 and 32 (the batch
      dim made symbolic): `kiln run --target cuda --random --repeat 20`'s
      median (inputs copied in, the CUDA Graph, outputs copied back), as
      images/s and as the fraction of the GPU's FP32 FMA peak (2 x MACs from
      `kiln inspect --json`; peak = SMs x 128 FP32 lanes x 2 x max SM clock,
      SMs from the table below by GPU name, clock from nvidia-smi).
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NETS = ["resnet50", "mobilenetv2", "cnn3d", "squeezenet1_1", "googlenet", "densenet121", "unet2d", "resnet18_dynbatch"]
TIMED = ["resnet50", "mobilenetv2", "cnn3d"]
# (fewer when time is short: GPU_CHECK_NETS / GPU_CHECK_TIMED, comma-separated)
NETS = os.environ.get("GPU_CHECK_NETS", ",".join(NETS)).split(",")
TIMED = os.environ.get("GPU_CHECK_TIMED", ",".join(TIMED)).split(",")
CARRY_MB = 16
SMS = {"H200": 132, "H100 80GB HBM3": 132, "H100 SXM": 132, "H100 PCIe": 114, "H100 NVL": 132, "A100": 108, "L40S": 142,
       "L4": 58}


def sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def input_shape(model):
    i0 = model.graph.input[0]
    return i0.name, [d.dim_value if d.dim_value else 1 for d in i0.type.tensor_type.shape.dim]


def prep(ref, zoo, suite):
    import onnx
    import onnxruntime as ort
    ref = Path(ref)
    ref.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for net in NETS:
        mp = Path(zoo) / f"{net}.onnx"
        m = onnx.load(mp)
        name, shape = input_shape(m)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        outs = ort.InferenceSession(str(mp), so, providers=["CPUExecutionProvider"]).run(None, {name: x})
        np.save(ref / f"{net}.input.npy", x)
        for k, o in enumerate(m.graph.output):
            np.save(ref / f"{net}.output{k}.npy", outs[k])
        carried = mp.stat().st_size <= CARRY_MB << 20
        if carried:
            shutil.copy(mp, ref / f"{net}.onnx")
        manifest[net] = {"input": name, "outputs": [o.name for o in m.graph.output], "sha256": sha256(mp), "carried": carried}
        print(f"prep {net}: input {shape}, {len(outs)} outputs{', model carried' if carried else ''}")
    (ref / "manifest.json").write_text(json.dumps(manifest, indent=1))
    passing = [l.split()[0] for l in (REPO / "tests/conformance/cuda_host.expect").read_text().splitlines()
               if not l.startswith("#") and len(l.split()) > 1 and l.split()[1] == "pass"]
    with tarfile.open(ref / "onnx-tests.tar.xz", "w:xz") as t:
        for c in passing:
            if (Path(suite) / c).is_dir():
                t.add(Path(suite) / c, arcname=c)
    print(f"prep: {len(passing)} ONNX cases in onnx-tests.tar.xz")


def model_path(net, ref, cache):
    """The model the reference was computed on, or (None, why)."""
    man = json.loads((Path(ref) / "manifest.json").read_text())[net]
    p = Path(ref) / f"{net}.onnx"
    if not man["carried"]:
        p = Path(cache) / f"{net}.onnx"
        for gen in ("zoo.py", "zoo2.py"):  # (each knows its own networks)
            if not p.exists():
                r = subprocess.run([sys.executable, str(REPO / "models/gen" / gen), str(cache), net], capture_output=True, text=True)
        if not p.exists():
            return None, f"cannot generate it: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    if sha256(p) != man["sha256"]:
        return None, "regenerated model differs from the reference's (numpy/onnx versions?)"
    return p, man


def accuracy_one(kiln, ref, cache, net):
    """(ok, line) for one network; None for ok when it was skipped."""
    p, man = model_path(net, ref, cache)
    if p is None:
        return None, f"SKIP {net}: {man}"
    out = Path(cache) / f"out_{net}"
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([kiln, "run", str(p), "--target", "cuda", "--input", f"{man['input']}={Path(ref) / (net + '.input.npy')}",
                        "--repeat", "3", "--output", str(out)], capture_output=True, text=True)
    if r.returncode:
        return False, f"FAIL {net}: {r.stderr.strip()}"
    msgs, ok = [], True
    for k, oname in enumerate(man["outputs"]):
        want = np.load(Path(ref) / f"{net}.output{k}.npy").astype(np.float64)
        files = list(out.glob("*.npy"))
        got = np.load(files[0] if len(files) == 1 else out / f"{oname}.npy").astype(np.float64)
        err = float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))
        ok &= err <= 1e-4
        if want.ndim == 2:
            ok &= bool(np.array_equal(np.argsort(-got, 1)[:, :5], np.argsort(-want, 1)[:, :5]))
        msgs.append(f"{oname} rel err {err:.2e}")
    ran = re.search(r"ran in [^;]*", r.stdout)
    return ok, f"{'PASS' if ok else 'FAIL'} {net}: {', '.join(msgs)} ({ran.group(0) if ran else ''}; graph run 3)"


def accuracy(kiln, ref, cache):
    """The networks side by side (NVRTC is the slow part, one CPU core each)."""
    from concurrent.futures import ThreadPoolExecutor
    for net in NETS:  # generate first, one at a time
        model_path(net, ref, cache)
    with ThreadPoolExecutor(max_workers=min(len(NETS), os.cpu_count() or 1)) as ex:
        res = list(ex.map(lambda n: accuracy_one(kiln, ref, cache, n), NETS))
    for _, line in res:
        print(line)
    return 1 if any(ok is False for ok, _ in res) else 0


def peak_gflops():
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.max.sm", "--format=csv,noheader,nounits"], capture_output=True,
                           text=True).stdout.splitlines()[0]
        name, mhz = [s.strip() for s in q.split(",")]
        sms = next((v for k, v in SMS.items() if k in name), None)
        return (sms * 128 * 2 * float(mhz) / 1e3, name, sms, mhz) if sms else (None, name, None, mhz)
    except (OSError, IndexError, ValueError):
        return None, "?", None, None


def timing(kiln, ref, cache):
    import onnx
    peak, gpu, sms, mhz = peak_gflops()
    print(f"GPU {gpu}: {sms} SMs x 128 FP32 lanes x 2 x {mhz} MHz = "
          f"{'%.1f TFLOP/s FP32 peak' % (peak / 1e3) if peak else 'peak unknown (add the GPU to SMS)'}")
    print(f"{'network':<14}{'batch':>6}{'ms':>10}{'images/s':>11}{'TFLOP/s':>9}{'of peak':>9}")
    for net in TIMED:
        p, man = model_path(net, ref, cache)
        if p is None:
            print(f"SKIP {net}: {man}")
            continue
        m = onnx.load(p)
        for v in list(m.graph.input[:1]) + list(m.graph.output):
            v.type.tensor_type.shape.dim[0].dim_param = "N"
        dyn = Path(cache) / f"{net}_N.onnx"
        onnx.save(m, dyn)
        for b in (1, 32):
            j = subprocess.run([kiln, "inspect", str(dyn), "--batch", str(b), "--json"], capture_output=True, text=True)
            macs = json.loads(j.stdout).get("macs", 0) if j.returncode == 0 else 0
            r = subprocess.run([kiln, "run", str(dyn), "--target", "cuda", "--random", "--batch", str(b), "--repeat", "20"],
                               capture_output=True, text=True)
            t = re.search(r"ran in ([0-9.]+) ms", r.stdout)
            if r.returncode or not t:
                print(f"{net:<14}{b:>6}  FAILED: {r.stderr.strip()}")
                continue
            ms = float(t.group(1))
            tf = 2 * macs / (ms / 1e3) / 1e12
            print(f"{net:<14}{b:>6}{ms:>10.3f}{b / (ms / 1e3):>11.1f}{tf:>9.2f}"
                  f"{'%8.1f%%' % (100 * tf * 1e3 / peak) if peak else '       ?'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("prep", "accuracy", "timing"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit({"prep": prep, "accuracy": accuracy, "timing": timing}[sys.argv[1]](*sys.argv[2:]))
