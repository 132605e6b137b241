#!/usr/bin/env bash
# Portable objects: what `kiln compile` writes may call only what every
# host provides.  A model exercising f16/bf16 conversions both ways, libm
# math, integer division and pooling (plus the bundled ResNet-8) is
# compiled for this CPU, for --portable (x86-64 baseline) and with
# KILN_CPU=x86-64 / x86-64-v3 / znver3; `nm -u` of each object must list
# only libm functions, libc's mem*, the runtime's kiln_rt_parallel_for and
# the linker-defined GOT.  (A bf16 fptrunc on a CPU without AVX512-BF16
# becomes a call to compiler-rt's __truncsfbf2, which is what this catches.)
# usage: compile_symbols.sh KILN SOURCE_DIR WORK_DIR
set -euo pipefail
kiln=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
python3 - "$work/mix.onnx" <<'PY'
import sys
import onnx
from onnx import TensorProto as T, helper as h
n = [h.make_node("Cast", ["x"], ["h"], to=T.FLOAT16), h.make_node("Cast", ["h"], ["hf"], to=T.FLOAT),
     h.make_node("Cast", ["x"], ["b"], to=T.BFLOAT16), h.make_node("Cast", ["b"], ["bf"], to=T.FLOAT),
     h.make_node("Tanh", ["x"], ["t"]), h.make_node("Erf", ["x"], ["e"]), h.make_node("Exp", ["x"], ["ex"]),
     h.make_node("Abs", ["x"], ["a"]), h.make_node("Log", ["a"], ["l"]), h.make_node("Sqrt", ["a"], ["s"]),
     h.make_node("Pow", ["a", "x"], ["p"]), h.make_node("Floor", ["x"], ["fl"]), h.make_node("Ceil", ["x"], ["ce"]),
     h.make_node("Cast", ["x"], ["i"], to=T.INT32), h.make_node("Div", ["i", "i"], ["q"]),
     h.make_node("Cast", ["q"], ["qf"], to=T.FLOAT), h.make_node("Relu", ["x"], ["r"]),
     h.make_node("MaxPool", ["x4"], ["mp"], kernel_shape=[2, 2]), h.make_node("Flatten", ["mp"], ["mpf"]),
     h.make_node("Sum", ["hf", "bf", "t", "e", "ex", "l", "s", "p", "fl", "ce", "qf", "r"], ["y"])]
g = h.make_graph(n, "mix", [h.make_tensor_value_info("x", T.FLOAT, [4, 8]),
                             h.make_tensor_value_info("x4", T.FLOAT16, [1, 2, 5, 5])],
                 [h.make_tensor_value_info("y", T.FLOAT, [4, 8]), h.make_tensor_value_info("mpf", T.FLOAT16, None)])
onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), sys.argv[1])
PY
allowed=" tanhf tanh erff erf expf exp exp2f exp2 logf log log2f log2 powf pow fmodf fmod sqrtf sqrt floorf floor
 ceilf ceil roundevenf roundeven nearbyintf nearbyint rintf rint truncf trunc roundf round fabsf fabs fminf fmin
 fmaxf fmax fmaf fma memset memcpy memmove kiln_rt_parallel_for _GLOBAL_OFFSET_TABLE_ "
checked=0
for model in "$work/mix.onnx" "$src/models/resnet8_cifar.onnx"; do
  for mode in host portable x86-64 x86-64-v3 znver3; do
    out="$work/$(basename "$model" .onnx)-$mode"
    case $mode in
      host) "$kiln" compile "$model" -o "$out" > /dev/null 2>&1 ;;
      portable) "$kiln" compile "$model" -o "$out" --portable > /dev/null 2>&1 ;;
      *) KILN_CPU=$mode "$kiln" compile "$model" -o "$out" > /dev/null 2>&1 ;;
    esac || { echo "FAIL: kiln compile $model ($mode) failed"; "$kiln" compile "$model" -o "$out.err" || true; exit 1; }
    obj=$(ls "$out"/*.o)
    for sym in $(nm -u "$obj" | awk '{print $2}'); do
      case "$allowed" in
        *" $sym "*) ;;
        *) echo "FAIL: $obj ($mode) needs '$sym', which not every host provides"; exit 1 ;;
      esac
    done
    checked=$((checked + 1))
  done
done
echo "$checked objects checked: no symbols beyond libm, mem*, the runtime"
echo "1 passed, 0 failed"
