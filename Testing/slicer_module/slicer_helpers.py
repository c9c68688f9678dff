"""Helpers shared by the DeepSparseSlicer tests (a module of its own: two conftest.py files share
the module name ``conftest``, so tests cannot import from theirs)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "DeepSparseSlicer"


def make_scene():
    """(scene, application logic) with default colour tables and the Red and Yellow slice views,
    as the Slicer application sets them up."""
    import slicer
    import vtk

    scene = slicer.vtkMRMLScene()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(scene)
    logics = vtk.vtkCollection()
    for view in ("Red", "Yellow"):
        slice_logic = slicer.vtkMRMLSliceLogic()
        slice_logic.SetMRMLScene(scene)
        slice_logic.SetMRMLApplicationLogic(app)
        slice_logic.AddSliceNode(view).SetDimensions(256, 256, 1)
        logics.AddItem(slice_logic)
    app.SetSliceLogics(logics)
    app._keep = (colors, logics)  # keep the Python wrappers alive with the scene
    return scene, app


def count_nodes(scene) -> int:
    return scene.GetNumberOfNodes()
