"""DiCE network (deepsparse_core.model): shapes, sizes, masking, gradients, codebooks, coordinates."""

import copy
import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from deepsparse_core.errors import GeometryError, InputError
from deepsparse_core.model import DiCE, DiceConfig
from deepsparse_core.model.sampling import grid_features, lowres_grid, pixel_features, sample_volume
from deepsparse_core.model.vq import EMAVectorQuantizer
from deepsparse_core.physics.geometry import Geometry, uniform_angles

pytestmark = pytest.mark.usefixtures("one_thread")


def make_geometry(n_views=8, **kw):
    """32 x 32 detector, 16^3 grid of 160 mm, magnification 2."""
    d = dict(dso=400.0, dsd=800.0, detector_shape=(32, 32), detector_spacing=(12.0, 12.0),
             volume_shape=(16, 16, 16), volume_spacing=(10.0, 10.0, 10.0), angles=uniform_angles(n_views))
    return Geometry(**{**d, **kw})


def make_inputs(b=2, v=8, n=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    projections = torch.rand(b, v, 32, 32, generator=gen) * 150.0  # mm x attenuation
    points = (torch.rand(b, n, 3, generator=gen) - 0.5) * 150.0
    return projections, points


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return DiCE(DiceConfig.tiny(**overrides))


def manual_bilinear(fmap, col, row):
    """Bilinear value of fmap (C, h, w) at fractional pixel index (col, row), zeros outside."""
    c0, r0 = math.floor(col), math.floor(row)
    out = torch.zeros(fmap.shape[0], dtype=torch.float64)
    for dr in (0, 1):
        for dc in (0, 1):
            r, c = r0 + dr, c0 + dc
            w = (1 - abs(row - r)) * (1 - abs(col - c))
            if 0 <= r < fmap.shape[1] and 0 <= c < fmap.shape[2]:
                out += w * fmap[:, r, c].double()
    return out


# ---------------------------------------------------------------------------------- sizes and shapes
def test_paper_config_matches_published_parameter_counts():
    with_dn = DiCE(DiceConfig.paper(denoise=True))
    without = with_dn.num_parameters(include_denoise=False)
    assert round(without / 1e6, 1) == 6.0 and round(with_dn.num_parameters() / 1e6, 1) == 7.2  # paper, Table 4
    assert DiCE(DiceConfig.paper()).num_parameters() == without
    # denoise: two 3x3x3 convs + two BatchNorms per scale
    assert with_dn.num_parameters() - without == sum(2 * (27 * c * c + 3 * c) for c in (16, 32, 64, 128))
    assert "7.22 M" in with_dn.summary()


@pytest.mark.parametrize("preset", ["paper", "small", "tiny"])
def test_config_round_trips_through_json(preset):
    cfg = getattr(DiceConfig, preset)(denoise=True)
    assert DiceConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.point_features == sum(cfg.scale_channels) + cfg.decoder_channels
    with pytest.raises(InputError):
        DiceConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(InputError, match="codebook_restart"):
        DiceConfig.from_dict({**cfg.to_dict(), "codebook_restart": -1.0})
    assert "codebook_restart" not in cfg.to_dict()   # off: files stay readable by versions without the field
    assert DiceConfig.from_dict(cfg.to_dict()).codebook_restart == 0.0
    on = getattr(DiceConfig, preset)(codebook_restart=1.0)
    assert DiceConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on


def test_view_pool_doubles_the_two_d_features_and_round_trips():
    cfg = DiceConfig.tiny(view_pool="max+mean")
    assert cfg.point_features == 2 * sum(cfg.scale_channels) + cfg.decoder_channels
    assert DiceConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "view_pool" not in DiceConfig.tiny().to_dict()   # the released max: files stay readable by older versions
    with pytest.raises(InputError, match="view_pool must be one of max, max\\+mean"):
        DiceConfig.tiny(view_pool="mean")


def test_config_file_with_restarts_reads_back(tmp_path):
    """A --config file may set codebook_restart although presets leave it out of to_dict."""
    from deepsparse_core.model.config import model_config

    path = tmp_path / "restart.json"
    path.write_text(json.dumps({"preset": "tiny", "codebook_restart": 1.0}))
    assert model_config(str(path)) == DiceConfig.tiny(codebook_restart=1.0)
    path.write_text(json.dumps({"preset": "tiny", "codebook_restarts": 1.0}))
    with pytest.raises(InputError, match="unknown DiCE config fields: codebook_restarts"):
        model_config(str(path))


def test_parameter_counts_order_and_groups():
    counts = [DiCE(getattr(DiceConfig, p)()).num_parameters() for p in ("tiny", "small", "paper")]
    assert counts == sorted(counts) and counts[0] < 2e5
    model = make_model(denoise=True)
    groups = model.parameter_groups()
    assert set(groups) == {"encoder", "quantization", "decoder3d", "point_decoder", "denoise"}
    ids = [id(p) for ps in groups.values() for p in ps]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # a partition of all parameters


def test_encode_and_forward_shapes():
    model, geometry = make_model().eval(), make_geometry()
    projections, points = make_inputs(b=2, v=8, n=50)
    features = model.encode(projections, geometry)
    assert [tuple(m.shape) for m in features.maps] == [(2, 8, 4, 32, 32), (2, 8, 8, 16, 16),
                                                       (2, 8, 16, 8, 8), (2, 8, 32, 4, 4)]
    assert features.volume.shape == (2, 16, 8, 8, 8)
    assert model.point_features(features, points).shape == (2, 50, 76)
    out = model(projections, geometry, points)
    assert out["pred"].shape == (2, 50) and out["vq_loss"].dim() == 0
    assert "denoise_loss" not in out
    assert model.decode_points(features, points[0]).shape == (2, 50)  # points shared by the batch


@pytest.mark.parametrize("n_views", [6, 8, 10])
def test_forward_accepts_any_number_of_views(n_views):
    model = make_model().eval()
    projections, points = make_inputs(b=2, v=n_views, n=20)
    out = model(projections, make_geometry(n_views), points)
    assert out["pred"].shape == (2, 20) and torch.isfinite(out["pred"]).all()
    angles = torch.stack([torch.tensor(uniform_angles(n_views)), torch.tensor(uniform_angles(n_views, start=0.3))])
    per_sample = model(projections, make_geometry(n_views), points, angles=angles)["pred"]
    assert torch.allclose(per_sample[0], out["pred"][0], atol=1e-5)
    assert not torch.allclose(per_sample[1], out["pred"][1], atol=1e-3)


def test_input_errors():
    model, geometry = make_model(), make_geometry(8)
    projections, points = make_inputs(b=1, v=8)
    with pytest.raises(InputError):
        model(projections[..., :30], geometry, points)  # 30 is not a multiple of 2^(S-1) = 8
    with pytest.raises(GeometryError):
        model(projections, make_geometry(6), points)
    with pytest.raises(InputError):
        model(projections, geometry, points, view_mask_2d=torch.ones(1, 7, dtype=torch.bool))


# ---------------------------------------------------------------------------------- view masks
@pytest.mark.parametrize("view_pool", ["max", "max+mean"])
def test_masked_views_equal_physically_fewer_views_in_eval(view_pool):
    model, geometry = make_model(view_pool=view_pool).eval(), make_geometry(8)
    projections, points = make_inputs(b=2, v=8)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[0, [1, 4, 5]] = False
    mask[1, 7] = False
    projections[~mask] = float("nan")  # masked views must not leak, not even as NaN
    pred = model(projections, geometry, points, view_mask_2d=mask)["pred"]
    angles = torch.tensor(geometry.angles)
    for b in range(2):
        keep = mask[b]
        fewer = model(projections[b:b + 1, keep], geometry.with_angles(angles[keep].tolist()), points[b:b + 1])
        assert torch.allclose(pred[b], fewer["pred"][0], atol=1e-5)


def test_masked_views_equal_fewer_views_in_training_mode():
    """Masked views are not even encoded: BatchNorm statistics and codebook updates match too."""
    model, geometry = make_model().train(), make_geometry(8)
    projections, points = make_inputs(b=1, v=8)
    mask = torch.tensor([[True, False, True, True, False, True, True, True]])
    other = copy.deepcopy(model)
    out = model(projections, geometry, points, view_mask_2d=mask)
    angles = torch.tensor(geometry.angles)[mask[0]].tolist()
    fewer = other(projections[:, mask[0]], geometry.with_angles(angles), points)
    assert torch.allclose(out["pred"], fewer["pred"], atol=1e-5)
    assert torch.allclose(out["vq_loss"], fewer["vq_loss"], atol=1e-6)
    assert torch.allclose(model.quantizers[0].quantizer.codebook, other.quantizers[0].quantizer.codebook)


def test_hybrid_view_sampling_uses_more_views_for_the_volume():
    model, geometry = make_model().eval(), make_geometry(8)
    projections, points = make_inputs(b=1, v=8)
    sparse = torch.tensor([[True, False] * 4])
    hybrid = model.encode(projections, geometry, sparse, torch.ones(1, 8, dtype=torch.bool))
    only_sparse = model.encode(projections, geometry, sparse)
    assert not torch.allclose(hybrid.volume, only_sparse.volume)
    # the 2D maps read by the points are those of the sparse views either way
    two_d = lambda f: model.point_features(f, points)[..., :60]  # noqa: E731 (60 = 4 + 8 + 16 + 32)
    assert torch.allclose(two_d(hybrid), two_d(only_sparse))


def per_view(maps, uv, used, reduce):
    """(B, C, N): ``reduce`` ("amax" or "mean") over the used views of a per-view ``grid_sample`` loop;
    zeros for a sample without views. The brute force that ``pixel_features`` is checked against."""
    b, v, n = maps.shape[0], maps.shape[1], uv.shape[2]
    out = torch.zeros(b, maps.shape[2], n)
    for i in range(b):
        views = [F.grid_sample(maps[i, j:j + 1], uv[i, j].reshape(1, n, 1, 2), align_corners=False)[0, :, :, 0]
                 for j in range(v) if used[i, j]]
        if views:
            out[i] = getattr(torch.stack(views), reduce)(dim=0)
    return out


def test_view_features_read_only_the_used_slots_and_match_a_per_view_brute_force():
    """pixel_features gathers the used view slots first (6 of 24 in step 1); the max over views, its
    gradient and the all-masked case must equal a plain loop over every view."""
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(3, 9, 4, 6, 5, generator=g, requires_grad=True)
    uv = torch.rand(3, 9, 11, 2, generator=g) * 2.2 - 1.1          # some points fall off the detector
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, [1, 4, 8]] = True
    mask[1, [0, 2, 3, 5, 6]] = True                                  # samples with different counts
    out = pixel_features(maps, uv, mask)
    (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
    grad = maps.grad.clone()
    maps.grad = None
    brute = per_view(maps, uv, mask, "amax")
    (brute * torch.arange(brute.numel()).reshape(brute.shape)).sum().backward()
    assert torch.allclose(out, brute, atol=1e-6)
    assert torch.allclose(grad, maps.grad, atol=1e-5)
    assert torch.equal(out[2], torch.zeros(4, 11))
    assert grad[~mask].abs().max() == 0                              # masked views get no gradient


def test_every_slot_used_takes_the_unmasked_path_with_the_same_result():
    """With every view slot in use (inference) the masking pass is skipped: the values and gradients
    still equal the per-view brute force."""
    g = torch.Generator().manual_seed(5)
    maps = torch.randn(2, 6, 4, 6, 5, generator=g, requires_grad=True)
    uv = torch.rand(2, 6, 13, 2, generator=g) * 2.2 - 1.1
    out = pixel_features(maps, uv, torch.ones(2, 6, dtype=torch.bool))
    out.pow(2).sum().backward()
    brute = per_view(maps, uv, torch.ones(2, 6, dtype=torch.bool), "amax")
    grad, maps.grad = maps.grad.clone(), None
    brute.pow(2).sum().backward()
    assert torch.allclose(out, brute, atol=1e-6) and torch.allclose(grad, maps.grad, atol=1e-5)


def test_mean_pooling_appends_the_mean_over_the_used_views():
    """view_pool "max+mean": the max channels are unchanged and the mean channels equal a per-view loop,
    for samples with different view counts, a sample without views (zeros) and every slot used."""
    g = torch.Generator().manual_seed(4)
    maps = torch.randn(3, 7, 4, 6, 5, generator=g, requires_grad=True)
    uv = torch.rand(3, 7, 11, 2, generator=g) * 2.2 - 1.1
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[0, [0, 3]] = True
    mask[1, [1, 2, 4, 5, 6]] = True
    every = torch.ones(3, 7, dtype=torch.bool)
    for used in (mask, every):
        top, avg = pixel_features(maps, uv, used, mean=True)
        assert top.shape == avg.shape == (3, 4, 11)
        assert torch.equal(top, pixel_features(maps, uv, used))
        assert torch.allclose(avg, per_view(maps, uv, used, "mean"), atol=1e-6)
    top, avg = pixel_features(maps, uv, mask, mean=True)
    assert torch.equal(top[2], torch.zeros(4, 11)) and torch.equal(avg[2], torch.zeros(4, 11))
    avg.sum().backward()
    assert maps.grad[~mask].abs().max() == 0 and maps.grad[mask].abs().max() > 0


@pytest.mark.parametrize("change", [dict(view_pool="max+mean"), dict(point_hidden=(50, 20, 9)),
                                    dict(view_pool="max+mean", point_hidden=(44, 20, 12))])
def test_a_warm_start_into_a_grown_point_mlp_predicts_what_the_old_model_did(change):
    """Mean pooling appends features after the 3D one, and a wider MLP of the same depth adds units: every
    old unit keeps its weights, its weights on new features and new units start at zero, so the grown
    model predicts what the old one did (tiny: (38, 16, 8) on 76 features), and those weights learn."""
    from deepsparse_core.training.initial_model import transfer_weights

    source = make_model(seed=1)
    for norm in source.point_decoder.norms:  # trained-looking statistics, so that copying them matters
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
    target = DiCE(dataclasses.replace(source.config, **change))
    copied, fresh = transfer_weights(target, source.state_dict(), source.config)
    assert not fresh and len(copied) == len(target.state_dict())
    if "view_pool" in change:  # without the source config, more features are not known to be appended
        _, fresh = transfer_weights(DiCE(target.config), source.state_dict())
        assert fresh and all(k.startswith("point_decoder.") for k in fresh)
    geometry = make_geometry(8)
    projections, points = make_inputs(b=2, v=8)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, [2, 5]] = False
    source.eval(), target.eval()
    with torch.no_grad():
        before = source(projections, geometry, points, view_mask_2d=mask)["pred"]
        after = target(projections, geometry, points, view_mask_2d=mask)["pred"]
    assert torch.allclose(before, after, atol=1e-5)
    target.train()
    target(projections, geometry, points, view_mask_2d=mask)["pred"].pow(2).sum().backward()
    decoder = target.point_decoder
    old, grown = list(source.config.point_hidden) + [1], list(target.config.point_hidden) + [1]
    zero = [decoder.first.weight[:old[0], source.config.point_features:]]  # old units, new features
    zero += [layer.weight[:old[k + 1], old[k]:] for k, layer in enumerate(decoder.layers)]  # old units, new inputs
    assert all(torch.equal(w, torch.zeros_like(w)) for w in zero)
    assert sum(w.numel() for w in zero) > 0
    learning = [w.grad for w in (decoder.first.weight, decoder.layers[-1].weight)]
    learning = [learning[0][:, source.config.point_features:], learning[1][:, old[-2]:]]
    assert all(g.abs().max() > 0 for g in learning if g.numel())


