"""MRML volume nodes <-> ``deepsparse_core`` volumes: the one place where RAS meets LPS.

Slicer places voxels in patient **RAS** (IJKToRAS matrix: spacing, origin, axis directions);
``deepsparse_core`` (like ITK, SimpleITK and the files on disk) uses patient **LPS**
(:class:`deepsparse_core.data.volume_io.Volume`: ``spacing`` (sz, sy, sx) mm, ``origin`` (x, y, z) LPS
mm of voxel [0, 0, 0], ``direction`` whose columns are the LPS unit vectors of the i, j, k axes).
The two frames differ by ``RAS = diag(-1, -1, 1) LPS`` (its own inverse), applied here to the
origin and to the direction columns; the voxel arrays are (k, j, i) = (z, y, x) in both.

Only the node's own IJKToRAS is converted: a parent transform is not baked in, so outputs placed
under the same parent transform as their source overlay it. Slice views work in world RAS:
:func:`to_world_ras` takes a point of a node's own RAS frame through its parent transforms.
"""

from __future__ import annotations

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])  # also RAS -> LPS


def ijk_to_ras_matrix(volume) -> np.ndarray:
    """4x4 IJKToRAS matrix of a ``deepsparse_core`` :class:`Volume` (LPS)."""
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.asarray(volume.direction) @ np.diag(volume.spacing[::-1])
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(volume.origin)
    return matrix


def _numpy(m) -> np.ndarray:
    """A vtkMatrix4x4 as a 4x4 numpy array."""
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def node_ijk_to_ras(node) -> np.ndarray:
    """The node's own 4x4 IJKToRAS matrix as numpy."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return _numpy(m)


def node_centre_ras(node) -> np.ndarray:
    """RAS mm of the centre of the node's voxel grid (midway between the first and last voxels)."""
    dims = np.array(node.GetImageData().GetDimensions(), dtype=float)
    return (node_ijk_to_ras(node) @ np.append((dims - 1) / 2, 1.0))[:3]


def to_world_ras(node, point_ras) -> np.ndarray:
    """World RAS mm of ``point_ras``, a point in ``node``'s own RAS frame (before its parent
    transform); the point itself when the node has no parent transform."""
    transform_node = node.GetParentTransformNode()
    point = np.asarray(point_ras, dtype=float)
    if transform_node is None:
        return point
    import vtk

    to_world = vtk.vtkGeneralTransform()
    transform_node.GetTransformToWorld(to_world)
    return np.array(to_world.TransformPoint(*point))


def node_centre_world(node) -> np.ndarray:
    """World RAS mm of the centre of the node's voxel grid (through its parent transform)."""
    return to_world_ras(node, node_centre_ras(node))


def node_ijk_to_world(node) -> np.ndarray:
    """IJK -> world RAS: the node's IJKToRAS under its parent transforms (linear ones only)."""
    import vtk

    from deepsparse_core.errors import InputError

    matrix = node_ijk_to_ras(node)
    parent = node.GetParentTransformNode()
    if parent is None:
        return matrix
    if not parent.IsTransformToWorldLinear():
        raise InputError(f"'{node.GetName()}' is under a non-linear transform: harden it first")
    m = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(m)
    return _numpy(m) @ matrix


def volume_from_node(node, world: bool = False):
    """A float32 :class:`Volume` (LPS) copied from a scalar volume node; ``world``: placed in world
    coordinates, through its parent transforms (linear). Raises ``InputError``."""
    import slicer

    from deepsparse_core.data.volume import Volume
    from deepsparse_core.errors import InputError

    check_scalar_3d(node)
    array = np.array(slicer.util.arrayFromVolume(node), dtype=np.float32)  # (k, j, i), a copy
    matrix = node_ijk_to_world(node) if world else node_ijk_to_ras(node)
    spacing_ijk = np.linalg.norm(matrix[:3, :3], axis=0) if world else np.array(node.GetSpacing(), dtype=np.float64)
    if np.any(spacing_ijk <= 0):
        raise InputError(f"'{node.GetName()}' has a non-positive voxel spacing {tuple(spacing_ijk)}")
    direction_ras = matrix[:3, :3] / spacing_ijk  # columns: unit RAS vectors of i, j, k
    return Volume(array, tuple(spacing_ijk[::-1]), tuple(LPS_TO_RAS @ matrix[:3, 3]),
                  LPS_TO_RAS @ direction_ras)


def update_node_from_volume(node, volume) -> None:
    """Set the node's voxels (deep copy) and IJKToRAS from a :class:`Volume` (LPS)."""
    import slicer
    import vtk

    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    matrix = ijk_to_ras_matrix(volume)
    vtk_matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vtk_matrix.SetElement(r, c, matrix[r, c])
    node.SetIJKToRASMatrix(vtk_matrix)  # sets spacing, origin and directions together


def check_scalar_3d(node) -> None:
    """Raise ``InputError`` unless ``node`` is a scalar 3D volume (not 2D, 4D, colour or a label map)."""
    from deepsparse_core.errors import InputError

    if node is None:
        raise InputError("no volume selected: choose a CT volume first")
    name = node.GetName()
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"'{name}' is a {node.GetClassName()}, not a scalar (CT) volume")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"'{name}' is a label map, not a CT volume")
    image = node.GetImageData()
    if image is None:
        raise InputError(f"'{name}' holds no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"'{name}' has {image.GetNumberOfScalarComponents()} components per voxel "
                         "(a 4D, vector or colour image); a scalar 3D CT is needed")
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise InputError(f"'{name}' is a 2D image ({dims[0]} x {dims[1]} x {dims[2]} voxels); "
                         "a 3D CT volume is needed")
