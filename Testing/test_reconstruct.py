"""The reconstruction entry point: one option set per method, the same meaning on every backend."""

import sys
import types

import numpy as np
import pytest

from deepsparse_core import cli
from deepsparse_core.data.projections_file import ProjectionData, save_projections
from deepsparse_core.data.splits import split_counts, write_splits
from deepsparse_core.data.volume_io import read_volume
from deepsparse_core.errors import InputError
from deepsparse_core.physics.backends import FILTERS, get_backend, tigre
from deepsparse_core.physics.projector import forward_project
from deepsparse_core.reconstruct import OPTIONS, reconstruct

from baseline_case import needs_rtk, rel_l2, shepp_logan, small_geometry


@pytest.fixture(scope="module")
def scan() -> ProjectionData:
    g = small_geometry(24, 220)                     # a proper short scan: Parker weights on both backends
    return ProjectionData(forward_project(shepp_logan(), g), g)


@needs_rtk
@pytest.mark.rtk
@pytest.mark.parametrize("filter, cutoff", [(f, 1.0) for f in FILTERS] + [("cosine", 0.6), ("ram-lak", 0.7)])
def test_fdk_filter_and_cutoff_mean_the_same_on_torch_and_rtk(scan, filter, cutoff):
    ours = reconstruct(scan, "fdk", device="cpu", filter=filter, cutoff=cutoff)
    theirs = reconstruct(scan, "fdk", backend="rtk", filter=filter, cutoff=cutoff)
    assert rel_l2(ours.numpy(), theirs.numpy()) < 1e-5
    if (filter, cutoff) != ("ram-lak", 1.0):  # the window really changes the result
        assert rel_l2(reconstruct(scan, "fdk", backend="rtk").numpy(), theirs.numpy()) > 1e-3


@needs_rtk
@pytest.mark.rtk
def test_sart_relaxation_means_the_same_on_torch_and_rtk(scan):
    ours = reconstruct(scan, "sart", device="cpu", iterations=2, relaxation=0.6)
    theirs = reconstruct(scan, "sart", backend="rtk", iterations=2, relaxation=0.6)
    assert rel_l2(ours.numpy(), theirs.numpy()) < 1e-5
    assert rel_l2(reconstruct(scan, "sart", backend="rtk", iterations=2).numpy(), theirs.numpy()) > 1e-3


@needs_rtk
@pytest.mark.rtk
def test_the_command_line_passes_the_filter_to_rtk(scan, tmp_path):
    save_projections(tmp_path / "p.safetensors", scan)
    out = {}
    for backend in ("torch", "rtk"):
        out[backend] = tmp_path / f"{backend}.nii"
        assert cli.main(["--progress", "none", "reconstruct", str(tmp_path / "p.safetensors"), "--method", "fdk",
                         "--backend", backend, "--filter", "cosine", "--cutoff", "0.8", "--device", "cpu", "--out", str(out[backend])]) == 0
    a, b = (read_volume(out[k], check_hu=False, allow_constant=True).array for k in ("torch", "rtk"))
    assert rel_l2(a, b) < 1e-5


class _FakeTigre:
    """Stands in for TIGRE (never callable without a GPU): records what the backend asks of it."""

    def __init__(self, monkeypatch):
        self.calls = []
        algorithms = types.SimpleNamespace(
            fdk=lambda p, g, a, **kw: self._record("fdk", p, g, a, kw),
            ossart=lambda p, g, a, niter, **kw: self._record("ossart", p, g, a, {"niter": niter, **kw}))
        module = types.ModuleType("tigre")
        module.geometry, module.algorithms = types.SimpleNamespace, algorithms
        monkeypatch.setitem(sys.modules, "tigre", module)
        monkeypatch.setitem(sys.modules, "tigre.algorithms", algorithms)
        monkeypatch.setattr(tigre, "available", lambda: True)

    def _record(self, name, p, g, angles, options):
        self.calls.append((name, options))
        return np.zeros(tuple(g.nVoxel), np.float32)


def test_tigre_gets_the_same_options_translated(scan, monkeypatch):
    fake = _FakeTigre(monkeypatch)
    assert reconstruct(scan, "fdk", backend="tigre", filter="shepp-logan").shape == scan.geometry.volume_shape
    assert fake.calls[-1] == ("fdk", {"filter": "shepp_logan"})
    reconstruct(scan, "sart", backend="tigre", iterations=3, relaxation=0.4, views_per_subset=2)
    name, options = fake.calls[-1]
    assert name == "ossart" and options["niter"] == 3 and options["blocksize"] == 2
    assert options["lmbda"] == 0.4 and options["lmbda_red"] == 1.0 and options["nonneg"] is True
    with pytest.raises(InputError, match="no filter cutoff"):
        reconstruct(scan, "fdk", backend="tigre", cutoff=0.5)


def test_every_backend_offers_both_operators():
    for name in ("torch", "rtk", "tigre"):
        backend = get_backend(name)
        assert callable(backend.fdk) and callable(backend.sart)
    with pytest.raises(InputError, match="unknown backend"):
        get_backend("astra")


def test_options_of_another_method_are_refused(scan):
    with pytest.raises(InputError, match="fdk has no option iterations"):
        reconstruct(scan, "fdk", iterations=3)
    with pytest.raises(InputError, match="unknown FDK filter"):
        reconstruct(scan, "fdk", filter="hamming")
    with pytest.raises(InputError, match="cutoff"):
        reconstruct(scan, "fdk", cutoff=0.0)
    assert set(OPTIONS) == {"fdk", "sart", "dice"}


@pytest.mark.parametrize("resolution, shape", [(None, (40, 40, 40)), (20, (20, 20, 20)), ((10, 20, 30), (10, 20, 30)),
                                               ([12], (12, 12, 12))])
def test_resolution_is_read_one_way(scan, resolution, shape):
    g = scan.geometry.with_resolution(resolution)
    assert g.volume_shape == shape and np.allclose(g.volume_extent, scan.geometry.volume_extent)
    assert reconstruct(scan, "fdk", device="cpu", resolution=resolution).shape == shape


@pytest.mark.parametrize("bad", [1, 0, (8, 8), (8, 8, 8, 8), "16", 8.0, True, (8, 1, 8)])
def test_bad_resolutions_are_input_errors(scan, bad):
    with pytest.raises(InputError, match="resolution"):
        scan.geometry.with_resolution(bad)


@pytest.mark.parametrize("n, fractions, counts", [
    (10, (0.8, 0.1, 0.1), (8, 1, 1)), (3, (0.8, 0.1, 0.1), (1, 1, 1)), (2, (0.8, 0.1, 0.1), (1, 1, 0)),
    (1, (0.8, 0.1, 0.1), (1, 0, 0)), (4, (0.5, 0.5, 0.0), (2, 2, 0)), (2, (0.0, 0.5, 0.5), (0, 1, 1)),
])
def test_split_counts_give_val_and_test_one_item_while_one_stays_for_training(n, fractions, counts):
    assert split_counts(n, fractions) == counts


def test_a_folder_of_two_caches_splits_like_prepare_splits_two_cts(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    lists = write_splits(tmp_path, (0.8, 0.1, 0.1), seed=0)
    assert sorted(len(v) for v in lists.values()) == [0, 1, 1] and len(lists["train"]) == 1
    assert (tmp_path / "val.txt").read_text().strip() in ("a.safetensors", "b.safetensors")
