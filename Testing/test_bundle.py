"""``deepsparse bundle``: a campaign run's model scored on held-out volumes and written with a complete card;
campaign totals add up over warm-started runs; --only-if-better keeps a better bundled file."""

import json

import pytest

from deepsparse_core.cli import main
from deepsparse_core.model.card import campaign_totals, card_markdown, missing_card_fields, read_card
from deepsparse_core.model.model_file import load_model
from deepsparse_core.progress import set_mode
from deepsparse_core.training.bundle import DC_CANDIDATES
from deepsparse_core.training.loop import TrainConfig, train
from deepsparse_core.training.synthetic import make_synthetic_cache, small_geometry

INFO = {"architecture": "DiCE tiny", "preset": "test",
        "data": {"train": ["phantoms"], "augmentation": "none", "phantoms": "4 seeded", "held_out": ["val phantom"]},
        "training": {"summary": "two tiny runs."}, "commands": ["deepsparse train ..."]}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, one_thread):
    """Day 1: 3 scratch steps over views [2, 4]; day 2: 2 more steps warm-started from day 1's model."""
    set_mode(quiet=True)
    root = tmp_path_factory.mktemp("campaign")
    make_synthetic_cache(root / "data", 3, small_geometry(32, 16, 16), seed=0, splits=(0.67, 0.33, 0.0))
    common = dict(data=str(root / "data"), stage="scratch", model="tiny", min_views=2, max_views=4, points=256,
                  batch_size=1, val_every=3, val_limit=1, bn_batches=2, device="cpu")
    train(TrainConfig(out=str(root / "day1"), steps=3, **common))
    train(TrainConfig(out=str(root / "day2"), steps=2, init=str(root / "day1" / "last.safetensors"),
                      **{**common, "val_every": 2}))
    (root / "info.json").write_text(json.dumps(INFO))
    yield root
    set_mode()


def test_totals_add_up_over_warm_started_runs(campaign):
    day1, day2 = read_card(campaign / "day1" / "last.safetensors"), read_card(campaign / "day2" / "last.safetensors")
    assert day1["totals"]["steps"] == 3 and day1["totals"]["runs"] == 1
    assert day2["run"]["steps"] == 2 and day2["totals"]["steps"] == 5 and day2["totals"]["runs"] == 2
    assert day2["totals"]["volume_samples"] == 5
    assert day1["totals"]["cpu_hours"] > 0
    assert day2["totals"]["cpu_hours"] == pytest.approx(day1["totals"]["cpu_hours"] + day2["run"]["cpu_hours"], abs=2e-6)
    assert day2["views"] == {"min": 2, "max": 4} and day2["bn_batches"] == 2


def test_a_gpu_run_adds_its_wall_hours_as_gpu_hours():
    """A GPU run's cpu_hours are the host process's time only: its wall time is counted apart, and
    carried over later CPU runs; a CPU-only campaign has no gpu_hours at all."""
    cpu_day = {"steps": 10, "volume_samples": 20, "wall_hours": 2.0, "cpu_hours": 4.0, "device": "cpu"}
    gpu_day = {"steps": 100, "volume_samples": 800, "wall_hours": 0.1, "cpu_hours": 0.09, "device": "cuda"}
    day1 = campaign_totals(None, cpu_day)
    assert "gpu_hours" not in day1
    day2 = campaign_totals({"totals": day1}, gpu_day)
    assert day2["gpu_hours"] == pytest.approx(0.1) and day2["cpu_hours"] == pytest.approx(4.09)
    assert day2["steps"] == 110 and day2["volume_samples"] == 820 and day2["runs"] == 2
    day3 = campaign_totals({"training": {"totals": day2}}, cpu_day)   # a bundled card's totals
    assert day3["gpu_hours"] == pytest.approx(0.1) and day3["cpu_hours"] == pytest.approx(8.09)
    # a GPU run's card written before gpu_hours existed: rebuilt from its run and the card it started from
    old_gpu_card = {"run": gpu_day, "totals": {k: v for k, v in day2.items() if k != "gpu_hours"},
                    "init_card": {"training": {"totals": day1}}}
    assert campaign_totals(old_gpu_card, cpu_day)["gpu_hours"] == pytest.approx(0.1)
    two_gpus = {**gpu_day, "processes": 2}
    assert campaign_totals(None, two_gpus)["gpu_hours"] == pytest.approx(0.2)
    card = {"architecture": {"parameters": 10}, "views": {"min": 6, "max": 6},
            "data": {"train": ["a"], "augmentation": "none", "phantoms": "none", "held_out": ["b"]},
            "training": {"totals": day3}, "held_out": {}, "inference": {"data_consistency": 3}, "commands": []}
    assert "8.09 CPU-hours and 0.10 GPU-hours (the wall time of the runs on a GPU)" in card_markdown("m", card)
    card["training"]["totals"] = day1
    assert "4.00 CPU-hours (2.00 h wall" in card_markdown("m", card)