def test_sample_without_any_view_gets_zero_features():
    maps = torch.randn(2, 3, 5, 4, 4)
    uv = torch.rand(2, 3, 7, 2) * 2 - 1
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = pixel_features(maps, uv, mask)
    assert torch.equal(out[1], torch.zeros(5, 7))
    assert torch.isfinite(out).all()
    model, geometry = make_model().train(), make_geometry(8)
    projections, points = make_inputs(b=2, v=8)
    nothing = torch.zeros(2, 8, dtype=torch.bool)
    out = model(projections, geometry, points, view_mask_2d=nothing)  # not even one view in the batch
    assert torch.isfinite(out["pred"]).all()


# ---------------------------------------------------------------------------------- training behaviour
@pytest.mark.parametrize("denoise", [False, True])
def test_gradients_reach_every_trainable_parameter(denoise):
    model, geometry = make_model(denoise=denoise).train(), make_geometry(8)
    if denoise:  # their last BatchNorm starts at zero scale (identity layers): open them up
        for layer in model.denoise:
            torch.nn.init.constant_(layer.body[-1].weight, 0.5)
    projections, points = make_inputs(b=2, v=8)
    sparse = torch.tensor([[True, False] * 4] * 2)
    dense = torch.ones(2, 8, dtype=torch.bool)
    out = model(projections, geometry, points, view_mask_2d=sparse, view_mask_3d=dense)
    loss = F.mse_loss(out["pred"], torch.rand_like(out["pred"])) + 0.1 * out["vq_loss"]
    if denoise:
        loss = loss + out["denoise_loss"]
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_codebook_moves_in_training_only():
    model, geometry = make_model(), make_geometry(8)
    projections, points = make_inputs(b=1, v=8)
    codebook = lambda: model.quantizers[2].quantizer.codebook.clone()  # noqa: E731
    before = codebook()
    model.eval()(projections, geometry, points)
    assert torch.equal(codebook(), before)
    model.train()(projections, geometry, points)
    assert not torch.equal(codebook(), before)


