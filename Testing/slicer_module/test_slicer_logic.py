"""The module Logic end to end against slicer-core: MRML in, MRML out.

One shared workflow (module fixture): a chest phantom with an off-centre marker, stored the way
NIfTI tools often store CTs (i and j running towards R and A) and loaded through a Slicer storage
node -> 6 simulated views on a small grid -> FDK. Each background job is a real
``python -m deepsparse_core`` process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from slicer_helpers import ROOT, count_nodes, make_scene

pytestmark = pytest.mark.slicer

MARKER_LPS = np.array([82.5, -137.5, 92.5])  # mm: left, anterior (outside the body), superior
MARKER_RADIUS_MM = 12.0
MARKER_HU = 3000.0  # above anything in the phantom
# 6 views over a full turn (FDK on a 180 degree arc of 6 views is mostly Parker-weighted away)
SMALL_GEOMETRY = {"views": "6", "arcDegrees": "360.0", "geometryPreset": "custom", "gridSize": "64", "voxelSize": "6.4",
                  "detectorRows": "64", "detectorColumns": "64", "detectorSpacing": "9.6", "device": "cpu"}
JOB_TIMEOUT_S = 300


def marker_phantom_file(folder: Path) -> Path:
    """Chest phantom (HU, 64^3 at 5 mm) plus a bright sphere at MARKER_LPS, written as NIfTI with
    the i and j axes reversed (direction diag(-1, -1, 1) in LPS, i.e. identity in RAS)."""
    from deepsparse_core.data.phantoms import phantom_volume
    from deepsparse_core.data.volume import Volume
    from deepsparse_core.data.volume_io import write_volume

    v = phantom_volume("chest", (64, 64, 64), spacing=(5.0, 5.0, 5.0))
    kji = np.stack(np.meshgrid(*[np.arange(n) for n in v.shape], indexing="ij"), -1)
    inside = np.linalg.norm(v.index_to_lps(kji) - MARKER_LPS, axis=-1) <= MARKER_RADIUS_MM
    array = np.where(inside, MARKER_HU, v.array).astype(np.float32)
    flipped = Volume(array[:, ::-1, ::-1], v.spacing, v.index_to_lps((0, 63, 63)), np.diag([-1.0, -1.0, 1.0]))
    return write_volume(flipped, folder / "chest_marker.nii.gz")


def marker_centre_ras(node, search_ras=None, radius_mm=35.0) -> np.ndarray:
    """Intensity-weighted centre (RAS mm) of the bright marker; near ``search_ras`` when given."""
    import slicer

    from DeepSparseSlicerLib.geometry_bridge import node_ijk_to_ras

    array = slicer.util.arrayFromVolume(node).astype(float)
    kji = np.stack(np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij"), -1).reshape(-1, 3)
    ras = (node_ijk_to_ras(node) @ np.c_[kji[:, ::-1], np.ones(len(kji))].T).T[:, :3]
    values = array.reshape(-1)
    if search_ras is not None:
        near = np.linalg.norm(ras - search_ras, axis=1) <= radius_mm
        ras, values = ras[near], values[near]
    bright = values >= values.min() + 0.6 * (values.max() - values.min())
    weights = values[bright] - values.min()
    return (ras[bright] * weights[:, None]).sum(0) / weights.sum()


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    from DeepSparseSlicerLib.jobs import SUCCEEDED
    from DeepSparseSlicerLib.logic import DeepSparseLogic

    tmp = tmp_path_factory.mktemp("workflow")
    scene, app = make_scene()
    logic = DeepSparseLogic(scene, app, temp_root=tmp / "work", user_models_dir=tmp / "models")
    ct = logic.load_volume_file(marker_phantom_file(tmp))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "patient position")
    ct.SetAndObserveTransformNodeID(transform.GetID())  # outputs must follow it
    params = logic.parameter_node()
    for key, value in SMALL_GEOMETRY.items():
        params.SetParameter(key, value)
    params.SetParameter("method", "fdk")  # the panel's default is the bundled DiCE
    sim = logic.start_simulation(ct)
    assert sim.wait(JOB_TIMEOUT_S) == SUCCEEDED, sim.error
    rec = logic.start_reconstruction(sim.outputs["projections"])
    assert rec.wait(JOB_TIMEOUT_S) == SUCCEEDED, rec.error
    return {"logic": logic, "scene": scene, "app": app, "ct": ct, "tmp": tmp, "simulation": sim, "transform": transform,
            "projections": sim.outputs["projections"], "reference": sim.outputs["reference"],
            "fdk": rec.outputs["volume"], "reconstruction_job": rec}


# ---------------------------------------------------------------------------- simulate
def test_simulation_makes_a_projections_node_and_a_ground_truth_node(workflow):
    import slicer

    proj, ref, ct = workflow["projections"], workflow["reference"], workflow["ct"]
    assert slicer.util.arrayFromVolume(proj).shape == (6, 64, 64)  # views scroll along k
    assert proj.GetAttribute("DeepSparse.Role") == "projections"
    geometry = json.loads(proj.GetAttribute("DeepSparse.Geometry"))
    assert geometry["volume_shape"] == [64, 64, 64] and len(geometry["angles"]) == 6
    assert proj.GetNodeReference("DeepSparseSource") is ct
    assert proj.GetNodeReference("DeepSparseReference") is ref
    assert slicer.util.arrayFromVolume(ref).shape == (64, 64, 64)
    assert ref.GetAttribute("DeepSparse.Units") == "hu"
    assert workflow["logic"].settings()["outputUnits"] == "hu"
    assert not any(Path(workflow["tmp"], "work").iterdir()), "job folders are removed when done"


def test_ground_truth_grid_is_centred_on_the_ct_in_ras(workflow):
    from DeepSparseSlicerLib.geometry_bridge import node_centre_ras, node_ijk_to_ras

    ras = node_ijk_to_ras(workflow["reference"])
    np.testing.assert_allclose(ras[:3, :3], np.diag([-6.4, -6.4, 6.4]), atol=1e-6)  # LPS axes, in RAS
    np.testing.assert_allclose(node_centre_ras(workflow["reference"]), node_centre_ras(workflow["ct"]), atol=1e-3)


# ---------------------------------------------------------------------------- reconstruct
def test_reconstruction_is_a_new_volume_on_the_ground_truth_grid(workflow):
    from DeepSparseSlicerLib.geometry_bridge import node_ijk_to_ras

    fdk, ref = workflow["fdk"], workflow["reference"]
    assert fdk is not ref and fdk.IsA("vtkMRMLScalarVolumeNode")
    assert fdk.GetName() == "chest_marker FDK 6 views"
    np.testing.assert_allclose(node_ijk_to_ras(fdk), node_ijk_to_ras(ref), atol=1e-6)
    assert fdk.GetAttribute("DeepSparse.Units") == "hu" and fdk.GetAttribute("DeepSparse.Method") == "FDK"
    assert fdk.GetNodeReference("DeepSparseProjections") is workflow["projections"]
    assert fdk.GetDisplayNode() is not None


def test_a_feature_of_the_ct_is_at_the_same_ras_position_in_the_reconstruction(workflow):
    """The marker, placed asymmetrically (L, A, S), is found where it is in the input CT, to within
    one reconstruction voxel (6.4 mm); any axis flip or LPS/RAS mix-up would move it by > 160 mm."""
    expected_ras = MARKER_LPS * [-1, -1, 1]
    in_ct = marker_centre_ras(workflow["ct"])
    np.testing.assert_allclose(in_ct, expected_ras, atol=2.5)  # 5 mm voxels
    for node in (workflow["reference"], workflow["fdk"]):
        found = marker_centre_ras(node, search_ras=in_ct)
        assert np.linalg.norm(found - in_ct) < 6.4, (node.GetName(), found, in_ct)


def test_outputs_follow_the_ct_parent_transform(workflow):
    transform_id = workflow["transform"].GetID()
    for key in ("reference", "fdk"):
        assert workflow[key].GetTransformNodeID() == transform_id, key
    assert workflow["projections"].GetTransformNodeID() is None  # not in patient space


def test_output_resolution_is_the_engine_option_with_the_same_extent_and_centre(workflow, monkeypatch):
    """The panel's "voxels along the longest axis" becomes the engine's --resolution (every
    method); the output covers the same box, so its centre stays at the ground truth's."""
    from DeepSparseSlicerLib import engine
    from DeepSparseSlicerLib.geometry_bridge import node_centre_ras, node_ijk_to_ras
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    seen = []
    build = engine.reconstruct_command
    monkeypatch.setattr(engine, "reconstruct_command", lambda *a, **k: seen.append(a) or build(*a, **k))
    logic, params = workflow["logic"], workflow["logic"].parameter_node()
    params.SetParameter("resolution", "32")
    try:
        job = logic.start_reconstruction(workflow["projections"])
        assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, job.error
    finally:
        params.SetParameter("resolution", "0")
    assert seen[-1][7] == (32, 32, 32)  # resolution argument
    out, ref = job.outputs["volume"], workflow["reference"]
    np.testing.assert_allclose(np.abs(np.diag(node_ijk_to_ras(out))[:3]), 12.8, atol=1e-4)
    np.testing.assert_allclose(node_centre_ras(out), node_centre_ras(ref), atol=1e-3)
    assert out.GetTransformNodeID() == workflow["transform"].GetID()


