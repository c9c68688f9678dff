"""The one RAS <-> LPS conversion: MRML volume nodes <-> deepsparse_core volumes."""

import math

import numpy as np
import pytest

pytestmark = pytest.mark.slicer


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


def _oblique_volume():
    from deepsparse_core.data.volume import Volume

    rng = np.random.default_rng(0)
    array = rng.normal(0, 300, (7, 9, 11)).astype(np.float32)  # (k, j, i): all sizes differ
    # direction with a flip and an oblique rotation, spacing different per axis
    direction = _rotation((1, 2, 3), 25) @ np.diag([1.0, -1.0, 1.0])
    return Volume(array, spacing=(2.5, 0.8, 1.2), origin=(-30.5, 12.25, 100.0), direction=direction)


def test_round_trip_keeps_voxels_and_lps_geometry_with_an_oblique_direction(scene_and_app):
    from DeepSparseSlicerLib.geometry_bridge import (ijk_to_ras_matrix, node_ijk_to_ras, update_node_from_volume,
                                                     volume_from_node)

    scene, _ = scene_and_app
    volume = _oblique_volume()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique")
    update_node_from_volume(node, volume)
    np.testing.assert_allclose(node_ijk_to_ras(node), ijk_to_ras_matrix(volume), atol=1e-9)
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.spacing, volume.spacing, atol=1e-9)
    np.testing.assert_allclose(back.origin, volume.origin, atol=1e-9)
    np.testing.assert_allclose(back.direction, volume.direction, atol=1e-9)
    # any voxel is at the same physical point: LPS from deepsparse_core = flipped RAS from Slicer
    kji = np.array([3, 5, 8])
    ras = node_ijk_to_ras(node) @ np.append(kji[::-1], 1.0)
    np.testing.assert_allclose(volume.index_to_lps(kji), ras[:3] * [-1, -1, 1], atol=1e-9)


def test_identity_lps_volume_gets_negated_x_and_y_in_ras(scene_and_app):
    from deepsparse_core.data.volume import Volume
    from DeepSparseSlicerLib.geometry_bridge import node_ijk_to_ras, update_node_from_volume

    scene, _ = scene_and_app
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    update_node_from_volume(node, Volume(np.zeros((2, 3, 4)), (3.0, 2.0, 1.0), (10.0, 20.0, 30.0)))
    expected = np.array([[-1, 0, 0, -10], [0, -2, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(node_ijk_to_ras(node), expected)


def assert_same_physical_image(a, b, atol=1e-3):
    """Every voxel of ``a`` sits (LPS mm) on a voxel of ``b`` with the same value (the arrays may
    differ by axis flips, as when a reader makes the voxel axes right-handed)."""
    kji = np.stack(np.meshgrid(*[np.arange(n) for n in a.shape], indexing="ij"), -1).reshape(-1, 3)
    lps = a.index_to_lps(kji)
    ijk_mm = (lps - np.asarray(b.origin)) @ np.linalg.inv(np.asarray(b.direction)).T
    kji_b = (ijk_mm / np.asarray(b.spacing[::-1]))[:, ::-1]
    np.testing.assert_allclose(kji_b, np.round(kji_b), atol=atol)
    k, j, i = np.round(kji_b).astype(int).T
    assert np.all((k >= 0) & (k < b.shape[0]) & (j >= 0) & (j < b.shape[1]) & (i >= 0) & (i < b.shape[2]))
    np.testing.assert_allclose(b.array[k, j, i], a.array[tuple(kji.T)], atol=1e-3)


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_bridge_agrees_with_slicer_own_file_readers(logic, tmp_path, suffix):
    """A file written by deepsparse_core (SimpleITK, LPS) and read by Slicer's storage node (its own
    readers, which convert to RAS themselves) holds the same image at the same place as the bridge
    says: every voxel at the same physical point with the same value."""
    from deepsparse_core.data.volume_io import write_volume
    from DeepSparseSlicerLib.geometry_bridge import volume_from_node

    volume = _oblique_volume()
    node = logic.load_volume_file(write_volume(volume, tmp_path / f"oblique{suffix}"))
    assert_same_physical_image(volume_from_node(node), volume)
    assert_same_physical_image(volume, volume_from_node(node))


def test_not_a_3d_scalar_volume_is_refused_with_a_message(scene_and_app):
    import slicer

    from deepsparse_core.errors import InputError
    from DeepSparseSlicerLib.geometry_bridge import volume_from_node

    scene, _ = scene_and_app
    with pytest.raises(InputError, match="no volume selected"):
        volume_from_node(None)
    flat = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "slice")
    slicer.util.updateVolumeFromArray(flat, np.zeros((1, 8, 8), np.float32))
    with pytest.raises(InputError, match="2D image"):
        volume_from_node(flat)
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(vector, np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(InputError, match="scalar|components"):
        volume_from_node(vector)
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(labels, np.zeros((4, 8, 8), np.int16))
    with pytest.raises(InputError, match="label map"):
        volume_from_node(labels)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no image data"):
        volume_from_node(empty)
