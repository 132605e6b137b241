#!/usr/bin/env python3
"""`--tf32`: convolutions on TF32 tensor cores, checked against float64.

Usage: test_tf32.py KILN [--target cuda]   (default cuda-host; tools/gpu_check.sh
runs it with --target cuda on a GPU: the same bounds on real tensor cores)

1. Convolutions (3x3 padded, 1x1 with a partial channel tile, strided with
   asymmetric pads, grouped, depthwise) run through `kiln run --target
   cuda-host` with and without --tf32; every output is compared with a
   float64 numpy reference computed here from the ONNX Conv definition.

   Bounds, per output y = b + sum_k x_k w_k over K = C/group * taps terms,
   with mag = |b| + sum |x_k w_k| (Higham, Accuracy and Stability of
   Numerical Algorithms, 2nd ed., sec. 3.1 and 4.2: any summation order):
   - FP32 (no flag): |y - y64| <= gamma(K + 2) mag, gamma(n) = n u / (1 - n u),
     u = 2^-24 (K products rounded once each, K + 1 additions).
   - TF32: each operand rounded to 10 mantissa bits (unit roundoff
     u_t = 2^-11), so each product is off by at most (2 u_t + u_t^2) |x w|
     and exact in f32; the f32 sums then add gamma(K + 2) on the rounded
     terms (1 + u_t)^2 |x w|, with u = 2^-23 there (a tensor core may
     truncate its partial sums rather than round them):
       |y - y64| <= (2 u_t + u_t^2 + gamma(K + 2) (1 + u_t)^2) mag.
   A TF32 run must also exceed the FP32 bound somewhere on a model whose
   convolution takes the tensor-core path (the operands were rounded), and
   `kiln inspect --target cuda --tf32 --loops` must show the warp MMA there
   and not for the depthwise one (groups of one channel keep the FMA path).
2. `kiln compile --target cuda --tf32 --arch sm_80,sm_90`: NVRTC compiles the
   kernels for both (its cubins are ptxas's output), the PTX holds
   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 and cvt.rna.tf32.f32,
   and /usr/local/cuda/bin/ptxas assembles it for sm_90 (and the compute_80
   PTX of an --arch sm_80 compile for sm_80).  Skipped (with a
   note) when NVRTC is missing.
3. --tf32 on a CPU target is a usage error (exit 2, one line).
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KILN = sys.argv[1]
TARGET = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--target" else "cuda-host"
failures = []
UT, U32, U24 = 2.0 ** -11, 2.0 ** -23, 2.0 ** -24


def gamma(n, u):
    return n * u / (1 - n * u)


def conv_model(path, N, C, M, H, W, k, stride, pads, group, rng):
    w = (rng.standard_normal((M, C // group, k, k)) * 0.2).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=pads, strides=[stride, stride], group=group)
    g = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, C, H, W])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return x, w, b


def reference(x, w, b, stride, pads, group):
    """float64 Conv and sum |terms|, straight from the definition."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    N, C, H, W = x.shape
    M, Cg, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    Ho = (H + pads[0] + pads[2] - k) // stride + 1
    Wo = (W + pads[1] + pads[3] - k) // stride + 1
    y = np.zeros((N, M, Ho, Wo)) + b[None, :, None, None]
    mag = np.zeros_like(y) + np.abs(b.astype(np.float64))[None, :, None, None]
    Mg = M // group
    for gi in range(group):
        xs = xp[:, gi * Cg:(gi + 1) * Cg]
        ws = w[gi * Mg:(gi + 1) * Mg]
        for i in range(k):
            for j in range(k):
                patch = xs[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride]
                y[:, gi * Mg:(gi + 1) * Mg] += np.einsum("mc,nchw->nmhw", ws[:, :, i, j], patch)
                mag[:, gi * Mg:(gi + 1) * Mg] += np.einsum("mc,nchw->nmhw", np.abs(ws[:, :, i, j]), np.abs(patch))
    return y, mag, Cg * k * k


