#!/usr/bin/env bash
# `kiln run` rejects bad inputs with one `kiln: error:` line and a non-zero
# exit, never a crash or a silent wrong answer, and writes no partial output:
# wrong input name, shape, dtype, unreadable/truncated .npy, Fortran-order
# .npy, missing input, input given twice, bad option values, missing output
# folder.  Then a good run writes exactly the expected output file.
# usage: run_bad_input.sh KILN SOURCE_DIR WORK_DIR
set -uo pipefail
kiln=$1 src=$2 work=$3
rm -rf "$work" && mkdir -p "$work/out"
model="$src/models/resnet8_cifar.onnx"
python3 - "$work" <<'PY'
import sys, numpy as np
w = sys.argv[1]
np.save(f"{w}/good.npy", np.zeros((1, 3, 32, 32), np.float32))
np.save(f"{w}/shape.npy", np.zeros((1, 3, 64, 64), np.float32))
np.save(f"{w}/dtype.npy", np.zeros((1, 3, 32, 32), np.float64))
np.save(f"{w}/fortran.npy", np.asfortranarray(np.zeros((1, 3, 32, 32), np.float32)).reshape(1, 3, 32, 32, order="F"))
open(f"{w}/truncated.npy", "wb").write(open(f"{w}/good.npy", "rb").read()[:200])
open(f"{w}/garbage.npy", "wb").write(b"not a numpy file at all")
PY
pass=0 fail=0
expect_error() { # description, pattern, args...
  local what=$1 pat=$2; shift 2
  "$kiln" run "$@" > "$work/stdout" 2> "$work/stderr"
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(wc -l < "$work/stderr")" -eq 1 ] &&
     grep -q "^kiln: error: .*$pat" "$work/stderr"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL $what (rc $rc): $(cat "$work/stderr")"
  fi
}
expect_error "unknown input name" "no input named 'images'" "$model" --input images="$work/good.npy"
expect_error "wrong shape" "must be f32\[1,3,32,32\], got f32\[1,3,64,64\]" "$model" --input input="$work/shape.npy"
expect_error "wrong dtype" "must be f32\[1,3,32,32\], got f64" "$model" --input input="$work/dtype.npy"
expect_error "truncated npy" "truncated" "$model" --input input="$work/truncated.npy"
expect_error "garbage npy" "not a .npy file" "$model" --input input="$work/garbage.npy"
expect_error "fortran npy" "Fortran-order" "$model" --input input="$work/fortran.npy"
expect_error "missing file" "cannot open" "$model" --input input="$work/nope.npy"
expect_error "missing input" "input 'input' is required" "$model"
expect_error "input twice" "given twice" "$model" --input input="$work/good.npy" --input input="$work/good.npy"
expect_error "bad threads" "--threads must be a positive integer" "$model" --random --threads 0
expect_error "bad repeat" "--repeat must be a positive integer" "$model" --random --repeat x
expect_error "bad warmup" "--warmup must be a non-negative integer" "$model" --random --warmup -1
expect_error "bad format" "--format must be npy or pb" "$model" --random --format csv
expect_error "output folder under a file" "cannot create" "$model" --random --output "$work/good.npy/nope"
expect_error "unknown option" "unknown option '--fast'" "$model" --fast
[ -z "$(ls "$work/out")" ] || { fail=$((fail + 1)); echo "FAIL: a failed run left files behind"; }
if "$kiln" run "$model" --input "$work/good.npy" --output "$work/out" --format pb > /dev/null 2>&1 &&
   [ "$(ls "$work/out")" = "logits.pb" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL good run"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
