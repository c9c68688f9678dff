"""``deepsparse prepare``: a folder (or list file) of CTs -> a training folder of candidate caches.

For each CT (NIfTI, NRRD, MHA/MHD, MRC files and DICOM series folders, found recursively): the
paper's preprocessing for the geometry (:func:`~deepsparse_core.data.preprocess.preprocess_ct`), each
sub-volume piece of a long scan in its own cache ``<stem>-p<k>.safetensors`` with ``--candidates``
(paper: 200) float16 projections and the noise model, seeded per piece. ``--augment K`` adds K
seeded variants per CT (:func:`~deepsparse_core.data.augment.augment_ct`), ``<stem>-a<j>-p<k>``.
``--labels FOLDER`` centres each CT's grid on its label map's foreground bounding box instead (one
piece per CT; the DeepSparse authors' crop for PANORAMA and PENGWIN).

The output folder is what ``deepsparse train --data`` reads: the caches, ``train.txt``/``val.txt``/
``test.txt`` (all pieces and variants of one CT in the same split, so a held-out CT never leaks)
and ``manifest.json`` (settings, counts, per file: source, piece, shape, sha256, split, bytes; the
``failed`` inputs with a one-line reason). The manifest is rewritten (atomically) after every
finished CT, so an interrupted run resumes: a CT whose caches are listed with the same settings
and whose files still match their checksums is skipped.

Options can come from a recipe (``--recipe FILE``, YAML with a ``prepare:`` mapping; see
``docs/recipes/``); options given on the command line win.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

from ..arguments import add_device_argument
from ..atomic import sha256_file, write_text
from ..errors import InputError
from ..outputs import check_output_folder, folder_lock
from ..progress import emit, progress, say
from .splits import SPLITS, assign, check_fractions, write_split_lists

CT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".mrc")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "deepsparse-prepare/1"
DEFAULTS = {"preset": "fast", "geometry": None, "candidates": 200, "noise": True, "photons": 1e5,
            "electronic_sigma": 10.0, "splits": [0.8, 0.1, 0.1], "split_file": None, "seed": 0,
            "workers": 1, "device": "auto", "augment": 0, "out": None, "input": None, "labels": None,
            "spacing_unit": "mm"}
SPACING_UNITS = {"mm": 1.0, "m": 1000.0}  # mm per unit of a file's spacing and origin


# ---------------------------------------------------------------------------- finding the CTs
def _is_dicom_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file()]
    return any(p.suffix.lower() == ".dcm" for p in files) or any(_has_dicm_magic(p) for p in files[:3])


def _has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _ct_suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in CT_SUFFIXES if name.endswith(s)), None)


def find_cts(source: str | Path) -> list[Path]:
    """CT inputs of ``source``: a folder (searched recursively: CT files and DICOM series folders)
    or a list file (one path per line, relative to the list file's folder; ``#`` comments)."""
    source = Path(source)
    if source.is_file() and _ct_suffix(source):  # a single CT file
        return [source]
    if source.is_file():
        try:
            lines = source.read_text().splitlines()
        except (UnicodeDecodeError, OSError):
            raise InputError(f"{source} is neither a CT file ({', '.join(CT_SUFFIXES)}) nor a list file "
                             "of CT paths; give a folder of CTs, a list file or one CT") from None
        paths = []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                p = Path(line).expanduser()
                paths.append(p if p.is_absolute() else source.parent / p)
        if not paths:
            raise InputError(f"list file {source} names no CT")
        return paths
    if not source.is_dir():
        raise InputError(f"input not found: {source} (give a folder of CTs or a list file)")
    if _is_dicom_folder(source):
        return [source]
    found = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        if folder != source and _is_dicom_folder(folder):
            found.append(folder)
            continue
        for name in sorted(filenames):
            if not name.startswith(".") and (_ct_suffix(Path(name)) or _is_image_like(Path(name))):
                found.append(folder / name)
    if not found:
        raise InputError(f"no CT files ({', '.join(CT_SUFFIXES)} or DICOM folders) in {source}")
    return found


def _is_image_like(path: Path) -> bool:
    """Image files that are not 3D CT formats (2D pictures, Analyze): offered to the reader so
    they are reported as failures instead of silently ignored."""
    return path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".img", ".hdr")