def test_a_run_keeps_only_the_totals_of_the_card_it_started_from():
    """history_card: the init model's totals (GPU-hours rebuilt from an old nested history), views,
    architecture and DC method, not its own init_card; the totals it gives are unchanged."""
    from deepsparse_core.model.card import history_card

    cpu_day = {"steps": 10, "volume_samples": 20, "wall_hours": 2.0, "cpu_hours": 4.0, "device": "cpu"}
    gpu_day = {"steps": 100, "volume_samples": 800, "wall_hours": 0.1, "cpu_hours": 0.09, "device": "cuda"}
    day1 = campaign_totals(None, cpu_day)
    old_gpu_card = {"run": gpu_day, "totals": {k: v for k, v in campaign_totals({"totals": day1}, gpu_day).items()
                                               if k != "gpu_hours"},
                    "init_card": {"training": {"totals": day1}, "held_out_rows": [{"psnr": 1.0}] * 100}}
    bundled = {"training": {"totals": old_gpu_card["totals"]}, "views": {"min": 6, "max": 10},
               "inference": {"data_consistency": 16}, "held_out_rows": [{"psnr": 1.0}] * 100,
               "run": None, "init_card": old_gpu_card}
    compact = history_card(bundled)
    assert set(compact) == {"totals", "views", "inference"} and compact["totals"]["gpu_hours"] == pytest.approx(0.1)
    assert campaign_totals(compact, cpu_day) == campaign_totals(bundled, cpu_day)
    assert history_card(compact) == compact and history_card(None) is None
    assert len(json.dumps(compact)) < len(json.dumps(bundled)) / 10
    assert "gpu_hours" not in history_card({"totals": day1})["totals"]
    # a bundled card (its run under training.last_run) from before gpu_hours existed, last run on a GPU
    old_bundled = {"training": {"totals": old_gpu_card["totals"], "last_run": gpu_day},
                   "init_card": {"training": {"totals": day1}}}
    assert history_card(old_bundled)["totals"]["gpu_hours"] == pytest.approx(0.1)


def test_bundle_writes_a_complete_card_and_keeps_a_better_file(campaign, capsys):
    out, md = campaign / "models" / "dice_2-4views.safetensors", campaign / "card.md"
    argv = ["--progress", "none", "bundle", str(campaign / "day2" / "last.safetensors"), "--held-out",
            str(campaign / "data"), "--info", str(campaign / "info.json"), "--data-consistency", "auto",
            "--markdown", str(md), "--out", str(out)]
    assert main(argv) == 0
    model, meta = load_model(out)
    card = meta["card"]
    assert missing_card_fields(card) == []
    assert set(card["held_out"]) == {"2", "3", "4"} and card["inference"]["data_consistency"] in DC_CANDIDATES
    assert card["architecture"]["parameters"] == model.num_parameters()
    perplexity = card["architecture"]["codebook_perplexity"]
    assert len(perplexity) == model.config.n_scales and all(1 <= x <= model.config.codebook_size for x in perplexity)
    assert "Codes in effective use per scale" in md.read_text()
    assert card["training"]["totals"]["steps"] == 5
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:   # stored in float16 (codebook state float32), loaded as float32
        dtypes = {k: str(f.get_tensor(k).dtype) for k in f.keys()}
    codebook_state = ("quantizer.codebook", "quantizer.cluster_size", "quantizer.embed_sum")
    assert {d for k, d in dtypes.items() if not k.endswith(codebook_state)} <= {"torch.float16", "torch.int64"}
    assert {d for k, d in dtypes.items() if k.endswith(codebook_state)} == {"torch.float32"}
    assert "| 2 |" in md.read_text() and card_markdown(out.name, card) == md.read_text()
    # the same model is not better than itself: --only-if-better keeps the file
    before = out.stat().st_mtime_ns
    assert main(argv + ["--only-if-better"]) == 0
    assert "kept" in capsys.readouterr().out and out.stat().st_mtime_ns == before


