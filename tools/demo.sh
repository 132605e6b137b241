#!/usr/bin/env bash
# README command 1: installs build dependencies, builds kiln (Release) and
# runs its main job on the bundled default model.
#   tools/demo.sh [MODEL]     (default: models/resnet8_cifar.onnx)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh" --no-python
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build "$root/build" -j "$(nproc)" >/dev/null
model=${1:-$root/models/resnet8_cifar.onnx}
echo "\$ kiln inspect $model"
"$root/build/kiln" inspect "$model"
