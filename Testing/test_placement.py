"""Placement: where a reconstruction grid sits in the patient, through every path that writes one."""

import dataclasses

import numpy as np
import pytest
import torch

from deepsparse_core.data.placement import Placement
from deepsparse_core.data.preprocess import preprocess_ct
from deepsparse_core.data.projections_file import ProjectionData, load_projections, save_projections
from deepsparse_core.data.volume import Volume
from deepsparse_core.errors import InputError
from deepsparse_core.physics.geometry import Geometry

ROTATED = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 degrees about z: i -> P, j -> R


def geometry() -> Geometry:
    return Geometry.preset("fast", 4).with_grid((16, 20, 24), (12.0, 10.0, 8.0))


def test_to_volume_puts_every_voxel_centre_where_the_placement_says():
    g = geometry()
    p = Placement((10.0, -20.0, 30.0), ROTATED.ravel(), piece=1, n_pieces=3)
    vol = p.to_volume(np.zeros(g.volume_shape, np.float32), g)
    assert vol.spacing == g.volume_spacing and np.allclose(vol.origin, p.origin_lps)
    # voxel (k, j, i) sits at origin + direction @ (i sx, j sy, k sz): brute force on a few voxels
    for kji in [(0, 0, 0), (3, 5, 7), (15, 19, 23)]:
        expected = np.array(p.origin_lps) + ROTATED @ (np.array(kji[::-1]) * np.array(g.volume_spacing[::-1]))
        assert np.allclose(vol.index_to_lps(kji), expected)


@pytest.mark.parametrize("shape", [(8, 10, 12), (32, 40, 48), (16, 16, 16)])
def test_another_resolution_covers_the_same_box(shape):
    """Regridding keeps the grid's box: its corners and centre stay in place at any resolution."""
    g = geometry()
    p = Placement((10.0, -20.0, 30.0), ROTATED.ravel())
    a = p.to_volume(np.zeros(g.volume_shape, np.float32), g)
    b = p.to_volume(np.zeros(shape, np.float32), g)
    assert np.allclose(a.centre_lps, b.centre_lps)
    corner = lambda v: v.index_to_lps(np.full(3, -0.5))  # noqa: E731 (the box corner, half a voxel out)
    far = lambda v: v.index_to_lps(np.array(v.shape) - 0.5)  # noqa: E731
    assert np.allclose(corner(a), corner(b)) and np.allclose(far(a), far(b))
    assert np.allclose(np.array(b.spacing) * shape, np.array(g.volume_extent))


def test_regrid_around_the_same_centre_keeps_the_centre():
    g = geometry()
    other = g.with_grid((10, 10, 10), (5.0, 5.0, 5.0))   # another extent, same centre (volume_offset)
    p = Placement((1.0, 2.0, 3.0), ROTATED.ravel())
    a, b = p.to_volume(np.zeros(g.volume_shape), g), p.regrid(g, other).to_volume(np.zeros(other.volume_shape), other)
    assert np.allclose(a.centre_lps, b.centre_lps)


def test_the_scanner_placement_centres_the_grid_at_the_volume_offset():
    g = dataclasses.replace(Geometry.preset("fast", 4).with_grid((8, 8, 8)), volume_offset=(5.0, -3.0, 2.0))
    vol = ProjectionData(torch.zeros(4, *g.detector_shape), g).to_volume(torch.zeros(8, 8, 8))
    assert np.allclose(vol.centre_lps, [2.0, -3.0, 5.0]) and np.allclose(vol.direction, np.eye(3))


def test_to_volume_converts_units_with_the_window():
    g = geometry()
    vol = Placement.scanner(g).to_volume(np.full(g.volume_shape, 0.5, np.float32), g, "hu")
    assert np.allclose(vol.array, 0.0)  # the middle of [-1000, 1000]
    with pytest.raises(InputError, match="unknown units"):
        Placement.scanner(g).to_volume(np.zeros(g.volume_shape), g, "kelvin")


def test_preprocess_simulate_and_the_projections_file_carry_the_same_placement(tmp_path):
    g = Geometry.preset("fast", 4).with_grid((16, 16, 16))
    ct = Volume(np.full((20, 30, 40), -1000.0, np.float32), (10.0, 8.0, 6.0), (-100.0, 40.0, 7.5))
    (_, meta), = preprocess_ct(ct, g.volume_shape, g.volume_spacing, g.hu_window)
    assert isinstance(meta["placement"], Placement) and meta["placement"].origin_lps == meta["origin_lps"]
    from deepsparse_core.data.simulate import simulate

    data = simulate(ct, g, seed=0, device="cpu")
    assert data.placement == meta["placement"]
    save_projections(tmp_path / "p.safetensors", data)
    back = load_projections(tmp_path / "p.safetensors")
    assert back.placement == data.placement
    assert np.allclose(back.to_volume(back.reference).centre_lps, ct.centre_lps, atol=0.5 * max(g.volume_spacing))


@pytest.mark.parametrize("bad", [{"origin_lps": [1, 2]}, {"origin_lps": [1, 2, 3], "direction": [1] * 8},
                                 {"origin_lps": [1, 2, float("nan")], "direction": [1] * 9},
                                 {"origin_lps": [1, 2, 3], "direction": [1] * 9, "piece": "0"}, [1, 2, 3]])
def test_a_corrupt_placement_is_an_input_error(bad):
    with pytest.raises(InputError, match="corrupt placement"):
        Placement.from_dict(bad, "p.safetensors")
    assert Placement.from_dict(None) is None
    p = Placement((1.0, 2.0, 3.0), np.eye(3).ravel(), 2, 4)
    assert Placement.from_dict(p.to_dict()) == p