def test_ema_update_pulls_codes_towards_their_vectors():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(n_codes=4, dim=3, decay=0.5).train()
    z = vq.codebook[1].reshape(1, 3, 1) + 1.0  # one vector, nearest to code 1 (the others are far)
    vq.codebook[[0, 2, 3]] += 100.0
    vq.embed_sum.copy_(vq.codebook)
    before = vq.codebook.clone()
    vq(z)
    assert (vq.codebook[1] - z[0, :, 0]).norm() < (before[1] - z[0, :, 0]).norm()
    assert torch.allclose(vq.codebook[[0, 2, 3]], before[[0, 2, 3]], rtol=1e-3)  # unused codes keep their place


def test_dead_codes_restart_at_features_of_the_batch():
    """restart > 0: codes whose EMA count falls below it move onto vectors of the batch (with that
    count), live codes are untouched; restart 0 (as released) leaves dead codes where they are."""
    torch.manual_seed(0)
    z = torch.randn(1, 3, 40) * 0.1  # 40 vectors near the origin
    for restart in (0.0, 0.6):  # dead counts decay from 1 to 0.5
        vq = EMAVectorQuantizer(n_codes=6, dim=3, decay=0.5, restart=restart).train()
        vq.codebook.zero_()
        vq.codebook[1:] += 100.0  # only code 0 is near the data
        vq.embed_sum.copy_(vq.codebook)
        vq(z)
        live = vq.codebook[0].clone()
        assert vq.cluster_size[0] > 20  # 0.5 * 1 + 0.5 * 40
        dead = vq.codebook[1:]
        if restart == 0:
            assert torch.all(dead > 99.0)
            continue
        vectors = z[0].t()
        assert all(torch.isclose(vectors, code).all(1).any() for code in dead)  # each on a batch vector
        assert torch.equal(vq.cluster_size[1:], torch.full((5,), 0.6))
        assert torch.allclose(vq.embed_sum[1:], dead * 0.6)
        assert torch.equal(vq.codebook[0], live)
        state = {k: v.clone() for k, v in vq.state_dict().items()}
        vq.cluster_size[1:] = 0.0     # all dead again: still no update, no restart outside training
        state["cluster_size"][1:] = 0.0
        vq.eval()(z)
        assert all(torch.equal(v, state[k]) for k, v in vq.state_dict().items())