# ---------------------------------------------------------------------------- compare
def test_compare_fills_a_metrics_table_and_makes_difference_volumes(workflow):
    import slicer

    logic, ref, fdk = workflow["logic"], workflow["reference"], workflow["fdk"]
    result = logic.compare(ref, [fdk, None], difference=True)
    table = result["table"]
    assert table.GetName() == "DeepSparse metrics" and table.GetNumberOfRows() == 1
    columns = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert columns == ["Reconstruction", "Ground truth", "PSNR (dB)", "SSIM"]
    psnr = float(table.GetCellText(0, 2))
    assert 8.0 < psnr < 40.0 and abs(psnr - result["scores"][0]["psnr"]) < 1e-3
    assert 0.0 < result["scores"][0]["ssim"] <= 1.0
    (diff,) = result["differences"]
    expected = slicer.util.arrayFromVolume(fdk).clip(-1000, 1000) - slicer.util.arrayFromVolume(ref)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(diff), expected, atol=0.5)
    # against the CT itself (another grid, HU): resampled onto the reconstruction grid
    against_ct = logic.compare(workflow["ct"], [fdk], difference=False)
    assert against_ct["table"] is table and against_ct["differences"] == []
    assert abs(against_ct["scores"][0]["psnr"] - psnr) < 3.0


