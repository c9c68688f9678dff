"""Projections file and candidate cache: round trips, subsets, validation, precision."""

import json

import pytest
import torch

from deepsparse_core.data.projections_file import ProjectionData, load_projections, save_projections
from deepsparse_core.errors import DeepSparseError, GeometryError, InputError
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.noise import NoiseModel


def data(n_views=5):
    g = Geometry.preset("fast", n_views).with_grid((16, 16, 16))
    g = Geometry(**{**g.to_dict(), "detector_shape": (12, 10), "detector_spacing": (40.0, 48.0)})
    gen = torch.Generator().manual_seed(0)
    return ProjectionData(torch.rand(n_views, 12, 10, generator=gen) * 100, g, NoiseModel(photons=5e4),
                          torch.rand(16, 16, 16, generator=gen), {"origin_lps": [1.0, 2.0, 3.0],
                                                                  "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]})


def test_round_trip_keeps_everything(tmp_path):
    d = data()
    save_projections(tmp_path / "p.safetensors", d)
    r = load_projections(tmp_path / "p.safetensors")
    assert torch.equal(r.projections, d.projections) and torch.equal(r.reference, d.reference)
    assert r.geometry == d.geometry and r.noise == d.noise and r.placement == d.placement
    assert [p.name for p in tmp_path.iterdir()] == ["p.safetensors"]  # no temporary left behind


def test_view_subsets_are_read_with_their_angles(tmp_path):
    d = data(8)
    save_projections(tmp_path / "p.safetensors", d)
    r = load_projections(tmp_path / "p.safetensors", views=[6, 1, 3])
    assert torch.equal(r.projections, d.projections[[6, 1, 3]])
    assert r.geometry.angles == tuple(d.geometry.angles[i] for i in (6, 1, 3))
    with pytest.raises(InputError, match="view indices"):
        load_projections(tmp_path / "p.safetensors", views=[8])


def test_float16_cache_error_is_below_the_documented_bound(tmp_path):
    d = data()
    save_projections(tmp_path / "c.safetensors", d, dtype=torch.float16)
    r = load_projections(tmp_path / "c.safetensors")
    rel = ((r.projections - d.projections).abs() / d.projections.abs().clamp_min(1e-3)).max()
    assert 0 < rel <= 2 ** -11


def test_mismatched_shapes_are_rejected():
    d = data()
    with pytest.raises(GeometryError, match="3 projections but the geometry has"):
        ProjectionData(d.projections[:3], d.geometry)
    with pytest.raises(GeometryError, match="detector is"):
        ProjectionData(d.projections[:, :-1], d.geometry)
    with pytest.raises(InputError, match="views, rows, columns"):
        ProjectionData(d.projections[None], d.geometry)
    with pytest.raises(GeometryError, match="reference volume shape"):
        ProjectionData(d.projections, d.geometry, reference=torch.zeros(4, 4, 4))


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_projections(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(InputError, match="cannot read"):
        load_projections(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(InputError, match="not a DeepSparse projections file"):
        load_projections(tmp_path / "foreign.safetensors")
    with pytest.raises(InputError, match=".safetensors"):
        save_projections(tmp_path / "p.npz", data())


def test_corrupt_metadata_is_reported(tmp_path):
    from safetensors.torch import save_file

    meta = {"format": "deepsparse-projections", "version": "1", "geometry": json.dumps({"dso": 1})}
    save_file({"projections": torch.zeros(1, 2, 2)}, str(tmp_path / "m.safetensors"), metadata=meta)
    with pytest.raises(DeepSparseError):
        load_projections(tmp_path / "m.safetensors")


def test_candidate_cache_from_a_phantom(tmp_path):
    from deepsparse_core.data.candidates import build_candidates, load_candidate_views
    from deepsparse_core.data.phantoms import phantom_volume
    from deepsparse_core.data.view_selection import N_CANDIDATES

    assert N_CANDIDATES == 200
    g = Geometry.preset("fast", 12).with_grid((24, 24, 24))
    g = Geometry(**{**g.to_dict(), "detector_shape": (32, 32), "detector_spacing": (19.2, 19.2)})
    path = build_candidates(phantom_volume("chest", (48, 48, 48), seed=1), g, tmp_path / "c.safetensors",
                            noise=NoiseModel(enabled=False), device="cpu")
    full = load_projections(path)
    assert full.projections.shape == (12, 32, 32) and full.reference.shape == (24, 24, 24)
    sub = load_candidate_views(path, [0, 5], with_reference=False)
    assert torch.equal(sub.projections, full.projections[[0, 5]]) and sub.reference is None
    # the stored projections are the reference's projections up to float16 rounding
    from deepsparse_core.physics.projector import forward_project

    exact = forward_project(full.reference, g)
    assert float((full.projections - exact).norm() / exact.norm()) < 2e-3