def ct_name(path: Path) -> str:
    """File name without its CT suffix (``a/b/ct01.nii.gz`` -> ``ct01``); a DICOM folder's name."""
    suffix = _ct_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name  # (a LUNA16 UID's dots are no suffix)


def _unique_names(paths: list[Path]) -> list[str]:
    """Cache stems: the CT name, prefixed with as many parent folder names as needed where names
    collide (``BDMAP_00000001/ct.nii.gz`` -> ``BDMAP_00000001_ct``)."""
    def name(p: Path, depth: int) -> str:
        parts = [*p.resolve().parent.parts[1:]][-depth:] if depth else []
        return "_".join([*parts, ct_name(p)])

    depth = [0] * len(paths)
    names = [name(p, 0) for p in paths]
    for _ in range(64):
        clashes = [i for i, n in enumerate(names) if names.count(n) > 1]
        if not clashes:
            break
        for i in clashes:
            depth[i] += 1
            names[i] = name(paths[i], depth[i])
    if len(set(names)) != len(names):
        raise InputError(f"inputs listed twice: {sorted({n for n in names if names.count(n) > 1})[:3]}")
    return ["".join(c if c.isalnum() or c in "-_." else "_" for c in n) for n in names]


# ---------------------------------------------------------------------------- one CT
def _seed(*parts) -> int:
    """A 63-bit seed from a run seed and names (stable across runs and processes)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1



def _prepare_unit(job: dict) -> dict:
    """Preprocess one CT (or one augmented variant of it) and write a cache per piece.

    Returns ``{"unit", "files": {name: entry}}`` or ``{"unit", "error": one line}``; never raises
    for a bad input (the pool must carry on).
    """
    import torch

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    marker = Path(job["inflight"]) / f"{INFLIGHT}{job['unit']}" if job.get("inflight") else None
    if marker is not None:
        marker.write_text(job["source"])
    try:
        return _prepare_unit_work(job)
    finally:  # a killed process never gets here: its marker names the unit it held
        if marker is not None:
            marker.unlink(missing_ok=True)


def _prepare_unit_work(job: dict) -> dict:
    from ..physics.geometry import Geometry
    from ..physics.noise import NoiseModel
    from .candidates import write_cache
    from .simulate import simulate_pieces
    from .volume_io import read_volume

    geometry = Geometry.from_dict(job["geometry"])
    noise = NoiseModel.from_dict(job["noise"])
    out = Path(job["out"])
    name_of = lambda piece: f"{job['unit']}-p{piece}.safetensors"  # noqa: E731
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scale = job.get("spacing_scale", 1.0)
            ct = read_volume(job["source"], spacing_scale=scale)
            if job["variant"]:
                from .augment import augment_ct

                ct = augment_ct(ct, np.random.default_rng(_seed(job["seed"], job["name"], "augment",
                                                                 job["variant"])))
            roi = None
            if job.get("labels"):
                if not job["label"]:
                    raise InputError(f"no label map for {Path(job['source']).name} in {job['labels']}")
                from .preprocess import label_centre_lps

                roi = label_centre_lps(read_volume(job["label"], check_hu=False, allow_constant=True,
                                                   spacing_scale=scale))
                if roi is None:
                    warnings.warn(f"{Path(job['label']).name} has no foreground: the grid is centred on the scan")
            pieces = simulate_pieces(ct, geometry, noise, lambda k: _seed(job["seed"], name_of(k)), job["device"],
                                     roi)
            files = {}
            for data in pieces:
                p = data.placement
                path = write_cache(out / name_of(p.piece), data)
                files[path.name] = {"source": job["source"], "ct": job["name"], "variant": job["variant"],
                                    "piece": p.piece, "n_pieces": p.n_pieces,
                                    "shape": list(data.reference.shape), "sha256": sha256_file(path),
                                    "bytes": path.stat().st_size}
        notes = sorted({str(w.message).splitlines()[0] for w in caught})
        for entry in files.values():
            entry.update({"warnings": notes} if notes else {})
        return {"unit": job["unit"], "files": files, "warnings": notes}
    except Exception as e:  # noqa: BLE001 (any bad input is reported and skipped, never fatal)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return {"unit": job["unit"], "error": reason}


# ---------------------------------------------------------------------------- splits
def read_split_file(path: str | Path) -> dict[str, str]:
    """``{entry: split}`` from lines ``train|val|test<TAB or spaces>name`` (``#`` comments).

    A name may be the cache name, the CT name, its file name or a path (``FL/140478.mhd``); it is
    matched by :func:`split_lookup`. Keys are :func:`split_key` of the name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split file not found: {path}")
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or parts[0] not in SPLITS:
            raise InputError(f"{path}:{number}: expected 'train|val|test<TAB>name', got {line!r}")
        table[split_key(parts[1].strip())] = parts[0]
    return table


def split_key(name: str) -> str:
    """A split-file name as a table key: its path parts joined by ``/``, the CT suffix dropped
    (``FL/140478.mhd`` -> ``FL/140478``; ``/data/a.nii.gz`` -> ``data/a``)."""
    p = Path(name)
    parts = list(p.parts[1:] if p.is_absolute() else p.parts)
    return "/".join([*parts[:-1], ct_name(p)])


def split_lookup(table: dict[str, str], name: str, path: Path | None = None) -> str | None:
    """The split of the CT cached as ``name`` (source ``path``): the entry of its cache name; else
    of the longest tail of its path (``FL/140478`` for ``.../knee/FL/140478.mhd``, so one file name
    in two folders can sit in two splits); else of its file name alone, where every entry of that
    file name agrees. None when the table does not list it."""
    if name in table:
        return table[name]
    if path is None:
        return None
    parts = [*Path(os.path.abspath(path)).parent.parts[1:], ct_name(path)]
    for k in range(len(parts), 1, -1):
        split = table.get("/".join(parts[-k:]))
        if split:
            return split
    stem = parts[-1]
    agreed = {v for key, v in table.items() if key.rsplit("/", 1)[-1] == stem}
    return agreed.pop() if len(agreed) == 1 else None


def assign_splits(names: list[str], fractions=(0.8, 0.1, 0.1), seed: int = 0,
                  table: dict[str, str] | None = None, paths: dict[str, Path] | None = None) -> dict[str, str]:
    """``{ct name: split}``: from ``table`` (:func:`split_lookup`, with ``paths`` the source of
    each name; names missing there go to train, with a warning) or seeded by ``fractions`` over
    whole CTs (:func:`~deepsparse_core.data.splits.assign`)."""
    names = sorted(names)
    if table is None:
        return assign(names, fractions, seed)
    found = {n: split_lookup(table, n, (paths or {}).get(n)) for n in names}
    missing = [n for n in names if found[n] is None]
    if missing:
        warnings.warn(f"{len(missing)} CT(s) not in the split file go to train: {', '.join(missing[:5])}"
                      + (" ..." if len(missing) > 5 else ""), stacklevel=2)
    return {n: found[n] or "train" for n in names}


# ---------------------------------------------------------------------------- the run
def _settings(geometry, noise, seed: int, labels=None, spacing_unit: str = "mm") -> dict:
    settings = {"geometry": geometry.to_dict(), "noise": noise.to_dict(), "seed": seed}
    if labels:  # (older manifests have neither key)
        settings["labels"] = str(labels)
    if spacing_unit != "mm":
        settings["spacing_unit"] = spacing_unit
    return settings


def find_label(labels: Path, name: str) -> Path | None:
    """The label map of CT ``name`` in the folder ``labels``: the file of the same CT name, or of
    the name without an nnU-Net channel suffix (``case_0000`` -> ``case``, PANORAMA's layout)."""
    wanted = {name, re.sub(r"_\d{4}$", "", name)}
    found = sorted(p for p in labels.rglob("*") if p.is_file() and _ct_suffix(p) and ct_name(p) in wanted)
    return found[0] if found else None


def _load_manifest(out: Path, settings: dict) -> dict[str, dict]:
    """Finished units of an earlier run with the same settings: ``{unit: {file: entry}}``."""
    path = out / MANIFEST
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.warn(f"{path} is unreadable: preparing everything again", stacklevel=2)
        return {}
    if old.get("settings") != json.loads(json.dumps(settings)):
        warnings.warn(f"{out} was prepared with other settings (geometry, noise or seed): "
                      "preparing everything again", stacklevel=2)
        return {}
    return old.get("units", {})


def _still_valid(out: Path, files: dict) -> bool:
    return bool(files) and all((out / n).is_file() and (out / n).stat().st_size == e["bytes"]
                               and sha256_file(out / n) == e["sha256"] for n, e in files.items())


def prepare(inputs, out, geometry, noise, *, seed: int = 0, splits=(0.8, 0.1, 0.1),
            split_file=None, workers: int = 1, device: str = "cpu", augment: int = 0,
            show_progress: bool = True, labels=None, spacing_unit: str = "mm") -> dict:
    """Prepare a training folder (see the module docstring); returns the manifest.

    ``inputs``: a folder or list file (str/Path) or a list of paths. ``split_file``: a file of
    ``split<TAB>name`` lines or a ``{name: split}`` mapping (recipes). ``labels``: a folder of label
    maps (:func:`find_label`); each CT's grid is then centred on its label's foreground bounding box,
    one piece per CT, as the DeepSparse authors crop PANORAMA and PENGWIN. ``spacing_unit``: ``mm``
    (default) or ``m``, the unit of the files' spacing and origin (DICOM is always mm). Raises
    :class:`InputError` when no CT could be prepared.
    """
    if isinstance(inputs, (str, Path)):
        paths = find_cts(inputs)
    else:
        paths = [Path(p) for p in inputs]
    if spacing_unit not in SPACING_UNITS:
        raise InputError(f"--spacing-unit must be mm or m, got {spacing_unit!r}")
    if augment < 0 or workers < 1:
        raise InputError("--augment must be >= 0 and --workers >= 1")
    if labels is not None:
        labels = Path(labels)
        if not labels.is_dir():
            raise InputError(f"--labels {labels} is not a folder of label maps")
        if augment:
            raise InputError("label-centred crops (--labels) do not combine with --augment: an augmented CT's "
                             "label would have to move with it")
    if not split_file:
        check_fractions(splits)
    if isinstance(split_file, dict):  # an inline table from a recipe: {ct name: split}
        bad = {v for v in split_file.values() if v not in SPLITS}
        if bad:
            raise InputError(f"split table values must be train, val or test, got {', '.join(map(str, bad))}")
        table = {split_key(str(k)): v for k, v in split_file.items()}
    else:
        table = read_split_file(split_file) if split_file else None
    out = check_output_folder(out)
    names = _unique_names(paths)
    settings = _settings(geometry, noise, seed, labels, spacing_unit)
    created, had_manifest = not out.exists(), (out / MANIFEST).exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out, f"another prepare run is writing into {out}; wait for it to finish or choose "
                              "another --out"):
            return _prepare_locked(out, created, had_manifest, paths, names, settings, geometry, noise, seed,
                                   splits, table, workers, device, augment, show_progress, labels)
    except BaseException:
        if created:  # nothing of this run's own is kept in a folder it made (a busy one stays untouched)
            with contextlib.suppress(OSError):
                out.rmdir()  # only succeeds while empty
        raise