def test_compare_runs_in_the_background_and_leaves_the_gui_thread_free(workflow, monkeypatch):
    """The metrics, the resampling and VIF run in the worker process: nothing is scored in this one."""
    from deepsparse_core.evaluation import metrics

    def not_here(*args, **kwargs):
        raise AssertionError("scored on the GUI thread")

    for name in ("psnr", "ssim", "vif", "evaluate"):
        monkeypatch.setattr(metrics, name, not_here)
    logic, fdk = workflow["logic"], workflow["fdk"]
    progress = []
    job = logic.start_compare(workflow["ct"], [fdk], difference=False, vif=True, on_progress=progress.append)
    assert job.running and len(job.commands) == 1
    assert job.commands[0][1:4] == ["-m", "DeepSparseSlicerLib.worker", "compare"]
    assert {p.name for p in Path(job.cwd).iterdir()} >= {"ground_truth.nii", "reconstruction_0.nii"}
    assert job.wait(JOB_TIMEOUT_S) == "succeeded", job.error
    (row,) = job.outputs["scores"]
    assert set(row) == {"name", "psnr", "ssim", "vif"} and progress and progress[-1]["task"] == "compare"
    table = job.outputs["table"]
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())][-1] == "VIF"


def test_side_by_side_views_are_linked_with_the_same_window_level(workflow):
    from DeepSparseSlicerLib.geometry_bridge import node_centre_ras

    logic, ref, fdk, app = workflow["logic"], workflow["reference"], workflow["fdk"], workflow["app"]
    logic.show_comparison(ref, fdk)
    red, yellow = (app.GetSliceLogicByLayoutName(v) for v in ("Red", "Yellow"))
    assert red.GetSliceCompositeNode().GetBackgroundVolumeID() == ref.GetID()
    assert yellow.GetSliceCompositeNode().GetBackgroundVolumeID() == fdk.GetID()
    assert red.GetSliceCompositeNode().GetLinkedControl() and yellow.GetSliceCompositeNode().GetLinkedControl()
    assert red.GetSliceNode().GetOrientation() == yellow.GetSliceNode().GetOrientation() == "Axial"
    assert red.GetSliceOffset() == pytest.approx(yellow.GetSliceOffset())
    assert red.GetSliceOffset() == pytest.approx(node_centre_ras(fdk)[2], abs=1e-3)  # identity transform
    assert (fdk.GetDisplayNode().GetWindow(), fdk.GetDisplayNode().GetLevel()) == \
        pytest.approx((ref.GetDisplayNode().GetWindow(), ref.GetDisplayNode().GetLevel()))
    # linked, not matched once (issue 18, item 14): the reconstruction follows a change of the ground truth's
    ref.GetDisplayNode().AutoWindowLevelOff()
    ref.GetDisplayNode().SetWindowLevel(350.0, 40.0)
    assert (fdk.GetDisplayNode().GetWindow(), fdk.GetDisplayNode().GetLevel()) == pytest.approx((350.0, 40.0))
    logic.views.unlink_window_level()
    ref.GetDisplayNode().SetWindowLevel(1500.0, -600.0)
    assert fdk.GetDisplayNode().GetWindow() == pytest.approx(350.0)


