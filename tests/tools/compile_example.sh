#!/usr/bin/env bash
# `kiln compile` end to end: compile the bundled model ahead of time, build
# models/example/main.c against the generated header with -std=c99 -Wall
# -Wextra -Werror, run it, and compare its logits with `kiln run` on the
# same input (same generated code, so they must agree to the last bit but
# for FMA contraction differences between the JIT and AOT paths: rtol 1e-5).
# Also: the .so variant links, and bad invocations fail cleanly.
# usage: compile_example.sh KILN SOURCE_DIR WORK_DIR
set -euo pipefail
kiln=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
model="$src/models/resnet8_cifar.onnx"
"$kiln" compile "$model" -o "$work/out" --shared
for f in resnet8_cifar.o resnet8_cifar.h resnet8_cifar.weights kiln_runtime.c kiln_runtime.h libresnet8_cifar.so; do
  [ -s "$work/out/$f" ] || [ "$f" = resnet8_cifar.weights ] || { echo "FAIL: $f missing"; exit 1; }
done
cc -O2 -std=c99 -Wall -Wextra -Werror "$src/models/example/main.c" "$work/out/resnet8_cifar.o" \
   "$work/out/kiln_runtime.c" -I"$work/out" -lm -pthread -o "$work/classify"
python3 - "$work" <<'PY'
import sys, numpy as np
w = sys.argv[1]
x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
x.tofile(f"{w}/input.f32"); np.save(f"{w}/input.npy", x)
PY
"$work/classify" "$work/out/resnet8_cifar.weights" "$work/input.f32" > "$work/aot.txt"
mkdir -p "$work/jit"
"$kiln" run "$model" --input input="$work/input.npy" --output "$work/jit" > /dev/null
python3 - "$work" <<'PY'
import sys, numpy as np
w = sys.argv[1]
aot = np.loadtxt(f"{w}/aot.txt", dtype=np.float64)
jit = np.load(f"{w}/jit/logits.npy").astype(np.float64).ravel()
err = np.max(np.abs(aot - jit)) / max(np.max(np.abs(jit)), 1e-30)
print(f"AOT vs JIT max relative error {err:.3g}")
sys.exit(0 if err <= 1e-5 else 1)
PY
# bad invocations: one line, non-zero exit, nothing left behind
if "$kiln" compile "$model" -o "$work/out" 2> "$work/err.txt"; then echo "FAIL: overwrote a non-empty folder"; exit 1; fi
grep -q "^kiln: error: .*not empty" "$work/err.txt"
if "$kiln" compile "$model" -o "$work/bad" --name 9lives 2> "$work/err.txt"; then echo "FAIL: bad prefix accepted"; exit 1; fi
grep -q "^kiln: error: .*not a C identifier" "$work/err.txt"
[ ! -e "$work/bad" ]
if "$kiln" compile "$model" -o /proc/kiln-no-such/x 2> "$work/err.txt"; then echo "FAIL: unwritable folder accepted"; exit 1; fi
[ "$(wc -l < "$work/err.txt")" -le 2 ]
echo "1 passed, 0 failed"
