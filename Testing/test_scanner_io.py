"""``deepsparse import`` / ``export``: scanner projections and RTK geometry XML, checked against RTK."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from deepsparse_core import cli
from deepsparse_core.data.placement import Placement
from deepsparse_core.data.projections_file import ProjectionData, load_projections, save_projections
from deepsparse_core.data.scanner_io import (export_projections, import_projections, line_integrals, parse_indices,
                                             pick_views)
from deepsparse_core.errors import DeepSparseError, GeometryError, InputError
from deepsparse_core.physics.fdk import fdk
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.noise import NoiseModel, attenuation_scale

from baseline_case import needs_rtk, rel_l2

pytestmark = pytest.mark.usefixtures("one_thread")

N, VOXEL = 32, 6.0              # 192 mm grid
NV, NU, PITCH = 48, 48, 6.0     # 288 mm detector: sees the grid with margin at magnification 1.5
SCALE = attenuation_scale((-1000.0, 1000.0))   # normalized [0, 1] x mm -> mu (1/mm) x mm


def small_geometry(n_views=12, arc=360.0, offset=(3.0, 20.0)) -> Geometry:
    g = Geometry.preset("fast", n_views, arc_degrees=arc).with_grid((N,) * 3, (VOXEL,) * 3)
    return dataclasses.replace(g, detector_shape=(NV, NU), detector_spacing=(PITCH, PITCH), detector_offset=offset)


def ball(g: Geometry) -> torch.Tensor:
    """[0, 1] phantom: a ball of 0.5 with a denser off-centre ball of 1."""
    x, y, z = g.voxel_centres(dtype=torch.float64).unbind(-1)
    vol = 0.5 * (x ** 2 + y ** 2 + z ** 2 <= 70.0 ** 2)
    vol[(x - 30.0) ** 2 + y ** 2 + (z + 10.0) ** 2 <= 20.0 ** 2] = 1.0
    return vol.float()


def write_stack(path, array, spacing=(PITCH, PITCH), origin=None, dtype=np.float32):
    """(V, nv, nu) array as an RTK projection stack (index (u, v, view)); origin (u0, v0) mm."""
    img = sitk.GetImageFromArray(np.asarray(array).astype(dtype))
    nv, nu = np.asarray(array).shape[1:]
    du, dv = spacing[1], spacing[0]
    img.SetSpacing((du, dv, 1.0))
    img.SetOrigin(origin + (0.0,) if origin else (-(nu - 1) / 2 * du, -(nv - 1) / 2 * dv, 0.0))
    sitk.WriteImage(img, str(path))
    return path


# ---------------------------------------------------------------------------- pure functions
def test_line_integrals_undo_flat_and_dark_fields():
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.uniform(0, 4, (3, 5, 7)))
    flat = torch.from_numpy(rng.uniform(800, 1200, (5, 7)))   # gain varies per pixel
    dark = torch.from_numpy(rng.uniform(20, 60, (5, 7)))
    intensities = dark + (flat - dark) * torch.exp(-p)
    torch.testing.assert_close(line_integrals(intensities, flat, dark), p, rtol=0, atol=1e-12)
    torch.testing.assert_close(line_integrals(1000 * torch.exp(-p), i0=1000.0), p, rtol=0, atol=1e-12)
    # RTK's convention with a scalar I0 and dark: -log((I - dark) / (I0 - dark))
    torch.testing.assert_close(line_integrals(50 + 950 * torch.exp(-p), dark=50.0, i0=1000.0), p, rtol=0, atol=1e-12)


def test_line_integrals_guard_zero_negative_and_dead_pixels():
    flat = torch.full((16, 20), 1000.0)
    flat[0, 0] = 10.0                                            # dead pixel: flat at the dark level
    intensities = torch.full((2, 16, 20), 500.0)
    intensities[0, 1, 1], intensities[1, 2, 2] = 0.0, -3.0       # no photons; below the dark field
    with pytest.warns(UserWarning) as record:
        p = line_integrals(intensities, flat, dark=torch.full((16, 20), 10.0))
    text = " ".join(str(w.message) for w in record)
    assert "1 detector pixels" in text and "at or below the dark" in text
    assert torch.isfinite(p).all() and float(p[:, 0, 0].abs().max()) == 0.0
    assert float(p[0, 1, 1]) == pytest.approx(-math.log(1e-6)) and float(p[1, 2, 2]) == pytest.approx(-math.log(1e-6))
    with pytest.raises(InputError, match="swapped"):
        line_integrals(intensities, torch.zeros(16, 20), dark=torch.full((16, 20), 10.0))


def test_pick_views_nearest_to_uniform():
    angles = np.radians(np.arange(360.0))                                   # 1 degree steps, full turn
    assert pick_views(angles, 6) == [0, 60, 120, 180, 240, 300]
    assert pick_views(angles, 6, arc=math.pi) == [0, 30, 60, 90, 120, 150]  # the DiCE half rotation
    jitter = angles + np.radians(np.random.default_rng(1).uniform(-0.3, 0.3, 360))
    assert pick_views(jitter, 4) == [0, 90, 180, 270]
    assert pick_views(angles[::-1], 4) == [359, 269, 179, 89]               # decreasing gantry angle
    assert pick_views(angles[:5], 5) == [0, 1, 2, 3, 4]
    with pytest.raises(InputError, match="cannot pick 7 views out of 5"):
        pick_views(angles[:5], 7)


def test_parse_indices():
    assert parse_indices("0,10, 20", 30) == [0, 10, 20]
    assert parse_indices("0-360:60", 360) == [0, 60, 120, 180, 240, 300]
    for bad, message in (("5,x", "cannot read"), ("400", "out of range"), ("1,1", "twice")):
        with pytest.raises(InputError, match=message):
            parse_indices(bad, 360)


# ---------------------------------------------------------------------------- import / export
def test_import_yaml_geometry_with_intensities_and_view_choice(tmp_path):
    g = small_geometry(36, 360)
    p = torch.rand(36, NV, NU) * 100                               # normalized units
    write_stack(tmp_path / "raw.nrrd", 4000.0 * np.exp(-p.numpy() * SCALE))
    g.save(tmp_path / "geometry.yaml")
    data = import_projections(tmp_path / "raw.nrrd", tmp_path / "geometry.yaml", i0=4000.0, views=6, arc_degrees=180)
    assert data.geometry.angles == pytest.approx(g.angles[0:18:3])
    torch.testing.assert_close(data.projections, p[0:18:3], rtol=1e-5, atol=1e-4)
    assert data.reference is None and data.placement is None and data.geometry.volume_shape == g.volume_shape


@needs_rtk
@pytest.mark.rtk
def test_export_then_import_reproduces_the_projections_file(tmp_path):
    g = small_geometry(12, 360)
    placement = {"origin_lps": [1.0, 2.0, 3.0], "direction": [1.0, 0, 0, 0, 1, 0, 0, 0, 1], "piece": 0}
    data = ProjectionData(torch.rand(12, NV, NU) * 50, g, NoiseModel(photons=1e4), None, placement)
    save_projections(tmp_path / "in.safetensors", data)
    assert cli.main(["--progress", "none", "export", str(tmp_path / "in.safetensors"), "--out", str(tmp_path / "x")]) == 0
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["deepsparse.json", "geometry.xml", "projections.mha"]
    assert cli.main(["--progress", "none", "import", str(tmp_path / "x" / "projections.mha"), "--geometry",
                     str(tmp_path / "x" / "geometry.xml"), "--out", str(tmp_path / "back.safetensors")]) == 0
    back = load_projections(tmp_path / "back.safetensors")
    torch.testing.assert_close(back.projections, data.projections, rtol=2.0 ** -22, atol=0)
    for f in dataclasses.fields(Geometry):
        assert getattr(back.geometry, f.name) == pytest.approx(getattr(g, f.name), abs=1e-9), f.name
    assert back.noise == data.noise and back.placement == Placement.from_dict(placement) and back.reference is None
    # the exported values are physical line integrals -log(I/I0), RTK's layout with the offset in the origin
    img = sitk.ReadImage(str(tmp_path / "x" / "projections.mha"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), data.projections.numpy() * SCALE, rtol=1e-6)
    assert img.GetOrigin()[0] == pytest.approx(20.0 - (NU - 1) / 2 * PITCH)


def _rtk_projections(tmp_path, g: Geometry, volume: torch.Tensor, projection_offset=(25.0, 4.0)):
    """RTK's Joseph projections (mu x mm) of ``volume`` ([0, 1]) with RTK's XML (written by RTK)
    holding a detector offset as ProjectionOffsetX/Y (image origin centred)."""
    import itk
    from itk import RTK as rtk

    from deepsparse_core.physics.backends import rtk as backend

    geo = rtk.ThreeDCircularProjectionGeometry.New()
    for a in g.angles:
        geo.AddProjection(g.dso, g.dsd, math.degrees(a), *projection_offset)
    writer = rtk.ThreeDCircularProjectionGeometryXMLFileWriter.New()
    writer.SetObject(geo)
    writer.SetFilename(str(tmp_path / "geometry.xml"))
    writer.WriteFile()
    image = itk.Image[itk.F, 3]
    centred = dataclasses.replace(g, detector_offset=(0.0, 0.0))
    fp = rtk.JosephForwardProjectionImageFilter[image, image].New()
    fp.SetInput(0, backend.projections_to_itk(np.zeros((g.n_views, NV, NU), np.float32), centred))
    fp.SetInput(1, backend.volume_to_itk(volume.numpy() * SCALE, g))
    fp.SetGeometry(geo)
    fp.Update()
    return np.asarray(itk.array_from_image(fp.GetOutput())), geo


def _rtk_fdk_of_files(projections, geometry_xml, g: Geometry, i0, dark):
    """RTK alone: its XML reader, its ProjectionsReader (-log((I - IDark) / (I0 - IDark))), rtkfdk's
    displaced-detector weighting and FDK, on our grid (in mu, 1/mm)."""
    import itk
    from itk import RTK as rtk

    from deepsparse_core.physics.backends import rtk as backend

    image = itk.Image[itk.F, 3]
    reader = rtk.ThreeDCircularProjectionGeometryXMLFileReader.New()
    reader.SetFilename(str(geometry_xml))
    reader.GenerateOutputInformation()
    geo = reader.GetOutputObject()
    proj = rtk.ProjectionsReader[image].New()
    proj.SetFileNames([str(projections)])
    proj.SetI0(i0)
    proj.SetIDark(dark)
    displaced = rtk.DisplacedDetectorImageFilter[image].New()
    displaced.SetInput(proj.GetOutput())
    displaced.SetGeometry(geo)
    displaced.SetPadOnTruncatedSide(False)
    f = rtk.FDKConeBeamReconstructionFilter[image].New()
    f.SetInput(0, backend.volume_to_itk(np.zeros(g.volume_shape, np.float32), g))
    f.SetInput(1, displaced.GetOutput())
    f.SetGeometry(geo)
    f.Update()
    return backend.volume_from_itk(f.GetOutput())


@needs_rtk
@pytest.mark.rtk
def test_import_of_rtk_intensities_matches_rtk_fdk(tmp_path):
    """RTK projects a phantom (offset detector, RTK's XML); intensities as a scanner writes them (uint16,
    I0 and a dark level); our import + our FDK equals RTK's own reader + FDK of the same files."""
    g = small_geometry(24, 360, offset=(0.0, 0.0))
    line, _ = _rtk_projections(tmp_path, g, ball(g))
    i0, dark = 30000.0, 100.0
    write_stack(tmp_path / "raw.mha", np.round(dark + (i0 - dark) * np.exp(-line)), dtype=np.uint16)
    data = import_projections(tmp_path / "raw.mha", tmp_path / "geometry.xml", i0=i0, dark=dark,
                              grid_shape=(N,) * 3, grid_spacing=(VOXEL,) * 3)
    assert data.geometry.detector_offset == pytest.approx((4.0, 25.0))
    assert data.geometry.angles == pytest.approx(g.angles, abs=1e-12)
    ours = fdk(data.projections, data.geometry).numpy() * SCALE
    ref = _rtk_fdk_of_files(tmp_path / "raw.mha", tmp_path / "geometry.xml", data.geometry, i0, dark)
    assert rel_l2(ours, ref) < 1e-3
    # and the reconstruction is the phantom (a 24-view FDK: loose)
    assert rel_l2(ours / SCALE, ball(data.geometry).numpy()) < 0.3