def _prepare_locked(out, created, had_manifest, paths, names, settings, geometry, noise, seed, splits, table,
                    workers, device, augment, show_progress, labels=None) -> dict:
    """:func:`prepare`'s work, while this process holds the output folder."""
    done_before = _load_manifest(out, settings)

    from ..devices import resolve_device

    device = str(resolve_device(device))
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    jobs = []
    for path, name in zip(paths, names):
        for variant in range(augment + 1):
            unit = name if variant == 0 else f"{name}-a{variant}"
            label = find_label(labels, ct_name(path)) if labels is not None else None
            jobs.append({"source": str(path), "name": name, "variant": variant, "unit": unit,
                         "labels": str(labels) if labels is not None else None,
                         "label": str(label) if label is not None else None,
                         "out": str(out), "geometry": geometry.to_dict(), "noise": noise.to_dict(),
                         "seed": seed, "device": device, "threads": threads,
                         "spacing_scale": SPACING_UNITS[settings.get("spacing_unit", "mm")]})

    units, errors, skipped = {}, {}, 0
    start = time.perf_counter()
    todo = []
    for job in jobs:
        if _still_valid(out, done_before.get(job["unit"], {})):
            units[job["unit"]] = done_before[job["unit"]]
            skipped += 1
        else:
            todo.append(job)

    def finish(result):
        if "error" in result:
            errors[result["unit"]] = result["error"]
            print(f"warning: skipped {result['unit']}: {result['error']}", file=sys.stderr)
        else:
            units[result["unit"]] = result["files"]
            for note in result["warnings"]:
                print(f"warning: {result['unit']}: {note}", file=sys.stderr)
        _write_manifest(out, settings, units, {}, errors, jobs, table, splits, seed, final=False)

    with progress(len(todo), "prepare", enabled=show_progress, unit="CT") as bar:
        if workers == 1:
            for job in todo:
                finish(_prepare_unit(job))
                bar.update(1)
        else:
            import multiprocessing

            # fork is cheap and needs no importable __main__; CUDA cannot live in forked children
            method = "spawn" if device.startswith("cuda") else "fork"
            context, left = multiprocessing.get_context(method), list(todo)
            while left:  # a pool whose worker was killed (the OOM killer) is replaced; the rest carries on
                left, suspects = _run_pool(left, workers, context, out, finish, bar)
                for job in suspects:  # each alone: only the job that kills its worker fails
                    if _run_pool([job], 1, context, out, finish, bar)[1]:
                        finish({"unit": job["unit"], "error": "its worker process died (killed: out of memory? "
                                                              "try fewer --workers)"})
                        bar.update(1)

    ct_ok = sorted({j["name"] for j in jobs if j["unit"] in units and j["variant"] == 0})
    if not ct_ok:
        if not had_manifest and not units:  # nothing was made: leave no manifest (nor folder) behind
            (out / MANIFEST).unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    out.rmdir()
        raise InputError(f"no CT could be prepared ({len(errors)} failed); first error: "
                         f"{next(iter(errors.values()), 'none')}")
    split_of = assign_splits(ct_ok, splits, seed, table, dict(zip(names, paths)))
    manifest = _write_manifest(out, settings, units, split_of, errors, jobs, table, splits, seed, final=True)
    manifest["elapsed_s"] = round(time.perf_counter() - start, 3)
    manifest["skipped"] = skipped
    return manifest


