"""benchmark-quality: held-out volumes x view counts x methods -> CSV / Markdown / JSON / slice PNGs.

Tiny caches (24^3 grid, 32^2 detector, 24 candidates) and a tiny random DiCE model keep this fast.
"""

import argparse
import csv
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from deepsparse_core.errors import InputError
from deepsparse_core.evaluation import figures, quality
from deepsparse_core.model import DiCE, DiceConfig
from deepsparse_core.model.model_file import save_model
from deepsparse_core.training.synthetic import make_synthetic_cache, small_geometry

VIEWS = [6, 8]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Two volumes: one in val.txt, one in test.txt (and an empty train.txt)."""
    folder = tmp_path_factory.mktemp("cache")
    g = small_geometry(detector=32, grid=24, n_candidates=24)
    paths = make_synthetic_cache(folder, 2, g, seed=3)
    (folder / "train.txt").write_text("")
    (folder / "val.txt").write_text(paths[0].name + "\n")
    (folder / "test.txt").write_text(paths[1].name + "\n")
    torch.manual_seed(0)
    model = save_model(folder.parent / "tiny_dice.safetensors", DiCE(DiceConfig.tiny()).eval(), geometry=g)
    return folder, paths, model


@pytest.fixture(scope="module")
def report(cache, tmp_path_factory):
    """One run over both volumes (given as files), fdk + sart + the tiny model + a missing model."""
    folder, paths, model = cache
    out = tmp_path_factory.mktemp("report")
    with pytest.warns(UserWarning, match="VIF"):
        bench = quality.run_benchmark(paths, out, views=VIEWS, methods=["fdk", "sart", "dice"],
                                      model_specs=[f"tiny:6,8={model}", "gone:6=/nonexistent/model.safetensors"],
                                      sart_iterations=10, device="cpu", bundled=False, show_progress=False)
    return out, bench


def test_csv_has_one_row_per_volume_view_count_and_method(report):
    out, _ = report
    with open(out / "quality.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["volume", "views", "method", "psnr", "ssim", "vif", "seconds", "error"]
    # 2 volumes x (6 views: fdk, sart, tiny, gone; 8 views: fdk, sart, tiny)
    assert len(rows) == 2 * 4 + 2 * 3
    counts = {(n, m): sum(r["views"] == str(n) and r["method"] == m for r in rows)
              for n in VIEWS for m in ("fdk", "sart", "tiny")}
    assert set(counts.values()) == {2}
    for r in rows:
        if r["method"] == "gone":
            assert r["views"] == "6" and r["psnr"] == "" and "model file not found" in r["error"]
        else:
            assert r["error"] == ""
            assert 0 < float(r["psnr"]) < 60 and -1 <= float(r["ssim"]) <= 1 and float(r["seconds"]) >= 0
            assert r["vif"] == ""   # 24x24 slices are too small for VIF: n/a, not a crash


def test_sart_beats_fdk_in_the_markdown_table(report):
    out, bench = report
    md = (out / "quality.md").read_text()
    for n in VIEWS:
        section = md.split(f"## {n} views")[1].split("## ")[0]
        psnr = {}
        for line in section.splitlines():
            m = re.match(r"\| (fdk|sart|tiny) \| (\*\*)?([0-9.]+)", line)
            if m and m.group(1) not in psnr:   # the mean table comes first
                psnr[m.group(1)] = float(m.group(3))
        assert psnr["sart"] > psnr["fdk"], section
        assert psnr["sart"] == pytest.approx(bench.mean(n, "sart", "psnr"), abs=0.006)
    # best mean PSNR at 6 views is bold in the overview, and SART is the winner here over FDK
    assert re.search(r"\| 6 \| .*\*\*", md)


def test_missing_model_is_an_na_row_with_its_reason(report):
    out, bench = report
    md = (out / "quality.md").read_text()
    gone = [line for line in md.splitlines() if "| gone |" in line and not line.startswith("| views")]
    assert gone and all("n/a" in line for line in gone)
    assert any("model file not found: /nonexistent/model.safetensors" in line for line in gone)
    assert "| gone | n/a | n/a | n/a | n/a | 0/2 |" in md
    # the other methods still ran
    assert all(r.ok for r in bench.results if r.method != "gone")


def test_json_report_matches_the_results(report):
    out, bench = report
    doc = json.loads((out / "quality.json").read_text())
    assert doc["views"] == VIEWS and len(doc["volumes"]) == 2
    assert doc["methods"]["6"] == ["fdk", "sart", "tiny", "gone"]
    assert doc["methods"]["8"] == ["fdk", "sart", "tiny"]
    assert doc["mean"]["6"]["gone"]["psnr"] is None
    assert doc["mean"]["6"]["sart"]["psnr"] == pytest.approx(bench.mean(6, "sart", "psnr"))
    assert len(doc["results"]) == len(bench.results)


def test_slice_figures_have_the_expected_size_and_content(report):
    out, bench = report
    for n in VIEWS:
        path = out / f"slices_{n}views.png"
        assert bench.figures[n] == path.name
        img = np.asarray(Image.open(path).convert("RGB"))
        n_methods = len(bench.columns[n])
        tile = figures.default_tile(n_methods)
        assert img.shape[1::-1] == quality.figure_size(n_methods, tile)
        w = figures.ROW_LABEL_W
        top = figures.HEADER_H
        gt = img[top:top + 3 * tile, w:w + tile]
        sart_col = 1 + bench.columns[n].index("sart")
        sart_diff = img[top + 3 * tile:top + 6 * tile, w + sart_col * tile:w + (sart_col + 1) * tile]
        assert gt.std() > 10                    # a phantom, not a blank tile
        assert sart_diff.max() > 100            # difference maps are drawn
        # the signed error map is drawn on white (0 error) with red / blue: never 'hot' black-red
        assert (sart_diff.min(axis=-1) > 100).mean() > 0.3


def test_folder_input_uses_the_test_split_then_val(cache, tmp_path):
    folder, paths, _ = cache
    assert quality.held_out_files(folder) == [paths[1]]
    assert quality.held_out_files(folder, "val") == [paths[0]]
    empty_test = tmp_path / "c"
    empty_test.mkdir()
    for p in paths:
        (empty_test / p.name).symlink_to(p)
    (empty_test / "val.txt").write_text(paths[0].name + "\n")
    (empty_test / "test.txt").write_text("")
    with pytest.warns(UserWarning, match="validation split"):
        assert quality.held_out_files(empty_test) == [empty_test / paths[0].name]
    no_splits = tmp_path / "d"
    no_splits.mkdir()
    (no_splits / paths[0].name).symlink_to(paths[0])
    with pytest.warns(UserWarning, match="evaluating all 1 volumes"):
        assert quality.held_out_files(no_splits) == [no_splits / paths[0].name]


def test_model_specs_and_missing_dice_models_are_reported():
    assert quality.parse_model_spec("6=a.safetensors") == quality.ModelSpec(None, (6,), "a.safetensors")
    assert quality.parse_model_spec("pre:6,8=x/b.safetensors") == quality.ModelSpec("pre", (6, 8), "x/b.safetensors")
    for bad in ("a.safetensors", "six=a", ":6=a", "6="):
        with pytest.raises(InputError):
            quality.parse_model_spec(bad)
    cols = quality.variants_for(6, ["fdk", "dice"], bundled=False)
    assert [c.name for c in cols] == ["fdk", "dice"] and "no --model" in cols[1].unavailable
    unnamed = quality.variants_for(6, ["dice"], [quality.parse_model_spec("6=m/abl.safetensors")], bundled=False)
    assert [c.name for c in unnamed] == ["dice:abl"]
    with pytest.raises(InputError, match="distinct"):
        quality.variants_for(6, ["dice"], [quality.parse_model_spec("a:6=x"), quality.parse_model_spec("a:6=y")],
                             bundled=False)


def test_cli_parser_runs_fdk_with_limit(cache, tmp_path):
    folder, _, _ = cache
    parser = argparse.ArgumentParser()
    quality.add_quality_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["benchmark-quality", str(folder), "--out", str(out), "--views", "6",
                              "--methods", "fdk", "--limit", "1", "--device", "cpu"])
    with pytest.warns(UserWarning, match="VIF"):
        assert args.func(args) == 0
    with open(out / "quality.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["views"], r["method"]) for r in rows] == [("6", "fdk")]
    assert (out / "slices_6views.png").is_file() and (out / "quality.md").is_file()


def test_paper_protocol_runs_the_network_alone_on_noise_free_caches_and_says_so(cache, tmp_path, monkeypatch):
    """Issue 17, item 3: ``--protocol paper`` (network only, noise-free, the preset's grid, the
    authors' views) runs on a small synthetic set; noisy caches, a DC request or a grid other than
    the preset's are refused before any work; the report says when its numbers are comparable."""
    from deepsparse_core.data.projections_file import load_projections, save_projections
    from deepsparse_core.errors import InputError
    from deepsparse_core.physics.noise import NoiseModel

    folder, paths, model = cache
    assert not load_projections(paths[1]).noise.enabled  # make_synthetic_cache: noise-free
    seen = []
    original = quality._run_one
    monkeypatch.setattr(quality, "_run_one", lambda data, v, device, iters, dc: seen.append(dc) or original(
        data, v, device, iters, dc))
    with pytest.warns(UserWarning, match="VIF"):
        bench = quality.run_benchmark([paths[1]], tmp_path / "paper", views=[6], methods=["fdk", "dice"],
                                      model_specs=[f"tiny:6={model}"], device="cpu", bundled=False,
                                      show_progress=False, protocol="paper")
    assert seen and set(seen) == {0} and bench.settings["protocol"] == "paper"
    text = (tmp_path / "paper" / "quality.md").read_text()
    assert "**Paper protocol**" in text and "K = 24" in text and "comparable with the paper's Tables 2-3 only" in text
    with pytest.warns(UserWarning, match="VIF"):
        quality.run_benchmark([paths[1]], tmp_path / "ours", views=[6], methods=["fdk"], device="cpu",
                              bundled=False, show_progress=False)
    assert "Not the paper protocol" in (tmp_path / "ours" / "quality.md").read_text()

    noisy = load_projections(paths[1])
    noisy.noise = NoiseModel(enabled=True)
    save_projections(tmp_path / "noisy.safetensors", noisy)
    with pytest.raises(InputError, match="prepared with noise"):
        quality.run_benchmark([tmp_path / "noisy.safetensors"], tmp_path / "x", views=[6], methods=["fdk"],
                              device="cpu", bundled=False, show_progress=False, protocol="paper")
    with pytest.raises(InputError, match="network alone: drop --data-consistency 4"):
        quality.run_benchmark([paths[1]], tmp_path / "y", views=[6], methods=["fdk"], device="cpu",
                              bundled=False, show_progress=False, protocol="paper", data_consistency=4)
    import dataclasses

    small = load_projections(paths[1])
    small.geometry = dataclasses.replace(small.geometry, name="fast")  # named after a preset, not on its grid
    save_projections(tmp_path / "small.safetensors", small)
    with pytest.raises(InputError, match="not the fast preset's 128x128x128"):
        quality.run_benchmark([tmp_path / "small.safetensors"], tmp_path / "z", views=[6], methods=["fdk"],
                              device="cpu", bundled=False, show_progress=False, protocol="paper")
    assert not any((tmp_path / d).exists() for d in ("x", "y", "z"))
