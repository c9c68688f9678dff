"""The Import section against slicer-core: scanner projections through ``deepsparse import``.

Issue 12, item 5: the panel takes what ``deepsparse import`` takes (stack or folder, RTK XML or
YAML geometry, line integrals / flat + dark files / I0 + dark, views, arc or indices, detector
preset) and runs the engine's command line in a background process; its summary line and
warnings become the job's notes, its one-line errors the job's error. Small data: 48^2 detector,
a 32^3 grid, 12 views, random line integrals (what is checked is the panel against the engine's
own import, not image quality).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from slicer_helpers import count_nodes

pytestmark = pytest.mark.slicer

NV = NU = 48
PITCH = 6.0
JOB_TIMEOUT_S = 300


def small_geometry(n_views=12, arc=360.0, offset=(0.0, 0.0)):
    from deepsparse_core.physics.geometry import Geometry

    g = Geometry.preset("fast", n_views, arc_degrees=arc).with_grid((32,) * 3, (6.0,) * 3)
    return dataclasses.replace(g, detector_shape=(NV, NU), detector_spacing=(PITCH, PITCH), detector_offset=offset)


def line_integrals(n_views=12, seed=0) -> np.ndarray:
    """Normalized line integrals (our units), smooth enough to look like projections."""
    rng = np.random.default_rng(seed)
    v, u = np.meshgrid(np.linspace(-1, 1, NV), np.linspace(-1, 1, NU), indexing="ij")
    body = np.clip(1 - u ** 2 - 0.5 * v ** 2, 0, None)
    return (80.0 * body[None] * rng.uniform(0.8, 1.2, (n_views, 1, 1))).astype(np.float32)


def write_stack(path, array):
    """(V, nv, nu) as an RTK projection stack (index (u, v, view), centred origin)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    img.SetSpacing((PITCH, PITCH, 1.0))
    img.SetOrigin((-(NU - 1) / 2 * PITCH, -(NV - 1) / 2 * PITCH, 0.0))
    sitk.WriteImage(img, str(path))
    return str(path)


def scale(geometry) -> float:
    from deepsparse_core.physics.noise import attenuation_scale

    return attenuation_scale(geometry.hu_window)


def import_settings(logic, **values) -> dict:
    return {**logic.settings(), **values}


def node_array(node) -> np.ndarray:
    import slicer

    return np.asarray(slicer.util.arrayFromVolume(node))


def node_geometry(node):
    from deepsparse_core.physics.geometry import Geometry

    return Geometry.from_dict(json.loads(node.GetAttribute("DeepSparse.Geometry")))


def test_defaults_resample_to_the_fast_detector_of_the_bundled_models(logic):
    s = logic.settings()
    assert s["detectorLike"] == "fast" and s["importValues"] == "line-integrals"
    assert (s["importViews"], s["importArc"], s["viewIndices"], s["importPixelSpacing"]) == (0, 0.0, "", 0.0)


def _rtk_available() -> bool:
    from deepsparse_core.physics.backends import rtk

    return rtk.available()


@pytest.mark.skipif(not _rtk_available(), reason="itk-rtk is not installed (RTK geometry XML)")
def test_exported_files_imported_in_the_panel_equal_the_command_line_import(logic, tmp_path):
    """The worked example of docs/slicer.md, small: export a projections file (RTK's XML + .mha), then
    Import: line integrals, 6 views over 180 degrees, detector like fast. The panel's node holds what
    the engine's own import gives, the job runs in a child process, and the bundled models' check passes."""
    import torch

    from deepsparse_core.data.projections_file import ProjectionData
    from deepsparse_core.data.scanner_io import export_projections, import_projections
    from deepsparse_core.inference import check_compatibility
    from deepsparse_core.physics.geometry import Geometry
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    g = small_geometry(12, 360.0, offset=(3.0, 12.0))
    data = ProjectionData(torch.from_numpy(line_integrals(12)), g)
    export_projections(data, tmp_path / "scan_rtk")
    stack, xml = tmp_path / "scan_rtk" / "projections.mha", tmp_path / "scan_rtk" / "geometry.xml"
    s = import_settings(logic, projectionsFile=str(stack), geometryFile=str(xml), importValues="line-integrals",
                        importViews=6, importArc=180.0, detectorLike="fast")
    job = logic.start_import(s)
    assert job.running and job.pid is not None  # a child process: the GUI thread only polls
    assert job.commands[0][3:6] == ["--progress", "json", "import"]
    assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, job.error
    node = job.outputs["projections"]
    assert job.outputs["reference"] is None and node.GetName() == "scan_rtk projections (6 views)"
    assert node.GetAttribute("DeepSparse.Role") == "projections"
    expected = import_projections(stack, xml, line_integrals_given=True, views=6, arc_degrees=180.0,
                                  detector_like="fast")
    np.testing.assert_allclose(node_array(node), expected.projections.numpy(), rtol=1e-6, atol=1e-5)
    got = node_geometry(node)
    for f in dataclasses.fields(Geometry):
        assert getattr(got, f.name) == pytest.approx(getattr(expected.geometry, f.name), abs=1e-9), f.name
    assert got.n_views == 6 and np.degrees(np.ptp(got.angles)) < 180.0
    check_compatibility(got, Geometry.preset("fast", 6))  # raises when a bundled model would refuse it
    # the engine's summary line, in the notes the panel shows
    assert job.outputs["summary"].startswith(
        f"6 views 30° apart (arc 180°), {got.detector_shape[0]}x{got.detector_shape[1]} pixels")
    assert any("6 views 30° apart" in note and node.GetName() in note for note in job.notes), job.notes
    # the reconstruction takes the imported node as it is
    assert logic.projection_data(node).geometry.n_views == 6