INFLIGHT = ".inflight-"  # ``<out>/.inflight-<unit>``: a pool worker is preparing that unit


def _run_pool(jobs: list[dict], workers: int, context, out: Path, finish, bar) -> tuple[list[dict], list[dict]]:
    """Prepare ``jobs`` in a process pool; returns (jobs not started, jobs in flight) when a worker
    process dies outright (killed, e.g. by the out-of-memory killer: the pool breaks and stops its
    other workers too), else ``([], [])``. In-flight jobs are known by the marker files
    (``.inflight-<unit>``) their workers leave behind."""
    from concurrent.futures.process import BrokenProcessPool

    done = set()
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {pool.submit(_prepare_unit, {**job, "inflight": str(out)}): job for job in jobs}
            for future in as_completed(futures):
                finish(future.result())
                done.add(futures[future]["unit"])
                bar.update(1)
        return [], []
    except BrokenProcessPool:
        held = set()
        for marker in out.glob(INFLIGHT + "*"):
            held.add(marker.name[len(INFLIGHT):])
            marker.unlink(missing_ok=True)
        if not held:  # died before saying what it held: every unfinished job is a suspect
            held = {j["unit"] for j in jobs} - done
        return ([j for j in jobs if j["unit"] not in done | held], [j for j in jobs if j["unit"] in held])


