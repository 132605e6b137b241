#!/usr/bin/env python3
"""LeNet-5 on Fashion-MNIST: kiln train vs PyTorch CPU, same network, batch,
optimizer and thread count, measured in the same run.

    python3 bench/train_lenet.py KILN [--epochs 10] [--batch 64] [--threads 1]
                                 [--lr 1e-3] [--data /usr/share/datasets/fashion-mnist]
                                 [--skip-torch] [--skip-kiln] [--kiln-metrics CSV]

The network is models/lenet5.kiln (C1-S2-C3-S4-C5-F6-output, tanh, 2x2
average pooling, 32x32 input: the 28x28 images zero-padded by 2), trained
with Adam (PyTorch's defaults besides lr) and softmax cross-entropy from
the same data in shuffled mini-batches (the last short batch dropped, as
kiln does).  Prints seconds per epoch (the median over the epochs after
the first, which includes PyTorch's warm-up and kiln's compile) and the
ratio kiln / PyTorch (below 1: kiln faster), and the test accuracy each
reaches.  Both train on all 60,000 images; kiln's seconds also include its
per-epoch validation on the 10,000 test images (--val), which PyTorch's
loop does not do: the ratio is, if anything, unfavourable to kiln.  PyTorch is a benchmark reference only (not a kiln dependency):
`pip install torch` (the PyPI wheel, about 5 GB with its CUDA libraries;
it runs on the CPU here).  Run on a quiet machine: nothing else running.
"""
import argparse
import csv
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir):
    def p(name):
        for ext in ("", ".gz"):
            if os.path.exists(os.path.join(data_dir, name + ext)):
                return os.path.join(data_dir, name + ext)
        sys.exit(f"train_lenet: {name} not found in {data_dir} (apt-get install dataset-fashion-mnist)")
    xtr, ytr = read_idx(p("train-images-idx3-ubyte")), read_idx(p("train-labels-idx1-ubyte"))
    xte, yte = read_idx(p("t10k-images-idx3-ubyte")), read_idx(p("t10k-labels-idx1-ubyte"))

    def prep(x):  # N x 1 x 32 x 32 in [0, 1]
        x = x.astype(np.float32) / 255
        return np.pad(x, ((0, 0), (2, 2), (2, 2)))[:, None]
    return prep(xtr), ytr.astype(np.int64), prep(xte), yte.astype(np.int64)


def run_torch(args, xtr, ytr, xte, yte):
    import torch
    from torch import nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                        nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84),
                        nn.Tanh(), nn.Linear(84, 10))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    rng = np.random.default_rng(0)
    times = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(X)))
        nb = len(X) // args.batch
        total = 0.0
        for b in range(nb):
            idx = order[b * args.batch:(b + 1) * args.batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            total += loss.item()
        times.append(time.perf_counter() - t0)
        print(f"torch epoch {epoch + 1}: loss {total / nb:.4f} {times[-1]:.2f} s", flush=True)
    with torch.no_grad():
        acc = (net(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
    return times, acc


def kiln_times(metrics):
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    times = [float(r["seconds"]) for r in rows]
    acc = float(rows[-1]["val_acc"])
    return times, acc / 100 if acc > 1 else acc


def run_kiln(args):
    if args.kiln_metrics:  # a run that already happened (tools/train_demo.sh's)
        return kiln_times(args.kiln_metrics)
    out = tempfile.mkdtemp(prefix="kiln-lenet-")
    cmd = [args.kiln, "train", os.path.join(os.path.dirname(__file__), "..", "models", "lenet5.kiln"), "--data",
           args.data, "--val", args.data, "--epochs", str(args.epochs), "--batch", str(args.batch), "--optimizer", "adam", "--lr",
           str(args.lr), "--loss", "ce", "--threads", str(args.threads), "--out", out]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return kiln_times(os.path.join(out, "metrics.csv"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kiln")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-kiln", action="store_true")
    ap.add_argument("--kiln-metrics", help="take kiln's seconds per epoch from this metrics.csv instead of training")
    args = ap.parse_args()
    xtr, ytr, xte, yte = load(args.data)
    res = {}
    if not args.skip_kiln:
        res["kiln"] = run_kiln(args)
    if not args.skip_torch:
        res["torch"] = run_torch(args, xtr, ytr, xte, yte)
    print(f"\nLeNet-5, Fashion-MNIST, batch {args.batch}, {args.threads} thread(s), Adam lr {args.lr}; "
          f"kiln {len(res['kiln'][0]) if 'kiln' in res else 0} epochs, PyTorch {args.epochs if 'torch' in res else 0}")
    per = {}
    for name, (times, acc) in res.items():
        per[name] = statistics.median(times[1:] if len(times) > 1 else times)
        print(f"  {name:6s} {per[name]:7.2f} s/epoch (first epoch {times[0]:.2f} s)  test accuracy {acc * 100:.2f}%")
    if len(per) == 2:
        print(f"  kiln / torch = {per['kiln'] / per['torch']:.2f}")


if __name__ == "__main__":
    main()
