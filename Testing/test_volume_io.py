"""Reading and writing volumes: geometry round trips, every bad input is a one-line InputError."""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from deepsparse_core.data import volume_io
from deepsparse_core.data.volume import Volume
from deepsparse_core.data.volume_io import read_volume, write_volume
from deepsparse_core.errors import InputError


def rotation_z(degrees):
    t = np.radians(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def ct_like(shape=(6, 7, 8), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1000, 1500, size=shape)).astype(np.float32)


def oblique_volume():
    """Anisotropic, off-origin, rotated and axis-permuted/flipped (det -1) geometry."""
    permute_flip = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)
    return Volume(ct_like(), spacing=(2.5, 0.7, 1.1), origin=(-12.5, 30.25, 101.0),
                  direction=rotation_z(20) @ permute_flip)


def assert_same_volume(a: Volume, b: Volume):
    np.testing.assert_allclose(a.array, b.array, atol=1e-3)
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=1e-6)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)


def assert_one_line_error(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha"])
def test_round_trip_keeps_values_spacing_origin_direction(tmp_path, name):
    volume = oblique_volume()
    written = write_volume(volume, tmp_path / name)
    assert_same_volume(read_volume(written), volume)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_index_to_lps_matches_simpleitk():
    volume = oblique_volume()
    image = volume.to_sitk()
    kji = (2.0, 3.5, 5.0)
    expected = image.TransformContinuousIndexToPhysicalPoint(kji[::-1])
    np.testing.assert_allclose(volume.index_to_lps(kji), expected, atol=1e-9)
    np.testing.assert_allclose(volume.centre_lps, volume.index_to_lps(np.array([2.5, 3, 3.5])))


def write_dicom_series(folder, n_slices, series_uid, spacing=(2.0, 0.8, 0.8)):
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(n_slices):
        pixels = (np.arange(64).reshape(8, 8) * 10 - 500 + k).astype(np.int16)
        image = sitk.GetImageFromArray(pixels)
        image.SetSpacing((spacing[2], spacing[1]))
        tags = {"0008|0060": "CT", "0020|000d": "1.2.3.4", "0020|000e": series_uid,
                "0008|0018": f"{series_uid}.{k + 1}", "0020|0013": str(k + 1),
                "0020|0032": f"-10\\-20\\{5 + k * spacing[0]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0018|0050": str(spacing[0]), "0028|1052": "0", "0028|1053": "1"}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series_uid}_{k:03d}.dcm"))
        writer.Execute(image)


def test_dicom_folder_reads_the_largest_series_with_geometry(tmp_path):
    write_dicom_series(tmp_path, 3, "1.2.3.4.1")
    write_dicom_series(tmp_path, 5, "1.2.3.4.2")
    volume = read_volume(tmp_path)
    assert volume.shape == (5, 8, 8)
    np.testing.assert_allclose(volume.spacing, (2.0, 0.8, 0.8))
    np.testing.assert_allclose(volume.origin, (-10, -20, 5))
    assert volume.array[4, 0, 0] == -496


def write_mrc(path, array, mode=2, cell=(0.0, 0.0, 0.0)):
    nz, ny, nx = array.shape
    header = np.zeros(256, dtype="<i4")
    header[:4] = (nx, ny, nz, mode)
    header[7:10] = (nx, ny, nz)
    header[10:13] = np.array(cell, dtype="<f4").view("<i4")
    header[16:19] = (1, 2, 3)
    raw = header.tobytes()
    raw = raw[:208] + b"MAP " + b"\x44\x44\x00\x00" + raw[216:]
    dtype = {1: "<i2", 2: "<f4"}[mode]
    path.write_bytes(raw + array.astype(dtype).tobytes())


def test_mrc_without_cell_size_is_read_as_1mm_with_a_warning(tmp_path):
    array = ct_like((4, 5, 6))
    write_mrc(tmp_path / "a.mrc", array)
    with pytest.warns(UserWarning, match="1.0 mm"):
        volume = read_volume(tmp_path / "a.mrc")
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == (1.0, 1.0, 1.0)


def test_mrc_int16_with_cell_size_gives_spacing(tmp_path):
    array = ct_like((4, 5, 6)).round()
    write_mrc(tmp_path / "a.mrc", array, mode=1, cell=(12.0, 10.0, 6.0))  # x, y, z lengths
    with pytest.warns(UserWarning, match="cell size"):
        volume = read_volume(tmp_path / "a.mrc")
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.spacing, (1.5, 2.0, 2.0))


