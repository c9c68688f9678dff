"""Issue 19, class 2: headers that lie are bad input, not data.

Each case writes a small CT whose stored header field is broken (in the bytes on disk: ITK repairs
many of them silently, e.g. a pixdim of NaN becomes 1 mm), runs ``deepsparse simulate`` on it and
checks exit status 2, one ``error:`` line naming the field, no traceback, no output file and the
input unchanged (hash before and after). The volume-level reader is also checked directly where
the CLI adds nothing (NPY dtypes, MRC fields, origins and directions).
"""

from __future__ import annotations

import gzip
import re
import struct
import warnings
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from deepsparse_core.atomic import sha256_file
from deepsparse_core.cli import main
from deepsparse_core.data.volume_io import read_volume
from deepsparse_core.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

ARRAY = np.random.default_rng(0).normal(-400.0, 300.0, (12, 13, 14)).astype(np.float32)


def _nifti(path: Path, dtype=np.float32, qform: bool = True) -> Path:
    img = nibabel.Nifti1Image(ARRAY.T.astype(dtype), np.diag([2.0, 2.0, 3.0, 1.0]))  # nibabel: (x, y, z)
    if qform:
        img.set_qform(np.diag([2.0, 2.0, 3.0, 1.0]), code=1)
    nibabel.save(img, str(path))
    return path


def _patch(path: Path, offset: int, fmt: str, value) -> Path:
    """Overwrite one stored NIfTI-1 field (little endian; offsets of the NIfTI-1 header)."""
    data = bytearray(path.read_bytes())
    data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))
    return path


def _nii_gz(path: Path) -> Path:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    return gz


def _mha(path: Path, **fields) -> Path:
    """An .mha written by SimpleITK with header lines replaced (``Offset="nan 0 0"``)."""
    sitk.WriteImage(sitk.GetImageFromArray(ARRAY), str(path))
    head, body = path.read_bytes().split(b"ElementDataFile = LOCAL\n", 1)
    for key, value in fields.items():
        head = re.sub(rb"\n" + key.encode() + rb" = [^\n]*", b"\n" + f"{key} = {value}".encode(), head)
    path.write_bytes(head + b"ElementDataFile = LOCAL\n" + body)
    return path