@needs_rtk
@pytest.mark.rtk
def test_import_with_flat_and_dark_images_recovers_rtk_line_integrals(tmp_path):
    g = small_geometry(8, 360, offset=(0.0, 0.0))
    line, _ = _rtk_projections(tmp_path, g, ball(g), projection_offset=(-30.0, 0.0))
    rng = np.random.default_rng(2)
    flat, dark = rng.uniform(20000, 30000, (1, NV, NU)), rng.uniform(50, 150, (1, NV, NU))
    write_stack(tmp_path / "raw.mha", dark + (flat - dark) * np.exp(-line))
    write_stack(tmp_path / "flat.mha", flat), write_stack(tmp_path / "dark.mha", dark)
    data = import_projections(tmp_path / "raw.mha", tmp_path / "geometry.xml", flat=tmp_path / "flat.mha",
                              dark=tmp_path / "dark.mha")
    np.testing.assert_allclose(data.projections.numpy() * SCALE, line, atol=2e-5)
    assert data.geometry.detector_offset == pytest.approx((0.0, -30.0))


def _xml(tmp_path, views, name="g.xml", sdd=1200.0, **per_view):
    from itk import RTK as rtk

    geo = rtk.ThreeDCircularProjectionGeometry.New()
    for i, a in enumerate(views):
        x = per_view.get("offset_x", lambda i: 0.0)(i)
        geo.AddProjection(800.0, sdd, a, x, 0.0, per_view.get("out_of_plane", 0.0), 0.0)
    writer = rtk.ThreeDCircularProjectionGeometryXMLFileWriter.New()
    writer.SetObject(geo)
    writer.SetFilename(str(tmp_path / name))
    writer.WriteFile()
    return tmp_path / name


