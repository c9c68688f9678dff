"""Bad input, every subcommand (issue 9): exit status 2, one ``error:`` line, no traceback, nothing left.

Each case builds its command line (and whatever bad file it needs) from a shared workspace of small
valid inputs, runs the CLI in-process and checks that

* the exit status is 2 and stderr holds exactly one ``error: ...`` line (after any ``warning:`` lines),
  with no traceback, and that it names the problem (a regular expression per case);
* the output folder holds exactly the files it held before (nothing new, nothing half-written).

Also here: the fixes that are not a refusal (strict JSON, JSON-only stdout, help texts, the sample
fetcher's pinned sdist download).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from deepsparse_core.atomic import sha256_file
from deepsparse_core.cli import main
from deepsparse_core.data.phantoms import phantom_volume
from deepsparse_core.data.volume_io import write_volume
from deepsparse_core.physics.geometry import Geometry

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root writes into read-only folders


# ---------------------------------------------------------------------------- workspace
def _small_geometry() -> Geometry:
    g = Geometry.preset("fast", 6).with_grid((16, 16, 16))
    return Geometry(**{**g.to_dict(), "detector_shape": (24, 24), "detector_spacing": (25.6, 25.6)})


def _rewrite_metadata(src: Path, dst: Path, change) -> Path:
    """Copy a safetensors file with its metadata (a dict of JSON strings) passed through ``change``."""
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(src)), str(dst), metadata=change(meta))
    return dst


def _edit_json_field(meta: dict, key: str, edit) -> dict:
    value = json.loads(meta[key])
    edit(value)
    return {**meta, key: json.dumps(value)}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Valid inputs (CT, geometry, projections, model, training data and run) and bad variants."""
    from deepsparse_core.model import DiCE, DiceConfig
    from deepsparse_core.model.model_file import save_model

    d = tmp_path_factory.mktemp("bad_input")
    ct = phantom_volume("chest", (24, 32, 32), spacing=(12.0, 12.0, 12.0), seed=3)
    write_volume(ct, d / "ct.nii.gz")
    g = _small_geometry()
    g.save(d / "geometry.yaml")
    assert main(["--progress", "none", "simulate", str(d / "ct.nii.gz"), "--views", "6", "--geometry",
                 str(d / "geometry.yaml"), "--device", "cpu", "--out", str(d / "p.safetensors")]) == 0

    # --- CTs: truncated, NaN
    for name in ("ct.nii.gz",):
        data = (d / name).read_bytes()
        (d / f"half_{name}").write_bytes(data[: len(data) // 2])
    write_volume(ct, d / "ct.nii", compress=False)
    data = (d / "ct.nii").read_bytes()
    (d / "half_ct.nii").write_bytes(data[: len(data) // 2])
    write_volume(ct, d / "ct.mha")
    data = (d / "ct.mha").read_bytes()
    (d / "half_ct.mha").write_bytes(data[: len(data) // 2])
    one_nan = ct.array.copy()
    one_nan[5, 5, 5] = np.nan
    _write_nifti_float(one_nan, d / "one_nan.nii.gz")
    _write_nifti_float(np.full(ct.shape, np.nan, np.float32), d / "all_nan.nii.gz")
    write_volume(ct.with_array(one_nan), d / "one_nan.nrrd")
    (d / "binary.dat").write_bytes(bytes(range(256)) * 8)

    # --- geometry files
    base = g.to_dict()
    base.pop("angles")
    for name, change in {"dso_abc": {"dso": "abc"}, "views_six": {"n_views": "six"},
                         "shape_frac": {"volume_shape": [64.5, 64, 64]},
                         "huge_detector": {"detector_shape": [100000, 100000]},
                         "huge_grid": {"volume_shape": [100000] * 3, "volume_spacing": [0.001] * 3}}.items():
        import yaml

        (d / f"{name}.yaml").write_text(yaml.safe_dump({**base, **change}))

    # --- projections files with bad metadata
    _rewrite_metadata(d / "p.safetensors", d / "p_dso_abc.safetensors",
                      lambda m: _edit_json_field(m, "geometry", lambda v: v.update(dso="abc")))
    _rewrite_metadata(d / "p.safetensors", d / "p_no_direction.safetensors",
                      lambda m: _edit_json_field(m, "placement", lambda v: v.pop("direction")))

    # --- degenerate scans (issue 19, class 2): a grid moved out of the beam, a placement 1e308 mm away
    _rewrite_metadata(d / "p.safetensors", d / "p_out_of_beam.safetensors",
                      lambda m: _edit_json_field(m, "geometry", lambda v: v.update(volume_offset=[5000.0, 0.0, 0.0])))
    _rewrite_metadata(d / "p.safetensors", d / "p_far_placement.safetensors",
                      lambda m: _edit_json_field(m, "placement", lambda v: v.update(origin_lps=[1e308, 0.0, 0.0])))

    # --- model files with bad configs
    save_model(d / "model.safetensors", DiCE(DiceConfig.tiny()), g)
    for name, value in {"abc": "abc", "neg": -4, "huge": 100000}.items():
        _rewrite_metadata(d / "model.safetensors", d / f"model_{name}.safetensors",
                          lambda m, v=value: _edit_json_field(m, "config", lambda c: c.update(base_channels=v)))
        (d / f"config_{name}.json").write_text(json.dumps({"preset": "tiny", "base_channels": value}))
    for name, field, value in (("card_list", "card", [1, 2]), ("views_text", "n_views", "six"),
                               ("geometry_text", "geometry", "fast")):   # metadata of the wrong types
        _rewrite_metadata(d / "model.safetensors", d / f"model_{name}.safetensors",
                          lambda m, f=field, v=value: {**m, f: json.dumps(v)})
    _rewrite_metadata(d / "model.safetensors", d / "model_dc_million.safetensors",   # a card asking for days
                      lambda m: {**m, "card": json.dumps({"inference": {"data_consistency": 10 ** 6}})})

    # --- training data of two geometries and one finished run
    from deepsparse_core.training import make_synthetic_cache, small_geometry

    make_synthetic_cache(d / "data", 2, small_geometry(16, 8, 12), seed=0)
    make_synthetic_cache(d / "data_other", 2, small_geometry(16, 16, 12), seed=0)
    import shutil

    shutil.copytree(d / "data", d / "data_nan_reference")  # one cache's ground truth holds a NaN
    first = sorted((d / "data_nan_reference").glob("*.safetensors"))[0]
    tensors = load_file(str(first))
    tensors["reference"][0, 0, 0] = float("nan")
    from safetensors import safe_open

    with safe_open(str(first), framework="pt") as f:
        meta = dict(f.metadata())
    save_file(tensors, str(first), metadata=meta)
    assert main(["--progress", "none", "train", "--stage", "scratch", "--data", str(d / "data"), "--out",
                 str(d / "run"), "--config", "tiny", "--views", "4", "--min-views", "2", "--max-views", "4",
                 "--points", "64", "--batch-size", "1", "--steps", "1", "--device", "cpu",
                 "--val-every", "0", "--bn-batches", "0"]) == 0
    return d


def _write_nifti_float(array: np.ndarray, path: Path) -> None:
    """A float32 NIfTI that really stores ``array`` (NaN included), written with nibabel."""
    import nibabel

    nibabel.save(nibabel.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), np.diag([12, 12, 12, 1.0])),
                 str(path))


def _copy_run(src: Path, dst: Path, edit_state=None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if edit_state is not None:
        state = json.loads((dst / "state.json").read_text())
        edit_state(state)
        (dst / "state.json").write_text(json.dumps(state))
    return dst


# ---------------------------------------------------------------------------- the cases
def _sim(ws, ct, out, *extra):
    return ["simulate", ct, "--views", "6", "--geometry", ws / "geometry.yaml", "--device", "cpu",
            "--out", out / "p.safetensors", *extra]


def _rec(ws, out, *extra, projections=None):
    return ["reconstruct", projections or ws / "p.safetensors", "--device", "cpu", "--out", out / "v.nii.gz",
            *extra]


def _prep(ws, source, out, *extra):
    return ["prepare", source, "--geometry", ws / "geometry.yaml", "--candidates", "4", "--no-noise",
            "--out", out / "train_data", *extra]


def _train(ws, out, *extra, run=None, data=None):
    return ["train", "--data", data or ws / "data", "--out", run or out / "run", "--config", "tiny", "--steps", "1",
            "--device", "cpu", "--points", "64", "--batch-size", "1", "--val-every", "0", *extra]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _touch(path: Path) -> Path:
    path.write_text("x")
    return path


def _locked_folder(folder: Path) -> Path:
    """A folder whose lock another process holds (released at the end of the test)."""
    from deepsparse_core.outputs import folder_lock

    folder.mkdir(parents=True, exist_ok=True)
    _LOCKS.append(folder_lock(folder, "busy"))
    _LOCKS[-1].__enter__()
    return folder


def _locked(out: Path):
    """A run folder whose lock another run holds (released at the end of the test)."""
    from deepsparse_core.training.checkpoint import run_lock

    _LOCKS.append(run_lock(out / "run"))
    _LOCKS[-1].__enter__()
    return out / "run"


_LOCKS: list = []

# id -> (argv builder (workspace, empty output folder) -> list, regular expression the error must match)
CASES = {
    # 1. truncated NIfTI, every reader
    "simulate-truncated-nii.gz": (lambda w, o: _sim(w, w / "half_ct.nii.gz", o), "truncated"),
    "simulate-truncated-nii": (lambda w, o: _sim(w, w / "half_ct.nii", o), "truncated"),
    "candidates-truncated": (lambda w, o: ["candidates", w / "half_ct.nii.gz", "--geometry", w / "geometry.yaml",
                                           "--count", "4", "--out", o / "c.safetensors"], "truncated"),
    "prepare-truncated": (lambda w, o: _prep(w, w / "half_ct.nii.gz", o), "truncated"),
    "evaluate-truncated": (lambda w, o: ["evaluate", "--reference", w / "half_ct.nii.gz", "--reconstruction",
                                         w / "ct.nii.gz", "--json", o / "s.json"], "truncated"),
    # 2. NaN voxels, every format
    "simulate-one-nan-nifti": (lambda w, o: _sim(w, w / "one_nan.nii.gz", o), "NaN"),
    "simulate-all-nan-nifti": (lambda w, o: _sim(w, w / "all_nan.nii.gz", o), "NaN"),
    "simulate-one-nan-nrrd": (lambda w, o: _sim(w, w / "one_nan.nrrd", o), "NaN"),
    "evaluate-all-nan-itself": (lambda w, o: ["evaluate", "--reference", w / "all_nan.nii.gz", "--reconstruction",
                                              w / "all_nan.nii.gz", "--json", o / "s.json"], "NaN"),
    # 3. resume with another geometry's data
    "train-resume-other-geometry": (lambda w, o: ["train", "--resume", "--out", _copy_run(w / "run", o / "run"),
                                                  "--data", w / "data_other", "--steps", "2", "--device", "cpu"],
                                    "another geometry"),
    # 4. output paths, every subcommand
    "simulate-out-is-folder": (lambda w, o: _sim(w, w / "ct.nii.gz", o)[:-1] + [_mkdir(o / "d.safetensors")],
                               "folder"),
    "simulate-out-below-file": (lambda w, o: _sim(w, w / "ct.nii.gz", o)[:-1] + [_touch(o / "f") / "p.safetensors"],
                                "not a folder"),
    "simulate-reference-out-is-folder": (lambda w, o: _sim(w, w / "ct.nii.gz", o, "--reference-out",
                                                           _mkdir(o / "gt.nii.gz")), "folder"),
    "candidates-out-is-folder": (lambda w, o: ["candidates", w / "ct.nii.gz", "--geometry", w / "geometry.yaml",
                                               "--count", "4", "--out", _mkdir(o / "c.safetensors")], "folder"),
    "reconstruct-out-is-folder": (lambda w, o: _rec(w, o)[:-1] + [_mkdir(o / "v.nii.gz")], "folder"),
    "reconstruct-out-missing-folder": (lambda w, o: _rec(w, o)[:-1] + [o / "missing" / "v.nii.gz"],
                                       "does not exist"),
    "evaluate-json-missing-folder": (lambda w, o: ["evaluate", "--reference", w / "ct.nii.gz", "--reconstruction",
                                                   w / "ct.nii.gz", "--json", o / "missing" / "s.json"],
                                     "does not exist"),
    "evaluate-json-is-folder": (lambda w, o: ["evaluate", "--reference", w / "ct.nii.gz", "--reconstruction",
                                              w / "ct.nii.gz", "--json", _mkdir(o / "s.json")], "folder"),
    "prepare-out-is-file": (lambda w, o: _prep(w, w / "ct.nii.gz", o)[:-1] + [_touch(o / "f")], "not a folder"),
    "prepare-bad-splits-before-work": (lambda w, o: _prep(w, w / "ct.nii.gz", o, "--splits", "0", "0", "0"),
                                       "split fractions"),
    "train-out-is-file": (lambda w, o: _train(w, o, "--stage", "scratch", run=_touch(o / "f")), "not a folder"),
    "geometry-out-is-folder": (lambda w, o: ["geometry", "--out", _mkdir(o / "g.yaml")], "folder"),
    "demo-out-is-file": (lambda w, o: ["demo", "--out", _touch(o / "f")], "not a folder"),
    "phantoms-out-is-file": (lambda w, o: ["phantoms", "--shape", "8", "--out", _touch(o / "f")], "not a folder"),
    # 5. prepare given something that is neither a CT, a folder nor a list file
    "prepare-binary-file": (lambda w, o: _prep(w, w / "binary.dat", o), "neither a CT file .* nor a list file"),
    # 6. non-numeric geometry values, in a geometry file and in a projections file
    "simulate-geometry-dso-abc": (lambda w, o: _sim(w, w / "ct.nii.gz", o, "--geometry", w / "dso_abc.yaml"), "dso"),
    "simulate-geometry-views-six": (lambda w, o: ["simulate", w / "ct.nii.gz", "--views", "6", "--geometry",
                                                  w / "views_six.yaml", "--out", o / "p.safetensors"], "n_views"),
    "reconstruct-projections-dso-abc": (lambda w, o: _rec(w, o, projections=w / "p_dso_abc.safetensors"), "dso"),
    "reconstruct-placement-without-direction": (lambda w, o: _rec(w, o, projections=w / "p_no_direction.safetensors"),
                                                "placement"),
    # 7. model config: --config JSON and model-file metadata
    **{f"train-config-base-channels-{k}": (lambda w, o, k=k: _train(w, o, "--stage", "scratch", "--config",
                                                                    w / f"config_{k}.json"), "base_channels")
       for k in ("abc", "neg", "huge")},
    **{f"reconstruct-model-base-channels-{k}": (lambda w, o, k=k: _rec(w, o, "--method", "dice", "--model",
                                                                       w / f"model_{k}.safetensors"), "base_channels")
       for k in ("abc", "neg", "huge")},
    # 8. sizes beyond the machine's memory
    "reconstruct-resolution-100000": (lambda w, o: _rec(w, o, "--resolution", "100000"), "memory"),
    "simulate-huge-detector": (lambda w, o: ["simulate", w / "ct.nii.gz", "--views", "6", "--geometry",
                                             w / "huge_detector.yaml", "--out", o / "p.safetensors"], "memory"),
    "simulate-huge-grid": (lambda w, o: ["simulate", w / "ct.nii.gz", "--views", "6", "--geometry",
                                         w / "huge_grid.yaml", "--out", o / "p.safetensors"], "memory"),
    "geometry-huge-views": (lambda w, o: ["geometry", "--views", "1000000000", "--out", o / "g.yaml"], "views"),
    # 9. training options, checked before any file is written
    "train-negative-views": (lambda w, o: _train(w, o, "--stage", "scratch", "--views", "-3"), "views"),
    "train-lr-nan": (lambda w, o: _train(w, o, "--stage", "scratch", "--lr", "nan"), "lr"),
    "train-lr-inf": (lambda w, o: _train(w, o, "--stage", "scratch", "--lr", "inf"), "lr"),
    "train-min-above-max-views": (lambda w, o: _train(w, o, "--stage", "pretrain", "--min-views", "8",
                                                      "--max-views", "4"), "min-views"),
    # 10. state.json naming an arbitrary numpy attribute as bit generator
    "train-resume-foreign-bit-generator": (
        lambda w, o: ["train", "--resume", "--steps", "2", "--device", "cpu", "--out",
                      _copy_run(w / "run", o / "run", lambda s: s["rng"]["numpy"][0].update(bit_generator="seed"))],
        "bit generator"),
    # sizes beyond memory, asked on the command line (issue 19, class 4): refused before any work
    "phantoms-shape-2000": (lambda w, o: ["phantoms", "--shape", "2000", "--count", "1", "--out", o / "ph"],
                            r"needs ~[\d.]+ GiB of memory, [\d.]+ GiB available"),
    "train-batch-100000": (lambda w, o: _train(w, o, "--stage", "scratch", "--views", "4", "--min-views", "2",
                                               "--max-views", "4", "--batch-size", "100000", "--points", "512"),
                         r"needs ~[\d.]+ GiB of memory"),
    "train-points-beyond-voxels": (lambda w, o: _train(w, o, "--stage", "scratch", "--views", "4", "--min-views", "2",
                                                       "--max-views", "4", "--points", "10000000"),
                                   "more than the .* voxels"),
    # damaged state.json fields (issue 19, class 3): one line saying the run state is damaged
    **{f"train-resume-state-{name}": (
        lambda w, o, edit=edit: ["train", "--resume", "--steps", "2", "--device", "cpu", "--out",
                                 _copy_run(w / "run", o / "run", edit)], f"run state is damaged: {field}")
       for name, field, edit in (
           ("float-step", "step", lambda st: st.update(step=1.5)),
           ("text-step", "step", lambda st: st.update(step="1")),
           ("unknown-stage", "stage", lambda st: st["stage"].update(name="warmup")),
           ("empty-rng", "rng", lambda st: st["rng"].update(numpy=[])),
           ("nan-elapsed", "elapsed_s", lambda st: st.update(elapsed_s=float("nan"))),
           ("list-config", "config", lambda st: st.update(config=[1, 2])),
           ("text-best-psnr", "best_val_psnr", lambda st: st.update(best_val_psnr="high")))},
    # 11. a second run into a folder another run holds
    "train-folder-locked": (lambda w, o: _train(w, o, "--stage", "scratch", run=_locked(o)), "another training run"),
    # 13. ITK's own messages stay off stderr
    "simulate-folder-without-dicom": (lambda w, o: _sim(w, _touch(_mkdir(o / "notes") / "readme.txt").parent, o),
                                      "holds no DICOM series"),
    "simulate-truncated-mha": (lambda w, o: _sim(w, w / "half_ct.mha", o), "cannot read|truncated"),
    # 14. a prepare that makes nothing leaves nothing (no manifest, no folder)
    "prepare-nothing-prepared": (lambda w, o: _prep(w, w / "half_ct.nii.gz", o), "no CT could be prepared"),
    # 15. values that were silently truncated or meaningless
    "simulate-fractional-volume-shape": (lambda w, o: ["simulate", w / "ct.nii.gz", "--views", "6", "--geometry",
                                                       w / "shape_frac.yaml", "--out", o / "p.safetensors"],
                                         "whole number"),
    "reconstruct-sart-zero-iterations": (lambda w, o: _rec(w, o, "--method", "sart", "--iterations", "0"),
                                         "iterations"),
    "demo-zero-iterations": (lambda w, o: ["demo", "--iterations", "0", "--out", o / "demo"], "iterations"),
    # the same kinds of values elsewhere
    "prepare-geometry-dso-abc": (lambda w, o: _prep(w, w / "ct.nii.gz", o, "--geometry", w / "dso_abc.yaml"), "dso"),
    "candidates-geometry-views-six": (lambda w, o: ["candidates", w / "ct.nii.gz", "--geometry", w / "views_six.yaml",
                                                    "--out", o / "c.safetensors"], "n_views"),
    "candidates-huge-grid": (lambda w, o: ["candidates", w / "ct.nii.gz", "--geometry", w / "huge_grid.yaml",
                                           "--count", "4", "--out", o / "c.safetensors"], "memory"),
    "geometry-fractional-volume-shape": (lambda w, o: ["geometry", "--geometry", w / "shape_frac.yaml", "--out",
                                                       o / "g.yaml"], "whole number"),
    "evaluate-json-below-file": (lambda w, o: ["evaluate", "--reference", w / "ct.nii.gz", "--reconstruction",
                                               w / "ct.nii.gz", "--json", _touch(o / "f") / "s.json"], "not a folder"),
    "train-init-model-base-channels-huge": (lambda w, o: _train(w, o, "--stage", "pretrain", "--init",
                                                                w / "model_huge.safetensors"), "base_channels"),
    "simulate-zero-views": (lambda w, o: _sim(w, w / "ct.nii.gz", o, "--views", "0"), "views"),
    "simulate-photons-nan": (lambda w, o: _sim(w, w / "ct.nii.gz", o, "--photons", "nan"), "photons"),
    "candidates-zero-count": (lambda w, o: ["candidates", w / "ct.nii.gz", "--geometry", w / "geometry.yaml",
                                            "--count", "0", "--out", o / "c.safetensors"], "views"),
    "reconstruct-negative-data-consistency": (lambda w, o: _rec(w, o, "--method", "dice", "--data-consistency", "-1"),
                                              "data-consistency"),
    "evaluate-window-reversed": (lambda w, o: ["evaluate", "--reference", w / "ct.nii.gz", "--reconstruction",
                                               w / "ct.nii.gz", "--window", "1000", "-1000"], "window"),
    "prepare-zero-candidates": (lambda w, o: _prep(w, w / "ct.nii.gz", o, "--candidates", "0"), "candidates"),
    "prepare-recipe-photons-text": (lambda w, o: ["prepare", "--recipe", _recipe(o, photons="many")], "photons"),
    # recipe fields of the wrong type name the field (issue 19, class 7)
    **{f"prepare-recipe-{name}": (lambda w, o, field=field, value=value: [
        "prepare", "--recipe", _recipe(o, **{field: value})], f"option '{field}' {why}")
       for name, field, value, why in (
           ("split-file-int", "split_file", 3, "must be a split file"),
           ("split-file-list", "split_file", ["a", "b"], "must be a split file"),
           ("device-int", "device", 0, "must be auto, cpu, cuda"),
           ("device-unknown", "device", "gpu", "must be auto, cpu, cuda"),
           ("out-list", "out", ["a", "b"], "must be a path"),
           ("noise-text", "noise", "yes", "must be true or false"),
           ("spacing-unit-cm", "spacing_unit", "cm", "must be mm or m"),
           ("splits-two", "splits", [0.9, 0.1], "must be three fractions"),
           ("input-number", "input", 5, "must be a folder"))},
    # 12. a second prepare into a folder another prepare holds (issue 19, class 8)
    "prepare-folder-locked": (lambda w, o: _prep(w, w / "ct.nii.gz", o)[:-1] + [_locked_folder(o / "train_data")],
                              "another prepare run is writing into"),
    # the shared options of every backend
    "reconstruct-fdk-cutoff-zero": (lambda w, o: _rec(w, o, "--method", "fdk", "--cutoff", "0"), "cutoff"),
    "reconstruct-rtk-cutoff-above-one": (lambda w, o: _rec(w, o, "--method", "fdk", "--backend", "rtk", "--cutoff", "1.5"),
                                         "cutoff"),
    "reconstruct-sart-relaxation-negative": (lambda w, o: _rec(w, o, "--method", "sart", "--relaxation", "-0.3"),
                                             "relaxation"),
    "reconstruct-resolution-two-sizes": (lambda w, o: _rec(w, o, "--resolution", "16", "16"), "resolution"),
    # issue 19, class 4: work that would run for days is refused at once
    "reconstruct-sart-1e8-iterations": (lambda w, o: _rec(w, o, "--method", "sart", "--iterations", "100000000"),
                                        "above the maximum of 10000 SART iterations"),
    "reconstruct-dc-1e6-passes": (lambda w, o: _rec(w, o, "--method", "dice", "--model", w / "model.safetensors",
                                                    "--data-consistency", "1000000"), "above the maximum of 200"),
    "reconstruct-card-asks-1e6-passes": (lambda w, o: _rec(w, o, "--method", "dice", "--model",
                                                           w / "model_dc_million.safetensors"),
                                         "recommends 1000000 data-consistency passes, above the maximum 200"),
    # an error after the checks leaves no empty output folder (issue 19, class 8)
    "demo-unknown-sample": (lambda w, o: ["demo", "--sample", "nosuch", "--out", o / "demo"], "unknown sample"),
    "demo-1e8-iterations": (lambda w, o: ["demo", "--iterations", "100000000", "--out", o / "demo"], "maximum"),
    # issue 19, classes 3 and 8: model metadata of the wrong types, bundle arguments
    **{f"reconstruct-model-{name}": (lambda w, o, name=name: _rec(w, o, "--method", "dice", "--model",
                                                                   w / f"model_{name}.safetensors"),
                                     f"corrupt metadata: {field}")
       for name, field in (("card_list", "card"), ("views_text", "n_views"), ("geometry_text", "geometry"))},
    "bundle-views-zero": (lambda w, o: ["bundle", w / "model.safetensors", "--held-out", w / "data", "--views", "0",
                                        "--out", o / "m.safetensors"], "--views must be >= 1"),
    "bundle-card-list": (lambda w, o: ["bundle", w / "model_card_list.safetensors", "--held-out", w / "data",
                                       "--out", o / "m.safetensors"], "corrupt metadata: card"),
    # issue 19, class 7: meaningless training values, refused before the run folder exists
    **{f"train-{flag.strip('-')}-{value}": (lambda w, o, flag=flag, value=value: _train(
        w, o, "--stage", "scratch", "--schedule", "cosine", flag, value), match)
       for flag, value, match in (("--lr", "-1", "lr must be > 0"), ("--lr", "1e6", "far above"),
                                  ("--min-lr", "1", "--min-lr must be in"), ("--warmup-steps", "-5", "--warmup-steps"),
                                  ("--lambda-q", "-0.1", "--lambda-q"),
                                  ("--lambda-q", "1e9", "--lambda-q"), ("--edge-fraction", "1.5", "--edge-fraction"),
                                  ("--val-volumes", "-1", "--val-volumes"), ("--seed", "-3", "--seed"),
                                  ("--seed", str(2 ** 64), "--seed"), ("--steps", "0", "--steps must be >= 1"))},
    # 2. degenerate scans
    "simulate-arc-0": (lambda w, o: _sim(w, w / "ct.nii.gz", o, "--arc", "0"), "same angle"),
    "reconstruct-grid-out-of-beam": (lambda w, o: _rec(w, o, projections=w / "p_out_of_beam.safetensors"),
                                     "outside the X-ray beam"),
    "reconstruct-placement-1e308": (lambda w, o: _rec(w, o, projections=w / "p_far_placement.safetensors"),
                                    "corrupt placement.*beyond"),
    "train-nan-reference": (lambda w, o: _train(w, o, "--stage", "scratch", "--views", "4", "--min-views", "2",
                                                "--max-views", "4", data=w / "data_nan_reference"), "NaN"),
    **{f"{cmd}-seed-2^64": (lambda w, o, cmd=cmd: {
        "simulate": lambda: _sim(w, w / "ct.nii.gz", o, "--seed", str(2 ** 64)),
        "phantoms": lambda: ["phantoms", "--shape", "8", "--seed", str(2 ** 64), "--out", o / "ph"],
        "candidates": lambda: ["candidates", w / "ct.nii.gz", "--geometry", w / "geometry.yaml", "--count", "4",
                               "--seed", "-1", "--out", o / "c.safetensors"]}[cmd](), "--seed must be in")
       for cmd in ("simulate", "phantoms", "candidates")},
}


def _recipe(folder: Path, **options) -> Path:
    import yaml

    path = folder.parent / f"recipe-{folder.name}.yaml"
    path.write_text(yaml.safe_dump({"prepare": {"input": str(folder.parent), "out": str(folder / "prep"), **options}}))
    return path


def _listing(folder: Path) -> dict[str, int]:
    """Every file and folder below ``folder`` with its size (folders: -1)."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in folder.rglob("*")}


def assert_one_line_error(rc: int, err: str, match: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert lines and lines[-1].startswith("error: "), err
    assert all(line.startswith("warning: ") for line in lines[:-1]), err
    assert re.search(match, lines[-1]), lines[-1]
    return lines[-1]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(case, ws, tmp_path, capfd):
    build, match = CASES[case]
    out = _mkdir(tmp_path / "out")
    try:
        argv = [str(a) for a in build(ws, out)]
        before = _listing(out)
        capfd.readouterr()
        rc = main(argv)
        captured = capfd.readouterr()  # file-descriptor level: ITK's own lines would show here
        after = _listing(out)
    finally:
        while _LOCKS:
            _LOCKS.pop().__exit__(None, None, None)
    assert_one_line_error(rc, captured.err, match)
    assert after == before, f"left in the output folder: {sorted(after.items() - before.items())}"


def _writing_into(command: str, ws, folder) -> list:
    """The command line of ``command`` with its output in ``folder``."""
    return {"simulate": lambda: _sim(ws, ws / "ct.nii.gz", folder),
            "reconstruct": lambda: _rec(ws, folder),
            "evaluate": lambda: ["evaluate", "--reference", ws / "ct.nii.gz", "--reconstruction", ws / "ct.nii.gz",
                                 "--json", folder / "s.json"],
            "prepare": lambda: _prep(ws, ws / "ct.nii.gz", folder),
            "train": lambda: _train(ws, folder, "--stage", "scratch")}[command]()


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["simulate", "reconstruct", "evaluate", "prepare", "train"])
def test_read_only_output_folder(command, ws, tmp_path, capfd):
    ro = _mkdir(tmp_path / "ro")
    argv = _writing_into(command, ws, ro)
    ro.chmod(0o555)
    try:
        rc = main([str(a) for a in argv])
        assert_one_line_error(rc, capfd.readouterr().err, "not writable")
        assert not any(ro.iterdir())
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("command", ["simulate", "reconstruct", "evaluate", "prepare", "train"])
def test_unwritable_output_folder_is_refused_before_work(command, ws, tmp_path, capfd, monkeypatch):
    """The same refusal where the tests run as root (which writes anywhere): the folder reports no write access."""
    from deepsparse_core import outputs

    ro = _mkdir(tmp_path / "ro")
    argv = _writing_into(command, ws, ro)
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: Path(p) != ro and real_access(p, mode))
    rc = main([str(a) for a in argv])
    assert_one_line_error(rc, capfd.readouterr().err, "not writable")
    assert not any(ro.iterdir())


# ---------------------------------------------------------------------------- not refusals, but part of the issue
def _strict_loads(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_prepare_accepts_a_single_ct_file(ws, tmp_path, capsys):
    assert main([str(a) for a in _prep(ws, ws / "ct.nii.gz", tmp_path, "--splits", "1", "0", "0")]) == 0
    manifest = json.loads((tmp_path / "train_data" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["cts_prepared"] == 1


def test_evaluate_json_is_strict_for_identical_volumes(ws, tmp_path, capsys):
    assert main(["evaluate", "--reference", str(ws / "ct.nii.gz"), "--reconstruction", str(ws / "ct.nii.gz"),
                 "--json", str(tmp_path / "s.json")]) == 0
    scores = _strict_loads((tmp_path / "s.json").read_text())
    assert scores["psnr"] is None  # infinite PSNR: null in strict JSON
    assert math.isclose(scores["ssim"], 1.0, abs_tol=1e-6)


def test_json_progress_stdout_is_json_lines_only(ws, tmp_path, capsys):
    assert main(["--progress", "json", "evaluate", "--reference", str(ws / "ct.nii.gz"), "--reconstruction",
                 str(ws / "ct.nii.gz")]) == 0
    assert main(["--progress", "json", "reconstruct", str(ws / "p.safetensors"), "--method", "sart",
                 "--iterations", "2", "--device", "cpu", "--out", str(tmp_path / "v.nii.gz")]) == 0
    out = capsys.readouterr().out
    events = [_strict_loads(line) for line in out.splitlines()]  # every line is strict JSON
    assert [e["event"] for e in events].count("result") == 2
    assert any(e["event"] == "result" and e.get("psnr", 0) is None for e in events)


def test_json_progress_failure_emits_an_error_event(ws, tmp_path, capsys):
    assert main(["--progress", "json", "simulate", str(ws / "half_ct.nii.gz"), "--views", "6",
                 "--out", str(tmp_path / "p.safetensors")]) == 2
    captured = capsys.readouterr()
    events = [_strict_loads(line) for line in captured.out.splitlines()]
    assert events and events[-1]["event"] == "error" and "truncated" in events[-1]["message"]
    assert captured.err.strip().startswith("error: ")


def test_json_progress_internal_error_still_emits_an_error_event(monkeypatch, capsys):
    """A bug (not bad input) keeps its traceback, but a JSON reader still gets an error event."""
    import deepsparse_core.cli as cli

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_geometry", broken)
    with pytest.raises(RuntimeError):
        main(["--progress", "json", "geometry"])
    events = [_strict_loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "error" and "RuntimeError: a bug" in events[-1]["message"]


def _subparser(name: str):
    from deepsparse_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    return sub.choices[name]


ALL_COMMANDS = ["samples", "simulate", "reconstruct", "evaluate", "demo", "candidates", "phantoms", "prepare",
                "import", "export", "train", "bundle", "benchmark-quality", "geometry"]


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_option_has_help_and_defaults_are_said_once(command, capsys):
    """Issue 17: every option and positional has help, every command a description, no reST markup,
    --device worded and defaulted (auto) the same everywhere."""
    parser = _subparser(command)
    bare = [a.option_strings[-1] if a.option_strings else a.dest for a in parser._actions
            if a.dest != "help" and not a.help]
    assert not bare, f"{command}: options without help: {bare}"
    assert parser.description, f"{command} has no description"
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert not re.search(r"\(default[^)]*\)\s*\(default", text)  # "(default 2) (default: 2)"
    assert "``" not in text and not re.search(r":(func|class|mod|data|meth):`", text)
    device = [a for a in parser._actions if "--device" in a.option_strings]
    if device:
        from deepsparse_core.arguments import DEVICE_HELP

        assert device[0].help == DEVICE_HELP and device[0].default in ("auto", None)


def test_reconstruct_help_names_the_default_method(capsys):
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    assert re.search(r"default:\s+dice\s+when\s+a\s+bundled\s+model\s+serves", capsys.readouterr().out)


def test_sample_sdist_is_pinned_and_never_built(tmp_path, monkeypatch):
    """The pyradiomics sdist is downloaded as a file, hash-checked before it is opened; pip is not run."""
    import io
    import tarfile

    from deepsparse_core.data import samples
    from deepsparse_core.errors import DeepSparseError

    member = "pkg-1.0/data/ct.nrrd"
    payload = b"not really a CT, but pinned"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
        setup = tarfile.TarInfo("pkg-1.0/setup.py")
        code = b"raise SystemExit('build code ran')"
        setup.size = len(code)
        t.addfile(setup, io.BytesIO(code))
    archive = buf.getvalue()
    import hashlib

    sha = hashlib.sha256(archive).hexdigest()
    sample = samples.Sample("fake", "test", "pkg", "1.0", "sdist",
                            {"image": samples.SampleFile(member, hashlib.sha256(payload).hexdigest(), len(payload))},
                            "MIT")
    monkeypatch.setenv("DEEPSPARSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(samples.SAMPLES, "fake", sample)
    monkeypatch.setattr(samples.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run for an sdist"))
    index = {"files": [{"filename": "pkg-1.0.tar.gz", "hashes": {"sha256": sha},
                        "url": "https://files.example/pkg-1.0.tar.gz"}]}

    def urlopen(request, timeout=None):
        url = request if isinstance(request, str) else request.full_url
        return io.BytesIO(json.dumps(index).encode() if url.endswith("/pkg/") else archive)

    monkeypatch.setattr(samples.urllib.request, "urlopen", urlopen)
    monkeypatch.setitem(samples.SDISTS, ("pkg", "1.0"), ("pkg-1.0.tar.gz", "0" * 64, len(archive)))
    with pytest.raises(DeepSparseError, match="SHA-256"):
        samples.fetch_sample("fake")
    assert not (tmp_path / "cache" / "samples" / "fake").exists() or not any((tmp_path / "cache" / "samples" / "fake").iterdir())
    index["files"][0]["hashes"]["sha256"] = "0" * 64  # the index agrees with the pin, the bytes do not
    with pytest.raises(DeepSparseError, match="pinned SHA-256"):
        samples.fetch_sample("fake")
    monkeypatch.setitem(samples.SDISTS, ("pkg", "1.0"), ("pkg-1.0.tar.gz", sha, len(archive)))
    index["files"][0]["hashes"]["sha256"] = sha
    path = samples.fetch_sample("fake")
    assert path.read_bytes() == payload
    assert not list((tmp_path / "cache").glob("**/*.tar.gz"))  # the archive is not kept


# ---------------------------------------------------------------------------- issue 19, class 1: no input destroyed
def _copies(ws, o: Path) -> dict:
    """Private copies of the inputs (a case may point an output at them), plus links to them."""
    import shutil

    files = {name: o / name for name in ("ct.nii.gz", "p.safetensors", "geometry.yaml", "model.safetensors")}
    for name, path in files.items():
        shutil.copy(ws / name, path)
    os.link(files["ct.nii.gz"], o / "ct_hardlink.nii.gz")
    os.symlink(files["ct.nii.gz"], o / "ct_symlink.nii.gz")
    return files


DESTROYING = {
    # an output naming an input: directly, through a hard link, through a symbolic link
    "simulate-reference-out-is-the-ct": (lambda w, o: _sim(w, o / "ct.nii.gz", o, "--reference-out", o / "ct.nii.gz"),
                                         "is the input --ct"),
    "simulate-reference-out-hard-link-to-ct": (lambda w, o: _sim(w, o / "ct.nii.gz", o, "--reference-out",
                                                                 o / "ct_hardlink.nii.gz"), "is the input --ct"),
    "simulate-out-is-the-geometry": (lambda w, o: ["simulate", o / "ct.nii.gz", "--views", "6", "--geometry", o / "geometry.yaml",
                                                   "--out", o / "geometry.yaml"], "is the input --geometry"),
    "evaluate-json-is-the-reference": (lambda w, o: ["evaluate", "--reference", o / "ct.nii.gz", "--reconstruction",
                                                     o / "ct.nii.gz", "--json", o / "ct.nii.gz"],
                                       "is an existing volume or model file"),
    "evaluate-json-symlink-to-reference": (lambda w, o: ["evaluate", "--reference", o / "ct.nii.gz",
                                                         "--reconstruction", o / "ct.nii.gz", "--json",
                                                         o / "ct_symlink.nii.gz"], "symbolic link"),
    "reconstruct-out-is-the-ct-elsewhere-linked": (lambda w, o: ["reconstruct", o / "p.safetensors", "--device", "cpu",
                                                                 "--out", o / "ct_symlink.nii.gz"], "symbolic link"),
    "geometry-out-is-a-volume": (lambda w, o: ["geometry", "--out", o / "ct.nii.gz"], "yaml"),
    "geometry-out-is-its-input": (lambda w, o: ["geometry", "--geometry", o / "geometry.yaml", "--out",
                                                o / "geometry.yaml"], "is the input --geometry"),
    "bundle-out-is-a-volume-name": (lambda w, o: ["bundle", o / "model.safetensors", "--held-out", o,
                                                  "--out", o / "x.nii.gz"], "safetensors"),
    "bundle-markdown-is-the-model": (lambda w, o: ["bundle", o / "model.safetensors", "--held-out", o,
                                                   "--markdown", o / "model.safetensors", "--out",
                                                   o / "new.safetensors"], "is an existing volume or model file"),
    "bundle-out-is-the-model": (lambda w, o: ["bundle", o / "model.safetensors", "--held-out", o,
                                              "--out", o / "model.safetensors"], "is the input --model"),
    # a folder given through a symbolic link is written into, never replaced: no refusal (see below)
    # outputs that are not regular files: a rename would replace the device or the pipe
    "evaluate-json-character-device": (lambda w, o: ["evaluate", "--reference", o / "ct.nii.gz", "--reconstruction",
                                                     o / "ct.nii.gz", "--json", _null_device(o / "null")],
                                       "not a regular file"),
    "evaluate-json-fifo": (lambda w, o: ["evaluate", "--reference", o / "ct.nii.gz", "--reconstruction",
                                         o / "ct.nii.gz", "--json", _fifo(o / "pipe.json")], "not a regular file"),
    "simulate-two-outputs-one-file": (lambda w, o: _sim(w, o / "ct.nii.gz", o)[:-1] + [
        o / "p2.safetensors", "--reference-out", o / "p2.safetensors"], "name the same file"),
}


def _null_device(path: Path) -> Path:
    """A private copy of /dev/null's device node (a regression must not replace the real one)."""
    import stat

    if not ROOT:
        pytest.skip("making a device node needs root")
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("case", list(DESTROYING))
def test_no_input_is_ever_destroyed(case, ws, tmp_path, capfd):
    """Issue 19, class 1: exit 2, one line, and every input and pre-existing file byte-identical
    (hashes before and after), nothing new, links and special files still what they were."""
    import stat

    build, match = DESTROYING[case]
    out = _mkdir(tmp_path / "out")
    _copies(ws, out)
    argv = [str(a) for a in build(ws, out)]
    regular = [p for p in out.iterdir() if p.is_file() and not p.is_symlink() and stat.S_ISREG(p.stat().st_mode)]
    hashes = {p: sha256_file(p) for p in regular}
    before = _listing(out)
    capfd.readouterr()
    rc = main(argv)
    err = capfd.readouterr().err
    assert_one_line_error(rc, err, match)
    assert {p: sha256_file(p) for p in regular} == hashes
    assert _listing(out) == before
    assert (out / "ct_symlink.nii.gz").is_symlink()
    assert all(stat.S_ISCHR(os.lstat(p).st_mode) for p in out.glob("null"))
    assert all(stat.S_ISFIFO(os.lstat(p).st_mode) for p in out.glob("pipe.json"))


@pytest.mark.parametrize("ext", [".nii.gz", ".json"])
def test_a_long_valid_output_name_is_written(ws, tmp_path, ext, capsys):
    """Issue 19, class 6: a 250-byte name is valid on Linux (255-byte limit); the temporary file of
    the atomic write must not push it over."""
    name = "v" * (250 - len(ext)) + ext
    if ext == ".json":
        argv = ["evaluate", "--reference", ws / "ct.nii.gz", "--reconstruction", ws / "ct.nii.gz",
                "--json", tmp_path / name]
    else:
        argv = _rec(ws, tmp_path)[:-1] + [tmp_path / name]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [name]


def _limited(argv, limit_bytes: int, progress: str = "none"):
    """The CLI in a child process whose files may not grow beyond ``limit_bytes`` (``ulimit -f``)."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "deepsparse_core", "--progress", progress, *map(str, argv)],
                          capture_output=True, text=True, preexec_fn=limit, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.nrrd", "v.mha", "p.safetensors"])
def test_a_full_disk_keeps_the_existing_output_and_says_so(ws, tmp_path, name):
    """Issue 19, class 5: a write cut short by the file-size limit (as by a full disk) is one error
    line, exit 2; the existing target is left intact and no temporary file remains. (ITK's writers
    do not report it: the written file is read back and compared.)"""
    out = tmp_path / name
    if name.endswith(".safetensors"):
        argv = ["simulate", ws / "ct.nii.gz", "--views", "40", "--preset", "fast", "--device", "cpu", "--out", out]
    else:
        argv = ["reconstruct", ws / "p.safetensors", "--method", "fdk", "--resolution", "64", "--device", "cpu",
                "--out", out]
    out.write_bytes(b"a good earlier result" * 1000)
    before = sha256_file(out)
    run = _limited(argv, 16 * 1024)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and len(lines) == 1 and "Traceback" not in run.stderr, lines
    assert sha256_file(out) == before and [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("progress", ["none", "json"])
def test_phantoms_on_a_full_disk_leave_nothing_and_a_rerun_makes_them(tmp_path, progress):
    """Issue 19, class 5: phantoms on a full disk exited 0 and left broken files that a rerun
    skipped. Now: exit 2, one line (and one JSON error event), no file and no folder it made; a
    rerun with room writes every phantom."""
    out = tmp_path / "ph"
    argv = ["phantoms", "--kinds", "chest", "head", "--shape", "48", "--out", out]
    run = _limited(argv, 16 * 1024, progress)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cannot write" in lines[0], lines
    if progress == "json":
        events = [json.loads(line) for line in run.stdout.splitlines()]
        assert events[-1]["event"] == "error" and "cannot write" in events[-1]["message"]
    assert not out.exists()
    assert main(["--progress", "none", *map(str, argv)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["chest-0000.nii.gz", "head-0000.nii.gz"]


def test_an_output_folder_through_a_symbolic_link_is_used(ws, tmp_path):
    """Folders are written into, never renamed onto: a linked --out folder is fine."""
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "linked")
    assert main(["--progress", "none", "phantoms", "--kinds", "chest", "--shape", "8", "--out",
                 str(tmp_path / "linked")]) == 0
    assert [p.name for p in (tmp_path / "real").iterdir()] == ["chest-0000.nii.gz"]


@pytest.mark.parametrize("method", ["fdk", "sart"])
def test_rtk_backend_without_itk_rtk_says_so(ws, tmp_path, monkeypatch, capsys, method):
    """Issue 19, class 6: --backend rtk never falls back silently when itk-rtk is missing."""
    import sys

    monkeypatch.setitem(sys.modules, "itk", None)  # import itk -> ImportError, as without itk-rtk
    rc = main([str(a) for a in _rec(ws, tmp_path, "--method", method, "--backend", "rtk")])
    assert_one_line_error(rc, capsys.readouterr().err, "needs the itk-rtk package")
    assert not (tmp_path / "v.nii.gz").exists()


@pytest.mark.parametrize("command", ["simulate", "reconstruct", "evaluate"])
def test_a_pipe_given_as_input_is_refused_at_once(ws, tmp_path, capsys, command):
    """Issue 19, class 4: a FIFO (or a device) as input would block the read forever."""
    pipe = tmp_path / "input.nii.gz"
    os.mkfifo(pipe)
    argv = {"simulate": lambda: _sim(ws, pipe, tmp_path),
            "reconstruct": lambda: _rec(ws, tmp_path, projections=pipe),
            "evaluate": lambda: ["evaluate", "--reference", pipe, "--reconstruction", ws / "ct.nii.gz"]}[command]()
    rc = main([str(a) for a in argv])
    assert_one_line_error(rc, capsys.readouterr().err, "is not a regular file")


def test_the_command_line_and_the_engine_share_one_data_consistency_maximum():
    from deepsparse_core import cli, inference, reconstruct

    assert inference.MAX_DATA_CONSISTENCY is reconstruct.MAX_DATA_CONSISTENCY == 200
    assert not hasattr(cli, "MAX_DATA_CONSISTENCY_CLI")  # no copy of it in the command line


@pytest.mark.parametrize("argv", [["reconstruct", "p.safetensors", "--out", "v.nii.gz", "--iterations", "abc"],
                                  ["no-such-command"], ["simulate", "ct.nii.gz"]])
def test_json_mode_reports_command_line_errors_as_json(argv, capsys):
    """Issue 19, class 8: under --progress json an argparse error is one JSON error event on stdout
    (and one error line on stderr), not usage text; without it argparse's usage stays."""
    assert main(["--progress", "json", *argv]) == 2
    out, err = capsys.readouterr()
    events = [_strict_loads(line) for line in out.splitlines()]
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["message"]
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: ") and "error: " in err


def test_resume_removes_the_temporaries_of_a_killed_checkpoint(ws, tmp_path, capsys):
    """Issue 19, class 8: a SIGKILL while a checkpoint was written left ``.<file>.pending`` files
    that --resume never removed. The previous checkpoint is intact (state.json is renamed last)."""
    run = _copy_run(ws / "run", tmp_path / "run")
    for name in ("model.safetensors", "state.json"):
        (run / f".{name}.pending").write_bytes(b"half a checkpoint")
    assert main(["--progress", "none", "train", "--resume", "--steps", "2", "--device", "cpu", "--out", str(run)]) == 0, \
        capsys.readouterr().err
    assert not list(run.glob(".*.pending"))
    assert json.loads((run / "state.json").read_text())["step"] == 2
