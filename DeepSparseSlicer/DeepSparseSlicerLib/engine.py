"""What the installed ``deepsparse_core`` offers: where it lives, its models, its command lines.

``deepsparse_core`` is installed next to this module by the extension (``<modules>/deepsparse_core``),
sits one folder up in a source checkout, or is pip-installed. The functions import
``deepsparse_core`` when called; only :func:`catalog` (with :func:`bundled_models` and the device
check) imports torch, and it runs in the ``worker catalog`` background process, never in Slicer's.

The module runs the engine through its command lines (``python -m deepsparse_core --progress json
...``, ``python -m deepsparse_core.training``) and its own background worker
(``python -m DeepSparseSlicerLib.worker``). The extension ships the engine it was built with, so
the ``*_command(s)`` functions build command lines for that engine's parsers (a test parses each
one with them); nothing is detected at run time.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .jobs import python_executable

MODULE_DIR = Path(__file__).resolve().parent.parent  # .../DeepSparseSlicer (the module folder)
DEVICES = ("auto", "cuda", "cpu")


def core_location() -> Path:
    """Folder that holds the ``deepsparse_core`` package (importable after this call)."""
    for candidate in (MODULE_DIR, MODULE_DIR.parent):  # installed extension, source checkout
        if (candidate / "deepsparse_core" / "__init__.py").is_file():
            if str(candidate) not in sys.path:
                sys.path.append(str(candidate))
            break
    import deepsparse_core

    return Path(deepsparse_core.__file__).resolve().parent.parent


def preset_names() -> list[str]:
    """Geometry presets shipped with deepsparse_core (read from its files: no torch import)."""
    return sorted(p.stem for p in (core_location() / "deepsparse_core" / "physics" / "presets").glob("*.yaml"))


def sample_names() -> list[str]:
    """Real sample CTs deepsparse_core can fetch (``deepsparse_core.data.samples``, no torch import)."""
    core_location()
    from deepsparse_core.data.samples import SAMPLES

    return list(SAMPLES)


# synthetic CTs of deepsparse_core.data.phantoms offered offline (a test checks they exist there)
PHANTOMS = ("chest", "head", "pelvis", "knee")


def core_command(*args) -> list[str]:
    """``[python, -m, deepsparse_core, --progress, json, *args]``."""
    return [python_executable(), "-m", "deepsparse_core", "--progress", "json", *map(str, args)]


def worker_command(*args) -> list[str]:
    """``[python, -m, DeepSparseSlicerLib.worker, *args]`` (needs :data:`MODULE_DIR` on the path)."""
    return [python_executable(), "-m", "DeepSparseSlicerLib.worker", *map(str, args)]


def job_paths() -> list[str]:
    """``PYTHONPATH`` entries of a job: the engine's folder and the module's."""
    return list(dict.fromkeys([str(core_location()), str(MODULE_DIR)]))


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelInfo:
    path: Path
    n_views: int | None     # views the model was finetuned for (None: any)
    preset: str | None      # geometry preset it was trained for
    bundled: bool
    view_counts: tuple = ()  # bundled: the view counts the engine's lookup serves with this file

    @property
    def label(self) -> str:
        counts = sorted(self.view_counts)
        if len(counts) > 1:
            views = f"{counts[0]}-{counts[-1]} views" if counts == list(range(counts[0], counts[-1] + 1)) \
                else f"{', '.join(map(str, counts))} views"
        elif counts or self.n_views:
            views = f"{counts[0] if counts else self.n_views} views"
        else:
            views = "any view count"
        origin = "bundled" if self.bundled else self.path.stem
        return f"DiCE ({origin}, {views})"

    @property
    def key(self) -> str:
        """The method key stored in the scene: the file's name in the bundled or the user models
        folder, so a saved scene works on another computer (not its absolute path)."""
        return f"dice:{'bundled' if self.bundled else 'user'}/{self.path.name}"

    @property
    def short(self) -> str:
        """The method in output node names: "DiCE", or "DiCE <model name>" for a user's model."""
        return "DiCE" if self.bundled else f"DiCE {self.path.stem}"

    def to_dict(self) -> dict:
        return {"path": str(self.path), "n_views": self.n_views, "preset": self.preset,
                "bundled": self.bundled, "view_counts": list(self.view_counts)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelInfo":
        return cls(Path(d["path"]), d.get("n_views"), d.get("preset"), bool(d.get("bundled")),
                   tuple(d.get("view_counts") or ()))


def model_info(path, bundled: bool = False, view_counts=()) -> ModelInfo:
    """Read a model file's metadata (raises ``InputError`` for a foreign or corrupt file)."""
    core_location()
    from deepsparse_core.model.model_file import read_model_metadata

    meta = read_model_metadata(path)
    geometry = meta.get("geometry") or {}
    return ModelInfo(Path(path), meta.get("n_views"), geometry.get("name"), bundled, tuple(view_counts))


def bundled_models() -> list[ModelInfo]:
    """The models shipped with ``deepsparse_core``, found by its own lookup
    (``inference.bundled_view_counts`` / ``bundled_model_path``); one file may serve several counts."""
    core_location()
    from deepsparse_core.inference import bundled_model_path, bundled_view_counts

    counts: dict[Path, list[int]] = {}
    for n in bundled_view_counts():
        path = bundled_model_path(n)
        if path is not None:
            counts.setdefault(Path(path), []).append(int(n))
    return _readable_models([(p, tuple(c)) for p, c in counts.items()], bundled=True)


def user_models(folder) -> list[ModelInfo]:
    """Finetuned models saved by the panel in ``folder`` (kept across Slicer restarts)."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return _readable_models([(p, ()) for p in paths if not p.name.startswith(".")], bundled=False)


def _readable_models(entries, bundled: bool) -> list[ModelInfo]:
    from deepsparse_core.errors import DeepSparseError

    models = []
    for path, counts in entries:
        try:
            models.append(model_info(path, bundled, counts))
        except DeepSparseError:
            continue  # a foreign or broken file in the folder is not a model
    return models


def catalog(user_models_dir=None) -> dict:
    """What this machine and engine offer, JSON-able: the torch version, what the engine's
    ``deepsparse_core.devices.resolve_device`` makes of each device choice (``{"device": "cpu" |
    "cuda"}`` or ``{"error": message}``), the GPU names, and the models (bundled, then the user's).
    Imports torch: the Widget runs it in the background (``worker catalog``)."""
    core_location()
    import torch

    from deepsparse_core.devices import resolve_device
    from deepsparse_core.errors import DeepSparseError

    devices = {}
    for requested in DEVICES:
        try:
            devices[requested] = {"device": resolve_device(requested).type}
        except DeepSparseError as exc:
            devices[requested] = {"error": str(exc)}
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    models = bundled_models() + (user_models(user_models_dir) if user_models_dir else [])
    return {"torch": torch.__version__, "devices": devices, "gpus": gpus,
            "models": [m.to_dict() for m in models]}


# ---------------------------------------------------------------------------- commands
def simulate_command(ct_path, out_path, n_views: int, arc_degrees: float, preset: str | None,
                     geometry_path=None, noise: bool = True, photons: float = 1e5, seed: int = 0,
                     device: str = "auto") -> list[str]:
    args = ["simulate", ct_path, "--views", n_views, "--arc", arc_degrees, "--seed", seed,
            "--device", device, "--out", out_path]
    args += ["--geometry", geometry_path] if geometry_path else ["--preset", preset]
    args += ["--noise", "--photons", photons] if noise else ["--no-noise"]
    return core_command(*args)


def output_grid(volume_shape, longest: int) -> tuple[int, int, int] | None:
    """``--resolution`` (nz, ny, nx) with ``longest`` voxels along the grid's longest axis and the
    others in proportion (same extent); None for ``longest`` 0 (the geometry's grid)."""
    if not longest:
        return None
    top = max(volume_shape)
    return tuple(max(2, int(round(n * longest / top))) for n in volume_shape)


def reconstruct_command(projections_path, out_path, method: str, device: str, units: str,
                        model_path=None, iterations: int = 20, resolution=None,
                        data_consistency: int | None = None) -> list[str]:
    """``reconstruct``: ``resolution`` (nz, ny, nx) or None keeps the geometry's grid (every
    method); DiCE: ``model_path`` (None: the engine's bundled model for the view count) and
    ``data_consistency`` K SART passes (None: the model card's recommendation, 0: the network alone)."""
    args = ["reconstruct", projections_path, "--method", method, "--device", device,
            "--units", units, "--out", out_path]
    if resolution:
        args += ["--resolution", *resolution]
    if method == "sart":
        args += ["--iterations", iterations]
    if method == "dice":
        args += ["--model", model_path] if model_path else []
        args += ["--data-consistency", int(data_consistency)] if data_consistency is not None else []
    return core_command(*args)


def train_command(*args) -> list[str]:
    """``[python, -m, deepsparse_core.training, --progress, json, *args]`` (= ``deepsparse train``;
    also the entry point ``torchrun`` runs)."""
    return [python_executable(), "-m", "deepsparse_core.training", "--progress", "json", *map(str, args)]


FINETUNE_LR = 2e-5  # constant AdamW rate of a panel finetune (measured on held-out chest crops, docs/slicer.md)


def finetune_commands(cts, work_dir, geometry_path, n_candidates: int, n_views: int, steps: int, base_model,
                      batch_size: int = 2, device: str = "auto", points: int | None = None,
                      seed: int = 0) -> tuple[list[list[str]], Path]:
    """Finetuning as commands, and the model file the last one writes.

    1. ``prepare CTS`` (a folder of CTs, searched recursively): every piece of each CT, with
       ``n_candidates`` projections over the geometry's arc (paper: 200 over [0, 180) degrees),
       all in the train split, into ``<work>/data`` (caches, ``train.txt``, ``manifest.json``);
    2. ``train --stage scratch --views n --init BASE --freeze-norm --lr 2e-5`` into
       ``<work>/adapt``, whose ``model.safetensors`` is the new model: every weight adapts at a low
       constant rate and the base model's BatchNorm statistics are kept (re-estimating them on a
       few CTs cost 0.4-1.2 dB on a held-out CT, docs/slicer.md). The bundled model's own stage
       ([n | n], no auxiliary views), at the one view count n. No validation split in a panel run.
    """
    work_dir = Path(work_dir)
    data, run = work_dir / "data", work_dir / "adapt"
    commands = [core_command("prepare", cts, "--out", data, "--geometry", geometry_path,
                             "--candidates", n_candidates, "--splits", 1, 0, 0, "--seed", seed,
                             "--device", device)]
    extra = ["--points", points] if points is not None else []
    commands.append(train_command("--stage", "scratch", "--data", data, "--out", run, "--init", base_model,
                                  "--views", n_views, "--steps", steps, "--freeze-norm", "--lr", FINETUNE_LR,
                                  "--batch-size", batch_size, "--device", device, "--val-every", 0,
                                  "--seed", seed, *extra))
    return commands, run / "model.safetensors"


IMPORT_VALUES = ("line-integrals", "flat-dark", "i0")  # what the images hold: the values options of import


def import_command(projections_path, geometry_path, out_path, values: str, flat_path=None, dark=None,
                   i0: float | None = None, n_views: int | None = None, view_indices: str | None = None,
                   arc_degrees: float | None = None, pixel_spacing: float | None = None,
                   detector_like: str | None = None) -> list[str]:
    """``import``: scanner projections (a stack or a folder) with RTK's geometry XML or a geometry
    YAML/JSON. ``values``: ``line-integrals`` (-log(I/I0)), ``flat-dark`` (intensities with the
    flat field file ``flat_path``) or ``i0`` (intensities with the scalar ``i0``); ``dark`` (file or
    number, None: 0) with either intensity mode. None (or 0 views/arc/spacing) leaves an option to
    the engine; ``detector_like``: a preset whose models should accept the data (None: keep the detector)."""
    if values not in IMPORT_VALUES:
        raise ValueError(f"values must be one of {IMPORT_VALUES}, got {values!r}")
    args = ["import", projections_path, "--geometry", geometry_path, "--out", out_path]
    if values == "line-integrals":
        args.append("--line-integrals")
    else:
        args += ["--flat", flat_path] if values == "flat-dark" else ["--i0", i0]
        args += ["--dark", dark] if dark is not None else []
    if view_indices:
        args += ["--view-indices", view_indices]
    args += ["--views", int(n_views)] if n_views else []
    args += ["--arc", arc_degrees] if arc_degrees else []
    args += ["--pixel-spacing", pixel_spacing] if pixel_spacing else []
    args += ["--detector-like", detector_like] if detector_like else []
    return core_command(*args)


def sample_command(name: str) -> list[str]:
    return core_command("samples", "--fetch", name)