def test_comparison_opens_at_the_world_slice_of_a_transformed_ct(logic, scene_and_app):
    """Issue 10, bug 2: SetSliceOffset is world RAS; the reconstruction's centre goes through the
    parent transform (here 40 mm along S, and a shift along R that the axial offset ignores)."""
    import slicer
    import vtk

    from DeepSparseSlicerLib.geometry_bridge import node_centre_ras

    scene, app = scene_and_app
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "table moved")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 15.0)
    matrix.SetElement(2, 3, 40.0)
    transform.SetMatrixTransformToParent(matrix)
    nodes = []
    for name in ("ground truth", "reconstruction"):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        slicer.util.updateVolumeFromArray(node, np.linspace(-1000, 1000, 16 * 20 * 24, dtype=np.float32).reshape(16, 20, 24))
        node.SetSpacing(2.0, 2.0, 3.0)
        node.SetOrigin(-20.0, -10.0, 100.0)
        node.CreateDefaultDisplayNodes()
        node.SetAndObserveTransformNodeID(transform.GetID())
        nodes.append(node)
    local_s = node_centre_ras(nodes[1])[2]
    assert local_s == pytest.approx(100.0 + 7.5 * 3.0)
    logic.show_comparison(*nodes)
    for view in ("Red", "Yellow"):
        assert app.GetSliceLogicByLayoutName(view).GetSliceOffset() == pytest.approx(local_s + 40.0, abs=1e-6)


def test_comparison_rendered_offscreen_to_docs_png(workflow, tmp_path):
    """Ground truth | FDK at the marker's axial slice. The panes show the same place (the marker at the
    same pixels) and differ (6-view streaks). ``DEEPSPARSE_UPDATE_DOCS=1`` writes the render to
    docs/slicer_compare.png (the README's picture); otherwise it goes to a temporary folder."""
    import os

    from PIL import Image

    logic, ref, fdk = workflow["logic"], workflow["reference"], workflow["fdk"]
    marker_ras = marker_centre_ras(workflow["ct"])
    logic.show_comparison(ref, fdk, offset_ras=float(marker_ras[2]))
    folder = ROOT / "docs" if os.environ.get("DEEPSPARSE_UPDATE_DOCS") == "1" else tmp_path
    path = logic.save_comparison_png(folder / "slicer_compare.png",
                                     ("Ground truth (simulated reference)", "FDK, 6 views"))
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert image.shape[1] > 2 * 200 and image.std() > 10, "blank render"
    left, right = image[22:, :256], image[22:, -256:]
    for pane in (left, right):
        assert pane.std() > 10 and pane.max() > 150
    assert np.abs(left - right).mean() > 3, "the reconstruction looks like the ground truth"
    assert np.corrcoef(left.ravel(), right.ravel())[0, 1] > 0.5, "the panes do not show the same place"
    # the marker is bright at the same pixel in both panes, where the slice geometry puts it
    xy_to_ras = workflow["app"].GetSliceLogicByLayoutName("Red").GetSliceNode().GetXYToRAS()
    ras_to_xy = np.linalg.inv([[xy_to_ras.GetElement(r, c) for c in range(4)] for r in range(4)])
    x, y = (ras_to_xy @ np.append(marker_ras, 1.0))[:2]
    row, col = int(round(left.shape[0] - 1 - y)), int(round(x))
    for pane in (left, right):
        patch = pane[row - 3:row + 4, col - 3:col + 4]
        assert patch.mean() > np.median(pane) + 60, (row, col, patch.mean(), np.median(pane))


