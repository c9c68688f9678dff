"""``deepsparse prepare`` and CT augmentation on tiny phantoms (16-24^3 grid, 32^2 detector, 12 views)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from deepsparse_core.data.augment import augment_ct
from deepsparse_core.data.phantoms import phantom_volume
from deepsparse_core.data.prepare import add_prepare_parser, load_recipe, prepare, resolve_options
from deepsparse_core.data.projections_file import load_projections
from deepsparse_core.data.volume import Volume
from deepsparse_core.data.volume_io import write_volume
from deepsparse_core.errors import InputError
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.noise import NoiseModel

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes"


def tiny_geometry(n_views: int = 12) -> Geometry:
    """A 16^3 grid at 8 mm (128 mm cube) seen by a 32^2 detector."""
    return Geometry(dso=400.0, dsd=600.0, detector_shape=(32, 32), detector_spacing=(9.0, 9.0),
                    volume_shape=(16, 16, 16), volume_spacing=(8.0, 8.0, 8.0),
                    angles=tuple(np.linspace(0, np.pi, n_views, endpoint=False)), name="tiny")


def _ct(kind: str, seed: int, shape=(16, 20, 20), spacing=(8.0, 8.0, 8.0)) -> Volume:
    return phantom_volume(kind, shape, spacing, seed)


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    """3 good CTs (one in a subfolder), a junk .nii.gz and a 2D image."""
    root = tmp_path_factory.mktemp("cts")
    write_volume(_ct("chest", 1), root / "alpha.nii.gz")
    write_volume(_ct("pelvis", 2), root / "beta.nrrd")
    (root / "sub").mkdir()
    write_volume(_ct("head", 3), root / "sub" / "gamma.mha")
    (root / "junk.nii.gz").write_bytes(b"this is not a NIfTI file")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.uint8)), str(root / "photo.png"))
    (root / "README.txt").write_text("not an image, ignored")
    return root


@pytest.fixture(scope="module")
def prepared(ct_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    t0 = time.perf_counter()
    manifest = prepare(ct_folder, out, tiny_geometry(), NoiseModel(), seed=5, show_progress=False)
    return out, manifest, time.perf_counter() - t0


def test_prepare_writes_caches_for_good_cts_and_reports_bad_files(prepared, capsys):
    out, manifest, _ = prepared
    assert sorted(manifest["files"]) == ["alpha-p0.safetensors", "beta-p0.safetensors", "gamma-p0.safetensors"]
    failed = {Path(f["source"]).name: f["reason"] for f in manifest["failed"]}
    assert set(failed) == {"junk.nii.gz", "photo.png"}
    assert all(reason and "\n" not in reason for reason in failed.values())
    assert manifest["counts"]["cts_prepared"] == 3 and manifest["counts"]["failed"] == 2
    data = load_projections(out / "alpha-p0.safetensors")
    assert tuple(data.projections.shape) == (12, 32, 32) and data.noise.enabled
    assert tuple(data.reference.shape) == (16, 16, 16) and float(data.reference.max()) > 0.3
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["files"] == manifest["files"] and on_disk["complete"]
    entry = manifest["files"]["alpha-p0.safetensors"]
    assert entry["bytes"] == (out / "alpha-p0.safetensors").stat().st_size and len(entry["sha256"]) == 64
    assert entry["shape"] == [16, 16, 16] and entry["piece"] == 0


def test_splits_cover_every_cache_once_and_match_the_manifest(prepared):
    out, manifest, _ = prepared
    lists = {s: (out / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(lists.values(), [])) == sorted(manifest["files"])
    assert all(len(v) == 1 for v in lists.values())  # 3 CTs, 0.8/0.1/0.1: one each
    for split, names in lists.items():
        assert all(manifest["files"][n]["split"] == split for n in names)


def test_rerun_skips_finished_volumes_with_the_same_checksums(prepared, ct_folder):
    out, manifest, first_s = prepared
    mtimes = {n: (out / n).stat().st_mtime_ns for n in manifest["files"]}
    t0 = time.perf_counter()
    again = prepare(ct_folder, out, tiny_geometry(), NoiseModel(), seed=5, show_progress=False)
    assert again["skipped"] == 3
    assert {n: e["sha256"] for n, e in again["files"].items()} == \
        {n: e["sha256"] for n, e in manifest["files"].items()}
    assert {n: (out / n).stat().st_mtime_ns for n in again["files"]} == mtimes
    assert time.perf_counter() - t0 < max(first_s, 1.0)


def test_a_corrupted_cache_is_rebuilt_identically(ct_folder, tmp_path):
    geometry = tiny_geometry(4)
    first = prepare([ct_folder / "alpha.nii.gz"], tmp_path, geometry, NoiseModel(), show_progress=False)
    before = load_projections(tmp_path / "alpha-p0.safetensors")
    (tmp_path / "alpha-p0.safetensors").write_bytes(b"broken")
    again = prepare([ct_folder / "alpha.nii.gz"], tmp_path, geometry, NoiseModel(), show_progress=False)
    assert again["skipped"] == 0
    # seeded: the same tensors (the sha256 may differ: safetensors writes its metadata in hash order)
    after = load_projections(tmp_path / "alpha-p0.safetensors")
    assert torch.equal(before.projections, after.projections) and torch.equal(before.reference, after.reference)
    strip = lambda files: {n: {k: v for k, v in e.items() if k != "sha256"} for n, e in files.items()}  # noqa: E731
    assert strip(again["files"]) == strip(first["files"])


def test_a_long_scan_splits_into_pieces_in_one_split(tmp_path):
    cts = tmp_path / "cts"
    cts.mkdir()
    write_volume(_ct("chest", 4, shape=(40, 16, 16), spacing=(8.0, 8.0, 8.0)), cts / "long.nii.gz")
    for i in range(3):
        write_volume(_ct("head", 10 + i, shape=(14, 14, 14)), cts / f"short{i}.nii.gz")
    manifest = prepare(cts, tmp_path / "out", tiny_geometry(4), NoiseModel(enabled=False), seed=0,
                       splits=(0.5, 0.25, 0.25), show_progress=False)
    pieces = {n: e for n, e in manifest["files"].items() if n.startswith("long-")}
    assert sorted(pieces) == ["long-p0.safetensors", "long-p1.safetensors", "long-p2.safetensors"]
    assert len({e["split"] for e in pieces.values()}) == 1 and all(e["n_pieces"] == 3 for e in pieces.values())


def test_augmentation_is_seeded_changes_the_volume_and_stays_plausible():
    ct = _ct("chest", 7, shape=(24, 24, 24), spacing=(6.0, 6.0, 6.0))
    a = augment_ct(ct, np.random.default_rng(1))
    b = augment_ct(ct, np.random.default_rng(1))
    c = augment_ct(ct, np.random.default_rng(2))
    assert np.array_equal(a.array, b.array) and a.origin == b.origin
    assert a.shape != ct.shape or not np.allclose(a.array, ct.array)
    assert not (a.shape == c.shape and np.allclose(a.array, c.array))
    assert a.spacing == ct.spacing and np.allclose(a.direction, np.eye(3))
    assert ct.array.min() <= a.array.min() and a.array.max() <= ct.array.max()
    # still a body in air: lots of air, lots of tissue, centre near the source's centre
    assert (a.array < -900).mean() > 0.02 and (a.array > -200).mean() > 0.1
    assert np.linalg.norm(a.centre_lps - ct.centre_lps) < 0.3 * 24 * 6.0
    assert all(0.6 * n <= m <= 1.15 * n for n, m in zip(ct.shape, a.shape))


def test_augmented_variants_stay_in_their_source_split(ct_folder, tmp_path):
    good = [ct_folder / "alpha.nii.gz", ct_folder / "beta.nrrd", ct_folder / "sub" / "gamma.mha"]
    split_file = tmp_path / "splits.tsv"
    split_file.write_text("train\talpha\nval\tbeta.nrrd\ntest\tsub/gamma.mha\n")
    manifest = prepare(good, tmp_path / "out", tiny_geometry(4), NoiseModel(), augment=2,
                       split_file=split_file, show_progress=False)
    files = manifest["files"]
    assert len(files) == 9 and "beta-a2-p0.safetensors" in files
    expected = {"alpha": "train", "beta": "val", "gamma": "test"}
    assert all(e["split"] == expected[e["ct"]] for e in files.values())
    assert files["alpha-a1-p0.safetensors"]["sha256"] != files["alpha-p0.safetensors"]["sha256"]


def test_list_file_input_and_recipe_options(ct_folder, tmp_path):
    listing = tmp_path / "cts.txt"
    listing.write_text(f"# two CTs\n{ct_folder / 'alpha.nii.gz'}\n{ct_folder / 'sub' / 'gamma.mha'}\n")
    geometry_file = tmp_path / "tiny.yaml"
    tiny_geometry().save(geometry_file)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"prepare:\n  input: {listing}\n  out: {tmp_path / 'out'}\n  geometry: {geometry_file}\n"
                      "  candidates: 6\n  no_such: 1\n")
    with pytest.raises(InputError, match="no_such"):
        load_recipe(recipe)
    recipe.write_text(recipe.read_text().replace("  no_such: 1\n", "  noise: false\n  splits: [1, 0, 0]\n"))
    import argparse

    parser = argparse.ArgumentParser()
    add_prepare_parser(parser.add_subparsers())
    args = parser.parse_args(["prepare", "--recipe", str(recipe), "--seed", "3"])
    assert args.func.__name__ == "cmd_prepare"
    assert args.func(args) == 0
    options = resolve_options(args)
    assert options["candidates"] == 6 and options["seed"] == 3 and options["noise"] is False
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["alpha-p0.safetensors", "gamma-p0.safetensors"]
    assert manifest["counts"]["train"] == 2 and not manifest["settings"]["noise"]["enabled"]
    assert len(manifest["settings"]["geometry"]["angles"]) == 6


def test_no_good_ct_is_a_clear_error(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"junk")
    with pytest.raises(InputError, match="no CT could be prepared"):
        prepare(tmp_path, tmp_path / "out", tiny_geometry(4), NoiseModel(), show_progress=False)


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_documented_recipes_load(recipe):
    options = load_recipe(recipe)
    assert options.get("input") and options.get("out")
    assert options.get("preset") or options.get("geometry")


# the DeepSparse authors' splits.json (xmed-lab/DeepSparse): train/eval/test counts; their eval is our val
# (knee: Lin et al.'s set, the split in xmed-lab/C2RV-CBCT data/Knee/splits.json, the paper's 464/50/100)
AUTHOR_SPLITS = {"luna16": (738, 50, 100), "panorama": (1244, 200, 600), "pengwin": (60, 10, 30),
                 "toothfairy": (343, 25, 75), "knee": (464, 50, 100)}


@pytest.mark.parametrize("dataset", sorted(AUTHOR_SPLITS))
def test_recipes_carry_the_authors_splits(dataset):
    """Issue 17, item 3: the recipe's split file reproduces the authors' test set (counts pinned);
    PANORAMA and PENGWIN also follow their label-centred crops and 50 candidate views."""
    from deepsparse_core.data.prepare import read_split_file

    options = load_recipe(RECIPES / f"{dataset}.yaml")
    table = read_split_file(RECIPES.parent.parent / options["split_file"])  # paths relative to the repository
    counts = tuple(sum(1 for v in table.values() if v == s) for s in ("train", "val", "test"))
    assert counts == AUTHOR_SPLITS[dataset] and "splits" not in options
    if dataset in ("panorama", "pengwin"):
        assert options["labels"] and options["candidates"] == 50
    if dataset == "knee":  # C2RV's knee config: 50 projections; its .mhd files store metres
        assert options["candidates"] == 50 and options["spacing_unit"] == "m" and options["preset"] == "knee"


def test_parallel_workers_give_the_same_caches_as_in_process(ct_folder, tmp_path):
    good = [ct_folder / "alpha.nii.gz", ct_folder / "beta.nrrd"]
    one = prepare(good, tmp_path / "one", tiny_geometry(4), NoiseModel(), workers=1, show_progress=False)
    two = prepare(good, tmp_path / "two", tiny_geometry(4), NoiseModel(), workers=2, show_progress=False)
    assert sorted(one["files"]) == sorted(two["files"])
    for name in one["files"]:
        a, b = (load_projections(tmp_path / d / name) for d in ("one", "two"))
        assert torch.equal(a.projections, b.projections)


def test_labels_centre_each_grid_on_the_label_bounding_box(tmp_path):
    """Issue 17, item 3: the DeepSparse authors crop PANORAMA and PENGWIN centred on the label's
    bounding box (one grid per CT), not on the scan; an nnU-Net channel suffix (case_0000) finds
    the label 'case'. A long scan that the centred crop would split gives one piece; the lesion
    lands at the grid centre (to a voxel), far from where a centred crop would put it."""
    from deepsparse_core.data.prepare import prepare
    from deepsparse_core.data.volume import Volume
    from deepsparse_core.data.volume_io import write_volume
    from deepsparse_core.physics.geometry import Geometry
    from deepsparse_core.physics.noise import NoiseModel
    from safetensors.numpy import load_file

    geometry = Geometry.preset("fast", 8).with_grid((16, 16, 16))  # 16 voxels over the preset's extent
    spacing = geometry.volume_spacing
    shape = (60, 24, 24)  # 60 slices: a long scan, several centred pieces
    ct = np.full(shape, -1000.0, np.float32)
    ct[40:44, 4:8, 14:18] = 1000.0  # a lesion in the upper third, off-centre in y and x
    label = (ct > 0).astype(np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    write_volume(Volume(ct, spacing), tmp_path / "images" / "case_0000.nii.gz")
    write_volume(Volume(label.astype(np.float32), spacing), tmp_path / "labels" / "case.nii.gz")

    plain = prepare(tmp_path / "images", tmp_path / "plain", geometry, NoiseModel(enabled=False),
                    splits=(1, 0, 0), show_progress=False)
    assert plain["counts"]["files"] > 1  # centred crops split the long scan
    manifest = prepare(tmp_path / "images", tmp_path / "roi", geometry, NoiseModel(enabled=False),
                       splits=(1, 0, 0), show_progress=False, labels=tmp_path / "labels")
    assert list(manifest["files"]) == ["case_0000-p0.safetensors"] and manifest["settings"]["labels"]
    reference = load_file(str(tmp_path / "roi" / "case_0000-p0.safetensors"))["reference"].astype(np.float32)
    bright = np.argwhere(reference > 0.5)
    assert len(bright) and np.all(np.abs(bright.mean(0) - (np.asarray(reference.shape) - 1) / 2) <= 1.0)


def test_labels_are_refused_with_augment_and_a_missing_label_fails_its_ct(tmp_path, capsys):
    from deepsparse_core.data.prepare import prepare
    from deepsparse_core.data.volume import Volume
    from deepsparse_core.data.volume_io import write_volume
    from deepsparse_core.errors import InputError
    from deepsparse_core.physics.geometry import Geometry
    from deepsparse_core.physics.noise import NoiseModel

    geometry = Geometry.preset("fast", 8).with_grid((16, 16, 16))
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    ct = np.full((20, 20, 20), -1000.0, np.float32)
    ct[8:12, 8:12, 8:12] = 500.0
    write_volume(Volume(ct, geometry.volume_spacing), tmp_path / "images" / "other.nii.gz")
    with pytest.raises(InputError, match="do not combine with --augment"):
        prepare(tmp_path / "images", tmp_path / "a", geometry, NoiseModel(enabled=False), augment=1,
                labels=tmp_path / "labels", show_progress=False)
    with pytest.raises(InputError, match="no CT could be prepared.*no label map for other.nii.gz"):
        prepare(tmp_path / "images", tmp_path / "b", geometry, NoiseModel(enabled=False), splits=(1, 0, 0),
                labels=tmp_path / "labels", show_progress=False)
    assert "warning: skipped other: no label map for other.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the pool's workers are forked on POSIX")
def test_a_worker_killed_by_the_oom_killer_fails_its_ct_and_the_rest_carries_on(ct_folder, tmp_path, monkeypatch, capsys):
    """Issue 19, class 7: a pool worker killed outright (SIGKILL, as by the out-of-memory killer)
    broke the whole pool with a traceback. Now the CT it held is a failed input with the reason,
    the other CTs are prepared by a fresh pool, and no in-flight marker is left."""
    import os
    import signal

    from deepsparse_core.data import prepare as prepare_module

    work = prepare_module._prepare_unit_work

    def killed_on_beta(job):  # forked into the workers: patched before the pool starts
        if job["name"] == "beta":
            os.kill(os.getpid(), signal.SIGKILL)
        return work(job)

    monkeypatch.setattr(prepare_module, "_prepare_unit_work", killed_on_beta)
    good = [ct_folder / "alpha.nii.gz", ct_folder / "beta.nrrd", ct_folder / "sub" / "gamma.mha"]
    manifest = prepare(good, tmp_path / "out", tiny_geometry(4), NoiseModel(), workers=2, show_progress=False)
    assert sorted(manifest["splits"]["cts"]) == ["alpha", "gamma"]
    assert [f["source"] for f in manifest["failed"]] == [str(good[1])]
    assert "worker process died" in manifest["failed"][0]["reason"]
    assert "warning: skipped beta: its worker process died" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob(".inflight-*"))


def test_split_file_paths_keep_one_file_name_in_two_folders_apart(tmp_path):
    """Issue 17, item 3 (the knee split): C2RV's knee layout is <tag>/<id>.mhd and one id can sit
    under two tags. A split-file entry with its folder (FL/7) matches that file only, a bare name
    matches where its entries agree, and CTs listed nowhere go to train with a warning."""
    from deepsparse_core.data.prepare import read_split_file, split_lookup

    cts = tmp_path / "knee"
    for tag, seed in (("FL", 1), ("MR", 2), ("ML", 3)):
        (cts / tag).mkdir(parents=True)
        write_volume(_ct("chest", seed), cts / tag / "7.nii.gz")
    write_volume(_ct("head", 4), cts / "ML" / "9.nii.gz")
    split_file = tmp_path / "split.tsv"
    split_file.write_text("val\tFL/7.nii.gz\ntest\tMR/7\n")
    with pytest.warns(UserWarning, match=r"2 CT\(s\) not in the split file go to train: 9, ML_7"):
        manifest = prepare(cts, tmp_path / "out", tiny_geometry(4), NoiseModel(), split_file=split_file,
                           show_progress=False)
    assert manifest["splits"]["cts"] == {"FL_7": "val", "MR_7": "test", "ML_7": "train", "9": "train"}
    table = read_split_file(split_file)
    assert table == {"FL/7": "val", "MR/7": "test"}
    assert split_lookup({"7": "val", "x/7": "val"}, "ML_7", cts / "ML" / "7.nii.gz") == "val"  # agreeing entries
    assert split_lookup({"FL/7": "val", "MR/7": "test"}, "ML_7", cts / "ML" / "7.nii.gz") is None  # ambiguous


def test_spacing_in_metres_gives_the_caches_of_the_same_ct_in_mm(tmp_path):
    """``--spacing-unit m`` (the knee CBCT files of Lin et al. store metres): spacing and origin are
    scaled to mm before the checks, so the caches equal those of the same CT written in mm; read as
    mm the file is refused with the spacing named."""
    ct = _ct("head", 3)
    (tmp_path / "mm").mkdir()
    (tmp_path / "m").mkdir()
    write_volume(ct, tmp_path / "mm" / "a.nii.gz")
    metres = Volume(ct.array, tuple(v / 1000 for v in ct.spacing), tuple(v / 1000 for v in ct.origin), ct.direction)
    write_volume(metres, tmp_path / "m" / "a.nii.gz")
    geometry = tiny_geometry(4)
    prepare(tmp_path / "mm", tmp_path / "out_mm", geometry, NoiseModel(), show_progress=False)
    manifest = prepare(tmp_path / "m", tmp_path / "out_m", geometry, NoiseModel(), spacing_unit="m",
                       show_progress=False)
    assert manifest["settings"]["spacing_unit"] == "m"
    a, b = (load_projections(tmp_path / d / "a-p0.safetensors") for d in ("out_mm", "out_m"))
    torch.testing.assert_close(b.reference, a.reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.projections, a.projections, atol=1e-3, rtol=1e-3)
    with pytest.raises(InputError, match=r"spacing .* mm is outside"):
        prepare(tmp_path / "m", tmp_path / "out_bad", geometry, NoiseModel(), show_progress=False)
    with pytest.raises(InputError, match="--spacing-unit must be mm or m"):
        prepare(tmp_path / "m", tmp_path / "out_bad", geometry, NoiseModel(), spacing_unit="cm",
                show_progress=False)
