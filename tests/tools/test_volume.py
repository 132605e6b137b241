#!/usr/bin/env python3
"""`kiln run --volume / --dicom` against independent references.

usage: test_volume.py KILN WORK_DIR

For a synthetic CT volume (tests/tools/volume_data.py) in two geometries
(axial, slices stored feet-ward; coronal rotated 12 degrees, anisotropic),
written once as NIfTI (nibabel) and once as a DICOM series (pydicom, shuffled
file names, uint16 + RescaleIntercept -1024), and two tiny segmenters made
with the onnx helper API (a 3-D conv net [1,1,8,12,10] and a 2-D one
[1,1,12,10], run per axial slice), it checks:

1. NIfTI and DICOM give bit-identical model outputs (same voxels, same
   canonical orientation: the DICOM series is sorted by position, so its k
   axis may run the other way; canonicalisation must undo that).
2. Those outputs equal ONNX Runtime fed the array prepared here, with
   nibabel's as_closest_canonical, the window clamp((v - (C - W/2)) / W, 0, 1)
   and half-pixel (align_corners=False) linear resampling written as
   interpolation matrices in NumPy float64 (a different formulation from
   kiln's loops).  Tolerance: max|kiln - ort| <= 1e-5 * max(1, max|ort|):
   both sides are float32 convolutions of float32 inputs (kiln's input is
   computed in double and rounded once, so inputs agree to 1 ulp), and the
   nets are two layers deep, so the difference is a few float32 ulps of the
   scores (~1e-7 relative); 1e-5 leaves room for summation order.
3. The segmentation NIfTI loads in nibabel, has the input's affine
   (np.allclose; for DICOM the affine derived here from the tags, k sorted
   along the normal) and shape, and its labels equal those derived from ORT's
   scores here (argmax over channels, nearest back with index
   floor((c + 0.5) * m / n), nibabel's apply_orientation back to the input
   grid), except at voxels whose two best ORT scores are within 1e-4
   (float rounding may pick either there; at most 0.5% allowed).
4. Geometry against dcm2niix: the DICOM segmentation's canonical affine and
   shape equal those of dcm2niix's conversion of the same series
   (atol 1e-3 mm: dcm2niix stores float32), and a per-voxel threshold model
   (label = windowed HU > 0.5, symbolic H and W so no resampling) gives,
   in canonical space, exactly dcm2niix's voxels thresholded the same way.
5. --overlay-out writes one PNG per canonical axial slice, size (R, A)
   extent, radiological view: the pixel at row r, column c is tinted iff the
   canonical label at i = nR-1-c, j = nA-1-r is non-zero.
6. RLE Lossless and JPEG 2000 Lossless copies of a series give the same
   output as the uncompressed one (GDCM decodes them).
Prints PASS/FAIL lines and "N passed, M failed".
"""
import glob
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import onnxruntime as ort
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import volume_data as vd  # noqa: E402

kiln, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
WINDOW = (40.0, 400.0)
passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    passed, failed = passed + bool(ok), failed + (not ok)


def run(*args):
    r = subprocess.run([kiln, "run", *args], capture_output=True, text=True)
    if r.returncode != 0:
        print("kiln failed:", " ".join(args), r.stderr, file=sys.stderr)
    return r


def interp_matrix(n, o):
    """Half-pixel linear interpolation from n samples to o, edge-clamped."""
    m = np.zeros((o, n))
    for q in range(o):
        x = min(max((q + 0.5) * n / o - 0.5, 0.0), n - 1.0)
        i0 = int(np.floor(x))
        i1 = min(i0 + 1, n - 1)
        m[q, i0] += 1 - (x - i0)
        m[q, i1] += x - i0
    return m


def canonical(img):
    c = nib.as_closest_canonical(img)
    return c.get_fdata(dtype=np.float64), c  # (nR, nA, nS)


def prepare(arr_ras, out_dhw):
    """window, then (S, A, R) = (D, H, W) resampling; out_dhw entries None keep the size."""
    c, w = WINDOW
    x = np.clip((arr_ras - (c - w / 2)) / w, 0, 1).transpose(2, 1, 0)  # [S][A][R]
    for ax, o in enumerate(out_dhw):
        if o is not None:
            x = np.moveaxis(np.tensordot(interp_matrix(x.shape[ax], o), np.moveaxis(x, ax, 0), axes=1), 0, ax)
    return x


def ort_scores(model, arr_ras, rank):
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    if rank == 5:
        x = prepare(arr_ras, (8, 12, 10)).astype(np.float32)
        return sess.run(None, {"x": x[None, None]})[0]
    x = prepare(arr_ras, (None, 12, 10)).astype(np.float32)
    return np.concatenate([sess.run(None, {"x": x[k][None, None]})[0] for k in range(x.shape[0])])