# ---------------------------------------------------------------------------- settings
def test_settings_are_restored_from_a_saved_scene(workflow, tmp_path):
    import slicer

    from DeepSparseSlicerLib.logic import DeepSparseLogic

    logic = workflow["logic"]
    params = logic.parameter_node()
    params.SetParameter("views", "8")
    params.SetParameter("method", "sart")
    params.SetNodeReferenceID("Projections", workflow["projections"].GetID())
    scene = workflow["scene"]
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    try:
        restored = slicer.vtkMRMLScene()
        restored.SetURL(str(tmp_path / "scene.mrml"))
        assert restored.Connect()
        s = DeepSparseLogic(restored).settings()
        assert s["views"] == 8 and s["method"] == "sart" and s["geometryPreset"] == "custom"
        assert s["Projections"].GetName() == workflow["projections"].GetName()
        assert s["Projections"].GetAttribute("DeepSparse.Geometry") == workflow["projections"].GetAttribute("DeepSparse.Geometry")
    finally:
        params.SetParameter("views", "6")
        params.SetParameter("method", "fdk")


# ---------------------------------------------------------------------------- bad input
def test_bad_inputs_get_one_line_messages(logic, scene_and_app, tmp_path):
    import slicer

    from deepsparse_core.errors import DeepSparseError

    scene, _ = scene_and_app
    with pytest.raises(DeepSparseError, match="no volume selected"):
        logic.start_simulation(None)
    flat = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "one slice")
    slicer.util.updateVolumeFromArray(flat, np.zeros((1, 32, 32), np.float32))
    with pytest.raises(DeepSparseError, match="2D image"):
        logic.start_simulation(flat)
    series = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "4D")
    slicer.util.updateVolumeFromArray(series, np.zeros((8, 8, 8, 5), np.float32))
    with pytest.raises(DeepSparseError, match="4D"):
        logic.start_simulation(series)
    with pytest.raises(DeepSparseError, match="no projections selected"):
        logic.start_reconstruction(None)
    with pytest.raises(DeepSparseError, match="carries no acquisition geometry"):
        logic.start_reconstruction(flat)
    params = logic.parameter_node()
    params.SetParameter("geometryPreset", "custom")
    params.SetParameter("dsd", "500")  # detector inside the source-axis distance
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    slicer.util.updateVolumeFromArray(ct, np.full((8, 8, 8), -1000, np.float32))
    with pytest.raises(DeepSparseError, match="DSD"):
        logic.start_simulation(ct)
    assert scene.GetFirstNodeByName("ct projections (6 views)") is None
    with pytest.raises(DeepSparseError, match="not found"):
        logic.import_projections(tmp_path / "missing.safetensors")


def test_projections_that_do_not_match_their_geometry_are_refused(workflow, tmp_path):
    import SimpleITK as sitk
    import slicer

    from deepsparse_core.errors import DeepSparseError
    from deepsparse_core.physics.geometry import Geometry

    logic, scene = workflow["logic"], workflow["scene"]
    before = count_nodes(scene)
    # an image stack with one view fewer than its geometry file says
    geometry = Geometry.from_dict(json.loads(workflow["projections"].GetAttribute("DeepSparse.Geometry")))
    geometry.save(tmp_path / "geometry.yaml")
    stack = slicer.util.arrayFromVolume(workflow["projections"])[:5]
    sitk.WriteImage(sitk.GetImageFromArray(stack), str(tmp_path / "stack.mha"))
    with pytest.raises(DeepSparseError, match="geometry.yaml describes 6 projections but stack.mha holds 5 images"):
        logic.import_projections(tmp_path / "stack.mha", tmp_path / "geometry.yaml")  # `deepsparse import`'s check
    with pytest.raises(DeepSparseError, match="geometry file"):
        logic.import_projections(tmp_path / "stack.mha")
    # a projections node cropped after it was made
    cropped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "cropped")
    slicer.util.updateVolumeFromArray(cropped, stack)
    cropped.SetAttribute("DeepSparse.Geometry", workflow["projections"].GetAttribute("DeepSparse.Geometry"))
    with pytest.raises(DeepSparseError, match="but the geometry has"):
        logic.start_reconstruction(cropped)
    scene.RemoveNode(cropped)
    assert count_nodes(scene) == before


