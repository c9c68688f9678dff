"""Projections in the scene: the acquisition geometry of the settings, projections nodes made from
``deepsparse_core`` projection data (simulated or imported: projections files here, scanner
projections in :mod:`.scanner_import`), and projection data read back. Projection data are numpy
arrays here (``deepsparse_core.data.projections_file.ProjectionArrays``): no torch on the GUI thread.

A projections node is a scalar volume (views, rows, columns) not in patient space: views along k,
detector rows (v, up) along A and columns along L, so an axial slice view shows each projection
upright and scrolling through the axial slices goes through the views.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from . import engine, parameters
from .geometry_bridge import check_scalar_3d
from .nodes import GEOMETRY, NOISE, PLACEMENT, REF_PROJECTIONS, REF_REFERENCE, REF_SOURCE, SceneNodes, error


def geometry_from_settings(s: dict):
    """The acquisition geometry of the settings (a preset, or the custom fields; mm, degrees)."""
    engine.core_location()
    from deepsparse_core.physics.geometry import Geometry, uniform_angles

    views, arc = int(s["views"]), float(s["arcDegrees"])
    if views < 1:
        raise error("the number of views must be at least 1")
    if s["geometryPreset"] != parameters.CUSTOM_GEOMETRY:
        return Geometry.preset(s["geometryPreset"], views, arc)
    n, size = int(s["gridSize"]), float(s["voxelSize"])
    return Geometry(dso=s["dso"], dsd=s["dsd"],
                    detector_shape=(s["detectorRows"], s["detectorColumns"]),
                    detector_spacing=(s["detectorSpacing"],) * 2, volume_shape=(n, n, n),
                    volume_spacing=(size, size, size),
                    angles=uniform_angles(views, np.radians(arc)), name=parameters.CUSTOM_GEOMETRY)


class Projections:
    """Projections nodes <-> ``deepsparse_core.data.projections_file.ProjectionArrays``."""

    def __init__(self, nodes: SceneNodes):
        self.nodes = nodes

    def add_nodes(self, data, name: str, source=None, units: str = "hu") -> dict:
        """Nodes for a ``ProjectionArrays``: ``{"projections": node, "reference": node or None}``
        (the reference, the ground truth on the reconstruction grid, follows ``source``'s transform)."""
        from deepsparse_core.data.volume import Volume

        g = data.geometry
        proj = np.asarray(data.projections, dtype=np.float32)
        spacing = (1.0, g.detector_spacing[0], g.detector_spacing[1])
        direction = np.diag([1.0, -1.0, 1.0])
        centre = direction @ ((np.array(proj.shape[::-1]) - 1) / 2 * np.array(spacing[::-1]))
        with self.nodes.new_nodes() as created:
            node = self.nodes.add_volume(Volume(proj, spacing, tuple(-centre), direction),
                                         f"{name} projections ({g.n_views} views)", created, role="projections")
            node.SetAttribute(GEOMETRY, json.dumps(g.to_dict()))
            node.SetAttribute(NOISE, json.dumps(data.noise.to_dict()))
            node.SetAttribute(PLACEMENT, json.dumps(data.placement.to_dict() if data.placement else None))
            node.GetDisplayNode().AutoWindowLevelOn()
            if source is not None:
                node.SetNodeReferenceID(REF_SOURCE, source.GetID())
            outputs = {"projections": node, "reference": None}
            if data.reference is not None:
                ref = self.nodes.add_volume(data.to_volume(data.reference, units), f"{name} reference",
                                            created, units=units, window=g.hu_window, role="reference")
                ref.SetNodeReferenceID(REF_PROJECTIONS, node.GetID())
                self.nodes.same_parent_transform(ref, source)
                node.SetNodeReferenceID(REF_REFERENCE, ref.GetID())
                outputs["reference"] = ref
        return outputs

    def import_file(self, path, units: str = "hu") -> dict:
        """Nodes for a projections file of ``deepsparse simulate`` or ``import`` (.safetensors);
        scanner projections (stacks, folders of images) go through ``deepsparse import``
        (:mod:`.scanner_import`)."""
        engine.core_location()
        from deepsparse_core.data.projections_file import read_projection_arrays

        path = Path(path) if path else None
        if path is None or not path.is_file():
            raise error(f"projections file not found: {path or '(none chosen)'}")
        if path.suffix != ".safetensors":
            raise error(f"{path.name} is not a projections file (.safetensors): import scanner projections "
                        "with their geometry file")
        return self.add_nodes(read_projection_arrays(path), re.sub(r"\.safetensors$", "", path.name), None, units)

    def data(self, node):
        """``ProjectionArrays`` of a projections node (its voxels with the geometry it carries)."""
        engine.core_location()
        from deepsparse_core.data.projections_file import ProjectionArrays
        from deepsparse_core.errors import GeometryError
        from deepsparse_core.physics.geometry import Geometry, check_projection_shape
        from deepsparse_core.physics.noise import NoiseModel

        if node is None:
            raise error("no projections selected: simulate or import projections first")
        if not node.GetAttribute(GEOMETRY):
            raise error(f"'{node.GetName()}' carries no acquisition geometry: it was not made by "
                        "Simulate or Import")
        check_scalar_3d(node)
        import slicer

        from deepsparse_core.data.placement import Placement

        proj = np.array(slicer.util.arrayFromVolume(node), dtype=np.float32)
        if not np.isfinite(proj).all():
            raise error(f"'{node.GetName()}' contains NaN or infinite values")
        geometry = Geometry.from_dict(json.loads(node.GetAttribute(GEOMETRY)))
        try:
            check_projection_shape(proj.shape, geometry)  # (the node is 3D: check_scalar_3d)
        except GeometryError as e:
            raise GeometryError(f"'{node.GetName()}': {e}") from None
        noise = NoiseModel.from_dict(json.loads(node.GetAttribute(NOISE) or '{"enabled": false}'))
        placement = json.loads(node.GetAttribute(PLACEMENT) or "null")
        return ProjectionArrays(proj, geometry, noise, None, Placement.from_dict(placement, f"'{node.GetName()}'"))