def _write_manifest(out: Path, settings, units, split_of, errors, jobs, table, fractions, seed, final):
    """Manifest (and, when ``final``, the split files); variants of a failed source are dropped."""
    by_unit = {j["unit"]: j for j in jobs}
    files = {}
    for unit, entries in units.items():
        ct = by_unit[unit]["name"]
        if final and ct not in split_of:  # a variant whose original failed: cannot be split safely
            continue
        for name, entry in entries.items():
            files[name] = {**entry, "split": split_of.get(ct)}
    failed, seen = [], set()
    for unit, reason in errors.items():
        source = by_unit[unit]["source"]
        if source not in seen:
            seen.add(source)
            failed.append({"source": source, "reason": reason})
    counts = {"inputs": len({j["source"] for j in jobs}), "cts_prepared": len(split_of),
              "failed": len(failed), "files": len(files),
              "bytes": sum(e["bytes"] for e in files.values()),
              **{s: sum(1 for e in files.values() if e["split"] == s) for s in SPLITS}}
    manifest = {"format": MANIFEST_FORMAT, "complete": final, "settings": settings,
                "splits": {"split_file": bool(table), "fractions": list(fractions), "seed": seed,
                           "cts": split_of},
                "counts": counts, "files": dict(sorted(files.items())), "failed": failed,
                "units": {u: e for u, e in sorted(units.items())}}
    if final:
        write_split_lists(out, {n: e["split"] for n, e in files.items()})
    write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