def test_npy_is_read_with_a_warning_and_singleton_4d_is_squeezed(tmp_path):
    array = ct_like()
    np.save(tmp_path / "a.npy", array[None])
    with pytest.warns(UserWarning, match="no geometry"):
        volume = read_volume(tmp_path / "a.npy")
    np.testing.assert_array_equal(volume.array, array)


def test_4d_image_with_one_time_point_is_squeezed(tmp_path):
    volume = oblique_volume()
    image = sitk.JoinSeries([volume.to_sitk()])
    assert image.GetDimension() == 4
    sitk.WriteImage(image, str(tmp_path / "t.nrrd"))
    np.testing.assert_allclose(read_volume(tmp_path / "t.nrrd").array, volume.array)


def nrrd_with_spacing(path, spacing_x):
    header = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: 4 4 4\nspace directions: ({spacing_x},0,0) (0,1,0) (0,0,1)\n"
              "encoding: raw\nendian: little\nspace origin: (0,0,0)\n\n").encode()
    path.write_bytes(header + np.linspace(-1000, 1000, 64).astype("<f4").tobytes())


def make_bad_input(kind, folder):
    path = folder / {"missing": "nothing.nii.gz", "text": "notes.nii.gz", "2d": "slice.nrrd",
                     "flat3d": "flat.nrrd", "4d": "series.nrrd", "nan": "nan.nrrd",
                     "inf": "inf.mha", "constant": "const.nii.gz", "tiny_spacing": "s.nrrd",
                     "huge_spacing": "s.nrrd", "zero_spacing": "s.nrrd",
                     "empty_folder": "dicom", "bad_mrc": "x.mrc", "bad_npy": "x.npy",
                     "rgb": "rgb.nrrd"}[kind]
    if kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "2d":
        sitk.WriteImage(sitk.GetImageFromArray(ct_like((8, 9))), str(path))
    elif kind == "flat3d":
        sitk.WriteImage(sitk.GetImageFromArray(ct_like((1, 8, 9))), str(path))
    elif kind == "4d":
        three = [Volume(ct_like(seed=s), (1, 1, 1)).to_sitk() for s in range(3)]
        sitk.WriteImage(sitk.JoinSeries(three), str(path))
    elif kind in ("nan", "inf"):
        array = ct_like()
        array[1, 2, 3] = np.nan if kind == "nan" else np.inf
        write_volume(Volume(array, (1, 1, 1)), path)
    elif kind == "constant":
        write_volume(Volume(np.full((4, 4, 4), 40.0), (1, 1, 1)), path)
    elif kind.endswith("_spacing"):
        nrrd_with_spacing(path, {"tiny": 0.001, "huge": 100.0, "zero": 0.0}[kind.split("_")[0]])
    elif kind == "empty_folder":
        path.mkdir()
        (path / "readme.txt").write_text("no dicom here")
    elif kind == "bad_mrc":
        path.write_bytes(b"\x00" * 100)
    elif kind == "bad_npy":
        path.write_bytes(b"not numpy")
    elif kind == "rgb":
        sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), str(path))
    return path


@pytest.mark.parametrize("kind", ["missing", "text", "2d", "flat3d", "4d", "nan", "inf",
                                  "constant", "tiny_spacing", "huge_spacing", "zero_spacing",
                                  "empty_folder", "bad_mrc", "bad_npy", "rgb"])
def test_bad_input_is_a_one_line_input_error_naming_the_file(tmp_path, kind):
    path = make_bad_input(kind, tmp_path)
    with pytest.raises(InputError) as excinfo:
        read_volume(path)
    assert_one_line_error(excinfo, path)


def test_values_in_0_1_warn_that_they_are_not_hu(tmp_path):
    path = write_volume(Volume(np.random.default_rng(0).random((4, 5, 6)), (1, 1, 1)),
                        tmp_path / "mr.nii.gz")
    with pytest.warns(UserWarning, match="not Hounsfield"):
        read_volume(path)


def test_ct_in_hu_reads_without_warning(tmp_path):
    path = write_volume(oblique_volume(), tmp_path / "ct.nrrd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_volume(path)


def test_write_unknown_extension_fails_before_writing(tmp_path):
    with pytest.raises(InputError, match="cannot write"):
        write_volume(oblique_volume(), tmp_path / "volume.png")
    with pytest.raises(InputError, match="does not exist"):
        write_volume(oblique_volume(), tmp_path / "missing" / "volume.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = write_volume(oblique_volume(), tmp_path / "out.nii.gz")
    before = target.read_bytes()

    def failing_write(image, filename, *args):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(volume_io.sitk, "WriteImage", failing_write)
    with pytest.raises(InputError, match="disk full"):
        write_volume(Volume(ct_like(seed=3), (1, 1, 1)), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
    assert target.read_bytes() == before
