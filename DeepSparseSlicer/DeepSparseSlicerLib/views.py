"""Slice views and layout: the side-by-side comparison, scrolling through projections, and the
offscreen render of the comparison.

Slice offsets are world RAS mm (``vtkMRMLSliceLogic.SetSliceOffset``): positions in a node's own
frame go through its parent transform first (:func:`.geometry_bridge.to_world_ras`).
"""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from .geometry_bridge import node_centre_world, node_ijk_to_ras, to_world_ras
from .nodes import SceneNodes, error

COMPARE_VIEWS = ("Red", "Yellow")  # the two views of Slicer's side-by-side layout
SIDE_BY_SIDE_LAYOUT = 29  # vtkMRMLLayoutNode.SlicerLayoutSideBySideView


class Views:
    """``app_logic`` (``slicer.app.applicationLogic()`` in Slicer) gives the slice logics; without
    it only the composite and slice nodes are set."""

    def __init__(self, nodes: SceneNodes, app_logic=None):
        self.nodes, self.app_logic = nodes, app_logic
        self._window_link = None  # (ground truth's display node, observer tag)

    def _slice_logic(self, view: str):
        return self.app_logic.GetSliceLogicByLayoutName(view) if self.app_logic is not None else None

    def show_comparison(self, ground_truth, reconstruction, offset_ras: float | None = None) -> None:
        """Side-by-side layout: ground truth (Red) | reconstruction (Yellow), axial, linked, the
        reconstruction's window/level following the ground truth's, at the axial world position ``offset_ras`` (S mm; default: the
        reconstruction's centre, through its parent transform)."""
        layout = self.scene_layout()
        if layout is not None:
            layout.SetViewArrangement(SIDE_BY_SIDE_LAYOUT)
        self.link_window_level(ground_truth, reconstruction)
        offset = float(node_centre_world(reconstruction)[2] if offset_ras is None else offset_ras)
        for view, node in zip(COMPARE_VIEWS, (ground_truth, reconstruction)):
            composite = self.nodes.view_node("vtkMRMLSliceCompositeNode", view)
            if composite is None:
                continue
            composite.SetBackgroundVolumeID(node.GetID())
            composite.SetForegroundVolumeID(None)
            composite.SetLinkedControl(True)
            slice_logic = self._slice_logic(view)
            slice_node = slice_logic.GetSliceNode() if slice_logic else self.nodes.view_node("vtkMRMLSliceNode", view)
            if slice_node is not None:
                slice_node.SetOrientationToAxial()
            if slice_logic is not None:
                slice_logic.FitSliceToAll()
                slice_logic.SetSliceOffset(offset)

    def scene_layout(self):
        return self.nodes.scene.GetFirstNodeByClass("vtkMRMLLayoutNode")

    def link_window_level(self, ground_truth, reconstruction) -> None:
        """Match the window/level now and whenever the ground truth's changes (one link at a time:
        a new comparison replaces it; it ends when either node leaves the scene)."""
        self.unlink_window_level()
        self.match_window_level(ground_truth, reconstruction)
        display = ground_truth.GetDisplayNode()
        if display is None:
            return
        me, scene = weakref.ref(self), self.nodes.scene

        def follow(caller, event):
            views = me()
            if views is None:
                return
            if scene.IsNodePresent(ground_truth) and scene.IsNodePresent(reconstruction):
                views.match_window_level(ground_truth, reconstruction)
            else:
                views.unlink_window_level()

        self._window_link = (display, display.AddObserver("ModifiedEvent", follow))

    def unlink_window_level(self) -> None:
        if self._window_link is not None:
            display, tag = self._window_link
            display.RemoveObserver(tag)
            self._window_link = None

    def match_window_level(self, ground_truth, reconstruction) -> None:
        """The reconstruction shows the ground truth's grey levels (converted when units differ)."""
        gt_display, rec_display = ground_truth.GetDisplayNode(), reconstruction.GetDisplayNode()
        if gt_display is None or rec_display is None:
            return
        gt_units, (lo, hi) = self.nodes.units_and_window(ground_truth)
        rec_units, _ = self.nodes.units_and_window(reconstruction)
        window, level = gt_display.GetWindow(), gt_display.GetLevel()
        if gt_units != rec_units:  # the same grey levels in the other unit
            scale = 1.0 / (hi - lo) if gt_units == "hu" else (hi - lo)
            level = (level - lo) * scale if gt_units == "hu" else level * scale + lo
            window *= scale
        rec_display.AutoWindowLevelOff()
        rec_display.SetWindowLevel(window, level)

    def show_projection(self, projections_node, index: int, view: str = "Red") -> None:
        """Show projection ``index`` of a projections node in a slice view (axial)."""
        composite = self.nodes.view_node("vtkMRMLSliceCompositeNode", view)
        if composite is None or projections_node is None:
            return
        slice_logic = self._slice_logic(view)
        if composite.GetBackgroundVolumeID() != projections_node.GetID():
            composite.SetBackgroundVolumeID(projections_node.GetID())
            if slice_logic is not None:
                slice_logic.GetSliceNode().SetOrientationToAxial()
                slice_logic.FitSliceToAll()
        if slice_logic is not None:
            own = (node_ijk_to_ras(projections_node) @ np.array([0.0, 0.0, float(index), 1.0]))[:3]
            slice_logic.SetSliceOffset(float(to_world_ras(projections_node, own)[2]))

    def save_comparison_png(self, path, titles=("Ground truth", "Reconstruction")) -> Path:
        """The two comparison views rendered offscreen, side by side (needs ``app_logic``)."""
        from .rendering import side_by_side_png

        if self.app_logic is None:
            raise error("no slice views to render")
        logics = [self.app_logic.GetSliceLogicByLayoutName(v) for v in COMPARE_VIEWS]
        return side_by_side_png(logics, titles, path)[0]
