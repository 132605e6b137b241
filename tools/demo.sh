#!/usr/bin/env bash
# README command 1: installs build dependencies, builds kiln (Release) and
# runs its main job on the bundled default model: inspect it, then compile it
# for this CPU and run it on a seeded random image (2 threads).
#   tools/demo.sh [MODEL]     (default: models/resnet8_cifar.onnx)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh" --no-python
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build "$root/build" -j "$(nproc)" >/dev/null
model=${1:-$root/models/resnet8_cifar.onnx}
echo "\$ kiln inspect $model"
"$root/build/kiln" inspect "$model"
echo
echo "\$ kiln run --random --threads 2 --repeat 20 $model"
"$root/build/kiln" run --random --threads 2 --repeat 20 "$model"
