#!/usr/bin/env bash
# Fuzzes the ONNX importer, the DSL parser, the image readers, then the
# medical-volume readers (NIfTI, DICOM): tests/fuzz/run.sh [SECONDS] (default 60 each)
#
# Configures and builds build-fuzz/ at the repository root (clang-19,
# -DKILN_FUZZ=ON -DKILN_SANITIZE=ON; only the fuzz target is built), copies
# the seed corpus tests/fuzz/corpus/onnx/ into build-fuzz/corpus/ (so the
# committed seeds stay small), writes a dictionary of op and attribute names
# from ir/ops.def and ir/attrs.def, and runs fuzz_onnx_import for SECONDS.
# Exits non-zero on any crash, leak, timeout or sanitizer report; the
# offending input is saved in build-fuzz/artifacts/.  To keep it as a
# regression seed, copy it into tests/fuzz/corpus/onnx/ with a .onnx name.
# Set CC to use another clang.
set -euo pipefail

secs=${1:-60}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$repo/build-fuzz
cc=${CC:-clang-19}
cxx=${CXX:-clang++-19}  # tools/volume/dicom.cc (GDCM is C++)

cmake -S "$repo" -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DKILN_FUZZ=ON -DKILN_SANITIZE=ON -DKILN_TESTS=OFF >/dev/null
cmake --build "$build" --target fuzz_onnx_import fuzz_dsl_parse fuzz_image_decode fuzz_volume_nifti fuzz_volume_dicom -j2

rm -rf "$build/corpus"
mkdir -p "$build/corpus" "$build/artifacts"
cp "$repo"/tests/fuzz/corpus/onnx/*.onnx "$build/corpus/"

# A dictionary of the names the importer matches on (op types, attribute
# names, Constant forms, external-data keys), so mutations can make them.
{
  grep -o '^KILN_OP([A-Z_0-9]*, "[A-Za-z]*"' "$repo/ir/ops.def" | sed 's/.*, //'
  sed -n 's/^KILN_ATTR([a-z_0-9]*, [A-Z]*, \([a-zA-Z_0-9]*\),.*/"\1"/p' "$repo/ir/attrs.def" | grep -v '^"_' | sort -u
  printf '"%s"\n' Constant Upsample value value_float value_floats value_int value_ints sparse_value \
    consumed_inputs broadcast is_test spatial location offset length ai.onnx
} > "$build/onnx.dict"

# halt_on_error: UBSan findings are crashes; detect_leaks: so are leaks.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
"$build/tests/fuzz/fuzz_onnx_import" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$build/onnx.dict" -artifact_prefix="$build/artifacts/" "$build/corpus"

# The DSL parser and elaborator, on its own corpus and dictionary.
rm -rf "$build/corpus-dsl"
mkdir -p "$build/corpus-dsl"
cp "$repo"/tests/fuzz/corpus/dsl/* "$build/corpus-dsl/"
"$build/tests/fuzz/fuzz_dsl_parse" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$repo/tests/fuzz/dsl.dict" -artifact_prefix="$build/artifacts/" "$build/corpus-dsl"

# The image readers (PNG, JPEG; labels files), seeds in corpus/image/.
rm -rf "$build/corpus-image"
mkdir -p "$build/corpus-image"
cp "$repo"/tests/fuzz/corpus/image/* "$build/corpus-image/"
"$build/tests/fuzz/fuzz_image_decode" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/" "$build/corpus-image"
# The NIfTI reader (and the preparation after it), then the DICOM reader,
# each on its own seeds (tests/fuzz/corpus/nifti/, corpus/dicom/).
for kind in nifti dicom; do
  rm -rf "$build/corpus-$kind"
  mkdir -p "$build/corpus-$kind"
  cp "$repo"/tests/fuzz/corpus/$kind/* "$build/corpus-$kind/"
  "$build/tests/fuzz/fuzz_volume_$kind" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/" "$build/corpus-$kind"
done
