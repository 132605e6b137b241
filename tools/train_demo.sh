#!/usr/bin/env bash
# Trains LeNet-5 (models/lenet5.kiln) on Fashion-MNIST (Debian's
# dataset-fashion-mnist: 60,000 training images, 10,000 test images, 28x28
# zero-padded to 32x32) with kiln train, validating on the test set after
# every epoch, and prints the test accuracy of the trained network.
#   tools/train_demo.sh [OUTDIR] [EPOCHS]   (default /tmp/kiln-lenet5, 12 epochs)
# With PyTorch installed (pip install torch) it then times PyTorch CPU on the
# same network for 3 epochs and prints both seconds per epoch and the ratio.
# Writes OUTDIR/metrics.csv, curves.png, checkpoint.bin, model.onnx and
# val_outputs.npy (the test set's logits).  Target: >= 89% test accuracy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/tmp/kiln-lenet5}
epochs=${2:-12}
bash "$root/tools/install-deps.sh" --no-python
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
cmake --build "$root/build" -j "$(nproc)" --target kiln >/dev/null
data=$(dirname "$(dpkg -L dataset-fashion-mnist | grep 'train-images-idx3-ubyte' | head -1)")
rm -rf "$out"
cd "$root"
echo "\$ kiln train models/lenet5.kiln --data $data --val $data --epochs $epochs --batch 64 --optimizer adam --lr 1e-3 --seed 1 --out $out"
start=$(date +%s.%N)
build/kiln train models/lenet5.kiln --data "$data" --val "$data" --epochs "$epochs" --batch 64 \
    --optimizer adam --lr 1e-3 --seed 1 --threads "$(nproc)" --out "$out"
end=$(date +%s.%N)
# The last row of metrics.csv: validation = the 10,000 test images.
awk -F, -v t0="$start" -v t1="$end" 'END {
  printf "LeNet-5 on Fashion-MNIST: test accuracy %.2f%% after %d epochs (%.1f s in all, %.1f s per epoch)\n",
         100 * $5, $1, t1 - t0, (t1 - t0) / $1 }' "$out/metrics.csv"
echo "curves: $out/curves.png   trained model (ONNX): $out/model.onnx"
# Seconds per epoch next to PyTorch CPU's for the same network, batch,
# optimizer and threads, measured now, in this run (bench/train_lenet.py;
# PyTorch is a benchmark reference only, never a kiln dependency).
if python3 -c "import torch" 2>/dev/null; then
  python3 bench/train_lenet.py build/kiln --kiln-metrics "$out/metrics.csv" --epochs 3 --threads "$(nproc)" \
      --data "$data"
else
  echo "(pip install torch, then rerun, to see PyTorch CPU's seconds per epoch next to kiln's)"
fi
