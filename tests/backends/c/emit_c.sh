#!/usr/bin/env bash
# kiln emit-c end to end on the bundled ResNet-8:
#  - the output is deterministic (two emits, identical bytes);
#  - it compiles with gcc and clang at -std=c99 -O2 -Wall -Wextra -Wpedantic
#    -Werror, in both weight modes (C arrays, binary blob);
#  - the example runner's outputs equal `kiln run`'s (LLVM backend) within
#    rtol 1e-5 of the largest logit (same loop IR; only FMA contraction and
#    libm differ), and clang's -fsanitize=address,undefined build runs clean;
#  - --threads with a two-thread host callback gives identical bytes, also
#    with --cores 1, 3 and 16, whose C also matches the LLVM backend;
#  - bad invocations (unwritable folder, bad prefix, non-empty folder) fail
#    with one line and leave nothing behind.
# usage: emit_c.sh KILN SOURCE_DIR WORK_DIR
set -euo pipefail
kiln=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
model="$src/models/resnet8_cifar.onnx"
flags="-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror"
"$kiln" emit-c "$model" -o "$work/a" > /dev/null
"$kiln" emit-c "$model" -o "$work/b" > /dev/null
diff -r "$work/a" "$work/b" > /dev/null || { echo "FAIL: emit-c is not deterministic"; exit 1; }
"$kiln" emit-c "$model" -o "$work/blob" --weights-file --name net > /dev/null
python3 -c "import numpy as np; np.save('$work/input.npy', np.random.default_rng(3).standard_normal((1,3,32,32)).astype(np.float32))"
mkdir -p "$work/jit"
"$kiln" run "$model" --input input="$work/input.npy" --output "$work/jit" > /dev/null
check() { # dir, runner args...
  python3 - "$1" "$work/jit/logits.npy" <<'PY'
import sys, numpy as np
got = np.load(sys.argv[1] + "/output_0.npy").astype(np.float64).ravel()
want = np.load(sys.argv[2]).astype(np.float64).ravel()
err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30)
print(f"  {sys.argv[1]}: max error vs LLVM {err:.3g}")
sys.exit(0 if err <= 1e-5 else 1)
PY
}
for cc in gcc clang-19; do
  command -v $cc > /dev/null || { echo "FAIL: $cc not installed"; exit 1; }
  (cd "$work/a" && $cc $flags -o run_$cc main.c resnet8_cifar.c resnet8_cifar_weights.c -lm)
  mkdir -p "$work/a/out_$cc" && "$work/a/run_$cc" "$work/input.npy" "$work/a/out_$cc" && check "$work/a/out_$cc"
  (cd "$work/blob" && $cc $flags -o run_$cc main.c net.c -lm)
  mkdir -p "$work/blob/out_$cc" && "$work/blob/run_$cc" --weights "$work/blob/net.weights" "$work/input.npy" "$work/blob/out_$cc" &&
    check "$work/blob/out_$cc"
done
(cd "$work/a" && clang-19 $flags -fsanitize=address,undefined -fno-sanitize-recover=all -g -o run_asan main.c \
   resnet8_cifar.c resnet8_cifar_weights.c -lm)
mkdir -p "$work/a/out_asan" && ASAN_OPTIONS=detect_leaks=1 "$work/a/run_asan" "$work/input.npy" "$work/a/out_asan" &&
  check "$work/a/out_asan"
"$kiln" emit-c "$model" -o "$work/thr" --threads --name net > /dev/null
gcc $flags -pthread -I"$work/thr" -o "$work/thr/host" "$src/tests/backends/c/threads_host.c" "$work/thr/net.c" \
  "$work/thr/net_weights.c" -lm
"$work/thr/host"
# --cores: per-core scratch slots and thread chunks change, the numbers do not
# (1: one slot; 3: an odd slot count on the two-thread host; 16: more slots
# than the host's threads)
for c in 1 3 16; do
  "$kiln" emit-c "$model" -o "$work/cores$c" --threads --cores $c --name net > /dev/null
  gcc $flags -pthread -I"$work/cores$c" -o "$work/cores$c/host" "$src/tests/backends/c/threads_host.c" \
    "$work/cores$c/net.c" "$work/cores$c/net_weights.c" -lm
  "$work/cores$c/host"
  (cd "$work/cores$c" && gcc $flags -o run main.c net.c net_weights.c -lm)
  mkdir -p "$work/cores$c/out" && "$work/cores$c/run" "$work/input.npy" "$work/cores$c/out" && check "$work/cores$c/out"
done
# bad invocations
if "$kiln" emit-c "$model" -o "$work/a" 2> "$work/err"; then echo "FAIL: wrote into a non-empty folder"; exit 1; fi
grep -q "^kiln: error: .*not empty" "$work/err"
if "$kiln" emit-c "$model" -o "$work/x" --name "int" 2> "$work/err"; then echo "FAIL: keyword prefix accepted"; exit 1; fi
grep -q "^kiln: error: .*C identifier" "$work/err"
if "$kiln" emit-c "$model" -o "/proc/no-such-dir/x" 2> "$work/err"; then echo "FAIL: unwritable folder accepted"; exit 1; fi
[ "$(wc -l < "$work/err")" -eq 1 ] && grep -q "^kiln: error: " "$work/err"
[ ! -e "$work/x" ] && ! ls "$work" | grep -q kiln-tmp
for vb in 24 abc ""; do
  if "$kiln" emit-c "$model" -o "$work/x" --vector-bytes $vb 2> "$work/err"; then echo "FAIL: --vector-bytes '$vb' accepted"; exit 1; fi
  [ "$(wc -l < "$work/err")" -eq 1 ] && grep -q "^kiln: error: .*vector-bytes" "$work/err" || { cat "$work/err"; echo "FAIL: --vector-bytes '$vb': not one clear line"; exit 1; }
  [ ! -e "$work/x" ]
done
for c in 0 -2 2x 1025 ""; do
  if "$kiln" emit-c "$model" -o "$work/x" --cores "$c" 2> "$work/err"; then echo "FAIL: --cores '$c' accepted"; exit 1; fi
  [ "$(wc -l < "$work/err")" -eq 1 ] && grep -q "^kiln: error: .*cores" "$work/err" || { cat "$work/err"; echo "FAIL: --cores '$c': not one clear line"; exit 1; }
  [ ! -e "$work/x" ]
done
echo "1 passed, 0 failed"