@needs_rtk
@pytest.mark.rtk
def test_flexmap_warns_with_its_size_and_tilts_are_refused(tmp_path):
    write_stack(tmp_path / "p.mha", np.ones((10, NV, NU)))
    xml = _xml(tmp_path, np.arange(10) * 36.0, offset_x=lambda i: 1.5 * math.sin(i))
    with pytest.warns(UserWarning, match=r"flexmap: offset_u by 1\.\d+ mm.*approximated by the mean"):
        data = import_projections(tmp_path / "p.mha", xml, line_integrals_given=True)
    assert data.geometry.detector_offset[1] == pytest.approx(np.mean(1.5 * np.sin(np.arange(10))))
    xml = _xml(tmp_path, np.arange(10) * 36.0, out_of_plane=2.0)
    with pytest.raises(GeometryError, match="cannot be represented by our circular geometry"):
        import_projections(tmp_path / "p.mha", xml, line_integrals_given=True)
    xml = _xml(tmp_path, np.arange(10) * 36.0)          # constant offsets: exact, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import_projections(tmp_path / "p.mha", xml, line_integrals_given=True)


@needs_rtk
@pytest.mark.rtk
def test_folder_of_tiffs_needs_and_takes_a_pixel_spacing(tmp_path):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    p = np.random.default_rng(3).uniform(1000, 2000, (6, NV, NU)).astype(np.uint16)
    for i in range(6):
        sitk.WriteImage(sitk.GetImageFromArray(p[i]), str(folder / f"proj_{i}.tif"))
    xml = _xml(tmp_path, np.arange(6) * 60.0)
    with pytest.raises(InputError, match="--pixel-spacing"):
        import_projections(folder, xml, i0=4000.0)
    data = import_projections(folder, xml, i0=4000.0, pixel_spacing=(PITCH, PITCH), view_indices="0,2,4")
    np.testing.assert_allclose(data.projections.numpy() * SCALE, -np.log(p[[0, 2, 4]] / 4000.0), rtol=1e-5)
    assert data.geometry.detector_offset == pytest.approx((0.0, 0.0), abs=1e-9)