# ---------------------------------------------------------------------------- recipes and CLI
def load_recipe(path: str | Path) -> dict:
    """The ``prepare:`` options of a recipe YAML (keys as the long options, '-' or '_').

    ``input`` may be a folder, a list file or a YAML list of paths; ``split_file`` a file or an
    inline ``{CT name: train|val|test}`` mapping. ``~`` and ``$VARS`` are expanded; relative paths
    are relative to the working directory.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"recipe not found: {path}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse recipe {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("prepare"), dict):
        raise InputError(f"recipe {path} has no 'prepare:' mapping")
    options = {k.replace("-", "_"): v for k, v in doc["prepare"].items()}
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise InputError(f"recipe {path}: unknown prepare options {', '.join(sorted(unknown))}")
    for name, value in options.items():
        why = _recipe_type_error(name, value)
        if why:
            raise InputError(f"recipe {path}: prepare option '{name}' {why}, got {value!r}")
    return options


def _text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _recipe_type_error(name: str, value) -> str | None:
    """Why a recipe's value of ``name`` has the wrong type (None when it is fine); numbers are
    checked with their ranges by :func:`_option` later, like the command line's."""
    if value is None:
        return None if name in ("geometry", "split_file", "out", "input", "labels") else "needs a value"
    if name in ("out", "preset", "geometry", "labels"):
        return None if _text(value) else "must be a path or name (text)"
    if name == "input":
        ok = _text(value) or isinstance(value, list) and value and all(_text(v) for v in value)
        return None if ok else "must be a folder, a list file or a list of CT paths"
    if name == "split_file":
        ok = _text(value) or isinstance(value, dict) and all(isinstance(k, str) for k in value)
        return None if ok else "must be a split file or a {CT name: train|val|test} mapping"
    if name == "device":
        ok = isinstance(value, str) and (value in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", value))
        return None if ok else "must be auto, cpu, cuda or cuda:N"
    if name == "noise":
        return None if isinstance(value, bool) else "must be true or false"
    if name == "spacing_unit":
        return None if value in SPACING_UNITS else "must be mm or m"
    if name == "splits":
        numbers = isinstance(value, list) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        return None if numbers else "must be three fractions [train, val, test]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):  # candidates, photons, seed, workers...
        return "must be a number"
    return None


def resolve_options(args: argparse.Namespace) -> dict:
    """Command line over recipe over defaults."""
    options = dict(DEFAULTS)
    if getattr(args, "recipe", None):
        options.update(load_recipe(args.recipe))
    options.update({k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None})
    if getattr(args, "splits", None) is not None:  # --splits on the command line beats a recipe's split file
        options["split_file"] = None
    if not options["input"]:
        raise InputError("give the input folder or list file (INPUT or the recipe's 'input')")
    expand = lambda p: Path(os.path.expandvars(str(p))).expanduser()  # noqa: E731
    inputs = options["input"]
    options["input"] = [expand(p) for p in inputs] if isinstance(inputs, list) else expand(inputs)
    if not options["out"]:
        raise InputError("give the output folder (--out or the recipe's 'out')")
    return options


def _geometry(options: dict):
    from ..physics.geometry import Geometry

    n = _option(options, "candidates", int)
    if n < 1:
        raise InputError("--candidates must be >= 1")
    g = Geometry.load(options["geometry"]).with_views(n) if options["geometry"] else \
        Geometry.preset(options["preset"], n)
    return g.validate()


def _option(options: dict, name: str, kind):
    """``options[name]`` as ``kind`` (int refuses fractions); a one-line error names the option."""
    value = options[name]
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
        if isinstance(value, bool) or not math.isfinite(number) or kind is int and number != int(number):
            raise ValueError
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a finite number"
        raise InputError(f"--{name.replace('_', '-')} must be {what}, got {value!r}") from None
    return kind(number)


def cmd_prepare(args) -> int:
    from ..physics.noise import NoiseModel
    from ..progress import mode

    o = resolve_options(args)
    check_output_folder(o["out"])
    geometry = _geometry(o)
    noise = NoiseModel(enabled=bool(o["noise"]), photons=_option(o, "photons", float),
                       electronic_sigma=_option(o, "electronic_sigma", float))
    manifest = prepare(o["input"], o["out"], geometry, noise, seed=_option(o, "seed", int),
                       splits=o["splits"], split_file=o["split_file"], workers=_option(o, "workers", int),
                       device=o["device"], augment=_option(o, "augment", int), show_progress=mode() != "none",
                       labels=Path(os.path.expandvars(str(o["labels"]))).expanduser() if o["labels"] else None,
                       spacing_unit=o["spacing_unit"])
    c = manifest["counts"]
    emit("result", out=str(o["out"]), **c, skipped=manifest["skipped"])
    say(f"{o['out']}: {c['files']} cache files from {c['cts_prepared']} CT(s) "
        f"(train {c['train']}, val {c['val']}, test {c['test']}; {c['bytes'] / 2**20:.1f} MiB), "
        f"{manifest['skipped']} unit(s) already done, {c['failed']} failed, "
        f"{manifest['elapsed_s']:.1f} s")
    return 0


def add_prepare_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``prepare`` subcommand on ``subparsers`` (an argparse sub-parsers object)."""
    from ..physics.geometry import preset_names

    p = subparsers.add_parser(
        "prepare", help="turn a folder or list of CTs into a training folder of candidate caches",
        description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?", help="folder of CTs (searched recursively) or a list file")
    p.add_argument("--out", help="output training folder")
    p.add_argument("--recipe", metavar="FILE", help="YAML recipe (docs/recipes/) giving the options below")
    p.add_argument("--preset", choices=preset_names(), help="geometry preset (default fast)")
    p.add_argument("--geometry", metavar="FILE", help="geometry file (YAML/JSON), overrides --preset")
    p.add_argument("--candidates", type=int, help="candidate projections per volume (paper: 200)")
    p.add_argument("--noise", dest="noise", action="store_true", default=None,
                   help="Poisson + Gaussian noise (default)")
    p.add_argument("--no-noise", dest="noise", action="store_false", help="noiseless projections")
    p.add_argument("--photons", type=float, help="incident photons per pixel I0 (default 1e5)")
    p.add_argument("--electronic-sigma", type=float, help="electronic noise std, photon counts (default 10)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--splits", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                       help="seeded split fractions over CTs (default 0.8 0.1 0.1)")
    group.add_argument("--split-file", metavar="FILE", help="lines 'train|val|test<TAB>CT name'")
    p.add_argument("--seed", type=int, help="seed of splits, noise and augmentation (default 0)")
    p.add_argument("--workers", type=int, help="parallel processes over CTs (default 1: in-process)")
    add_device_argument(p, default=None)
    p.add_argument("--augment", type=int, metavar="K", help="augmented variants per CT (default 0)")
    p.add_argument("--labels", metavar="FOLDER",
                   help="folder of label maps (same CT names): centre each grid on its label's bounding box, "
                        "one piece per CT, as the DeepSparse authors crop PANORAMA and PENGWIN (default: none)")
    p.add_argument("--spacing-unit", choices=sorted(SPACING_UNITS),
                   help="unit of the files' voxel spacing and origin: mm (default) or m (the knee CBCT set of "
                        "Lin et al. stores metres)")
    p.set_defaults(func=cmd_prepare)
    return p
