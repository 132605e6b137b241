#!/usr/bin/env bash
# The GPU check (issue #12): for a session lent a GPU machine (no network
# there), in well under 10 minutes.  From the repository root:
#   1. here, once: python3 tools/gpu_check.py prep build/gpu-ref ZOO_DIR SUITE_DIR
#      (ONNX Runtime's CPU outputs for the zoo networks, the models under
#      16 MB, the ONNX cases the CUDA host emulation passes; ~37 MB)
#   2. on the GPU (the device tool): run command "bash tools/gpu_check.sh",
#      carry ["build/gpu-ref"], timeout_s 480.
# Device time: the steps below stop by about GPU_CHECK_TOTAL_S (default
# 360 s) after the start: the ONNX step gets what is left (at most
# GPU_CHECK_ONNX_S), so with the machine's start the session spends about
# 8 minutes of its 15.
# Steps, each printing its own verdict; the exit status is non-zero if any
# check failed:
#   build   kiln (Release, no tests: the machine may lack Criterion)
#   smoke   resnet8_cifar through --target cuda, 3 runs (eager, capture, graph)
#   zoo     the networks vs ONNX Runtime (tools/gpu_check.py accuracy)
#   timing  ResNet-50, MobileNetV2, 3-D CNN at batch 1 and 32: images/s and
#           fraction of the FP32 peak (tools/gpu_check.py timing)
#   tf32    tests/backends/cuda/test_tf32.py --target cuda: --tf32 convolutions on
#           the tensor cores within the TF32 bound (fragment layout, cvt.rna)
#   onnx    the ONNX backend cases through `kiln run --target cuda`
#           (tests/conformance/run_cli_suite.py, expectations: cuda_host.expect),
#           stopped after GPU_CHECK_ONNX_S seconds (default 200) or at
#           GPU_CHECK_TOTAL_S, whichever comes first
# GPU_CHECK_NETS / GPU_CHECK_TIMED (comma-separated) narrow the networks.
# Models that are not carried (ResNet-50, ...) are regenerated with
# models/gen/zoo.py or zoo2.py when python3 has numpy and onnx, and used only if their
# sha256 is the reference's.
set -u
cd "$(dirname "$0")/.."
REF=${GPU_REF:-build/gpu-ref}
B=build-gpu
CACHE=$B/cache
JOBS=$(nproc)
fail=0
t0=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - t0 )) s)"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -3
if ls /usr/local/cuda/lib64/libnvrtc.so* > /dev/null 2>&1 || [ -n "${KILN_NVRTC:-}" ]; then echo "NVRTC: found"
else echo "no NVRTC under /usr/local/cuda/lib64: set KILN_NVRTC=/path/libnvrtc.so"; fi
python3 -c "import numpy, onnx; print('python: numpy', numpy.__version__, 'onnx', onnx.__version__)" || echo "python3 lacks numpy/onnx: zoo steps limited"
[ -f "$REF/manifest.json" ] || echo "no references at $REF: carry build/gpu-ref (tools/gpu_check.py prep)"

step "build"
if [ -n "${GPU_CHECK_KILN:-}" ]; then  # (testing this script: a kiln already built)
  mkdir -p $B && cp "$GPU_CHECK_KILN" $B/kiln
elif ! { cmake -S . -B $B -DKILN_TESTS=OFF -DCMAKE_BUILD_TYPE=Release > $B.cmake.log 2>&1 &&
       cmake --build $B -j"$JOBS" --target kiln > $B.build.log 2>&1; }; then
  tail -20 $B.cmake.log $B.build.log 2>/dev/null
  echo "BUILD FAILED"; exit 1
fi
K=$B/kiln
mkdir -p $CACHE
$K --version

step "smoke: resnet8_cifar, 3 runs"
$K run models/resnet8_cifar.onnx --random --target cuda --repeat 3 || fail=1

step "zoo networks vs ONNX Runtime (references from $REF)"
python3 tools/gpu_check.py accuracy $K "$REF" $CACHE || fail=1

step "timing (batch 1 and 32, --repeat 20 medians)"
python3 tools/gpu_check.py timing $K "$REF" $CACHE || fail=1

step "--tf32: convolutions on the tensor cores vs float64 (bounds from TF32's unit roundoff)"
python3 tests/backends/cuda/test_tf32.py $K --target cuda || fail=1

step "ONNX backend cases through --target cuda"
left=$(( ${GPU_CHECK_TOTAL_S:-360} - ($(date +%s) - t0) ))
budget=${GPU_CHECK_ONNX_S:-200}
[ "$left" -lt "$budget" ] && budget=$left
if [ "$budget" -lt 20 ]; then
  echo "SKIP: ${left} s left of GPU_CHECK_TOTAL_S=${GPU_CHECK_TOTAL_S:-360}"
elif [ -f "$REF/onnx-tests.tar.xz" ]; then
  rm -rf $B/onnx-tests && mkdir -p $B/onnx-tests && tar -xJf "$REF/onnx-tests.tar.xz" -C $B/onnx-tests
  python3 tests/conformance/run_cli_suite.py $K $B/onnx-tests tests/conformance/cuda_host.expect \
    --target cuda --jobs "$JOBS" --dedicated --budget "$budget" || fail=1
else
  echo "SKIP: no $REF/onnx-tests.tar.xz"
fi
step "done: $([ $fail = 0 ] && echo all checks passed || echo SOME CHECKS FAILED)"
exit $fail