def labels_from_scores(scores, rank, canon_shape):
    """ORT scores -> labels on the canonical (R, A, S) grid, plus an 'ambiguous' mask."""
    s = scores[0] if rank == 5 else scores.transpose(1, 0, 2, 3)  # [C][D][H][W]
    top2 = np.sort(s, axis=0)[-2:]
    lab, amb = np.argmax(s, axis=0), (top2[1] - top2[0]) < 1e-4  # [D][H][W]
    nR, nA, nS = canon_shape
    idx = [np.minimum(np.floor((np.arange(n) + 0.5) * m / n).astype(int), m - 1)
           for n, m in ((nS, lab.shape[0]), (nA, lab.shape[1]), (nR, lab.shape[2]))]
    pick = np.ix_(*idx)
    return lab[pick].transpose(2, 1, 0), amb[pick].transpose(2, 1, 0)


def to_input_grid(canon_arr, img):
    """Undo as_closest_canonical with nibabel's own orientation tools."""
    back = ornt_transform(axcodes2ornt("RAS"), io_orientation(img.affine))
    return apply_orientation(canon_arr, back)


def dicom_affine(g, nslices):
    """RAS affine of the series as kiln must order it: ascending along the normal."""
    a = vd.lps_affine(g)
    if g["step"] < 0:  # stored order runs against the normal: flip k
        a[:3, 3] = (a @ [0, 0, nslices - 1, 1])[:3]
        a[:3, 2] = -a[:3, 2]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ a


models = {5: os.path.join(work, "seg3d.onnx"), 4: os.path.join(work, "seg2d.onnx")}
vd.seg_model(models[5], 5, [8, 12, 10], seed=3)
vd.seg_model(models[4], 4, [12, 10], seed=4)
thr = os.path.join(work, "threshold.onnx")
vd.threshold_model(thr)