def test_restart_keeps_every_cluster_covered_where_ema_alone_collapses():
    """16 tight clusters far from a random initial codebook: EMA alone pulls the one nearest code onto
    the data and leaves the rest dead; with restarts the codes spread over the clusters (mean
    quantization error under 0.5 against over 5 with EMA alone)."""
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(16, 4, generator=gen) * 5.0 + 50.0
    errors, used = {}, {}
    for restart in (0.0, 1.0):
        torch.manual_seed(0)
        vq = EMAVectorQuantizer(n_codes=32, dim=4, decay=0.9, restart=restart).train()
        for _ in range(60):
            x = centres[torch.randint(16, (512,), generator=gen)] + 0.05 * torch.randn(512, 4, generator=gen)
            vq(x.t().unsqueeze(0))
        x = centres + 0.05 * torch.randn(16, 4, generator=gen)
        z_q, _, idx = vq.eval()(x.t().unsqueeze(0))
        errors[restart] = (z_q[0].t() - x).norm(dim=1).mean().item()
        used[restart] = len(idx.unique())
    assert used[0.0] <= 2 and errors[0.0] > 5.0
    # restarts revive dead codes but do not split a live one: two nearby clusters may share a code
    assert used[1.0] >= 15 and errors[1.0] < 0.5, (used, errors)


