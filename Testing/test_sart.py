"""SART / OS-SART: agreement with RTK's SART and behaviour on a sparse-view phantom scan."""

import pytest
import torch

from deepsparse_core.errors import GeometryError, InputError
from deepsparse_core.evaluation.metrics import psnr
from deepsparse_core.physics.backends import rtk
from deepsparse_core.physics.fdk import fdk
from deepsparse_core.physics.projector import forward_project
from deepsparse_core.physics.sart import rtk_view_order, sart

from baseline_case import needs_rtk, rel_l2, shepp_logan, small_geometry


@pytest.fixture(scope="module")
def phantom() -> torch.Tensor:
    return shepp_logan()


@pytest.fixture(scope="module")
def sparse_scan(phantom):
    """The DeepSparse setting: 6 views over 180 degrees."""
    g = small_geometry(6, 180)
    return g, forward_project(phantom, g)


@needs_rtk
@pytest.mark.rtk
@pytest.mark.parametrize("views_per_subset, backprojector", [(1, "voxel"), (2, "voxel"), (1, "joseph")])
def test_sart_matches_rtk(phantom, sparse_scan, views_per_subset, backprojector):
    g, p = sparse_scan
    ours = sart(p, g, iterations=4, relaxation=0.3, views_per_subset=views_per_subset,
                backprojector=backprojector).numpy()
    ref = rtk.sart(p.numpy(), g, iterations=4, views_per_subset=views_per_subset, backprojector=backprojector)
    assert rel_l2(ours, ref) < 1e-5
    assert abs(psnr(ours, phantom) - psnr(ref, phantom)) < 0.01


@needs_rtk
@pytest.mark.rtk
def test_rtk_backend_sart_is_the_default_configuration(sparse_scan):
    g, p = sparse_scan
    assert rel_l2(sart(p, g, iterations=2).numpy(), rtk.sart(p.numpy(), g, iterations=2)) < 1e-5


def test_rtk_view_order_is_a_fixed_permutation():
    for n in range(1, 40):
        order = rtk_view_order(n)
        assert sorted(order) == list(range(n))
        assert order == rtk_view_order(n)
    assert rtk_view_order(6) == [2, 3, 1, 4, 5, 0]   # what RTK v2.7 (Linux wheel) draws


@pytest.mark.parametrize("backprojector", ["voxel", "joseph"])
def test_sart_residual_decreases_monotonically(sparse_scan, backprojector):
    g, p = sparse_scan
    residuals = []
    sart(p, g, iterations=6, backprojector=backprojector,
         progress=lambda it, x: residuals.append(float(torch.linalg.vector_norm(forward_project(x, g) - p))))
    assert len(residuals) == 6
    assert all(b < a for a, b in zip(residuals, residuals[1:]))
    assert residuals[-1] < 0.3 * float(torch.linalg.vector_norm(p))


def test_sart_keeps_the_volume_nonnegative(sparse_scan):
    g, p = sparse_scan
    noisy = p + 2.0 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0))
    assert float(sart(noisy, g, iterations=2).min()) >= 0.0
    assert float(sart(noisy, g, iterations=2, nonnegative=False).min()) < 0.0


def test_sart_beats_fdk_at_six_views(phantom, sparse_scan):
    g, p = sparse_scan
    best_fdk = max(psnr(fdk(p, g, short_scan=s), phantom) for s in (True, False))
    assert psnr(sart(p, g, iterations=20), phantom) > best_fdk + 2.0


def test_sart_progress_can_stop_early(sparse_scan):
    g, p = sparse_scan
    calls = []
    out = sart(p, g, iterations=10, progress=lambda it, x: calls.append(it) or it == 2)
    assert calls == [1, 2]
    torch.testing.assert_close(out, sart(p, g, iterations=2))


def test_sart_starts_from_init_and_accepts_batches(sparse_scan):
    g, p = sparse_scan
    init = torch.full(g.volume_shape, 0.1)
    torch.testing.assert_close(sart(p, g, iterations=0, init=init), init)
    batch = sart(torch.stack([p, p]), g, iterations=1, init=init)
    torch.testing.assert_close(batch[1], sart(p.numpy(), g, iterations=1, init=init.numpy()))


@pytest.mark.parametrize("kwargs, error", [
    ({"views": 5}, GeometryError), ({"backprojector": "siddon"}, InputError),
    ({"order": [0, 1, 1, 2, 3, 4]}, InputError), ({"order": "random"}, InputError),
    ({"relaxation": 0.0}, InputError), ({"iterations": -1}, InputError),
    ({"views_per_subset": 0}, InputError), ({"init": torch.zeros(3, 3, 3)}, InputError)])
def test_sart_rejects_bad_input(sparse_scan, kwargs, error):
    g, p = sparse_scan
    kwargs = {"iterations": 1, **kwargs}
    p = p[:kwargs.pop("views")] if "views" in kwargs else p
    with pytest.raises(error) as info:
        sart(p, g, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_sart_runs_on_the_input_device(sparse_scan):
    g, p = sparse_scan
    out = sart(p.cuda(), g, iterations=2)
    assert out.device.type == "cuda"
    assert rel_l2(out.cpu().numpy(), sart(p, g, iterations=2).numpy()) < 1e-4