def test_imported_projections_file_gives_the_same_nodes(workflow, tmp_path):
    import slicer

    from deepsparse_core.data.projections_file import save_projection_arrays

    logic = workflow["logic"]
    data = logic.projection_data(workflow["projections"])
    path = save_projection_arrays(tmp_path / "exported.safetensors", data.projections, data.geometry, data.noise,
                                  None, data.placement)
    nodes = logic.import_projections(path)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes["projections"]),
                                  slicer.util.arrayFromVolume(workflow["projections"]))
    assert nodes["reference"] is None  # the node-derived data carries no ground truth
    assert nodes["projections"].GetAttribute("DeepSparse.Placement") == workflow["projections"].GetAttribute("DeepSparse.Placement")


def test_a_model_for_another_view_count_is_refused_by_the_engine(workflow, tmp_path):
    """The step-2 view check is the engine's (DiceReconstructor.check): its message is the job's error."""
    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.model.model_file import save_model
    from deepsparse_core.physics.geometry import Geometry
    from DeepSparseSlicerLib import engine

    geometry = Geometry.from_dict(json.loads(workflow["projections"].GetAttribute("DeepSparse.Geometry")))
    path = save_model(tmp_path / "eight_views.safetensors", DiCE(DiceConfig.tiny()), geometry=geometry, n_views=8)
    model = engine.model_info(path)
    assert model.n_views == 8 and "8 views" in model.label
    logic, scene = workflow["logic"], workflow["scene"]
    params = logic.parameter_node()
    params.SetParameter("method", "dice-file")
    params.SetParameter("modelFile", str(path))
    before = count_nodes(scene)
    try:
        job = logic.start_reconstruction(workflow["projections"])
        assert job.wait(JOB_TIMEOUT_S) == "failed"
    finally:
        params.SetParameter("method", "fdk")
    assert "finetuned for 8 views, got 6" in job.error and count_nodes(scene) == before
    (tmp_path / "not_a_model.safetensors").write_bytes(b"garbage")
    from deepsparse_core.errors import DeepSparseError

    with pytest.raises(DeepSparseError):
        engine.model_info(tmp_path / "not_a_model.safetensors")
    assert [m.path.name for m in engine.user_models(tmp_path)] == ["eight_views.safetensors"]


def test_models_and_devices_are_found_in_a_background_process(logic):
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    assert not logic.catalog.known and logic.device_report().startswith("Looking")
    job = logic.start_catalog_probe()
    assert job.commands[0][1:4] == ["-m", "DeepSparseSlicerLib.worker", "catalog"]
    assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, job.error
    assert logic.catalog.known and "torch" in logic.catalog.found()
    assert [m.key for m in logic.methods()][-3:] == ["dice-file", "fdk", "sart"]


def test_a_gpu_request_without_a_gpu_falls_back_to_the_cpu_and_says_so(logic):
    import torch

    if torch.cuda.is_available():
        assert logic.resolve_device("cuda") == ("cuda", None)
        pytest.skip("this machine has a GPU; the fallback is for machines without one")
    device, note = logic.resolve_device("cuda")
    assert device == "cpu" and "no CUDA GPU" in note and "CPU" in note  # the engine's reason, then ours
    assert logic.resolve_device("auto")[0] == "cpu"
    assert "CPU" in logic.device_report()


# ---------------------------------------------------------------------------- failures leave nothing
def _fake_reconstruct(monkeypatch, code: str):
    from DeepSparseSlicerLib import engine

    monkeypatch.setattr(engine, "reconstruct_command", lambda *a, **k: [sys.executable, "-c", code])


@pytest.mark.parametrize("code, message", [
    ("import json, sys; print(json.dumps({'event': 'error', 'message': 'out of memory on the GPU'})); sys.exit(2)",
     "out of memory on the GPU"),
    ("import os; os._exit(137)", "stopped unexpectedly"),
    ("print('finished, but wrote nothing')", "file not found"),
])
def test_a_failed_reconstruction_leaves_no_half_made_nodes(workflow, monkeypatch, code, message):
    logic, scene = workflow["logic"], workflow["scene"]
    _fake_reconstruct(monkeypatch, code)
    before = count_nodes(scene)
    job = logic.start_reconstruction(workflow["projections"])
    assert job.wait(60) == "failed"
    assert message in job.error
    assert count_nodes(scene) == before
    assert not any(Path(workflow["tmp"], "work").iterdir())


