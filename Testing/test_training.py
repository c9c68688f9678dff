"""Training: data sets, stages, the loop, checkpoints and exact resume, errors, overfitting one volume.

Sizes are tiny (tiny DiCE, 32^2 detector, 16^3 grid, 16 candidates, a few hundred points) and torch
runs on one thread: on a shared 2-core machine two threads contend and run several times slower.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deepsparse_core.data.splits import write_splits
from deepsparse_core.errors import DeepSparseError, GeometryError, InputError
from deepsparse_core.model.model_file import load_model, read_model_metadata
from deepsparse_core.progress import set_mode
from deepsparse_core.training import (CandidateSet, CheckpointError, TrainConfig, check_model_views, learning_rate,
                                      load_run, make_stage, make_synthetic_cache, small_geometry, train)
from deepsparse_core.training.command import add_train_parser, config_from_args
from deepsparse_core.training.initial_model import initial_model
from deepsparse_core.training.synthetic import ellipsoid_phantom

N_CANDIDATES = 16
COMMON = dict(model="tiny", min_views=2, max_views=6, points=256, batch_size=1, val_every=0, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def quiet_progress(one_thread):
    set_mode(quiet=True)
    yield
    set_mode()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 phantom caches: 2 train, 1 val, 1 test."""
    folder = tmp_path_factory.mktemp("data")
    make_synthetic_cache(folder, 4, small_geometry(32, 16, N_CANDIDATES), seed=0, splits=(0.5, 0.25, 0.25))
    return folder


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """The four stages, 2 steps each, chained as in the paper: pretrain -> step1 -> step2; and scratch."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for stage, init, views in [("scratch", None, 4), ("pretrain", None, None), ("step1", "pretrain", 4),
                               ("step2", "step1", 4)]:
        val_every = 2 if stage in ("pretrain", "step2") else 0
        out[stage] = train(TrainConfig(data=str(data), out=str(root / stage), stage=stage, views=views,
                                       init=None if init is None else str(root / init), steps=2,
                                       **{**COMMON, "val_every": val_every, "val_limit": 1}))
    return out


def _config(data, out, **kw):
    return TrainConfig(data=str(data), out=str(out), **{**COMMON, "stage": "pretrain", "steps": 2, **kw})


# ------------------------------------------------------------------ data
def test_splits_are_disjoint_and_cover_the_folder(data):
    names = {*(data / "train.txt").read_text().split(), *(data / "val.txt").read_text().split(),
             *(data / "test.txt").read_text().split()}
    assert names == {p.name for p in data.glob("*.safetensors")}
    assert [len(CandidateSet(data, s)) for s in ("train", "val", "test")] == [2, 1, 1]


def test_without_split_files_every_cache_is_training_data(data, tmp_path):
    for p in list(data.glob("*.safetensors"))[:2]:
        shutil.copy(p, tmp_path / p.name)
    assert len(CandidateSet(tmp_path, "train")) == 2 and len(CandidateSet(tmp_path, "val")) == 0
    assert write_splits(tmp_path, (0.5, 0.5, 0.0), seed=1)["test"] == []


def test_batch_holds_the_cached_views_and_exact_reference_values(data):
    s = CandidateSet(data, "train")
    assert s.projections.dtype == torch.float16
    stage = make_stage("step1", views=3, max_views=6)
    rng = np.random.default_rng(0)
    b = s.batch(rng, 2, stage.view_sampler(s.n_candidates, s.geometry.arc), n_points=100)
    assert b.projections.shape == (2, 6, 32, 32) and b.points.shape == (2, 100, 3)
    assert b.view_mask_2d.sum(1).tolist() == [3, 3] and b.view_mask_2d[:, :3].all() and b.view_mask_3d.all()
    g = s.geometry
    for i in range(2):
        # every projection is the cached candidate at its angle
        k = torch.round(b.angles[i] / (np.pi / N_CANDIDATES)).long()
        assert torch.equal(b.projections[i], s.projections[b.volumes[i], k].float())
        # points are voxel centres; targets are the reference there, exactly
        idx = [torch.round((b.points[i, :, 2 - a] - g.volume_offset[a]) / g.volume_spacing[a]
                           + (g.volume_shape[a] - 1) / 2).long() for a in range(3)]
        assert torch.allclose(g.axis_centres(2)[idx[2]], b.points[i, :, 0])
        assert torch.equal(s.references[b.volumes[i]][idx[0], idx[1], idx[2]].float(), b.targets[i])
        assert len(set((idx[0] * 256 + idx[1] * 16 + idx[2]).tolist())) == 100  # without replacement


def test_edge_sampling_draws_from_high_gradient_voxels(data):
    s = CandidateSet(data, "train", edge_quantile=0.1)
    sampler = make_stage("scratch", views=2).view_sampler(s.n_candidates, s.geometry.arc)
    b = s.batch(np.random.default_rng(1), 1, sampler, n_points=200, edge_fraction=0.5)
    edges, counts = s.edge_voxels()
    edge_set = set(edges[b.volumes[0], :counts[b.volumes[0]]].tolist())
    g = s.geometry
    idx = [torch.round((b.points[0, :, 2 - a] - g.volume_offset[a]) / g.volume_spacing[a]
                       + (g.volume_shape[a] - 1) / 2).long() for a in range(3)]
    flat = (idx[0] * 256 + idx[1] * 16 + idx[2]).tolist()
    assert all(f in edge_set for f in flat[100:])


def test_caches_with_another_geometry_are_refused(data, tmp_path):
    shutil.copy(next(data.glob("*.safetensors")), tmp_path / "a.safetensors")
    make_synthetic_cache(tmp_path / "other", 1, small_geometry(32, 8, N_CANDIDATES))
    shutil.copy(next((tmp_path / "other").glob("*.safetensors")), tmp_path / "b.safetensors")
    with pytest.raises(GeometryError, match="share one geometry.*volume_shape"):
        CandidateSet(tmp_path, "train")


def test_ellipsoid_fallback_phantom_is_normalized():
    vol = ellipsoid_phantom((16, 16, 16), (25.6,) * 3, seed=2)
    assert vol.dtype == np.float32 and 0.0 <= vol.min() and vol.max() <= 1.0 and (vol > 0.5).any()


# ------------------------------------------------------------------ stages
def test_stages_sample_the_paper_views():
    rng = np.random.default_rng(0)
    pre = make_stage("pretrain")
    ns = set()
    for _ in range(60):
        sparse, all_idx = pre.view_sampler(200, np.pi)(rng)
        assert len(all_idx) == 24 and list(all_idx[:len(sparse)]) == list(sparse)
        ns.add(len(sparse))
    assert min(ns) >= 6 and max(ns) <= 24 and len(ns) > 10
    sparse, all_idx = make_stage("step1", views=8).view_sampler(200, np.pi)(rng)
    assert (len(sparse), len(all_idx)) == (8, 24)
    step2 = make_stage("step2", views=6)
    assert step2.denoise and step2.frozen == ("encoder", "quantization") and step2.lambda_q == 0
    assert step2.validation_views(200, np.pi)[1] is None          # a step-2 model uses the n views only
    assert len(make_stage("step1", views=6).validation_views(200, np.pi)[1]) == 24
    sparse, all_idx = make_stage("scratch", views=10).view_sampler(200, np.pi)(rng)
    assert len(sparse) == len(all_idx) == 10
    with pytest.raises(InputError, match="--views"):
        make_stage("step1")
    with pytest.raises(InputError, match="candidates"):
        make_stage("pretrain").view_sampler(16, np.pi)


def test_scratch_view_weights_skew_n_and_survive_a_checkpoint():
    """--view-weights: n drawn with the given relative weights (never where 0), the stage round-trips
    through its JSON state, and the uniform default is unchanged."""
    from deepsparse_core.training.stages import Stage

    stage = make_stage("scratch", min_views=6, max_views=10, view_weights=[1, 0, 1, 1, 3])
    rng = np.random.default_rng(3)
    counts = np.bincount([len(stage.view_sampler(120, np.pi)(rng)[0]) for _ in range(4000)], minlength=11)[6:]
    assert counts[1] == 0 and counts.sum() == 4000
    share = counts / 4000   # expected 1/6, 0, 1/6, 1/6, 1/2; binomial sd <= 0.008
    assert all(abs(share[i] - 1 / 6) < 0.04 for i in (0, 2, 3)) and abs(share[4] - 0.5) < 0.04
    assert Stage.from_dict(json.loads(json.dumps(stage.to_dict()))) == stage
    assert "n weighted 1:0:1:1:3" in stage.describe()
    uniform = make_stage("scratch", min_views=6, max_views=10)
    assert uniform.n_weights is None and Stage.from_dict(json.loads(json.dumps(uniform.to_dict()))) == uniform
    old_state = {k: v for k, v in uniform.to_dict().items() if k != "n_weights"}   # a run from before the option
    assert Stage.from_dict(old_state) == uniform
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    drawn = [len(uniform.view_sampler(120, np.pi)(a)[0]) for _ in range(50)]
    assert drawn[:1] == [int(b.integers(6, 11))] and set(drawn) == {6, 7, 8, 9, 10}   # the released uniform draw
    for bad, message in (([1, 1], "one weight per n from 6 to 10 \\(5\\), got 2"),
                         ([1, -1, 1, 1, 1], "finite numbers >= 0, not all 0"),
                         ([0, 0, 0, 0, 0], "not all 0"), ([1, float("nan"), 1, 1, 1], "finite"),
                         ([1e308] * 5, "finite"), ([0, 1, 1, 1, 1], "n = 6 has weight 0; narrow"),
                         ([1, 1, 1, 1, 0], "n = 10 has weight 0")):
        with pytest.raises(InputError, match=message):
            make_stage("scratch", min_views=6, max_views=10, view_weights=bad)
    for name, views in (("scratch", 8), ("step1", 8), ("pretrain", None)):
        with pytest.raises(InputError, match="--view-weights weighs the random n of the scratch stage"):
            make_stage(name, views=views, min_views=6, max_views=10, view_weights=[1] * 5)


def test_learning_rate_warmup_and_cosine():
    cfg = TrainConfig(data="x", out="y", steps=110, lr=1e-3, warmup_steps=10, schedule="cosine", min_lr=1e-5)
    assert learning_rate(0, cfg) == pytest.approx(1e-4) and learning_rate(9, cfg) == pytest.approx(1e-3)
    assert learning_rate(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(110, cfg) == pytest.approx(1e-5)
    assert learning_rate(5000, TrainConfig(data="x", out="y", lr=2e-4)) == 2e-4


# ------------------------------------------------------------------ the loop
def test_all_four_stages_train_with_finite_losses(runs):
    for stage, result in runs.items():
        assert result.step == 2 and np.isfinite(result.loss), stage
        log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
        assert all(np.isfinite(r["loss"]) for r in log if r["event"] == "train")
        elapsed = [r["elapsed_s"] for r in log if r["event"] == "train"]
        assert elapsed and elapsed == sorted(elapsed) and elapsed[0] >= 0, stage   # seconds since the loop began
        codes = [r["code_perplexity"] for r in log if r["event"] == "validation"]
        if stage in ("pretrain", "step2"):   # the runs that validate log the exported codebooks' use
            model, _ = load_model(result.run_dir / "last.safetensors")
            assert codes and codes[-1] == model.codebook_perplexity(), stage
    assert np.isfinite(runs["pretrain"].val["psnr"]) and runs["pretrain"].val["views_3d"] == 6
    assert runs["step2"].val["views_3d"] == 4                       # validated on the 4 sparse views only
    step2 = read_model_metadata(runs["step2"].run_dir / "model.safetensors")
    assert step2["n_views"] == 4 and step2["config"].denoise and step2["card"]["stage"] == "step2"
    assert read_model_metadata(runs["step1"].run_dir / "model.safetensors")["n_views"] is None
    assert (runs["step2"].run_dir / "best.safetensors").exists()


def test_step2_trains_exactly_decoders_and_denoise(runs):
    before = load_file(runs["step1"].run_dir / "model.safetensors")
    after = load_file(runs["step2"].run_dir / "model.safetensors")
    frozen = [k for k in before if k.startswith(("encoder.", "quantizers."))]
    assert any("running_mean" in k for k in frozen) and any(k.endswith("codebook") for k in frozen)
    assert all(torch.equal(before[k], after[k]) for k in frozen)   # weights, BN statistics, codebooks
    for prefix in ("decoder3d.", "point_decoder.", "denoise."):
        keys = [k for k in after if k.startswith(prefix) and k.endswith("weight")]
        assert any(k not in before or not torch.equal(before[k], after[k]) for k in keys), prefix
    # no gradient reaches the frozen groups
    model, _ = initial_model(make_stage("step2", views=4, max_views=6), str(runs["step1"].run_dir), "tiny")
    s = CandidateSet(_data_dir(runs), "train")
    b = s.batch(np.random.default_rng(0), 1, make_stage("step2", views=4, max_views=6).view_sampler(16, np.pi), 64)
    out = model(b.projections, s.geometry, b.points, b.view_mask_2d, b.view_mask_3d, b.angles)
    (out["pred"].square().mean() + out["denoise_loss"]).backward()
    groups = model.group_modules()
    for g in ("encoder", "quantization"):
        assert all(p.grad is None and not p.requires_grad for p in groups[g].parameters()), g
        assert not groups[g].training
    for g in ("decoder3d", "point_decoder", "denoise"):
        assert all(p.grad is not None for p in groups[g].parameters()), g


def _data_dir(runs):
    return Path(json.loads((runs["step1"].run_dir / "state.json").read_text())["config"]["data"])


def test_resume_continues_bit_identically(data, tmp_path):
    kw = dict(checkpoint_every=1000, lr=1e-3)
    whole = train(_config(data, tmp_path / "whole", steps=4, **kw))
    first = train(_config(data, tmp_path / "split", steps=2, **kw))
    assert first.step == 2
    rest = train(TrainConfig(data=str(data), out=str(tmp_path / "split"), steps=4, resume=True))
    assert (rest.step, rest.steps_run) == (4, 2)
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(whole.run_dir / name), load_file(rest.run_dir / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    state = json.loads((rest.run_dir / "state.json").read_text())
    assert state["step"] == 4 and state["stage"]["name"] == "pretrain"
    assert state["rng"] == json.loads((whole.run_dir / "state.json").read_text())["rng"]
    model, meta, run_state = load_run(rest.run_dir)
    assert run_state.step == 4 and meta["card"]["step"] == 4


def test_time_box_stops_cleanly_with_a_checkpoint(data, tmp_path):
    result = train(_config(data, tmp_path, steps=None, minutes=1e-4))
    assert result.stopped == "time" and result.step >= 1
    assert json.loads((tmp_path / "state.json").read_text())["step"] == result.step


def test_existing_run_needs_resume_and_resume_keeps_hyperparameters(runs):
    run = runs["pretrain"].run_dir
    with pytest.raises(InputError, match="--resume"):
        train(_config(_data_dir(runs), run))
    parser = _parser()
    with pytest.raises(InputError, match="--lr"):
        config_from_args(parser.parse_args(["train", "--out", str(run), "--resume", "--lr", "0.5"]))
    cfg = config_from_args(parser.parse_args(["train", "--out", str(run), "--resume", "--steps", "9"]))
    assert cfg.resume and cfg.steps == 9 and cfg.model == "tiny" and cfg.min_views == 2
    with pytest.raises(InputError, match="pretrain run"):
        train(TrainConfig(data=cfg.data, out=str(run), stage="step1", steps=3, resume=True))


def test_a_weighted_scratch_run_records_its_weights_and_keeps_them_on_resume(data, tmp_path):
    run = tmp_path / "weighted"
    parser = _parser()
    cfg = config_from_args(parser.parse_args(["train", "--data", str(data), "--out", str(run), "--stage", "scratch",
                                              "--min-views", "2", "--max-views", "4", "--view-weights", "1", "0",
                                              "3", "--steps", "2"]))
    assert cfg.view_weights == [1.0, 0.0, 3.0]
    train(dataclasses.replace(cfg, **{k: v for k, v in COMMON.items() if k not in ("min_views", "max_views")}))
    card = read_model_metadata(run / "last.safetensors")["card"]
    assert card["views"] == {"min": 2, "max": 4, "weights": [1.0, 0.0, 3.0]}
    assert json.loads((run / "state.json").read_text())["stage"]["n_weights"] == [1.0, 0.0, 3.0]
    with pytest.raises(InputError, match="cannot change --view-weights"):
        config_from_args(parser.parse_args(["train", "--out", str(run), "--resume", "--view-weights", "1", "1", "1"]))
    again = config_from_args(parser.parse_args(["train", "--out", str(run), "--resume", "--steps", "3"]))
    assert again.view_weights == [1.0, 0.0, 3.0]
    assert train(again).step == 3


def _parser():
    import argparse

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_trains_and_reports_errors(data, tmp_path, capsys):
    from deepsparse_core.training.__main__ import main

    assert main(["--progress", "none", "--stage", "scratch", "--views", "3", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--config", "tiny", "--steps", "1", "--points", "64", "--device", "cpu",
                 "--batch-size", "1", "--val-every", "0"]) == 0
    assert (tmp_path / "run" / "model.safetensors").exists()
    # without validation the final model is exported all the same, with its card (the GPU run's output)
    from deepsparse_core.model.card import read_card

    card = read_card(tmp_path / "run" / "last.safetensors")
    assert card["step"] == 1 and card["val"] == {} and card["run"]["steps"] == 1
    assert not (tmp_path / "run" / "best.safetensors").exists()
    assert main(["--progress", "none", "--stage", "step2", "--views", "3", "--data", str(data),
                 "--out", str(tmp_path / "x"), "--steps", "1"]) == 2
    assert "--init" in capsys.readouterr().err


def test_freeze_norm_finetune_keeps_the_initial_batchnorm_statistics(runs, data, tmp_path):
    from deepsparse_core.training.__main__ import main

    base = runs["scratch"].run_dir / "model.safetensors"
    assert main(["--progress", "none", "--stage", "scratch", "--views", "4", "--data", str(data), "--out",
                 str(tmp_path / "ft"), "--init", str(base), "--freeze-norm", "--steps", "2", "--lr", "1e-3",
                 "--points", "64", "--device", "cpu", "--batch-size", "2", "--val-every", "0"]) == 0
    before = load_file(base)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and json.loads((tmp_path / "ft" / "state.json").read_text())["config"]["freeze_norm"] is True
    for name in ("model.safetensors", "last.safetensors"):  # the raw model and the exported one (no re-estimate)
        after = load_file(tmp_path / "ft" / name)
        assert all(torch.equal(before[k], after[k]) for k in stats), name
        assert any(not torch.equal(before[k], after[k]) for k in after if k.endswith("norm.weight")), name


# ------------------------------------------------------------------ errors
def test_corrupt_or_foreign_checkpoints_fail_clearly(runs, data, tmp_path):
    src = runs["step1"].run_dir

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    run = copy("truncated")
    blob = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(blob[:len(blob) // 2])
    with pytest.raises(DeepSparseError, match="model"):
        load_run(run)
    with pytest.raises(DeepSparseError):
        load_model(run / "model.safetensors")
    run = copy("foreign")
    shutil.copy(next(data.glob("*.safetensors")), run / "model.safetensors")    # a projections cache
    with pytest.raises(InputError, match="not a DeepSparse DiCE model"):
        load_run(run)
    run = copy("state")
    (run / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run(run)
    run = copy("mixed")  # a crash between renames: files of two different steps
    state = json.loads((run / "state.json").read_text())
    save_file({"x": torch.zeros(1)}, str(run / "rng.safetensors"), metadata={"format": "deepsparse-rng", "step": "1"})
    with pytest.raises(CheckpointError, match="interrupted while saving"):
        load_run(run)
    run = copy("optimizer")
    save_file({"x": torch.zeros(1)}, str(run / "optimizer.safetensors"), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="optimizer"):
        train(TrainConfig(data=str(data), out=str(run), steps=state["step"] + 1, resume=True))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_run(tmp_path)


def test_step2_model_refuses_another_view_count(runs, data, tmp_path):
    step2 = runs["step2"].run_dir
    with pytest.raises(InputError, match="finetuned \\(step 2\\) for 4 views"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "a"), stage="step2", views=3, init=str(step2),
                          steps=1, **{k: v for k, v in COMMON.items() if k != "model"}))
    with pytest.raises(InputError, match="step-2 model"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "b"), stage="step1", views=4, init=str(step2),
                          steps=1, **{k: v for k, v in COMMON.items() if k != "model"}))
    check_model_views(read_model_metadata(step2 / "model.safetensors"), 4)
    with pytest.raises(InputError, match="cannot take 6"):
        check_model_views(read_model_metadata(step2 / "model.safetensors"), 6)


# ------------------------------------------------------------------ learning
@pytest.mark.slow
def test_tiny_model_overfits_one_volume_far_above_fdk(tmp_path):
    """One chest phantom, 4 views: ~150 CPU steps (~15 s on one thread) reach ~26 dB; FDK gives ~18 dB."""
    try:
        from deepsparse_core.physics.fdk import fdk
    except ImportError:
        pytest.skip("deepsparse_core.physics.fdk is not available yet: cannot compare with FDK")
    from deepsparse_core.data.projections_file import load_projections
    from deepsparse_core.data.view_selection import uniform_sparse_indices
    from deepsparse_core.evaluation.metrics import psnr

    g = small_geometry(32, 16, N_CANDIDATES)
    [path] = make_synthetic_cache(tmp_path / "one", 1, g, seed=3, kinds=("chest",))
    for split in ("train", "val"):
        (path.parent / f"{split}.txt").write_text(path.name + "\n")
    n = 4
    data = load_projections(path)
    sparse = uniform_sparse_indices(n, N_CANDIDATES, None, offset=0.0)   # the validation views
    fdk_psnr = psnr(fdk(data.projections[sparse], g.with_angles([g.angles[i] for i in sparse])), data.reference)
    result = train(TrainConfig(data=str(path.parent), out=str(tmp_path / "run"), stage="scratch", views=n,
                               model="tiny", steps=150, lr=2e-3, points=1000, batch_size=1, val_every=150,
                               device="cpu"))
    assert result.val["views"] == n
    assert result.val["psnr"] > fdk_psnr + 6.0, (result.val, fdk_psnr)


def test_a_codebook_grown_by_a_whole_factor_is_split_from_the_old_one():
    """32 -> 64 codes: the old codes are kept, each copy is offset from its original by 1e-3 of the
    codebook's spread per dimension (a Gaussian draw: at most 6 sigma here), the EMA counts are shared
    (codebook = embed_sum / count still holds), and the quantized features barely move. 32 -> 48 is no
    whole factor: those codebooks start fresh. A one-code codebook (no spread) splits too."""
    import dataclasses

    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.training.initial_model import transfer_weights

    torch.manual_seed(0)
    source = DiCE(DiceConfig.tiny()).eval()
    for q in source.quantizers:  # a trained-looking codebook: counts that differ per code
        q.quantizer.cluster_size.uniform_(0.5, 40.0)
        q.quantizer.embed_sum.copy_(q.quantizer.codebook * q.quantizer.cluster_size.unsqueeze(1))
    bigger = DiCE(dataclasses.replace(source.config, codebook_size=64)).eval()
    copied, fresh = transfer_weights(bigger, source.state_dict())
    assert not fresh and len(copied) == len(bigger.state_dict())
    x = torch.randn(1, source.config.scale_channels[0], 6, 6, 6)
    for old, new in zip(source.quantizers, bigger.quantizers):
        a, b = old.quantizer, new.quantizer
        assert torch.equal(b.codebook[:32], a.codebook)
        offset = (b.codebook[32:] - a.codebook).abs()
        assert (offset > 0).all() and (offset <= 6e-3 * a.codebook.std(0)).all()
        assert torch.allclose(b.cluster_size, a.cluster_size.repeat(2) / 2)
        assert torch.allclose(b.embed_sum / b.cluster_size.unsqueeze(1), b.codebook)
    y_old, y_new = source.quantizers[0](x)[0], bigger.quantizers[0](x)[0]
    assert (y_old - y_new).abs().max() < 1e-2 * y_old.abs().max()
    one = DiCE(dataclasses.replace(source.config, codebook_size=1))
    two = DiCE(dataclasses.replace(source.config, codebook_size=2))
    transfer_weights(two, one.state_dict())
    for q in two.quantizers:
        c = q.quantizer.codebook
        assert torch.isfinite(c).all() and not torch.equal(c[0], c[1])
    odd = DiCE(dataclasses.replace(source.config, codebook_size=48))
    _, fresh = transfer_weights(odd, source.state_dict())
    assert sorted(fresh) == sorted(k for k in odd.state_dict()
                                   if k.rsplit(".", 1)[-1] in ("codebook", "cluster_size", "embed_sum"))


def test_init_with_config_warm_starts_into_a_new_architecture(runs, data, tmp_path, capsys):
    """--init MODEL --config ARCH: tensors whose name and shape match come from MODEL, the rest start
    fresh, and the run says which (the equal-CPU width study warm-starts a wider grid or MLP this way)."""
    import dataclasses

    from deepsparse_core.model import DiceConfig
    from deepsparse_core.training.stages import make_stage

    source, _ = load_model(Path(runs["scratch"].run_dir) / "model.safetensors")
    base = source.config
    stage = make_stage("scratch", views=4)
    own = source.state_dict()
    # a wider grid M changes no tensor: everything is copied
    wider = dataclasses.replace(base, volume_resolution=base.volume_resolution + 4)
    model, meta = initial_model(stage, str(Path(runs["scratch"].run_dir)), wider)
    assert model.config == wider and model.training
    assert all(torch.equal(v, own[k]) for k, v in model.state_dict().items())
    assert f"{len(own)} of {len(own)} tensors copied" in meta["transfer"] and "afresh" not in meta["transfer"]
    # a wider point MLP reading more features (mean pooling): grown, the old units kept, and the run says so
    mlp = dataclasses.replace(base, point_hidden=tuple(2 * h for h in base.point_hidden), view_pool="max+mean")
    model, meta = initial_model(stage, str(Path(runs["scratch"].run_dir)), mlp)
    new = model.state_dict()
    changed = sorted(k for k in new if k not in own or own[k].shape != new[k].shape)
    assert changed and all(k.startswith("point_decoder.") for k in changed)
    assert all(torch.equal(v, own[k]) for k, v in new.items() if k not in changed)
    assert f"{len(new)} of {len(new)} tensors copied" in meta["transfer"]
    assert (f"point MLP grown from {list(base.point_hidden)} on {base.point_features} features to "
            f"{list(mlp.point_hidden)} on {mlp.point_features}") in meta["transfer"]
    # a deeper point MLP cannot grow: its layers start fresh, and the run names them
    deeper = dataclasses.replace(base, point_hidden=base.point_hidden + (8,))
    model, meta = initial_model(stage, str(Path(runs["scratch"].run_dir)), deeper)
    assert "initialized afresh: point_decoder" in meta["transfer"] and "grown" not in meta["transfer"]
    # the same architecture: an ordinary warm start, no transfer line
    _, meta = initial_model(stage, str(Path(runs["scratch"].run_dir)), base)
    assert "transfer" not in meta
    # step 2 keeps the step-1 architecture
    with pytest.raises(InputError, match="step 2"):
        initial_model(make_stage("step2", views=4), str(Path(runs["step1"].run_dir)), wider)
    # nothing in common: refused, not a silent fresh model
    other = DiceConfig(n_scales=2, base_channels=3, decoder_channels=5, volume_resolution=4, codebook_size=7,
                       point_hidden=(9,))
    with pytest.raises(InputError, match="nothing to warm-start"):
        initial_model(stage, str(Path(runs["scratch"].run_dir)), other)
    # end to end: the CLI run logs the line and trains the new architecture
    from deepsparse_core.training.__main__ import main

    config = tmp_path / "wider.json"
    config.write_text(json.dumps({**wider.to_dict(), "point_hidden": list(wider.point_hidden)}))
    capsys.readouterr()
    assert main(["--progress", "bar", "--stage", "scratch", "--views", "4", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--init", str(Path(runs["scratch"].run_dir)), "--config", str(config),
                 "--steps", "1", "--points", "64", "--device", "cpu", "--batch-size", "1", "--val-every", "0"]) == 0
    captured = capsys.readouterr()
    assert "into a new architecture" in captured.out + captured.err
    assert read_model_metadata(tmp_path / "run" / "last.safetensors")["config"] == wider


@pytest.mark.parametrize("setting, calls", [(None, 1), ("0", 0)])
def test_cpu_training_keeps_freed_memory_unless_told_not_to(data, tmp_path, monkeypatch, setting, calls):
    import deepsparse_core.training.loop as loop

    seen = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: seen.append(1) or True)
    if setting is None:
        monkeypatch.delenv("DEEPSPARSE_KEEP_FREED_MEMORY", raising=False)
    else:
        monkeypatch.setenv("DEEPSPARSE_KEEP_FREED_MEMORY", setting)
    train(_config(data, tmp_path / "run", steps=1))
    assert len(seen) == calls