def test_intensities_with_flat_and_dark_files_and_the_engine_warnings(logic, tmp_path):
    """Flat and dark field files: -log((I - dark) / (flat - dark)); pixels at or below the dark field
    are clamped by the engine, whose warning reaches the panel's notes."""
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    g = small_geometry(12, 360.0)
    g.save(tmp_path / "geometry.yaml")
    p = line_integrals(12, seed=1)
    rng = np.random.default_rng(2)
    flat, dark = rng.uniform(9000, 11000, (NV, NU)), rng.uniform(80, 120, (NV, NU))
    intensities = dark + (flat - dark) * np.exp(-p * scale(g))
    intensities[3, 10, 10] = dark[10, 10] - 5.0  # below the dark field: clamped, with a warning
    (tmp_path / "scan").mkdir()
    s = import_settings(logic, projectionsFile=write_stack(tmp_path / "scan" / "raw.mha", intensities),
                        geometryFile=str(tmp_path / "geometry.yaml"), importValues="flat-dark",
                        flatFile=write_stack(tmp_path / "flat.mha", flat[None]),
                        darkFile=write_stack(tmp_path / "dark.mha", dark[None]), detectorLike="none",
                        i0Value=1.0)  # not used with flat-dark
    job = logic.start_import(s)
    assert "--flat" in job.commands[0] and "--dark" in job.commands[0] and "--i0" not in job.commands[0]
    assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, job.error
    got = node_array(job.outputs["projections"])
    keep = np.ones_like(p, bool)
    keep[3, 10, 10] = False
    np.testing.assert_allclose(got[keep], p[keep], rtol=1e-4, atol=2e-3)
    assert got[3, 10, 10] == pytest.approx(-np.log(1e-6) / scale(g), rel=1e-4)
    assert any(w.startswith("warning: ") and "at or below the dark" in w for w in job.outputs["warnings"])
    assert any("at or below the dark" in note for note in job.notes)
    assert node_geometry(job.outputs["projections"]).detector_shape == (NV, NU)  # none: the scanner's detector


def test_intensities_with_i0_and_a_dark_value_waited_for(logic, tmp_path):
    """A scalar I0 and dark level (RTK's ProjectionsReader); view indices instead of a count."""
    g = small_geometry(12, 360.0)
    g.save(tmp_path / "geometry.json")
    p = line_integrals(12, seed=3)
    path = write_stack(tmp_path / "raw.nrrd", 50.0 + (4000.0 - 50.0) * np.exp(-p * scale(g)))
    nodes = logic.import_projections(path, tmp_path / "geometry.json", units="hu", importValues="i0",
                                     i0Value=4000.0, darkValue=50.0, viewIndices="0-12:3", detectorLike="none")
    np.testing.assert_allclose(node_array(nodes["projections"]), p[0:12:3], rtol=1e-4, atol=2e-3)
    assert node_geometry(nodes["projections"]).angles == pytest.approx(g.angles[0:12:3])
    assert nodes["projections"].GetName() == "raw projections (4 views)"


def test_bad_scanner_imports_get_one_line_messages_and_leave_no_nodes(logic, scene_and_app, tmp_path):
    from deepsparse_core.errors import DeepSparseError

    scene, _ = scene_and_app
    logic.parameter_node()
    before = count_nodes(scene)
    g = small_geometry(6, 360.0)
    g.save(tmp_path / "geometry.yaml")
    stack = write_stack(tmp_path / "stack.mha", line_integrals(5))  # one view fewer than the geometry
    geometry = str(tmp_path / "geometry.yaml")
    # what the panel says before a command line can be built
    for settings, message in (({"projectionsFile": ""}, "choose the projections to import"),
                              ({"projectionsFile": str(tmp_path / "none.mha")}, "projections not found"),
                              ({"projectionsFile": stack, "geometryFile": ""}, "need their geometry file"),
                              ({"projectionsFile": stack, "geometryFile": geometry, "importValues": "flat-dark",
                                "flatFile": ""}, "choose the flat field file"),
                              ({"projectionsFile": stack, "geometryFile": geometry, "importValues": "i0",
                                "darkFile": stack, "darkValue": 10.0}, "a dark field file or a dark value, not both")):
        with pytest.raises(DeepSparseError, match=message):
            logic.start_import(import_settings(logic, **settings))
    # what the engine says: its one-line error is the job's, and nothing is left behind
    job = logic.start_import(import_settings(logic, projectionsFile=stack, geometryFile=geometry,
                                             importValues="line-integrals", detectorLike="none"))
    assert job.wait(JOB_TIMEOUT_S) == "failed"
    assert job.error.startswith("geometry.yaml describes 6 projections but stack.mha holds 5 images"), job.error
    assert "\n" not in job.error and "projections" not in job.outputs
    assert count_nodes(scene) == before
    assert not any((tmp_path / "work").iterdir()), "the job folder is removed"