def test_perplexity_counts_the_codes_in_effective_use():
    vq = EMAVectorQuantizer(n_codes=8, dim=2)
    assert vq.perplexity() == pytest.approx(8.0)                 # a fresh codebook: even counts
    vq.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0, 0.0]))
    assert vq.perplexity() == pytest.approx(4.0)                 # four codes share the vectors evenly
    vq.cluster_size.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0]))
    assert vq.perplexity() == pytest.approx(1.0)                 # collapse onto one code
    model = make_model()
    assert model.codebook_perplexity() == [32.0] * 4


def test_straight_through_gradient_and_commitment_loss():
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(n_codes=8, dim=4).eval()
    z = torch.randn(2, 4, 3, 3, 3, requires_grad=True)
    z_q, loss, idx = vq(z)
    assert torch.allclose(z_q.detach(), vq.codebook[idx].movedim(-1, 1))  # forward: the nearest codes
    weight = torch.randn_like(z_q)
    (grad,) = torch.autograd.grad((z_q * weight).sum(), z)
    assert torch.allclose(grad, weight)  # backward: identity
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.allclose(grad, 2 * (z - z_q).detach() / z.numel(), atol=1e-7)  # commitment pulls z to its code


def test_freezing_step_two_groups_fixes_their_weights_statistics_and_codebooks():
    model, geometry = make_model(denoise=True), make_geometry(8)
    model.freeze("encoder", "quantization").train()
    assert not model.encoder.training and not model.quantizers.training and model.decoder3d.training
    state = {k: v.clone() for k, v in model.state_dict().items()}
    projections, points = make_inputs(b=2, v=8)
    sparse, dense = torch.tensor([[True, False] * 4] * 2), torch.ones(2, 8, dtype=torch.bool)
    out = model(projections, geometry, points, sparse, dense)
    (out["pred"].square().mean() + out["denoise_loss"]).backward()
    frozen = ("encoder.", "quantizers.")
    for name, p in model.named_parameters():
        assert (p.grad is None) == name.startswith(frozen), name
    after = model.state_dict()
    for k, v in state.items():
        if k.startswith(frozen):
            assert torch.equal(after[k], v), k  # BatchNorm running stats and codebooks included
    assert not torch.equal(after["decoder3d.stages.0.blocks.0.norm.running_mean"],
                           state["decoder3d.stages.0.blocks.0.norm.running_mean"])
    model.unfreeze()
    assert model.encoder.training and all(p.requires_grad for p in model.parameters())