for kind in ("axial", "coronal_tilted"):
    g = vd.geometry(kind)
    vol = vd.ct_volume((20, 16, 9), seed=7)
    d = os.path.join(work, kind)
    os.makedirs(d)
    nii = os.path.join(d, "ct.nii.gz")
    img = vd.write_nifti(nii, vol, g)
    img = nib.load(nii)
    dcm = os.path.join(d, "dicom")
    # Coronal: RescaleSlope 0.5 (stored = 2 * (HU + 1024)), so slope matters.
    vd.write_dicom_series(dcm, vol, g, slope=0.5 if kind == "coronal_tilted" else 1.0)
    arr, canon_img = canonical(img)
    for rank, model in models.items():
        tag = f"{kind} {'3-D' if rank == 5 else '2-D'}"
        outs = {}
        for src, opt in (("nifti", ["--volume", nii]), ("dicom", ["--dicom", dcm])):
            od = os.path.join(d, f"out_{rank}_{src}")
            os.makedirs(od)
            seg = os.path.join(d, f"seg_{rank}_{src}.nii.gz")
            extra = ["--overlay-out", os.path.join(d, f"overlay_{rank}_{src}")] if src == "dicom" else []
            r = run(model, *opt, "--window", "%g,%g" % WINDOW, "--output", od, "--seg-out", seg, *extra)
            check(r.returncode == 0, f"{tag} {src}: kiln run exits 0")
            if r.returncode:
                continue
            outs[src] = (np.load(os.path.join(od, "scores.npy")), nib.load(seg))
        if len(outs) < 2:
            continue
        (kn, sn), (kd, sd) = outs["nifti"], outs["dicom"]
        check(kn.shape == kd.shape and np.array_equal(kn, kd), f"{tag}: NIfTI and DICOM outputs identical {kn.shape}")
        ref = ort_scores(model, arr, rank)
        err = np.abs(kn - ref).max() if kn.shape == ref.shape else np.inf
        check(err <= 1e-5 * max(1.0, np.abs(ref).max()), f"{tag}: kiln vs ORT max abs err {err:.3g} (scores up to {np.abs(ref).max():.3g})")
        # Segmentations: geometry and labels.
        check(np.allclose(sn.affine, img.affine) and sn.shape == img.shape,
              f"{tag}: NIfTI segmentation has the input's affine and shape")
        want_aff = dicom_affine(g, vol.shape[2])
        check(np.allclose(sd.affine, want_aff, atol=1e-4) and sd.shape == img.shape,
              f"{tag}: DICOM segmentation has the series' affine and shape")
        lab_c, amb_c = labels_from_scores(ref, rank, arr.shape)
        want = to_input_grid(lab_c, img)
        ambiguous = to_input_grid(amb_c, img)
        got = np.asanyarray(sn.dataobj)
        bad = (got != want) & ~ambiguous
        check(got.dtype == np.uint8 and not bad.any() and ambiguous.mean() <= 0.005,
              f"{tag}: NIfTI labels = ORT argmax ({bad.sum()} differ, {ambiguous.sum()} ambiguous of {got.size}, "
              f"{len(np.unique(want))} classes present)")
        got_d = nib.as_closest_canonical(sd).get_fdata()
        check(np.array_equal(got_d, nib.as_closest_canonical(sn).get_fdata()),
              f"{tag}: DICOM labels equal NIfTI labels in canonical space")
        if rank == 4:  # overlays from the DICOM run
            from PIL import Image
            pngs = sorted(glob.glob(os.path.join(d, "overlay_4_dicom", "slice_*.png")))
            lab_can = nib.as_closest_canonical(sd).get_fdata().astype(int)  # (nR, nA, nS)
            ok = len(pngs) == lab_can.shape[2]
            for k, p in enumerate(pngs if ok else []):
                px = np.asarray(Image.open(p).convert("RGB")).astype(int)
                ok &= px.shape[:2] == (lab_can.shape[1], lab_can.shape[0])
                if not ok:
                    break
                tinted = ~((px[..., 0] == px[..., 1]) & (px[..., 1] == px[..., 2]))
                lab_view = lab_can[::-1, ::-1, k].T  # row r <-> A index nA-1-r, column c <-> R index nR-1-c
                ok &= np.array_equal(tinted, lab_view != 0)
            check(ok, f"{tag}: {len(pngs)} overlay PNGs, radiological view, tint exactly where labels are non-zero")

    # Geometry and voxels against dcm2niix.
    conv = os.path.join(d, "dcm2niix")
    os.makedirs(conv)
    r = subprocess.run(["dcm2niix", "-z", "y", "-f", "ref", "-o", conv, os.path.join(d, "dicom")],
                       capture_output=True, text=True)
    ref_files = glob.glob(os.path.join(conv, "ref*.nii.gz"))
    check(r.returncode == 0 and len(ref_files) == 1, f"{kind}: dcm2niix converts the series")
    if ref_files:
        ref_img = nib.as_closest_canonical(nib.load(ref_files[0]))
        seg = os.path.join(d, "thr_dicom.nii.gz")
        r = run(thr, "--dicom", os.path.join(d, "dicom"), "--window", "%g,%g" % WINDOW, "--seg-out", seg)
        if r.returncode == 0:
            s = nib.as_closest_canonical(nib.load(seg))
            check(np.allclose(s.affine, ref_img.affine, atol=1e-3) and s.shape == ref_img.shape[:3],
                  f"{kind}: canonical affine and shape equal dcm2niix's")
            c, w = WINDOW
            want = (np.clip((ref_img.get_fdata() - (c - w / 2)) / w, 0, 1) > 0.5).astype(np.uint8)
            got = np.asanyarray(s.dataobj)
            check(np.array_equal(got, want), f"{kind}: threshold labels equal dcm2niix voxels thresholded "
                                             f"({int(want.sum())} of {want.size} voxels set)")
        else:
            check(False, f"{kind}: threshold model on the DICOM series")

# Compressed transfer syntaxes decode to the same voxels: RLE Lossless
# (pydicom's own encoder) and JPEG 2000 Lossless (pylibjpeg-openjpeg; needs
# slices of at least 32 x 32 for its default 6 resolutions) against the
# uncompressed series, on the 3-D model: identical outputs.
from pydicom.uid import JPEG2000Lossless, RLELossless  # noqa: E402
import pydicom  # noqa: E402
d = os.path.join(work, "compressed")
vol = vd.ct_volume((64, 48, 4), seed=9)
vd.write_dicom_series(os.path.join(d, "plain"), vol, vd.geometry("axial"))
outs = {}
for name, ts in (("plain", None), ("rle", RLELossless), ("j2k", JPEG2000Lossless)):
    src = os.path.join(d, name)
    if ts is not None:
        shutil.copytree(os.path.join(d, "plain"), src)
        for f in os.listdir(src):
            ds = pydicom.dcmread(os.path.join(src, f))
            ds.compress(ts)
            ds.save_as(os.path.join(src, f))
    od = os.path.join(d, "out_" + name)
    os.makedirs(od)
    r = run(models[5], "--dicom", src, "--output", od)
    outs[name] = np.load(os.path.join(od, "scores.npy")) if r.returncode == 0 else None
for name, uid in (("rle", RLELossless), ("j2k", JPEG2000Lossless)):
    check(outs[name] is not None and outs["plain"] is not None and np.array_equal(outs[name], outs["plain"]),
          f"{name} ({uid}): same output as the uncompressed series")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