def test_new_nodes_are_removed_when_making_the_outputs_fails(logic, scene_and_app):
    from deepsparse_core.data.volume import Volume

    scene, _ = scene_and_app
    before = count_nodes(scene)
    with pytest.raises(RuntimeError):
        with logic.nodes.new_nodes() as created:
            logic.nodes.add_volume(Volume(np.zeros((4, 4, 4)), (1, 1, 1)), "first output", created, units="hu")
            assert count_nodes(scene) > before
            raise RuntimeError("second output unreadable")
    assert count_nodes(scene) == before


# ---------------------------------------------------------------------------- DiCE and finetuning
def test_dice_reconstruction_with_a_bundled_model(workflow):
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    logic = workflow["logic"]
    models = [m for m in logic.methods() if m.method == "dice" and m.model and m.model.bundled
              and 6 in m.model.view_counts]
    if not models:
        pytest.skip("no bundled 6-view DiCE model in deepsparse_core/models yet")
    from DeepSparseSlicerLib import parameters

    assert parameters.DEFAULTS["method"] == "dice" == logic.methods()[0].key   # the panel offers it first
    params = logic.parameter_node()
    params.SetParameter("method", "dice")          # no model file: the engine's bundled lookup
    try:
        job = logic.start_reconstruction(workflow["projections"])
        assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, job.error
    finally:
        params.SetParameter("method", "fdk")
    out = job.outputs["volume"]
    result = logic.compare(workflow["reference"], [out, workflow["fdk"]], difference=False)
    dice, fdk = (r["psnr"] for r in result["scores"])
    assert dice > fdk, result["scores"]


def test_dice_reconstruction_with_a_user_model_file(workflow, tmp_path):
    """The 'DiCE (model file...)' choice runs the engine's DiCE in the background process and makes
    a node on the same RAS grid as FDK's (a random tiny model: this checks the plumbing, not quality)."""
    import slicer

    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.model.model_file import save_model
    from deepsparse_core.physics.geometry import Geometry
    from DeepSparseSlicerLib.geometry_bridge import node_ijk_to_ras
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    logic = workflow["logic"]
    geometry = json.loads(workflow["projections"].GetAttribute("DeepSparse.Geometry"))
    model = save_model(tmp_path / "user.safetensors", DiCE(DiceConfig.tiny()), geometry=Geometry.from_dict(geometry))
    params = logic.parameter_node()
    params.SetParameter("method", "dice-file")
    params.SetParameter("modelFile", str(model))
    try:
        job = logic.start_reconstruction(workflow["projections"])
        assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, job.error
    finally:
        params.SetParameter("method", "fdk")
    out, fdk = job.outputs["volume"], workflow["fdk"]
    assert out.GetName() == "chest_marker DiCE user 6 views"  # short; the full label is an attribute
    assert out.GetAttribute("DeepSparse.Method") == "DiCE (model file...)"
    assert np.allclose(node_ijk_to_ras(out), node_ijk_to_ras(fdk))
    values = slicer.util.arrayFromVolume(out)
    assert values.shape == slicer.util.arrayFromVolume(fdk).shape and np.isfinite(values).all()


