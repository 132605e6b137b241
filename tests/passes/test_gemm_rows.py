#!/usr/bin/env python3
"""Gemm's row form with chunk-major weights (passes/lower_linalg.c) against float64 NumPy.

Usage:  python3 tests/passes/test_gemm_rows.py [--backend llvm|c] KILN_BINARY WORK_DIR [case ...]

A Gemm whose B is [K, N] row-major (transB=0, or a constant transB=1 B
that the lowering transposes at compile time) takes the row form:
Y's row in chunks of columns, each accumulated over k.  When B is a fixed
initializer and there is more than one chunk, B is re-laid chunk-major at
compile time (buffer `<B>.chunked`), so each chunk streams one contiguous
block; a transB B with one chunk becomes `<B>.T`.  The cases: a batch-1
classifier 2048 -> 1000 with bias and a fused Relu (two chunks of 500, B
given transposed), f64 with B given transposed (K = 70: a partial
transpose tile), a transposed B of one chunk, three rows by three chunks
of 512, alpha and beta with a broadcast C, f64, and two that must not
re-lay B: B a graph input (not fixed), and N = 384 (one chunk).  The
schedule check reads `kiln inspect --loops`: `.chunked` present exactly in
the cases named chunked_*.

TOLERANCE, per output element with reference r (float64 NumPy):
  |y - r| <= (K + 2) * u * (|alpha| * sum_k |a * b| + |beta * c|) + u * |r|
u = 2^-24 (f32) or 2^-53 (f64): the worst-case bound of a K-term sum in
any order (Higham 4.2), one rounding each for alpha's product and beta*C's
sum, and the final store.  alpha = 0.5 and beta = 2 scale exactly.  Relu
is exact and 1-Lipschitz.  A wrong column, chunk or k errs by a whole term,
far above the bound.
"""
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kiln_check import load  # noqa: E402

blocks = load("conv_blocks", "tests/passes/test_conv_blocks.py")

ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}


def case(rng, M, K, N, trans_b=0, alpha=1.0, beta=1.0, c_shape=None, relu=False, b_input=False, dt=np.float32):
    a = rng.uniform(-1, 1, (M, K)).astype(dt)
    b = rng.uniform(-1, 1, (N, K) if trans_b else (K, N)).astype(dt)
    c = rng.uniform(-1, 1, c_shape).astype(dt) if c_shape else None
    t = ONNX_TYPE[dt]
    inputs = [helper.make_tensor_value_info("a", t, [M, K])]
    feeds = {"a": a}
    inits = []
    if b_input:
        inputs.append(helper.make_tensor_value_info("b", t, list(b.shape)))
        feeds["b"] = b
    else:
        inits.append(numpy_helper.from_array(b, "b"))
    if c is not None:
        inits.append(numpy_helper.from_array(c, "c"))
    gemm_out = "g" if relu else "y"
    nodes = [helper.make_node("Gemm", ["a", "b"] + (["c"] if c is not None else []), [gemm_out], name="gemm",
                              transB=trans_b, alpha=alpha, beta=beta)]
    if relu:
        nodes.append(helper.make_node("Relu", ["g"], ["y"], name="relu"))
    g = helper.make_graph(nodes, "gemm_rows", inputs, [helper.make_tensor_value_info("y", t, [M, N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="kiln-test")
    m.ir_version = 8
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if trans_b:
        b64 = b64.T
    ref = alpha * (a64 @ b64)
    s = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if c is not None:
        cb = np.broadcast_to(c.astype(np.float64), (M, N))
        ref = ref + beta * cb
        s = s + np.abs(beta * cb)
    if relu:
        ref = np.maximum(ref, 0)
    u = 2.0 ** -53 if dt == np.float64 else 2.0 ** -24
    return m, feeds, ref, (K + 2) * u * s + u * np.abs(ref)


def build_cases(rng):
    c = {}
    # ResNet-50's classifier: B given [N, K] (transB=1), re-laid straight into two chunks of 500
    c["chunked_fc_2048x1000_relu"] = case(rng, 1, 2048, 1000, trans_b=1, c_shape=(1000,), relu=True)
    # transB in f64, K not a multiple of the 64 x 64 transpose tiles: three chunks of 320
    c["chunked_f64_transb_k70"] = case(rng, 2, 70, 960, trans_b=1, dt=np.float64, c_shape=(960,))
    # transB with one chunk: B^T itself (`.T`), the same row form
    c["transb_one_chunk_n200"] = case(rng, 3, 130, 200, trans_b=1, c_shape=(200,))
    # three rows, three chunks of 512
    c["chunked_m3_n1536"] = case(rng, 3, 300, 1536, c_shape=(1536,))
    # alpha, beta and a C broadcast along rows; 640 = two chunks of 320
    c["chunked_alpha_beta"] = case(rng, 2, 100, 640, alpha=0.5, beta=2.0, c_shape=(1, 640))
    c["chunked_f64_n1024"] = case(rng, 1, 64, 1024, dt=np.float64, c_shape=(1024,))
    # B supplied at run time: read in place, row-major
    c["b_input_n1000"] = case(rng, 1, 256, 1000, b_input=True, c_shape=(1000,))
    # 384 columns are one chunk: nothing to re-lay
    c["one_chunk_n384"] = case(rng, 1, 128, 384, c_shape=(384,))
    # the k loop takes 8, 4, 2 or 1 k a pass (the largest that divides K):
    # K = 2048, 64, 256 take 8; 300, 100 take 4; 70, 130 take 2; 77 takes 1
    c["chunked_odd_k77"] = case(rng, 2, 77, 640, c_shape=(640,))
    return c


def check_schedule(kiln, name, path):
    import subprocess
    dump = subprocess.run([kiln, "inspect", "--loops", str(path)], capture_output=True, text=True).stdout
    if "kernel " not in dump:
        return "kiln inspect --loops printed no kernel"
    chunked = ".chunked" in dump
    want = name.startswith("chunked_")
    if chunked != want:
        return f"B {'is' if chunked else 'is not'} re-laid chunk-major ('.chunked' in the loop IR), expected the opposite"
    return None


if __name__ == "__main__":
    sys.exit(blocks.main(sys.argv, build_cases, check_schedule))
