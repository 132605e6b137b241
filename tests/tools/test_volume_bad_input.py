#!/usr/bin/env python3
"""`kiln run --volume/--dicom` on bad input: each case must give exactly one
stderr line `kiln: error: ...` matching its pattern, an exit status in
1..127 (no crash), and no output at all (no --seg-out file, no
--overlay-out folder, nothing in --output).  Cases: corrupt gzip (damaged
deflate stream, truncated .nii.gz, bad CRC in the trailer), garbage and truncated .nii, 4-D NIfTI
(wrong dimensionality), a DICOM series with a missing slice, with uneven
spacing, mixed with another series, with a duplicate position, in an
unsupported transfer syntax (HTJ2K, which this GDCM does not know), with a
truncated file, an empty folder, a model whose input is not 2-D/3-D, bad
option values.  Then a good run writes exactly the expected files.

usage: test_volume_bad_input.py KILN WORK_DIR
"""
import os
import re
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import volume_data as vd  # noqa: E402

kiln, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
W = lambda *p: os.path.join(work, *p)  # noqa: E731
passed = failed = 0

g = vd.geometry("axial")
vol = vd.ct_volume((12, 10, 6), seed=2)
model = W("seg3d.onnx")
vd.seg_model(model, 5, [4, 6, 5])
good_nii = W("good.nii.gz")
vd.write_nifti(good_nii, vol, g)
good_dcm = W("good_dcm")
files = vd.write_dicom_series(good_dcm, vol, g)  # files[k] is slice k


def series_copy(name):
    dst = W(name)
    shutil.copytree(good_dcm, dst)
    return dst, [os.path.join(dst, os.path.basename(f)) for f in files]


