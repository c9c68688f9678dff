"""Preprocessing: orientation, HU normalization, resampling, crop/pad, axial split, pipeline."""

import numpy as np
import pytest

from deepsparse_core.data.hu import air_value, denormalize, normalize_hu
from deepsparse_core.data.preprocess import (center_crop_or_pad, center_offsets, preprocess_ct, reorient_to_lps,
                                             resample, split_axial)
from deepsparse_core.data.volume import Volume
from deepsparse_core.errors import InputError

PIR = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)  # i -> P, j -> I, k -> R


def sphere_volume(shape, spacing, centre_lps, radius_mm, direction=np.eye(3), origin=None):
    """Volume with a ball of +1000 HU at ``centre_lps`` in -1000 HU air."""
    if origin is None:  # grid centre at LPS (0, 0, 0)
        origin = -direction @ ((np.array(shape[::-1]) - 1) / 2 * np.array(spacing[::-1]))
    empty = Volume(np.zeros(shape), spacing, origin, direction)
    kji = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    inside = np.linalg.norm(empty.index_to_lps(kji) - centre_lps, axis=-1) <= radius_mm
    return empty.with_array(np.where(inside, 1000.0, -1000.0))


def centroid_lps(volume: Volume, threshold=0.0):
    kji = np.argwhere(volume.array > threshold)
    return volume.index_to_lps(kji).mean(0)


def test_reorient_gives_identity_direction_and_keeps_every_voxel_in_place():
    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(size=(5, 6, 7)), (2.0, 1.5, 0.5), (10.0, -20.0, 30.0), PIR)
    lps = reorient_to_lps(volume)
    np.testing.assert_array_equal(lps.direction, np.eye(3))
    assert sorted(lps.spacing) == sorted(volume.spacing)
    for kji in [(0, 0, 0), (4, 5, 6), (2, 3, 1), (1, 0, 6)]:
        point = volume.index_to_lps(kji)
        index = np.linalg.solve(lps.direction * lps.spacing[::-1], point - lps.origin)[::-1]
        np.testing.assert_allclose(index, np.round(index), atol=1e-9)
        assert lps.array[tuple(np.round(index).astype(int))] == volume.array[kji]


def test_reorient_of_flipped_axes_keeps_physical_content():
    base = sphere_volume((20, 22, 24), (2.0, 1.0, 1.5), np.array([5.0, -3.0, 8.0]), 6.0)
    flip = np.diag([-1.0, 1.0, -1.0])
    flipped = Volume(base.array[::-1, :, ::-1], base.spacing,
                     base.index_to_lps((19, 0, 23)), base.direction @ flip)
    restored = reorient_to_lps(flipped)
    np.testing.assert_array_equal(restored.array, base.array)
    np.testing.assert_allclose(restored.origin, base.origin, atol=1e-9)


def test_oblique_volume_is_resampled_axis_aligned_with_a_warning():
    theta = np.radians(10)
    tilt = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    centre = np.array([4.0, -6.0, 3.0])
    volume = sphere_volume((30, 30, 30), (1.0, 1.0, 1.0), centre, 6.0, direction=tilt)
    with pytest.warns(UserWarning, match="oblique"):
        lps = reorient_to_lps(volume)
    np.testing.assert_array_equal(lps.direction, np.eye(3))
    np.testing.assert_allclose(centroid_lps(lps), centre, atol=0.3)


def test_normalize_hu_clips_to_window_and_maps_to_0_1():
    hu = np.array([-3000, -1000, 0, 500, 1000, 4000], np.float32)
    out = normalize_hu(hu, (-1000, 1000))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(denormalize(out[1:5], (-1000, 1000)), hu[1:5])
    assert air_value((-1000, 1024)) == 0.0
    assert air_value((-1200, 800)) == pytest.approx(0.1)
    with pytest.raises(InputError):
        normalize_hu(hu, (100, 100))


@pytest.mark.parametrize("new_spacing", [(3.2, 3.2, 3.2), (0.9, 1.7, 0.6)])
def test_resample_keeps_physical_centre_extent_and_object_position(new_spacing):
    centre = np.array([12.0, -9.0, 7.0])  # off the grid centre
    volume = sphere_volume((40, 50, 60), (2.5, 0.8, 1.2), centre, 15.0, direction=PIR)
    out = resample(volume, new_spacing)
    assert out.spacing == new_spacing
    np.testing.assert_allclose(out.centre_lps, volume.centre_lps, atol=1e-9)
    extent_in = np.array(volume.shape) * volume.spacing
    extent_out = np.array(out.shape) * out.spacing
    assert np.all(np.abs(extent_out - extent_in) <= np.array(new_spacing) / 2 + 1e-9)
    np.testing.assert_allclose(out.direction, volume.direction)
    np.testing.assert_allclose(centroid_lps(out), centre, atol=0.5)
    assert out.array.min() >= -1000.0 - 1e-3 and out.array.max() <= 1000.0 + 1e-3


