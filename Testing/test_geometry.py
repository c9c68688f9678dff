"""Geometry: presets, validation, (de)serialization, coordinates."""

import math

import numpy as np
import pytest
import torch

from deepsparse_core.errors import GeometryError
from deepsparse_core.physics.geometry import Geometry, preset_names, uniform_angles


def small(**kw):
    d = dict(dso=800, dsd=1200, detector_shape=(24, 20), detector_spacing=(8, 9), volume_shape=(12, 14, 16),
             volume_spacing=(10, 9, 8), angles=uniform_angles(5))
    d.update(kw)
    return Geometry(**d)


def test_presets_hold_the_papers_values():
    assert {"abdomen-atlas", "luna16", "knee", "dental", "fast"} <= set(preset_names())
    a = Geometry.preset("abdomen-atlas", 6)
    assert (a.dso, a.dsd, a.detector_shape, a.detector_spacing) == (800, 1200, (256, 256), (2.4, 2.4))
    assert (a.volume_shape, a.volume_spacing, a.hu_window) == ((256,) * 3, (1.6,) * 3, (-1000, 1000))
    assert Geometry.preset("luna16").hu_window == (-1000, 1024)
    k = Geometry.preset("knee")  # C2RV data/Knee/config.yaml: value_range [-1000, 1024]
    assert (k.dso, k.dsd, k.detector_spacing, k.volume_spacing) == (1000, 2000, (2.0, 2.0), (0.8,) * 3)
    assert (k.detector_shape, k.volume_shape, k.hu_window) == ((256, 256), (256,) * 3, (-1000, 1024))
    assert a.n_views == 6 and math.isclose(a.arc, math.pi)
    assert a.angles[1] == pytest.approx(math.pi / 6)


def test_every_preset_covers_most_of_its_grid():
    for name in preset_names():
        assert Geometry.preset(name, 8).covered_fraction() > 0.6, name


@pytest.mark.parametrize("kw, match", [
    (dict(dso=0), "positive"), (dict(dso=-5), "positive"), (dict(dsd=700), "larger than DSO"),
    (dict(dsd=800), "larger than DSO"), (dict(detector_spacing=(0, 1)), "spacing"),
    (dict(volume_shape=(0, 4, 4)), "shape"), (dict(angles=[]), "angle"),
    (dict(volume_shape=(4, 200, 200)), "reaches the source"), (dict(dso=float("nan")), "finite"),
    (dict(detector_shape=(3,)), "2 values"),
])
def test_invalid_geometry_is_rejected_with_a_clear_message(kw, match):
    with pytest.raises(GeometryError, match=match):
        small(**kw)


def test_uncovered_grid_warns_with_the_fraction():
    g = small(detector_shape=(4, 4))
    with pytest.warns(UserWarning, match=r"covers only \d+%"):
        g.validate()


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_load_round_trip(tmp_path, suffix):
    g = small(detector_offset=(1.5, -2), volume_offset=(3, 4, 5), name="x")
    g.save(tmp_path / f"g{suffix}")
    assert Geometry.load(tmp_path / f"g{suffix}") == g


def test_load_reports_bad_files(tmp_path):
    with pytest.raises(GeometryError, match="not found"):
        Geometry.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("dso: [1, 2\n")
    with pytest.raises(GeometryError, match="cannot parse"):
        Geometry.load(tmp_path / "bad.yaml")
    (tmp_path / "unknown.yaml").write_text("dso: 1\nfoo: 2\n")
    with pytest.raises(GeometryError, match="unknown geometry fields: foo"):
        Geometry.load(tmp_path / "unknown.yaml")
    with pytest.raises(GeometryError, match="unknown geometry preset"):
        Geometry.preset("nope")


def test_source_and_detector_frames_follow_the_convention():
    g = small(angles=[0.0, math.pi / 2])
    src = g.source_positions(torch.float64)
    assert torch.allclose(src, torch.tensor([[800.0, 0, 0], [0, 800.0, 0]], dtype=torch.float64), atol=1e-9)
    centre, e_u, e_v = g.detector_frames(torch.float64)
    assert torch.allclose(centre[0], torch.tensor([-400.0, 0, 0], dtype=torch.float64))
    assert torch.allclose(e_u[0], torch.tensor([0.0, 1, 0], dtype=torch.float64))
    assert torch.allclose(e_v[1], torch.tensor([0.0, 0, 1], dtype=torch.float64))