def test_frozen_statistics_keep_every_batchnorm_while_its_scale_and_shift_learn():
    model, geometry = make_model(), make_geometry(8)
    model.freeze_statistics().train()
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    assert norms and not any(m.training for m in norms.values()) and model.decoder3d.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    projections, points = make_inputs(b=2, v=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(projections, geometry, points)["pred"].square().mean().backward()
    optimizer.step()
    after = model.state_dict()
    for name in norms:
        for stat in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(after[f"{name}.{stat}"], before[f"{name}.{stat}"]), f"{name}.{stat}"
    assert any(not torch.equal(after[f"{n}.weight"], before[f"{n}.weight"]) for n in norms)  # affine still trains
    model.eval().train()
    assert not any(m.training for m in norms.values())  # survives mode switches
    plain = make_model().train()
    plain(projections, geometry, points)
    assert not torch.equal(plain.state_dict()["decoder3d.stages.0.blocks.0.norm.running_mean"],
                           make_model().state_dict()["decoder3d.stages.0.blocks.0.norm.running_mean"])


def test_denoise_layers_on_and_off():
    geometry = make_geometry(8)
    projections, points = make_inputs(b=2, v=8)
    plain = make_model().eval()
    refined = copy.deepcopy(plain).enable_denoise().eval()
    assert refined.config.denoise and not plain.config.denoise
    a = plain(projections, geometry, points)
    b = refined(projections, geometry, points)
    assert torch.allclose(a["pred"], b["pred"], atol=1e-6)  # denoise layers start as the identity
    assert b["denoise_loss"] is None and b["quantized_dense"] is None and len(b["quantized_sparse"]) == 4
    sparse, dense = torch.tensor([[True, False] * 4] * 2), torch.ones(2, 8, dtype=torch.bool)
    c = refined(projections, geometry, points, sparse, dense)
    assert c["denoise_loss"] > 0 and all(not q.requires_grad for q in c["quantized_dense"])
    assert [q.shape for q in c["quantized_dense"]] == [q.shape for q in c["quantized_sparse"]]
    # prediction uses the sparse views only: the dense target does not change it
    assert torch.allclose(c["pred"], refined(projections, geometry, points, sparse)["pred"])
    # a step-1 checkpoint loads into a step-2 model once the denoise layers exist
    fresh = DiCE(DiceConfig.tiny(denoise=True))
    missing = fresh.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("denoise.") for k in missing)