def test_finetune_a_tiny_model_in_the_background_and_pick_it_up(workflow, tmp_path):
    """The CT node written by the GUI thread, then ``prepare`` and the adaptation run as one
    background job (one epoch of one CT: one step); the new model lands in the user models folder and is listed."""
    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.model.model_file import save_model
    from deepsparse_core.physics.geometry import Geometry, uniform_angles
    from DeepSparseSlicerLib import engine
    from DeepSparseSlicerLib.jobs import SUCCEEDED

    logic = workflow["logic"]
    scanner = Geometry(dso=800, dsd=1200, detector_shape=(32, 32), detector_spacing=(19.2, 19.2),
                       volume_shape=(32, 32, 32), volume_spacing=(12.8, 12.8, 12.8), angles=uniform_angles(24, np.pi))
    base = save_model(tmp_path / "tiny_base.safetensors", DiCE(DiceConfig.tiny()), geometry=scanner)
    progress, log = [], []
    job = logic.start_finetune("tiny finetuned", 6, 1, base, volume_nodes=[workflow["ct"]], device="cpu",
                               n_candidates=24, points=500, on_progress=progress.append, on_log=log.append)
    assert [c[4 if "training" in c[2] else 5] for c in job.commands] == ["prepare", "json"]
    assert list((Path(job.cwd) / "cts").iterdir()) == [Path(job.cwd) / "cts" / "ct_000.nii"]  # written first
    assert job.wait(JOB_TIMEOUT_S) == SUCCEEDED, f"{job.error}\n" + "\n".join(log[-20:])
    model = job.outputs["model"]
    assert model == logic.user_models_dir / "tiny_finetuned.safetensors" and model.is_file()
    assert {p["part"] for p in progress} >= {2} and all("loss" in p for p in progress if p["part"] > 1)
    assert all(p["parts"] == 2 for p in progress)
    info = engine.model_info(model)
    assert info.n_views is None and "tiny_finetuned" in info.label  # no denoise layers: any view count runs
    assert [m.path for m in engine.user_models(logic.user_models_dir)] == [model]
    # listed under a key that names the file, not its absolute path (a saved scene works elsewhere)
    assert [m.key for m in logic.methods() if m.model is not None and m.model.path == model] \
        == ["dice:user/tiny_finetuned.safetensors"]
    assert logic.base_model_path("user/tiny_finetuned.safetensors", "", 6) == model
    assert not any(Path(workflow["tmp"], "work").iterdir())
    from deepsparse_core.errors import DeepSparseError

    with pytest.raises(DeepSparseError, match="exists already"):
        logic.start_finetune("tiny finetuned", 6, 1, base, volume_nodes=[workflow["ct"]])
    with pytest.raises(DeepSparseError, match="epochs must be at least 1"):
        logic.start_finetune("another", 6, 0, base, volume_nodes=[workflow["ct"]])


def test_a_job_does_not_outlive_a_scene_close(logic, scene_and_app):
    """Issue 18, bug 3: closing the scene cancels the jobs whose results would become its nodes.
    Node IDs restart after a close, so a simulation finishing later used to take the next CT's
    node for its source and add projections named after the next patient, under its transform."""
    from DeepSparseSlicerLib.jobs import CANCELLED

    scene, _ = scene_and_app
    ct = logic.load_phantom("chest", 32)
    for key, value in SMALL_GEOMETRY.items():
        logic.parameter_node().SetParameter(key, value)
    job = logic.start_simulation(ct)
    work = Path(job.cwd)
    scene.Clear(0)
    logic.load_phantom("head", 32).SetName("next patient")
    assert job.wait(JOB_TIMEOUT_S) == CANCELLED and "scene was closed" in job.error
    assert [n.GetName() for n in logic.nodes.of_class("vtkMRMLScalarVolumeNode")] == ["next patient"]
    deadline = time.monotonic() + 30  # the folder goes once the cancelled process tree has exited
    while work.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not work.exists()


def test_compare_follows_parent_transforms(workflow):
    """Issue 18, item 13: a ground truth and a reconstruction that overlay in world space (one under
    a 40 mm translation, its voxels placed 40 mm back) score as identical, and the difference volume
    overlays the reconstruction (same IJKToRAS, same parent transform)."""
    import slicer
    import vtk

    from DeepSparseSlicerLib.geometry_bridge import node_ijk_to_ras, node_ijk_to_world

    logic, scene, ref = workflow["logic"], workflow["scene"], workflow["reference"]
    moved = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "moved copy")
    slicer.util.updateVolumeFromArray(moved, slicer.util.arrayFromVolume(ref).copy())
    m = vtk.vtkMatrix4x4()
    ref.GetIJKToRASMatrix(m)
    m.SetElement(0, 3, m.GetElement(0, 3) - 40.0)
    moved.SetIJKToRASMatrix(m)
    moved.SetAttribute("DeepSparse.Units", ref.GetAttribute("DeepSparse.Units") or "hu")
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    t = vtk.vtkMatrix4x4()
    t.SetElement(0, 3, 40.0)
    shift.SetMatrixTransformToParent(t)
    moved.SetAndObserveTransformNodeID(shift.GetID())
    np.testing.assert_allclose(node_ijk_to_world(moved), node_ijk_to_world(ref), atol=1e-9)
    result = logic.compare(ref, [moved], difference=True)
    score = result["scores"][0]
    assert score["ssim"] > 0.999 and (np.isnan(score["psnr"]) or score["psnr"] > 80.0)  # identical: PSNR inf
    (diff,) = result["differences"]
    np.testing.assert_allclose(node_ijk_to_ras(diff), node_ijk_to_ras(moved))
    assert diff.GetTransformNodeID() == shift.GetID() and np.abs(slicer.util.arrayFromVolume(diff)).max() < 1e-3