def test_project_points_matches_brute_force_ray_plane_intersection():
    g = small(angles=[0.3, 1.9, 4.0], detector_offset=(3.0, -7.0))
    pts = torch.tensor([[10.0, -20.0, 30.0], [-50.0, 5.0, -12.0]], dtype=torch.float64)
    uv = g.project_points(pts)
    src = g.source_positions(torch.float64)
    centre, e_u, e_v = g.detector_frames(torch.float64)
    normal = torch.cross(e_u, e_v, dim=1)
    for v in range(3):
        for n in range(2):
            d = pts[n] - src[v]
            t = ((centre[v] - src[v]) @ normal[v]) / (d @ normal[v])
            hit = src[v] + t * d - centre[v]
            assert float(hit @ e_u[v]) == pytest.approx(float(uv[v, n, 0]))
            assert float(hit @ e_v[v]) == pytest.approx(float(uv[v, n, 1]))


def test_normalized_detector_coordinates_read_the_pixel_a_point_projects_onto():
    g = small(angles=[0.7], detector_offset=(5.0, -3.0))
    src = g.source_positions(torch.float64)[0]
    centre, e_u, e_v = g.detector_frames(torch.float64)
    v, u = g.pixel_centres(torch.float64)
    rows, cols = torch.meshgrid(torch.arange(g.detector_shape[0]), torch.arange(g.detector_shape[1]), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    pix = (centre[0] + (u[cols] - g.detector_offset[1])[:, None] * e_u[0]
           + (v[rows] - g.detector_offset[0])[:, None] * e_v[0])
    points = src + (pix - src) * (g.dso / g.dsd)          # on each pixel's ray, in the isocentre plane
    grid = g.project_points(points, normalized=True)      # (1, N, 2)
    image = torch.rand(1, 1, *g.detector_shape, dtype=torch.float64)
    read = torch.nn.functional.grid_sample(image, grid[:, None], align_corners=False)[0, 0, 0]
    assert torch.allclose(read, image[0, 0, rows, cols])


def test_world_to_grid_maps_voxel_centres_to_their_voxels():
    g = small(volume_offset=(5.0, -3.0, 2.0))
    vol = torch.rand(1, 1, *g.volume_shape, dtype=torch.float64)
    grid = g.world_to_grid(g.voxel_centres(dtype=torch.float64))
    out = torch.nn.functional.grid_sample(vol, grid[None], align_corners=False)
    assert torch.allclose(out, vol)


def test_with_views_and_with_grid():
    g = Geometry.preset("fast", 200)
    g6 = g.with_views(6)
    assert g6.n_views == 6 and g6.dso == g.dso and math.isclose(g6.arc, math.pi)
    g64 = g.with_grid((64, 64, 64))
    assert g64.volume_extent == pytest.approx(g.volume_extent)
    assert np.allclose(g64.volume_spacing, 6.4)


def test_views_are_worded_the_same_everywhere():
    """Issue 17: 'arc 180°, views 30° apart' for 6 uniform views, whatever produced them (simulate's
    arc, import's first-to-last span of 150°), and irregular angles say their gaps."""
    import math

    uniform = Geometry.preset("fast", 6)
    assert uniform.views_phrase() == "6 views 30° apart (arc 180°)"
    imported = Geometry(**{**uniform.to_dict(), "angles": [math.radians(a) for a in (10, 40, 70, 100, 130, 160)]})
    assert imported.views_phrase() == "6 views 30° apart (arc 180°)"
    odd = Geometry(**{**uniform.to_dict(), "angles": [math.radians(a) for a in (0, 20, 40, 100, 170)]})
    assert odd.views_phrase() == "5 views over 0-170° (gaps 20-70°)"


def test_geometry_on_screen_is_what_the_file_holds(tmp_path, capsys):
    import yaml

    from deepsparse_core.cli import main

    assert main(["geometry", "--preset", "fast", "--views", "8"]) == 0
    captured = capsys.readouterr()
    assert main(["geometry", "--preset", "fast", "--views", "8", "--out", str(tmp_path / "g.yaml")]) == 0
    assert yaml.safe_load(captured.out) == Geometry.load(tmp_path / "g.yaml").to_dict()
    assert captured.out.startswith("# deepsparse geometry, 8 views 22.5° apart (arc 180°)")
    assert "seen by every view" in captured.err
