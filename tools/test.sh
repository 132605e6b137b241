#!/usr/bin/env bash
# README command 2: installs what the tests need and runs the whole suite:
#   1. a normal build and its tests (unit, ONNX conformance, model checks);
#   2. an AddressSanitizer + UndefinedBehaviorSanitizer build, same tests
#      but those labelled slow (whole networks: minutes each under ASan);
#   3. the importer fuzz target for a bounded time (KILN_FUZZ_SECONDS, 60).
# The ONNX conformance suite is read from $KILN_ONNX_TESTS or
# ../shared/onnx-tests; without either it is regenerated with the onnx
# package (and the run says so loudly).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)
bash tools/install-deps.sh

suite=${KILN_ONNX_TESTS:-}
if [ -z "$suite" ] && [ -d "$root/../shared/onnx-tests/node" ]; then suite=$(cd "$root/../shared/onnx-tests" && pwd); fi
if [ -z "$suite" ]; then
  suite="$root/build/onnx-tests"
  echo "kiln: NOTE: no shared ONNX test suite found; regenerating it into $suite with the onnx package" >&2
  # the onnx version is pinned (generate_suite.py says why); it lives apart
  # from the oracle onnx, in build/onnx-suite-pkg
  pinned="$root/build/onnx-suite-pkg"
  rm -rf "$suite" # no stale cases from an earlier generation
  if ! { bash tools/install-deps.sh --suite-onnx "$pinned" &&
         PYTHONPATH="$pinned" python3 tests/conformance/generate_suite.py "$suite"; }; then
    echo "kiln: WARNING: could not regenerate the ONNX suite: conformance tests will be SKIPPED" >&2
    suite=""
  fi
fi
export KILN_ONNX_TESTS="$suite"
cache="$root/build/test-cache"

run_build() { # name, ctest-exclude-label, extra cmake args...
  local dir="$root/$1" exclude=$2; shift 2
  echo "=== build $dir $*"
  cmake -S "$root" -B "$dir" -DKILN_TESTS=ON -DKILN_TEST_CACHE="$cache" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" 2>&1 | grep -E "warning|error" || true
  cmake --build "$dir" -j "$jobs" >/dev/null
  local skip=()
  [ -z "$suite" ] && skip=(-E 'conformance')
  [ -n "$exclude" ] && skip+=(-LE "$exclude")
  (cd "$dir" && ctest --output-on-failure -j "$jobs" "${skip[@]}")
}

# KILN_WERROR: any compiler warning fails the build, hence the test run.
run_build build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_WERROR=ON
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_build build-asan slow -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_WERROR=ON

if [ -x tests/fuzz/run.sh ]; then
  echo "=== fuzz (${KILN_FUZZ_SECONDS:-60} s)"
  tests/fuzz/run.sh "${KILN_FUZZ_SECONDS:-60}"
fi
echo "kiln: all tests passed"