def test_resample_nearest_keeps_label_values():
    labels = np.random.default_rng(1).integers(0, 5, size=(10, 12, 14)).astype(np.float32)
    out = resample(Volume(labels, (1, 1, 1)), (0.7, 1.3, 2.0), order=0)
    assert set(np.unique(out.array)) <= set(range(5))


def test_resample_rejects_bad_spacing_and_order():
    volume = Volume(np.zeros((4, 4, 4)), (1, 1, 1))
    with pytest.raises(InputError):
        resample(volume, (1, 0, 1))
    with pytest.raises(InputError):
        resample(volume, (1, 1, 1), order=2)


def test_center_crop_or_pad_centres_content_and_fills():
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    out = center_crop_or_pad(array, (8, 4, 7), fill=-1)
    assert out.shape == (8, 4, 7)
    assert center_offsets(array.shape, (8, 4, 7)) == (-1, 1, 0)
    np.testing.assert_array_equal(out[1:6], array[:, 1:5])
    assert np.all(out[0] == -1) and np.all(out[6:] == -1)
    np.testing.assert_array_equal(center_crop_or_pad(out, (5, 4, 7), 0), array[:, 1:5])


@pytest.mark.parametrize("nz, overlap_mm", [(700, 0.0), (701, 40.0), (193, 10.0)])
def test_split_axial_covers_the_scan_with_equal_pieces(nz, overlap_mm):
    volume = Volume(np.random.default_rng(0).normal(size=(nz, 3, 3)), (2.0, 1.0, 1.0),
                    (1.0, 2.0, -500.0), PIR)
    pieces = split_axial(volume, 384.0, overlap_mm)
    assert len(pieces) >= 2
    length = pieces[0].shape[0]
    assert length * 2.0 <= 384.0 and all(p.shape[0] == length for p in pieces)
    covered = np.zeros(nz, bool)
    starts = []
    for piece in pieces:
        start = int(round(np.linalg.solve(volume.direction * volume.spacing[::-1],
                                          np.subtract(piece.origin, volume.origin))[2]))
        np.testing.assert_array_equal(piece.array, volume.array[start:start + length])
        covered[start:start + length] = True
        starts.append(start)
    assert covered.all()
    assert all(b - a <= length - overlap_mm / 2.0 for a, b in zip(starts, starts[1:]))


def test_split_axial_returns_short_scans_whole():
    volume = Volume(np.zeros((100, 2, 2)), (3.0, 1.0, 1.0))
    assert split_axial(volume, 384.0) == [volume]
    with pytest.raises(InputError):
        split_axial(volume, 30.0, overlap_mm=30.0)


def test_preprocess_ct_places_the_anatomy_where_the_metadata_says():
    centre = np.array([20.0, -15.0, 10.0])
    ct = sphere_volume((60, 64, 64), (1.0, 1.5, 1.5), centre, 12.0, direction=PIR)
    ct = ct.with_array(ct.array.astype(np.float32))
    (array, meta), = preprocess_ct(ct, (32, 48, 40), (3.2, 2.4, 2.8), window=(-1000, 1000))
    assert array.shape == (32, 48, 40) and array.dtype == np.float32
    assert 0.0 <= array.min() and array.max() <= 1.0
    assert array[0, 0, 0] == 0.0  # padded with air
    grid = Volume(array, meta["spacing"], meta["origin_lps"])
    np.testing.assert_allclose(centroid_lps(grid, 0.5), centre, atol=0.6)
    np.testing.assert_allclose(grid.centre_lps, meta["centre_lps"])


def test_preprocess_ct_splits_a_long_scan_into_grid_sized_pieces():
    ct = Volume(np.linspace(-1000, 1000, 400 * 8 * 8).reshape(400, 8, 8), (2.0, 40.0, 40.0),
                direction=np.diag([1.0, 1.0, -1.0]))
    results = preprocess_ct(ct, (64, 8, 8), (4.0, 40.0, 40.0))  # grid 256 mm long in z
    assert len(results) == 4  # 800 mm scan in pieces of at most 256 mm
    for array, meta in results:
        assert array.shape == (64, 8, 8) and meta["n_pieces"] == 4
        assert meta["z_range_lps"][1] - meta["z_range_lps"][0] < 256.0
    z_low = [meta["z_range_lps"][0] for _, meta in results]
    assert z_low == sorted(z_low)
