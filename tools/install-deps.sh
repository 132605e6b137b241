#!/usr/bin/env bash
# Installs what building and testing kiln needs, and nothing that is already there.
# Debian packages via apt-get (non-interactive); Python test oracles via pip.
# Used by both README commands and by .ci/run.  Pass --no-python to skip pip.
# --suite-onnx DIR: only install the onnx version that regenerates the ONNX
# conformance suite (pinned in tests/conformance/generate_suite.py) into DIR
# (pip --target, no dependencies: the oracles' numpy/protobuf serve), apart
# from the onnx the tests use as an oracle; use it with PYTHONPATH=DIR.
set -euo pipefail
want_python=1
[ "${1:-}" = "--no-python" ] && want_python=0
if [ "${1:-}" = "--suite-onnx" ]; then
  dir=${2:?usage: install-deps.sh --suite-onnx DIR}
  py=${PYTHON:-python3}
  here=$(cd "$(dirname "$0")/.." && pwd)
  want=$("$py" "$here/tests/conformance/generate_suite.py" --onnx-version)
  have=$(cd / && PYTHONPATH="$dir" "$py" -c 'import onnx; print(onnx.__version__)' 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    echo "kiln: installing onnx==$want into $dir (for regenerating the conformance suite)" >&2
    rm -rf "$dir"
    "$py" -m pip install -q --no-deps --target "$dir" "onnx==$want"
  fi
  exit 0
fi

debs=(cmake make gcc llvm-19-dev clang-19 libclang-rt-19-dev libprotobuf-c-dev protobuf-c-compiler
      libonnx-dev libcriterion-dev pkg-config zlib1g-dev libzstd-dev libffi-dev libedit-dev libxml2-dev
      g++ libnifti2-dev libgdcm-dev libpng-dev libjpeg62-turbo-dev dcm2niix
      dataset-fashion-mnist)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "kiln: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ $want_python -eq 1 ]; then
  py=${PYTHON:-python3}
  if ! "$py" -c 'import onnx, onnxruntime, numpy, ml_dtypes, PIL, nibabel, pydicom, pylibjpeg, openjpeg' 2>/dev/null; then
    echo "kiln: installing Python test oracles: onnx onnxruntime numpy ml_dtypes pillow nibabel pydicom pylibjpeg-openjpeg" >&2
    "$py" -m pip install -q onnx onnxruntime numpy ml_dtypes pillow nibabel pydicom pylibjpeg pylibjpeg-openjpeg
  fi
fi