def _nrrd(path: Path, compress: bool = False, cut: bool = False, drop: tuple = (), replace: dict | None = None) -> Path:
    image = sitk.GetImageFromArray(ARRAY)
    image.SetSpacing((0.8, 0.8, 2.5))
    sitk.WriteImage(image, str(path), compress)
    head, body = path.read_bytes().split(b"\n\n", 1)
    lines = [line for line in head.split(b"\n") if not line.split(b":")[0].decode() in drop]
    for key, value in (replace or {}).items():
        lines = [f"{key}: {value}".encode() if line.split(b":")[0].decode() == key else line for line in lines]
    if cut:
        body = body[: len(body) // 2]
    path.write_bytes(b"\n".join(lines) + b"\n\n" + body)
    return path


# id -> (bad file builder (folder) -> path, regular expression the error must match)
HEADERS = {
    "nifti-pixdim-zero": (lambda d: _patch(_nifti(d / "ct.nii"), 80, "<f", 0.0), r"pixdim\[1:4\] = \(0\.0"),
    "nifti-pixdim-nan": (lambda d: _patch(_nifti(d / "ct.nii"), 84, "<f", float("nan")), r"pixdim.*nan"),
    "nifti-pixdim-inf-gz": (lambda d: _nii_gz(_patch(_nifti(d / "ct.nii"), 88, "<f", float("inf"))), r"pixdim.*inf"),
    "nifti-scl-slope-nan": (lambda d: _patch(_nifti(d / "ct.nii"), 112, "<f", float("nan")), r"scl_slope = nan"),
    "nifti-scl-inter-inf": (lambda d: _patch(_nifti(d / "ct.nii"), 116, "<f", float("inf")), r"scl_inter = inf"),
    "nifti-quaternion-nan": (lambda d: _patch(_nifti(d / "ct.nii"), 256, "<f", float("nan")), r"quaternion.*finite"),
    "nifti-quaternion-not-unit": (lambda d: _patch(_nifti(d / "ct.nii"), 260, "<f", 1.5), r"not a unit quaternion"),
    "nifti-qoffset-inf": (lambda d: _patch(_nifti(d / "ct.nii"), 268, "<f", float("inf")), r"quaternion.*finite"),
    "nifti-srow-nan": (lambda d: _patch(_nifti(d / "ct.nii"), 280, "<f", float("nan")), r"srow"),
    "nifti-sizeof-hdr": (lambda d: _patch(_nifti(d / "ct.nii"), 0, "<i", 999), r"sizeof_hdr is 999"),
    "nifti-complex": (lambda d: _nifti(d / "ct.nii", np.complex64), r"complex64 are not real"),
    "mha-offset-nan": (lambda d: _mha(d / "ct.mha", Offset="nan 0 0"), r"Offset = nan 0 0"),
    "mha-spacing-zero": (lambda d: _mha(d / "ct.mha", ElementSpacing="1 0 1"), r"ElementSpacing = 1 0 1"),
    "mha-spacing-inf": (lambda d: _mha(d / "ct.mha", ElementSpacing="1 inf 1"), r"ElementSpacing = 1 inf 1"),
    "mha-matrix-nan": (lambda d: _mha(d / "ct.mha", TransformMatrix="1 0 0 0 nan 0 0 0 1"), r"TransformMatrix"),
    "nrrd-gzip-cut": (lambda d: _nrrd(d / "ct.nrrd", compress=True, cut=True), r"truncated or corrupt gzip"),
    "nrrd-origin-nan": (lambda d: _nrrd(d / "ct.nrrd", replace={"space origin": "(nan,0,0)"}), r"space origin"),
    "nrrd-directions-inf": (lambda d: _nrrd(d / "ct.nrrd", replace={
        "space directions": "(0.8,0,0) (0,inf,0) (0,0,2.5)"}), r"space directions"),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_a_header_that_lies_is_one_line_and_changes_nothing(case, tmp_path, capfd):
    build, match = HEADERS[case]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    ct = build(inputs)
    digest = sha256_file(ct)
    capfd.readouterr()
    rc = main(["simulate", str(ct), "--views", "6", "--preset", "fast", "--out", str(out / "p.safetensors")])
    err = capfd.readouterr().err  # file-descriptor level: ITK's and nibabel's own lines would show here
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and lines and lines[-1].startswith("error: "), err
    assert all(line.startswith("warning: ") for line in lines[:-1]), err
    assert re.search(match, lines[-1]) and ct.name in lines[-1], lines[-1]
    assert list(out.iterdir()) == [] and sha256_file(ct) == digest


def test_the_same_files_written_correctly_are_read(tmp_path):
    """The builders above only break what each case names: unbroken, each file reads with its geometry."""
    for path in (_nifti(tmp_path / "a.nii"), _nii_gz(_nifti(tmp_path / "b.nii")), _mha(tmp_path / "c.mha"),
                 _nrrd(tmp_path / "d.nrrd", compress=True)):
        volume = read_volume(path)
        assert volume.shape == ARRAY.shape and np.allclose(volume.array, ARRAY, atol=1e-3)
    assert read_volume(tmp_path / "a.nii").spacing == pytest.approx((3.0, 2.0, 2.0))
    assert read_volume(tmp_path / "d.nrrd").spacing == pytest.approx((2.5, 0.8, 0.8))


def test_a_nrrd_without_geometry_warns_that_1_mm_is_assumed(tmp_path):
    path = _nrrd(tmp_path / "ct.nrrd", drop=("space", "space directions", "space origin"))
    with pytest.warns(UserWarning, match="no space directions nor spacings; assuming 1.0 mm"):
        assert read_volume(path).spacing == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("dtype", ["complex64", "timedelta64[s]", "datetime64[s]", "U3"])
def test_npy_of_non_real_values_is_refused(dtype, tmp_path):
    path = tmp_path / "ct.npy"
    np.save(path, np.zeros((4, 5, 6), dtype=dtype))
    with pytest.raises(InputError, match="does not hold real numbers"):
        read_volume(path)


def _mrc(path: Path, cell=(10.0, 10.0, 10.0), axes=(1, 2, 3), nsymbt=0) -> Path:
    header = bytearray(1024)
    nx, ny, nz = 6, 5, 4
    struct.pack_into("<4i", header, 0, nx, ny, nz, 2)
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<3f", header, 40, *cell)
    struct.pack_into("<3i", header, 64, *axes)
    struct.pack_into("<i", header, 92, nsymbt)
    header[208:212], header[212] = b"MAP ", 0x44
    path.write_bytes(bytes(header) + ARRAY[:4, :5, :6].tobytes())
    return path


@pytest.mark.parametrize("fields, match", [({"cell": (float("nan"), 10.0, 10.0)}, "cell size"),
                                           ({"axes": (1, 1, 3)}, "axis map"),
                                           ({"nsymbt": -8}, "nsymbt")])
def test_mrc_header_fields_that_lie_are_refused(fields, match, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_volume(_mrc(tmp_path / "ok.mrc")).shape == (4, 5, 6)
    with pytest.raises(InputError, match=match):
        read_volume(_mrc(tmp_path / "bad.mrc", **fields))


def test_an_origin_beyond_1_km_or_a_skewed_direction_is_refused(tmp_path):
    image = sitk.GetImageFromArray(ARRAY)
    image.SetOrigin((1e308, 0.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / "far.nrrd"))
    with pytest.raises(InputError, match="origin"):
        read_volume(tmp_path / "far.nrrd")
    image = sitk.GetImageFromArray(ARRAY)
    image.SetDirection((1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "skew.nrrd"))
    with pytest.raises(InputError, match="not orthonormal"):
        read_volume(tmp_path / "skew.nrrd")


def _dicom_series(folder: Path, skip=(), truncate=()) -> Path:
    """8 axial CT slices 2.5 mm apart, written by SimpleITK (``skip``: slice indices left out;
    ``truncate``: slices cut to half their bytes)."""
    folder.mkdir()
    array = np.random.default_rng(1).normal(-400.0, 300.0, (8, 16, 16)).astype(np.int16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.77"
    for k in range(8):
        if k in skip:
            continue
        image = sitk.GetImageFromArray(array[k])
        image.SetSpacing((0.8, 0.8))
        for tag, value in (("0008|0060", "CT"), ("0020|000d", uid), ("0020|000e", uid + ".1"),
                           ("0008|0018", f"{uid}.2.{k}"), ("0020|0013", str(k + 1)),
                           ("0020|0032", f"0\\0\\{k * 2.5:g}"), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                           ("0028|0030", "0.8\\0.8"), ("0018|0050", "2.5"), ("0028|1052", "0"), ("0028|1053", "1")):
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(image)
        if k in truncate:
            data = (folder / f"{k:03d}.dcm").read_bytes()
            (folder / f"{k:03d}.dcm").write_bytes(data[: len(data) // 2])
    return folder


def test_a_dicom_series_with_a_hole_is_refused(tmp_path, capfd):
    """ITK reads a series with a missing or truncated slice, averaging the slice spacing, and only
    prints a warning; the engine refuses it (one line, nothing of ITK's on stderr)."""
    whole = read_volume(_dicom_series(tmp_path / "whole"))
    assert whole.shape == (8, 16, 16) and whole.spacing == pytest.approx((2.5, 0.8, 0.8))
    for name, options in (("missing", {"skip": (4,)}), ("truncated", {"truncate": (3,)})):
        capfd.readouterr()
        with pytest.raises(InputError, match="missing, duplicated or unevenly spaced slices"):
            read_volume(_dicom_series(tmp_path / name, **options))
        assert capfd.readouterr().err == ""


# ---------------------------------------------------------------------------- class 4: declared sizes
def _sparse(path: Path, header: bytes, total: int) -> Path:
    """A file of ``total`` bytes that holds only ``header`` (sparse: no disk is used)."""
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(total)
    return path


def _sparse_npy(path: Path, n: int) -> Path:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (n, n, n)})
    return _sparse(path, buf.getvalue(), len(buf.getvalue()) + 4 * n ** 3)


def _sparse_nifti(path: Path, n: int) -> Path:
    nibabel.save(nibabel.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(path))
    header = bytearray(path.read_bytes()[:352])
    struct.pack_into("<4h", header, 40, 3, n, n, n)
    return _sparse(path, bytes(header), 352 + 4 * n ** 3)


def _sparse_projections(path: Path, views: int, pixels: int) -> Path:
    """A projections file whose header declares ``views`` x ``pixels``^2 float32 projections."""
    import json

    from deepsparse_core.physics.geometry import Geometry

    geometry = {**Geometry.preset("fast", 6).to_dict(), "detector_shape": [pixels, pixels],
                "angles": np.linspace(0.0, np.pi, views, endpoint=False).tolist()}  # too big for a Geometry here
    nbytes = 4 * views * pixels * pixels
    head = json.dumps({"__metadata__": {"format": "deepsparse-projections", "version": "1",
                                        "geometry": json.dumps(geometry), "noise": "null",
                                        "placement": "null"},
                       "projections": {"dtype": "F32", "shape": [views, pixels, pixels],
                                       "data_offsets": [0, nbytes]}}).encode()
    head += b" " * (-len(head) % 8)
    return _sparse(path, struct.pack("<Q", len(head)) + head, 8 + len(head) + nbytes)


SIZES = {  # headers that declare more than any memory here holds, in sparse files (no disk used)
    "npy-2000^3": (lambda d: _sparse_npy(d / "ct.npy", 2000), ["simulate"]),
    "nifti-2048^3": (lambda d: _sparse_nifti(d / "ct.nii", 2048), ["simulate"]),
    "projections-36-GiB": (lambda d: _sparse_projections(d / "p.safetensors", 600, 4000), ["reconstruct"]),
}


@pytest.mark.parametrize("case", list(SIZES))
def test_a_header_declaring_more_than_memory_is_refused_before_reading(case, tmp_path, capfd):
    """Issue 19, class 4: "needs ~N GiB, M GiB available" instead of a MemoryError or the OOM killer."""
    build, command = SIZES[case]
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    path = build(tmp_path / "in")
    out = tmp_path / "out" / ("p.safetensors" if command[0] == "simulate" else "v.nii.gz")
    argv = [*command, str(path), "--device", "cpu", "--out", str(out)]
    if command[0] == "simulate":
        argv += ["--views", "6", "--preset", "fast"]
    capfd.readouterr()
    rc = main(argv)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    assert re.search(r"needs ~[\d.]+ GiB of memory, [\d.]+ GiB available", lines[-1]), lines[-1]
    assert list((tmp_path / "out").iterdir()) == []


def test_a_header_within_memory_but_beyond_the_file_is_truncated(tmp_path, monkeypatch):
    from deepsparse_core import resources

    path = _sparse_npy(tmp_path / "ct.npy", 64)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 4)
    with pytest.raises(InputError, match="truncated .npy file"):
        read_volume(path)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 1 << 20)  # 1 MiB left
    with pytest.raises(InputError, match=r"needs ~3.0 MiB of memory, 1.0 MiB available"):
        read_volume(_sparse_npy(tmp_path / "small.npy", 64))


def test_library_reason_is_the_text_line_of_a_real_itk_exception(tmp_path):
    """Issue 19, class 8: an ITK or SimpleITK exception gives its reason, without the source
    location, the ``itk::ERROR: Class(0x...)`` prefix or trailing rows of numbers."""
    from deepsparse_core.errors import library_reason

    bad = tmp_path / "no_endian.nrrd"
    bad.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(32))
    with pytest.raises(RuntimeError) as caught:
        sitk.ReadImage(str(bad))
    assert library_reason(caught.value) == "type (float) and encoding (raw) require endian info"
    with pytest.raises(RuntimeError) as caught:
        sitk.ReadImage(str(tmp_path / "missing.mha"))
    assert re.fullmatch(r'The file ".*missing\.mha" does not exist\.', library_reason(caught.value))
    assert library_reason(RuntimeError("x.cxx:1:\nITK ERROR: it broke\n1 2 3\n4 5 6\n")) == "it broke"
    assert library_reason(RuntimeError("1 2 3\n"), default="unknown error") == "unknown error"
