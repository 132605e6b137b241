#!/usr/bin/env bash
# README command 1: installs build dependencies, builds kiln (Release) and
# runs its main job on the bundled real classifier: inspect SqueezeNet 1.0
# (ImageNet, float16), then compile it for this CPU and classify the bundled
# kitten photo, printing the top-5 classes with their names.
#   tools/demo.sh [MODEL]   (another model: inspect it, run it on seeded random data)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh" --no-python
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build "$root/build" -j "$(nproc)" >/dev/null
cd "$root"
if [ $# -gt 0 ]; then
  echo "\$ kiln inspect $1"
  build/kiln inspect "$1"
  echo
  echo "\$ kiln run --random --threads 2 --repeat 20 $1"
  build/kiln run --random --threads 2 --repeat 20 "$1"
  exit
fi
sq=models/squeezenet
echo "\$ kiln inspect $sq/squeezenet1.0-fp16.onnx"
build/kiln inspect "$sq/squeezenet1.0-fp16.onnx"
echo
echo "\$ kiln run $sq/squeezenet1.0-fp16.onnx --image $sq/kitten_224.png --channels bgr --scale 1 --labels $sq/imagenet-labels.txt"
build/kiln run "$sq/squeezenet1.0-fp16.onnx" --image "$sq/kitten_224.png" --channels bgr --scale 1 \
    --labels "$sq/imagenet-labels.txt"
