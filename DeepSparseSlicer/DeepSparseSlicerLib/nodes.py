"""Scene nodes of the module: the parameter node, volume nodes made and removed, their bookkeeping.

Node bookkeeping (saved with the scene):

* projections node (a scalar volume (views, rows, columns), to scroll through): attributes
  ``DeepSparse.Role=projections``, ``DeepSparse.Geometry``, ``DeepSparse.Noise`` and
  ``DeepSparse.Placement`` (JSON, see ``deepsparse_core.data.projections_file``); node references
  ``DeepSparseSource`` (the CT) and ``DeepSparseReference`` (the ground truth on the grid).
* reference / reconstruction / difference nodes: ``DeepSparse.Role``, ``DeepSparse.Units``
  (hu | normalized), ``DeepSparse.HUWindow`` ("lo,hi") and ``DeepSparse.Method``; reference
  ``DeepSparseProjections``.

Voxels are placed by :mod:`.geometry_bridge` (node IJKToRAS <-> engine LPS); outputs in patient
space are put under their source's parent transform, so they overlay it in world RAS.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np

from . import parameters
from .geometry_bridge import update_node_from_volume

MODULE_NAME = "DeepSparseSlicer"
ROLE, UNITS, WINDOW, METHOD = "DeepSparse.Role", "DeepSparse.Units", "DeepSparse.HUWindow", "DeepSparse.Method"
GEOMETRY, NOISE, PLACEMENT = "DeepSparse.Geometry", "DeepSparse.Noise", "DeepSparse.Placement"
REF_SOURCE, REF_REFERENCE, REF_PROJECTIONS = "DeepSparseSource", "DeepSparseReference", "DeepSparseProjections"
VOLUME_SUFFIXES = r"\.(nii\.gz|nii|nrrd|mha|mhd|nhdr)$"


def error(message: str):
    """A ``DeepSparseError`` (one line for the panel)."""
    from deepsparse_core.errors import DeepSparseError

    return DeepSparseError(message)


class SceneNodes:
    """Making, finding and removing the module's nodes in ``scene``."""

    def __init__(self, scene):
        self.scene = scene

    # ------------------------------------------------------------------ parameter node
    def parameter_node(self):
        """The module's singleton parameter node (created with the defaults when missing)."""
        node = self.scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = self.scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(MODULE_NAME)
            node.SetName(MODULE_NAME)
            node.SetModuleName(MODULE_NAME)
            node = self.scene.AddNode(node)
        for key, value in parameters.DEFAULTS.items():
            if not node.GetParameter(key):
                node.SetParameter(key, value)
        return node

    def settings(self) -> dict:
        return parameters.typed(self.parameter_node())

    # ------------------------------------------------------------------ making and removing
    @contextlib.contextmanager
    def new_nodes(self):
        """Collect nodes made in the block; remove them all if the block raises."""
        created: list = []
        try:
            yield created
        except BaseException:
            for node in reversed(created):
                self.remove(node)
            raise

    def remove(self, node) -> None:
        """Remove ``node`` with its display and storage nodes."""
        if node is None or node.GetScene() is None:
            return
        if node.IsA("vtkMRMLDisplayableNode"):
            for i in reversed(range(node.GetNumberOfDisplayNodes())):
                display = node.GetNthDisplayNode(i)
                if display is not None:
                    self.scene.RemoveNode(display)
        if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
            self.scene.RemoveNode(node.GetStorageNode())
        self.scene.RemoveNode(node)

    def add_volume(self, volume, name: str, created: list, units: str | None = None, window=None,
                   role: str | None = None):
        """A new scalar volume node holding ``volume`` (LPS) placed by the geometry bridge;
        ``units`` hu | normalized sets a CT window/level; ``window`` is the HU window (lo, hi)."""
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", self.scene.GenerateUniqueName(name))
        created.append(node)
        update_node_from_volume(node, volume)
        node.CreateDefaultDisplayNodes()
        if role:
            node.SetAttribute(ROLE, role)
        if units:
            node.SetAttribute(UNITS, units)
            lo, hi = window or (-1000.0, 1000.0)
            node.SetAttribute(WINDOW, f"{lo:g},{hi:g}")
            display = node.GetDisplayNode()
            display.AutoWindowLevelOff()
            if units == "hu":
                display.SetWindowLevel(1500.0, -400.0)
            else:
                display.SetWindowLevel(0.75, 0.3)
        return node

    def load_volume_file(self, path, name: str | None = None):
        """Load a volume file through a Slicer storage node (Slicer's own reader)."""
        path = Path(path)
        if not path.is_file():
            raise error(f"{path}: file not found")
        name = name or re.sub(VOLUME_SUFFIXES, "", path.name, flags=re.I)
        with self.new_nodes() as created:
            node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", self.scene.GenerateUniqueName(name))
            created.append(node)
            storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            created.append(storage)
            storage.SetFileName(str(path))
            node.SetAndObserveStorageNodeID(storage.GetID())
            if not storage.ReadData(node):
                raise error(f"{path}: Slicer cannot read this file as a volume")
            node.CreateDefaultDisplayNodes()
        return node

    @staticmethod
    def same_parent_transform(node, source) -> None:
        """Put ``node`` under ``source``'s parent transform (if any), so both overlay in world RAS."""
        if source is not None and source.GetTransformNodeID():
            node.SetAndObserveTransformNodeID(source.GetTransformNodeID())

    # ------------------------------------------------------------------ finding
    def by_id(self, node_id):
        return self.scene.GetNodeByID(node_id) if node_id else None

    def of_class(self, class_name: str) -> list:
        collection = self.scene.GetNodesByClass(class_name)
        nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        collection.UnRegister(None)
        return nodes

    def view_node(self, class_name: str, view: str):
        """The slice or slice composite node of the slice view named ``view`` (Red, Yellow...)."""
        return next((n for n in self.of_class(class_name) if n.GetLayoutName() == view), None)

    @staticmethod
    def units_and_window(node, array: np.ndarray | None = None) -> tuple[str, tuple[float, float]]:
        """(hu | normalized, HU window) of a volume node: its attributes, else the engine's guess
        (``deepsparse_core.data.preprocess.guess_units``) and the standard window."""
        units = node.GetAttribute(UNITS)
        if units not in parameters.UNITS:
            from deepsparse_core.data.hu import guess_units

            if array is None:
                import slicer

                array = slicer.util.arrayFromVolume(node)
            units = guess_units(array)
        window = node.GetAttribute(WINDOW)
        lo, hi = (float(v) for v in window.split(",")) if window else (-1000.0, 1000.0)
        return units, (lo, hi)