@needs_rtk
@pytest.mark.rtk
def test_truncated_mislabelled_and_inconsistent_files_give_one_clear_error(tmp_path, capsys):
    g = small_geometry(12, 360)
    xml = _xml(tmp_path, np.degrees(g.angles))
    write_stack(tmp_path / "short.mha", np.ones((11, NV, NU)))
    (tmp_path / "text.mha").write_text("not an image")
    (tmp_path / "other.xml").write_text("<?xml version='1.0'?><Scan><Angle>0</Angle></Scan>")
    (tmp_path / "broken.xml").write_text("<RTKThreeDCircularGeometry")
    write_stack(tmp_path / "ok.mha", np.ones((12, NV, NU)))
    write_stack(tmp_path / "flat.mha", np.ones((1, NV, NU - 1)))
    # a hand-edited matrix: RTK's reader raises with both matrices printed, row by row
    text = xml.read_text()
    first_row = text.split("<Matrix>")[1].strip().splitlines()[0]
    edited = " ".join(f"{float(t) + 5.0:g}" if i == 0 else t for i, t in enumerate(first_row.split()))
    (tmp_path / "edited.xml").write_text(text.replace(first_row, edited, 1))
    out = str(tmp_path / "out.safetensors")
    cases = [
        (["short.mha", "--geometry", str(xml), "--i0", "1"], "describes 12 projections but short.mha holds 11"),
        (["text.mha", "--geometry", str(xml), "--i0", "1"], "cannot read"),
        (["ok.mha", "--geometry", str(tmp_path / "other.xml"), "--i0", "1"], "not an RTK geometry file"),
        (["ok.mha", "--geometry", str(tmp_path / "broken.xml"), "--i0", "1"], "not valid XML"),
        (["ok.mha", "--geometry", str(xml)], "say what the images hold"),
        (["ok.mha", "--geometry", str(xml), "--flat", str(tmp_path / "flat.mha")], "flat field flat.mha is 48 x 47"),
        (["ok.mha", "--geometry", str(xml), "--i0", "-5"], "--i0 must be a positive number"),
        (["ok.mha", "--geometry", str(xml), "--i0", "1", "--views", "13"], "cannot pick 13 views out of 12"),
        # degenerate scans (issue 19, class 2): RTK's parallel-beam convention, every view at one angle
        (["ok.mha", "--geometry", str(_xml(tmp_path, np.arange(12) * 30.0, "parallel.xml", sdd=0.0)), "--i0", "1"],
         "parallel-beam scan (SourceToDetectorDistance 0"),
        (["ok.mha", "--geometry", str(_xml(tmp_path, np.zeros(12), "one_angle.xml")), "--i0", "1"],
         "all 12 views are at the same angle"),
        # issue 19, class 8: RTK's reason, not the last row of its matrices
        (["ok.mha", "--geometry", str(tmp_path / "edited.xml"), "--i0", "1"],
         "does not match the matrix RTK computes from its angles, distances and offsets, largest element "
         "difference 5"),
    ]
    for args, message in cases:
        args[0] = str(tmp_path / args[0])
        assert cli.main(["--progress", "none", "import", *args, "--out", out]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (args, err)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors" or p.name.startswith(".")) == []


def test_missing_itk_rtk_is_named(tmp_path, monkeypatch):
    from deepsparse_core.physics.backends import rtk as backend

    monkeypatch.setattr(backend, "available", lambda: False)
    write_stack(tmp_path / "p.mha", np.ones((2, NV, NU)))
    (tmp_path / "g.xml").write_text("<?xml version='1.0'?><RTKThreeDCircularGeometry version='3'/>")
    with pytest.raises(DeepSparseError, match="pip install itk-rtk"):
        import_projections(tmp_path / "p.mha", tmp_path / "g.xml", i0=1.0)