raw = open(good_nii, "rb").read()
bad = bytearray(raw)
mid = len(bad) // 2
bad[mid:mid + 64] = bytes((b ^ 0x5A) for b in bad[mid:mid + 64])
open(W("corrupt.nii.gz"), "wb").write(bytes(bad))
open(W("truncated.nii.gz"), "wb").write(raw[: len(raw) // 2])
# The gzip trailer's CRC-32, in a file large enough that reading the voxels
# does not obviously reach the trailer (niftilib notices; kiln also reads
# the whole stream once more to be sure).
big = np.random.default_rng(5).integers(-1000, 1000, (64, 64, 24)).astype(np.int16)
nib.save(nib.Nifti1Image(big, vd.ras_affine(g)), W("big.nii.gz"))
crc = bytearray(open(W("big.nii.gz"), "rb").read())
crc[-8] ^= 0xFF
open(W("badcrc.nii.gz"), "wb").write(bytes(crc))
open(W("garbage.nii"), "wb").write(b"this is not a NIfTI file" * 20)
nib.save(nib.Nifti1Image(vol.astype(np.int16), vd.ras_affine(g)), W("plain.nii"))
plain = open(W("plain.nii"), "rb").read()
open(W("short.nii"), "wb").write(plain[: len(plain) - 100])
nib.save(nib.Nifti1Image(np.stack([vol] * 3, axis=3), vd.ras_affine(g)), W("four_d.nii.gz"))

missing, f_missing = series_copy("missing")
os.remove(f_missing[3])
uneven, f_uneven = series_copy("uneven")
ds = pydicom.dcmread(f_uneven[3])
ds.ImagePositionPatient = [float(x) for x in ds.ImagePositionPatient[:2]] + [float(ds.ImagePositionPatient[2]) + 0.7]
ds.save_as(f_uneven[3])
mixed, _ = series_copy("mixed")
vd.write_dicom_series(W("other"), vol, g)
# its name has a newline: the error must still be one line (shown as '?')
shutil.copy(os.path.join(W("other"), sorted(os.listdir(W("other")))[0]), os.path.join(mixed, "ZZ\nother"))
dup, f_dup = series_copy("duplicate")
ds = pydicom.dcmread(f_dup[2])
ds.SOPInstanceUID = pydicom.uid.generate_uid()
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.save_as(os.path.join(dup, "ZZ_dup"))
htj2k, f_htj2k = series_copy("htj2k")
for f in f_htj2k:
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # HTJ2K lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.save_as(f, enforce_file_format=True)
trunc, f_trunc = series_copy("truncated_dicom")
data = open(f_trunc[2], "rb").read()
open(f_trunc[2], "wb").write(data[: len(data) // 2])
os.makedirs(W("empty"))
open(W("empty", "README.txt"), "w").write("no DICOM here\n")

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
m = helper.make_model(helper.make_graph(
    [helper.make_node("Relu", ["x"], ["y"], name="relu")], "flat",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])]), opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
onnx.save(m, W("flat.onnx"))
os.makedirs(W("notempty"))
open(W("notempty", "x"), "w").write("x")


def expect_error(what, pattern, *args, rc_range=(1, 127)):
    global passed, failed
    out, seg, ov = W("out"), W("seg.nii.gz"), W("overlays")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    r = subprocess.run([kiln, "run", *args, "--output", out, "--seg-out", seg,
                        *(["--overlay-out", ov] if "--overlay-out" not in args else [])],
                       capture_output=True, text=True)
    lines = r.stderr.splitlines()
    leftovers = os.listdir(out) + [p for p in (seg, ov) if os.path.exists(p)]
    leftovers += [f for f in os.listdir(work) if ".kiln-tmp" in f]
    ok = (rc_range[0] <= r.returncode <= rc_range[1] and len(lines) == 1 and lines[0].startswith("kiln: error: ")
          and re.search(pattern, lines[0]) and not leftovers)
    print(("PASS " if ok else "FAIL ") + f"{what}: rc {r.returncode}: {r.stderr.strip()}"
          + (f" (left behind: {leftovers})" if leftovers else ""), flush=True)
    passed, failed = passed + bool(ok), failed + (not ok)


expect_error("corrupt gzip", r"corrupt\.nii\.gz: .*(corrupt gzip)", model, "--volume", W("corrupt.nii.gz"))
expect_error("truncated gzip", r"truncated\.nii\.gz: .*(truncated|corrupt gzip)", model, "--volume", W("truncated.nii.gz"))
expect_error("gzip CRC", r"badcrc\.nii\.gz: .*corrupt gzip", model, "--volume", W("badcrc.nii.gz"))
expect_error("garbage nii", r"garbage\.nii: not a NIfTI-1/-2 file", model, "--volume", W("garbage.nii"))
expect_error("truncated nii", r"short\.nii: truncated", model, "--volume", W("short.nii"))
expect_error("4-D NIfTI", r"four_d\.nii\.gz: wrong dimensionality: 4-D with 3 volumes", model, "--volume", W("four_d.nii.gz"))
expect_error("missing file", r"nope\.nii\.gz: cannot open", model, "--volume", W("nope.nii.gz"))
expect_error("missing slice", r"missing: missing slices: a gap of 5 mm \(1 missing at 2\.5 mm\)", model, "--dicom", missing)
expect_error("uneven spacing", r"uneven: inconsistent slice spacing", model, "--dicom", uneven)
expect_error("mixed series", r"mixed: mixed series: .*/ZZ\?other have different SeriesInstanceUIDs", model, "--dicom", mixed)
expect_error("duplicate slice", r"duplicate: two slices at the same position", model, "--dicom", dup)
expect_error("unsupported transfer syntax", r"htj2k/IM\d+: unsupported transfer syntax 1\.2\.840\.10008\.1\.2\.4\.201",
             model, "--dicom", htj2k)
expect_error("truncated DICOM file", r"truncated_dicom/IM\d+: ", model, "--dicom", trunc)
expect_error("no DICOM files", r"empty: no DICOM files", model, "--dicom", W("empty"))
expect_error("not a folder", r"nofolder: not a folder", model, "--dicom", W("nofolder"))
expect_error("model input rank", r"input 'x' is f32\[1,16\]: a volume needs", W("flat.onnx"), "--volume", good_nii)
expect_error("bad window", r"--window must be CENTER,WIDTH", model, "--volume", good_nii, "--window", "40", rc_range=(2, 2))
expect_error("zero window", r"WIDTH > 0", model, "--volume", good_nii, "--window", "40,0", rc_range=(2, 2))
expect_error("both inputs", r"give one of --volume FILE or --dicom DIR", model, "--volume", good_nii, "--dicom", good_dcm,
             rc_range=(2, 2))
expect_error("overlay folder not empty", r"notempty: output folder is not empty", model, "--volume", good_nii,
             "--overlay-out", W("notempty"))

# A good run writes exactly the segmentation, the overlays and the output.
out, seg, ov = W("good_out"), W("good_seg.nii"), W("good_overlays")
os.makedirs(out)
r = subprocess.run([kiln, "run", model, "--dicom", good_dcm, "--output", out, "--seg-out", seg, "--overlay-out", ov],
                   capture_output=True, text=True)
ok = (r.returncode == 0 and os.listdir(out) == ["scores.npy"] and nib.load(seg).shape == vol.shape
      and len(os.listdir(ov)) == vol.shape[2] and r.stderr == "")
print(("PASS " if ok else "FAIL ") + f"good run writes the seg, {vol.shape[2]} overlays and scores.npy: rc {r.returncode} {r.stderr.strip()}")
passed, failed = passed + ok, failed + (not ok)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