def test_bundle_refuses_an_incomplete_card(campaign, capsys):
    (campaign / "bad.json").write_text(json.dumps({"data": {}}))
    code = main(["--progress", "none", "bundle", str(campaign / "day1" / "last.safetensors"), "--held-out",
                 str(campaign / "data"), "--info", str(campaign / "bad.json"), "--data-consistency", "0",
                 "--out", str(campaign / "x.safetensors")])
    assert code == 2 and "lacks" in capsys.readouterr().err
    assert not (campaign / "x.safetensors").exists()


def test_the_final_scores_reuse_the_sweeps_reconstructions(campaign, monkeypatch):
    """``bundle --data-consistency auto`` scores the lowest view count twice (the sweep without VIF,
    then the card's scores): with shared volumes the second pass reconstructs nothing again."""
    from deepsparse_core.data.splits import split_files
    from deepsparse_core.inference import DiceReconstructor
    from deepsparse_core.training.bundle import held_out_scores

    calls = []
    real = DiceReconstructor.reconstruct
    monkeypatch.setattr(DiceReconstructor, "reconstruct", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    files = [campaign / "data" / name for name in split_files(campaign / "data", "val")]
    model, volumes = campaign / "day2" / "last.safetensors", {}
    sweep = held_out_scores(model, files, [2], (0, 1, 3), show_progress=False, vif=False, volumes=volumes)
    assert len(calls) == len(files)
    final = held_out_scores(model, files, [2], (0, 3), show_progress=False, volumes=volumes)
    assert len(calls) == len(files)
    assert final["means"][2][3]["psnr"] == sweep["means"][2][3]["psnr"]
    assert set(final["means"][2]) == {"fdk", "sart", 0, 3}


def test_totals_carry_over_a_warm_start_from_a_bundled_file(campaign):
    """A campaign day warm-starts from the committed (bundled) file, whose card keeps its totals under
    ``training``: the next run's card and the next bundled card add them up all the same."""
    bundled = campaign / "models" / "day2-bundled.safetensors"
    assert main(["--progress", "none", "bundle", str(campaign / "day2" / "last.safetensors"), "--held-out",
                 str(campaign / "data"), "--info", str(campaign / "info.json"), "--data-consistency", "0",
                 "--views", "2", "--out", str(bundled)]) == 0
    day2 = read_card(bundled)["training"]["totals"]
    assert day2["steps"] == 5 and day2["runs"] == 2
    train(TrainConfig(out=str(campaign / "day3"), steps=1, init=str(bundled), data=str(campaign / "data"),
                      stage="scratch", model="tiny", min_views=2, max_views=4, points=256, batch_size=1, val_every=1,
                      val_limit=1, bn_batches=2, device="cpu"))
    day3 = read_card(campaign / "day3" / "last.safetensors")
    assert day3["totals"]["steps"] == 6 and day3["totals"]["runs"] == 3
    assert day3["totals"]["cpu_hours"] == pytest.approx(day2["cpu_hours"] + day3["run"]["cpu_hours"], abs=2e-6)
    again = campaign / "models" / "day3-bundled.safetensors"
    assert main(["--progress", "none", "bundle", str(campaign / "day3" / "last.safetensors"), "--held-out",
                 str(campaign / "data"), "--info", str(campaign / "info.json"), "--data-consistency", "0",
                 "--views", "2", "--out", str(again)]) == 0
    assert read_card(again)["training"]["totals"] == day3["totals"]
    rescored = campaign / "models" / "day3-rescored.safetensors"   # the bundled file itself, scored again
    assert main(["--progress", "none", "bundle", str(again), "--held-out", str(campaign / "data"), "--info",
                 str(campaign / "info.json"), "--data-consistency", "1", "--views", "2", "--out", str(rescored)]) == 0
    first, second = read_card(again), read_card(rescored)
    for key in ("totals", "last_run", "checkpoint"):
        assert second["training"][key] == first["training"][key]
    assert second["init_card"] == first["init_card"] and second["inference"]["data_consistency"] == 1


def test_only_if_better_compares_on_the_same_held_out_cts(campaign, capsys, monkeypatch):
    """A bundled file scored on other held-out CTs is scored again on the new set before the
    comparison: its stored means belong to other CTs and say nothing about these."""
    from deepsparse_core.training import bundle

    other = campaign / "other"
    make_synthetic_cache(other, 2, small_geometry(32, 16, 16), seed=5, splits=(0.0, 1.0, 0.0))
    out = campaign / "models" / "same-set.safetensors"
    base = ["--progress", "none", "bundle", str(campaign / "day2" / "last.safetensors"), "--info",
            str(campaign / "info.json"), "--data-consistency", "2", "--views", "2", "--out", str(out)]
    assert main(base + ["--held-out", str(campaign / "data")]) == 0
    stored = read_card(out)
    same = campaign / "models" / "same-weights.safetensors"   # the bundled (float16) weights again
    same.write_bytes(out.read_bytes())
    base[3] = str(same)
    calls = []
    real = bundle.held_out_scores
    monkeypatch.setattr(bundle, "held_out_scores", lambda model, *a, **k: calls.append(str(model)) or real(model, *a, **k))
    capsys.readouterr()
    import deepsparse_core.reconstruct as recon

    sart_runs = []
    real_reconstruct = recon.reconstruct
    monkeypatch.setattr(recon, "reconstruct", lambda data, method, **k: sart_runs.append(method) or
                        real_reconstruct(data, method, **k))
    markdown = campaign / "kept.md"
    assert main(base + ["--held-out", str(other), "--only-if-better", "--markdown", str(markdown)]) == 0
    captured = capsys.readouterr()
    # the new model once, then the bundled file once on the other set; the same weights are not better
    assert calls == [str(same), str(out)]
    assert "kept" in captured.out and "(rescored)" in captured.out
    assert "scored on other held-out CTs" in captured.err
    assert read_card(out)["held_out_volumes"] == stored["held_out_volumes"]   # the file was kept
    # FDK and SART are model-independent: computed once per CT and view count, not again for the rescoring
    assert sart_runs.count("sart") == sart_runs.count("fdk") == 2
    text = markdown.read_text()   # the candidate's card, then the kept model's per-CT scores on these CTs
    assert text.startswith("Not bundled (2 views: ") and "## `same-weights.safetensors`" in text
    kept = text.index("same-set.safetensors (kept), rescored on 2 held-out CTs with 2 DC passes")
    assert "| 2 | **mean** (2) |" in text[kept:] and "| 2 | **mean** (2) |" in text[:kept]


def test_only_if_better_rescores_a_card_scored_with_another_dc_method(campaign):
    """Same CTs, but the bundled card's DC rows were scored with another filtering (the plain passes:
    no ``inference.correction_tv``; or TV only, as until the seventh session of 2026-12-04): its stored
    means are not comparable, so it is scored again."""
    from deepsparse_core.model.model_file import load_model, save_model
    from deepsparse_core.physics.data_consistency import CORRECTION_TV, DC_METHOD
    from deepsparse_core.training.bundle import _better, same_dc_method

    out = campaign / "models" / "method.safetensors"
    assert main(["--progress", "none", "bundle", str(campaign / "day2" / "last.safetensors"), "--info",
                 str(campaign / "info.json"), "--data-consistency", "2", "--views", "2", "--out", str(out),
                 "--held-out", str(campaign / "data")]) == 0
    card = read_card(out)
    assert {key: card["inference"][key] for key in DC_METHOD} == DC_METHOD and min(DC_METHOD.values()) > 0
    assert "garrote-thresholded at" in card_markdown("method.safetensors", card)
    legacy = campaign / "models" / "plain-dc.safetensors"
    save_model(legacy, load_model(out)[0], card={**card, "inference": {"data_consistency": 2}})
    tv_only = campaign / "models" / "tv-only-dc.safetensors"
    save_model(tv_only, load_model(out)[0], card={**card, "inference": {"data_consistency": 2,
                                                                         "correction_tv": CORRECTION_TV}})
    assert same_dc_method(card["inference"], {**DC_METHOD, "data_consistency": 5})
    assert not same_dc_method(card["inference"], {"correction_tv": CORRECTION_TV})
    assert same_dc_method({}, {"correction_tv": 0, "output_tv": 0.0})
    calls = []

    def rescore(path, k, alone=0.0, dc=-1.0):
        calls.append((path, k))
        return {n: {"dice": {"psnr": rows["dice"]["psnr"] + alone}, "dice_dc": {"psnr": rows["dice_dc"]["psnr"] + dc}}
                for n, rows in card["held_out"].items()}

    better, why = _better(card, legacy, rescore)
    assert calls == [(legacy, 2)] and better and "rescored" in why
    calls.clear()
    better, why = _better(card, tv_only, rescore)
    assert calls == [(tv_only, 2)] and better and "rescored" in why
    calls.clear()   # the same method and CTs: the stored means are compared, nothing is rescored
    better, why = _better(card, out, rescore)
    assert calls == [] and not better and "not above" in why


def test_only_if_better_compares_at_the_same_k_and_refuses_a_worse_network_alone(campaign):
    """Both models are compared with the larger of their K (more passes alone once won a comparison,
    and fewer than a model ships with would understate it); a network alone that got worse is refused
    even when its DC mean is higher."""
    from deepsparse_core.training.bundle import _better

    out = campaign / "models" / "k2.safetensors"
    assert main(["--progress", "none", "bundle", str(campaign / "day2" / "last.safetensors"), "--info",
                 str(campaign / "info.json"), "--data-consistency", "2", "--views", "2", "--out", str(out),
                 "--held-out", str(campaign / "data")]) == 0
    stored = read_card(out)
    calls = []

    def shifted(alone, dc, who):
        def fake(*args):
            calls.append((who, args[-1]))
            return {n: {"dice": {"psnr": rows["dice"]["psnr"] + alone}, "dice_dc": {"psnr": rows["dice_dc"]["psnr"] + dc}}
                    for n, rows in stored["held_out"].items()}
        return fake

    # a candidate with K = 3 against the card's K = 2: the bundled model is scored again with 3
    more = {**stored, "inference": {**stored["inference"], "data_consistency": 3}}
    better, why = _better(more, out, shifted(-0.1, -0.1, "bundled"))
    assert calls == [("bundled", 3)] and better and "3 DC passes" in why and "rescored" in why
    better, why = _better(more, out, shifted(0.1, -0.1, "bundled"))   # DC higher, alone lower: refused
    assert not better and "network alone" in why
    better, why = _better(more, out, shifted(-0.1, 0.0, "bundled"))   # DC tied at the same K: refused
    assert not better and "not above" in why
    # a candidate with K = 1 against K = 2: the candidate is scored with 2, the stored means are used
    calls.clear()
    fewer = {**stored, "inference": {**stored["inference"], "data_consistency": 1}}
    better, why = _better(fewer, out, shifted(0.0, 0.0, "bundled"), shifted(0.0, 0.1, "candidate"))
    assert calls == [("candidate", 2)] and better and "2 DC passes" in why and "rescored" not in why
    better, why = _better(fewer, out, None, shifted(-0.01, 0.5, "candidate"))  # stored means, alone lower
    assert not better and "network alone" in why
    assert not _better(fewer, out)[0]   # nobody to score the candidate with 2 passes: kept


def test_worst_ct_loss_is_the_largest_drop_with_dc_over_cts_and_view_counts():
    from deepsparse_core.training.bundle import worst_ct_loss

    def rows(values):
        return [{"volume": v, "views": n, "method": m, "psnr": p} for (v, n, m), p in values.items()]

    old = rows({("chest", 6, "16"): 30.0, ("abdomen", 6, "16"): 26.0, ("abdomen", 10, "16"): 27.5,
                ("abdomen", 6, "0"): 25.0, ("gone", 6, "16"): 40.0})
    new = rows({("chest", 6, "16"): 31.0, ("abdomen", 6, "16"): 25.6, ("abdomen", 10, "16"): 26.4,
                ("abdomen", 6, "0"): 20.0, ("added", 6, "16"): 10.0})
    # the network alone (method "0") and CTs missing on one side do not count; the worst pair is reported
    assert worst_ct_loss(new, old, 16) == pytest.approx((1.1, "abdomen", 10, 26.4, 27.5))
    assert worst_ct_loss(old, new, 16) == pytest.approx((1.0, "chest", 6, 30.0, 31.0))
    assert worst_ct_loss(new, old, 0) == pytest.approx((5.0, "abdomen", 6, 20.0, 25.0))
    assert worst_ct_loss(new, old, 8) is None


def test_only_if_better_keeps_the_file_when_one_ct_loses_more_than_max_ct_loss(campaign, capsys, monkeypatch):
    """A candidate better in the means (forced here) is still refused when one held-out CT loses more
    than --max-ct-loss with DC: the bundled card's per-CT row for that CT is raised by 1 dB on disk."""
    from deepsparse_core.model.card import write_bundled
    from deepsparse_core.training import bundle

    out = campaign / "models" / "regional.safetensors"
    base = ["--progress", "none", "bundle", str(campaign / "day2" / "last.safetensors"), "--info",
            str(campaign / "info.json"), "--data-consistency", "2", "--views", "2", "--out", str(out),
            "--held-out", str(campaign / "data")]
    assert main(base) == 0
    card = read_card(out)
    dc_rows = [r for r in card["held_out_rows"] if r["method"] == "2"]
    assert len(dc_rows) == 1   # one held-out CT (the val split) at one view count
    monkeypatch.setattr(bundle, "_better", lambda *a, **k: (True, "forced"))
    capsys.readouterr()
    # the same model: no CT loses anything, so even --max-ct-loss 0 lets it replace the file
    before = out.stat().st_mtime_ns
    assert main(base + ["--only-if-better", "--max-ct-loss", "0"]) == 0
    assert "wrote" in capsys.readouterr().out and out.stat().st_mtime_ns != before
    target = dc_rows[0]["volume"]
    raised = [{**r, "psnr": r["psnr"] + 1.0} if (r["method"], r["volume"]) == ("2", target) else r
              for r in card["held_out_rows"]]
    write_bundled(campaign / "day2" / "last.safetensors", out, {**card, "held_out_rows": raised})
    before = out.stat().st_mtime_ns
    assert main(base + ["--only-if-better"]) == 0          # the default, 0.3 dB
    text = capsys.readouterr().out
    assert f"kept {out}: {target} at 2 views" in text and "1.00 dB below the bundled" in text
    assert out.stat().st_mtime_ns == before
    assert main(base + ["--only-if-better", "--max-ct-loss", "1.5"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(base + ["--only-if-better", "--max-ct-loss", "-1"]) == 2
    assert "--max-ct-loss must be a number of dB >= 0" in capsys.readouterr().err
    out.write_bytes(b"not a model file")   # an unreadable bundled file is replaced (no card to guard with)
    assert main(base + ["--only-if-better"]) == 0
    assert "wrote" in capsys.readouterr().out and read_card(out)["held_out_rows"] == card["held_out_rows"]


def test_markdown_has_per_ct_rows_and_a_mean_without_named_cts():
    rows = [{"volume": v, "views": 6, "method": m, "psnr": p, "ssim": 0.5, "vif": 0.1}
            for v, base in (("lung", 20.0), ("crop", 30.0))
            for m, p in (("fdk", base - 5), ("sart", base), ("0", base + 1), ("3", base + 2))]
    card = {"architecture": {"parameters": 10}, "views": {"min": 6, "max": 6},
            "data": {"train": ["a"], "augmentation": "none", "phantoms": "none", "held_out": ["lung", "crop"]},
            "training": {"totals": {"steps": 1, "volume_samples": 2, "cpu_hours": 0.1}},
            "held_out": {}, "held_out_rows": rows, "inference": {"data_consistency": 3},
            "mean_also_without": ["crop"], "commands": []}
    text = card_markdown("m.safetensors", card)
    assert "| 6 | lung | 15.00 / 0.500 | 20.00 / 0.500 | 21.00 / 0.500 | 22.00 / 0.500 | +2.00 dB | +1.00 dB |" in text
    assert "| 6 | **mean** (2) | 20.00 / 0.500 | 25.00 / 0.500 | 26.00 / 0.500 | 27.00 / 0.500 |" in text
    assert "| 6 | **mean without crop** (1) | 15.00 / 0.500 | 20.00 / 0.500 |" in text
