#!/usr/bin/env bash
# Installs what building and testing kiln needs, and nothing that is already there.
# Debian packages via apt-get (non-interactive); Python test oracles via pip.
# Used by both README commands and by .ci/run.  Pass --no-python to skip pip.
set -euo pipefail
want_python=1
[ "${1:-}" = "--no-python" ] && want_python=0

debs=(cmake make gcc llvm-19-dev clang-19 libclang-rt-19-dev libprotobuf-c-dev protobuf-c-compiler
      libonnx-dev libcriterion-dev pkg-config zlib1g-dev libzstd-dev libffi-dev libedit-dev libxml2-dev)
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
  if ! "$py" -c 'import onnx, onnxruntime, numpy, ml_dtypes' 2>/dev/null; then
    echo "kiln: installing Python test oracles: onnx onnxruntime numpy ml_dtypes (bf16)" >&2
    "$py" -m pip install -q onnx onnxruntime numpy ml_dtypes
  fi
fi