# ---------------------------------------------------------------------------------- determinism, chunks
def test_eval_is_deterministic_and_chunking_is_exact():
    model, geometry = make_model().eval(), make_geometry(8)
    projections, points = make_inputs(b=2, v=8, n=101)
    state = copy.deepcopy(model.state_dict())
    first = model(projections, geometry, points)["pred"]
    assert torch.equal(first, model(projections, geometry, points)["pred"])
    features = model.encode(projections, geometry)
    chunked = model.decode_points(features, points, chunk_size=17, clamp=False)
    assert torch.allclose(chunked, first, atol=1e-6)
    assert torch.equal(model.decode_points(features, points, chunk_size=17), chunked.clamp(0, 1))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    reloaded = DiCE(model.config)
    reloaded.load_state_dict(state)  # codebooks travel in the state dict
    assert torch.equal(reloaded.eval()(projections, geometry, points)["pred"], first)
    volume = model.predict_volume(projections, geometry)
    assert volume.shape == (2, 16, 16, 16) and volume.min() >= 0 and volume.max() <= 1


# ---------------------------------------------------------------------------------- coordinates
SKEWED = dict(volume_shape=(12, 16, 20), volume_spacing=(10.0, 8.0, 6.0), volume_offset=(5.0, -7.0, 3.0),
              detector_offset=(6.0, -4.0))


def test_volume_sampled_at_its_voxel_centres_returns_the_voxels():
    geometry = make_geometry(4, **SKEWED)
    volume = torch.randn(2, 3, 8, 8, 8, dtype=torch.float64)
    centres = lowres_grid(geometry, 8).voxel_centres(dtype=torch.float64).reshape(1, -1, 3).expand(2, -1, -1)
    sampled = sample_volume(volume, geometry, centres)
    assert torch.allclose(sampled, volume.reshape(2, 3, -1), atol=1e-10)
    # the low-resolution grid spans the reconstruction grid exactly
    low = lowres_grid(geometry, 8)
    assert low.volume_extent == pytest.approx(geometry.volume_extent)
    assert low.volume_offset == geometry.volume_offset


def test_voxel_and_point_features_sit_at_the_detector_projection_of_the_same_point():
    geometry = make_geometry(1, **SKEWED)  # one view: the max over views is that view's value
    model = make_model().eval()
    projections, _ = make_inputs(b=1, v=1)
    features = model.encode(projections, geometry)
    centres = lowres_grid(geometry, 8).voxel_centres().reshape(-1, 3)
    pick = torch.tensor([0, 77, 300, 511])
    points = centres[pick]
    feats = model.point_features(features, points)[0].double()  # (4, 76)
    # 3D part: the decoded volume's own voxels
    voxels = features.volume.reshape(16, -1)[:, pick].t().double()
    assert torch.allclose(feats[:, 60:], voxels, atol=1e-5)
    # 2D part: bilinear value of each scale's map at the point's detector position (in pixels, by hand)
    uv_mm = geometry.project_points(points.double())[0]  # (4, 2) mm from the detector centre
    start = 0
    for maps in features.maps:
        fmap = maps[0, 0]
        c, h, w = fmap.shape
        du, dv = geometry.detector_extent[1] / w, geometry.detector_extent[0] / h  # pixel pitch at this scale
        for k, (u, v) in enumerate(uv_mm.tolist()):
            expected = manual_bilinear(fmap, u / du + (w - 1) / 2, v / dv + (h - 1) / 2)
            assert torch.allclose(feats[k, start:start + c], expected, atol=1e-5)
        start += c
    # the low-resolution back-projection samples the very same place
    finest = features.maps[0]
    volume = grid_features(finest, geometry, 8, torch.ones(1, 1, dtype=torch.bool))
    assert torch.allclose(volume.reshape(4, -1)[:, pick].t().double(), feats[:, :4], atol=1e-5)
