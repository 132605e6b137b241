"""Synthetic test data for `kiln run --volume/--dicom` (test-only; needs
numpy, nibabel, pydicom, onnx).

- ct_volume(): a CT-like volume in Hounsfield units (integers, -1000..1400:
  air, soft-tissue blobs, a bone shell), shape (I, J, K).
- Geometries as (row_cos, col_cos, pixel spacing (col step, row step),
  slice step along the normal (signed), origin), in DICOM's LPS; lps_affine()
  builds the 4x4 voxel->LPS affine of the array as stored (k = file order),
  ras_affine() the NIfTI one (x and y negated).
- write_nifti(): the volume with its RAS affine (int16 + scl_inter, as CT).
- write_dicom_series(): one CT Image Storage file per slice k, pixel (row j,
  column i) = vol[i, j, k], stored uint16 = HU + 1024 with RescaleIntercept
  -1024, slope 1 (or as given); file names shuffled so order must come from positions.
- models: tiny segmenters made with the onnx helper API (seeded weights).
"""
import os

import numpy as np


def ct_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    vol = np.full(shape, -1000.0)
    body = (i / 0.9) ** 2 + (j / 0.8) ** 2 + (k / 1.2) ** 2 < 1
    vol[body] = 40
    bone = body & ((i / 0.9) ** 2 + (j / 0.8) ** 2 + (k / 1.2) ** 2 > 0.7)
    vol[bone] = 900
    blob = ((i - 0.3) / 0.3) ** 2 + ((j + 0.2) / 0.25) ** 2 + (k / 0.5) ** 2 < 1
    vol[blob] = 160
    vol += rng.integers(-30, 31, size=shape)
    return np.clip(np.round(vol), -1024, 3071).astype(np.int16)


def geometry(kind):
    if kind == "axial":  # standard axial, slices stored head to feet
        return dict(row=(1, 0, 0), col=(0, 1, 0), ps=(0.8, 0.7), step=-2.5, origin=(-7.5, -3.0, 40.0))
    if kind == "coronal_tilted":  # coronal, rotated 12 degrees about S
        t = np.deg2rad(12)
        return dict(row=(np.cos(t), np.sin(t), 0), col=(0, 0, -1), ps=(0.9, 1.6), step=2.0,
                    origin=(-20.0, 15.0, 30.0))
    raise ValueError(kind)


def normal(g):
    return np.cross(np.asarray(g["row"], float), np.asarray(g["col"], float))


def lps_affine(g):
    a = np.eye(4)
    a[:3, 0] = np.asarray(g["row"], float) * g["ps"][0]
    a[:3, 1] = np.asarray(g["col"], float) * g["ps"][1]
    a[:3, 2] = normal(g) * g["step"]
    a[:3, 3] = g["origin"]
    return a


def ras_affine(g):
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps_affine(g)


def write_nifti(path, vol, g):
    import nibabel as nib
    img = nib.Nifti1Image(vol.astype(np.int16), ras_affine(g))
    img.set_qform(ras_affine(g), code=1)
    img.set_sform(ras_affine(g), code=1)
    nib.save(img, path)
    return img


def _fmt(x):  # DS values: 16 characters at most
    return float(f"{x:.8g}")


def write_dicom_series(folder, vol, g, series_uid=None, seed=1, transfer_syntax=None, slope=1.0):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    aff = lps_affine(g)
    order = np.random.default_rng(seed).permutation(vol.shape[2])
    paths = []
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = "Synthetic^Phantom"
        ds.PatientID = "kiln-test"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_fmt(x) for x in (aff @ [0, 0, k, 1])[:3]]
        ds.ImageOrientationPatient = [_fmt(x) for x in list(g["row"]) + list(g["col"])]
        ds.PixelSpacing = [_fmt(g["ps"][1]), _fmt(g["ps"][0])]  # row spacing, column spacing
        ds.SliceThickness = _fmt(abs(g["step"]))
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = _fmt(slope)
        ds.RescaleType = "HU"
        stored = (vol[:, :, k].T.astype(np.float64) + 1024) / slope
        assert np.all(stored == np.round(stored)) and stored.max() < 65536
        pix = stored.astype(np.uint16)
        ds.PixelData = pix.tobytes()
        path = os.path.join(folder, f"IM{order[k]:04d}")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def seg_model(path, rank, spatial, classes=3, hidden=4, seed=0, batch=1):
    """Conv(3, pad 1) -> Relu -> Conv(1) : [N,1,*spatial] -> [N,classes,*spatial].
    spatial entries may be strings (symbolic dims)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nd = rank - 2
    w1 = rng.normal(0, 0.5, (hidden, 1) + (3,) * nd).astype(np.float32)
    b1 = rng.normal(0, 0.1, hidden).astype(np.float32)
    w2 = rng.normal(0, 0.5, (classes, hidden) + (1,) * nd).astype(np.float32)
    b2 = rng.normal(0, 0.1, classes).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", kernel_shape=[3] * nd, pads=[1] * (2 * nd)),
        helper.make_node("Relu", ["h"], ["hr"], name="relu"),
        helper.make_node("Conv", ["hr", "w2", "b2"], ["scores"], name="conv2", kernel_shape=[1] * nd),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    graph = helper.make_graph(
        nodes, "seg%dd" % nd,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1] + list(spatial))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, classes] + list(spatial))],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def threshold_model(path):
    """2-D, symbolic H and W: scores = (0.5, x), so the label is x > 0.5."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = np.array([[[[0.0]]], [[[1.0]]]], np.float32)
    b = np.array([0.5, 0.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["scores"], name="thr", kernel_shape=[1, 1])], "threshold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", "W"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, "H", "W"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
