"""An independent implementation of kiln's image preprocessing (docs/images.md)
for the tests: Pillow decodes, NumPy (float64) resamples and normalises.

The resampling definition, written here from the documentation and not from
kiln's C: per axis, resizing n -> m, scale = n/m, f = max(scale, 1); output
pixel i (of the full resized axis) centres on (i + 0.5) * scale; its taps x
run from max(int(centre - f + 0.5), 0) to min(int(centre + f + 0.5), n) - 1
with weights max(0, 1 - |(x - centre + 0.5) / f|), normalised to sum 1 (the
weights of Pillow's BILINEAR filter, with no 8-bit rounding between the passes).
"""
import struct
import zlib

import numpy as np
from PIL import Image


def decode(path, truth=None):
    """RGB float64 0..255, HxWx3.  16-bit files: scaled by 255/65535."""
    if truth is not None:  # 16-bit RGB: Pillow cannot hold it; use the written array
        a = truth.astype(np.float64) * (255.0 / 65535.0)
        return np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a
    im = Image.open(path)
    if im.mode in ("I;16", "I;16B", "I"):
        a = np.asarray(im).astype(np.float64) * (255.0 / 65535.0)
        return np.repeat(a[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB")).astype(np.float64)


def axis_weights(n, m, offset, count):
    scale = n / m
    f = max(scale, 1.0)
    w = np.zeros((count, n))
    for i in range(count):
        c = (i + offset + 0.5) * scale
        lo = max(int(c - f + 0.5), 0)
        hi = min(int(c + f + 0.5), n)
        x = np.arange(lo, hi)
        k = np.maximum(0.0, 1.0 - np.abs((x - c + 0.5) / f))
        w[i, lo:hi] = k / k.sum()
    return w


def preprocess(rgb, H, W, resize="exact", channels="rgb", layout="nchw", scale=1 / 255, mean=(0, 0, 0),
               std=(1, 1, 1)):
    """One image -> tensor item (CHW or HWC), float64."""
    h, w = rgb.shape[:2]
    nh, nw, oy, ox = H, W, 0, 0
    if resize == "shorter":
        s = max(H / h, W / w)
        nh = max(H, int(np.floor(h * s + 0.5)))
        nw = max(W, int(np.floor(w * s + 0.5)))
        oy, ox = (nh - H) // 2, (nw - W) // 2
    wy = axis_weights(h, nh, oy, H)
    wx = axis_weights(w, nw, ox, W)
    out = np.stack([wy @ rgb[:, :, c] @ wx.T for c in range(3)], axis=0)  # CHW, RGB
    if channels == "bgr":
        out = out[::-1]
    out = (out * scale - np.asarray(mean, np.float64)[:, None, None]) / np.asarray(std, np.float64)[:, None, None]
    return out.transpose(1, 2, 0) if layout == "nhwc" else out


ADAM7 = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1)]


def write_png(path, arr, interlace=False):
    """A PNG from a uint8 or uint16 array (gray HxW or RGB HxWx3), written
    here so that 16-bit and Adam7-interlaced files can be made (Pillow
    writes neither).  Filter type 0 on every row."""
    h, w = arr.shape[:2]
    ct = 0 if arr.ndim == 2 else 2
    depth = 16 if arr.dtype == np.uint16 else 8
    be = arr.astype(">u2" if depth == 16 else np.uint8)

    def rows(a):
        return b"".join(b"\x00" + a[y].tobytes() for y in range(a.shape[0]))

    if interlace:  # passes without pixels are left out, as the spec says
        raw = b"".join(rows(be[y0::dy, x0::dx]) for y0, x0, dy, dx in ADAM7 if y0 < h and x0 < w)
    else:
        raw = rows(be)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, int(interlace))) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_png16(path, arr):
    write_png(path, arr.astype(np.uint16))