def run(model, xfile, out, tf32):
    cmd = [KILN, "run", model, "--input", xfile, "--target", TARGET, "--output", out] + (["--tf32"] if tf32 else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        failures.append(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return None
    return np.load(os.path.join(out, "y.npy")).astype(np.float64)


CASES = [  # name, N, C, M, H, W, k, stride, pads, group, takes the tensor-core path
    ("conv3x3_pad1", 1, 32, 64, 14, 14, 3, 1, [1, 1, 1, 1], 1, True),
    ("conv1x1_partial_channels", 2, 64, 48, 7, 7, 1, 1, [0, 0, 0, 0], 1, True),
    ("conv3x3_stride2_asym_pads", 1, 16, 32, 15, 15, 3, 2, [1, 0, 2, 1], 1, True),
    ("grouped2", 1, 32, 64, 9, 9, 3, 1, [1, 1, 1, 1], 2, True),
    ("depthwise", 1, 16, 16, 9, 9, 3, 1, [1, 1, 1, 1], 16, False),
]

with tempfile.TemporaryDirectory() as tmp:
    rng = np.random.default_rng(12)
    for name, N, C, M, H, W, k, s, pads, group, mma in CASES:
        model, xfile = os.path.join(tmp, name + ".onnx"), os.path.join(tmp, name + "_x.npy")
        x, w, b = conv_model(model, N, C, M, H, W, k, s, pads, group, rng)
        np.save(xfile, x)
        ref, mag, K = reference(x, w, b, s, pads, group)
        insp = subprocess.run([KILN, "inspect", model, "--target", "cuda", "--tf32", "--loops"], capture_output=True,
                              text=True)
        has_mma = "mma_m16n8k8_tf32" in insp.stdout
        if insp.returncode or has_mma != mma:
            failures.append(f"{name}: inspect --tf32 --loops {'lacks' if mma else 'shows'} the warp MMA "
                            f"(exit {insp.returncode}: {insp.stderr.strip()})")
        b32 = gamma(K + 2, U24)
        b_tf32 = 2 * UT + UT * UT + gamma(K + 2, U32) * (1 + UT) ** 2
        for tf32, bound in ((False, b32), (True, b_tf32 if mma else b32)):
            y = run(model, xfile, os.path.join(tmp, f"{name}_{tf32}"), tf32)
            if y is None:
                continue
            if y.shape != ref.shape:
                failures.append(f"{name}: shape {y.shape}, expected {ref.shape}")
                continue
            ratio = np.abs(y - ref) / np.maximum(mag, 1e-30)
            worst = float(ratio.max())
            tag = "tf32" if tf32 else "fp32"
            print(f"{name} {tag}: K={K}, worst |y - y64| / mag = {worst:.3g} (bound {bound:.3g}), "
                  f"max rel to |y64| = {float((np.abs(y - ref) / np.maximum(np.abs(ref), 1e-6)).max()):.3g}")
            if not worst <= bound:
                failures.append(f"{name} {tag}: error {worst:.3g} of sum |terms| over the bound {bound:.3g}")
            if tf32 and mma and not worst > b32:
                failures.append(f"{name} tf32: every output within FP32's bound {b32:.3g}: were operands rounded?")

    # 2. NVRTC and ptxas
    model = os.path.join(tmp, "conv3x3_pad1.onnx")
    out = os.path.join(tmp, "compiled")
    r = subprocess.run([KILN, "compile", model, "--target", "cuda", "--tf32", "--arch", "sm_80,sm_90", "-o", out],
                       capture_output=True, text=True)
    if r.returncode and "NVRTC" in r.stderr and not Path(out).exists():
        print(f"note: NVRTC unavailable, compile check skipped: {r.stderr.strip()}")
    elif r.returncode:
        failures.append(f"compile --tf32: exit {r.returncode}: {r.stderr.strip()}")
    else:
        for arch in ("sm80", "sm90"):
            if not (Path(out) / f"conv3x3_pad1_{arch}.cubin").stat().st_size:
                failures.append(f"compile --tf32: empty {arch} cubin")
        ptx = Path(out) / "conv3x3_pad1_compute90.ptx"
        text = ptx.read_text()
        for want in ("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", "cvt.rna.tf32.f32"):
            if want not in text:
                failures.append(f"compile --tf32: the PTX lacks {want}")
        # the PTX is for the newest --arch: compile once more for sm_80 alone to get compute_80 PTX
        out80 = os.path.join(tmp, "compiled80")
        r80 = subprocess.run([KILN, "compile", model, "--target", "cuda", "--tf32", "--arch", "sm_80", "-o", out80],
                             capture_output=True, text=True)
        if r80.returncode:
            failures.append(f"compile --tf32 --arch sm_80: exit {r80.returncode}: {r80.stderr.strip()}")
        ptxas = Path("/usr/local/cuda/bin/ptxas")
        for arch, ptx_file in (("sm_90", ptx), ("sm_80", Path(out80) / "conv3x3_pad1_compute80.ptx")):
            if not ptxas.exists() or not ptx_file.exists():
                print(f"note: no ptxas or no {ptx_file.name}: ptxas {arch} not run")
                continue
            p = subprocess.run([str(ptxas), f"-arch={arch}", str(ptx_file), "-o", os.path.join(tmp, "p.cubin")],
                               capture_output=True, text=True)
            if p.returncode:
                failures.append(f"ptxas -arch={arch} rejects the TF32 PTX: {p.stderr.strip()}")
            else:
                print(f"ptxas -arch={arch}: the TF32 PTX assembles")

    # 3. a CPU target has no tensor cores
    r = subprocess.run([KILN, "run", model, "--random", "--tf32"], capture_output=True, text=True)
    if r.returncode != 2 or "--tf32" not in r.stderr or r.stderr.count("\n") != 1:
        failures.append(f"run --tf32 on the CPU: exit {r.returncode}, {r.stderr!r} (want a one-line usage error)")

for f in failures:
    print("FAIL:", f)
print("test_tf32:", "FAILED" if failures else "ok")
sys.exit(1 if failures else 0)
