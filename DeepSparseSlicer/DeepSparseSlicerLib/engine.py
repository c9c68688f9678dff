"""What the installed ``deepsparse_core`` offers: where it lives, its command line, its models.

``deepsparse_core`` is installed next to this module by the extension (``<modules>/deepsparse_core``),
sits one folder up in a source checkout, or is pip-installed. Nothing here imports torch at module
load; the functions import ``deepsparse_core`` when called.

The module runs the engine through its command lines (``python -m deepsparse_core --progress json
...`` and, for training, ``python -m deepsparse_core.training``). Features that other parts of the
project may still be adding (DiCE reconstruction, training) are detected by reading the argparse
parsers, so the panel offers exactly what the installed engine can do; the assumptions about their
options are all in the ``*_command(s)`` functions below.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .jobs import python_executable

MODULE_DIR = Path(__file__).resolve().parent.parent  # .../DeepSparseSlicer (the module folder)
BUNDLED_VIEW_COUNTS = (6, 8, 10)


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
    return sorted(p.stem for p in (core_location() / "deepsparse_core" / "presets").glob("*.yaml"))


def sample_names() -> list[str]:
    """Real sample CTs deepsparse_core can fetch (``deepsparse_core.samples``, no torch import)."""
    core_location()
    from deepsparse_core.samples import SAMPLES

    return list(SAMPLES)


# synthetic CTs of deepsparse_core.phantoms offered offline (a test checks they exist there)
PHANTOMS = ("chest", "head", "pelvis", "knee")


def core_command(*args) -> list[str]:
    """``[python, -m, deepsparse_core, --progress, json, *args]``."""
    return [python_executable(), "-m", "deepsparse_core", "--progress", "json", *map(str, args)]


# ---------------------------------------------------------------------------- command line
@dataclass
class Capabilities:
    """What ``deepsparse``'s command line accepts (read from its parser)."""

    methods: tuple[str, ...] = ()                    # reconstruct --method choices
    reconstruct_options: dict = field(default_factory=dict)  # option string -> argparse action
    train_options: dict | None = None                # None: no training command

    @property
    def dice(self) -> bool:
        return "dice" in self.methods and "--model" in self.reconstruct_options

    @property
    def train(self) -> bool:
        return self.train_options is not None

    def reconstruct_flag(self, *words: str) -> str | None:
        """The reconstruct option (a flag taking no value) whose name contains all ``words``."""
        for name, action in self.reconstruct_options.items():
            if name.startswith("--") and all(w in name for w in words) and action.nargs == 0:
                return name
        return None


def _subcommand_options(parser: argparse.ArgumentParser, command: str) -> dict | None:
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return {s: a for a in sub._actions for s in a.option_strings}
    return None


def capabilities() -> Capabilities:
    core_location()
    from deepsparse_core.cli import build_parser

    parser = build_parser()
    recon = _subcommand_options(parser, "reconstruct") or {}
    method = recon.get("--method")
    methods = tuple(method.choices) if method is not None and method.choices else ("fdk",)
    return Capabilities(methods, recon, _train_options())


def _train_options() -> dict | None:
    """Options of the training command line (``deepsparse_core.training``), None without it."""
    try:
        from deepsparse_core.training.command import add_train_arguments
    except ImportError:
        return None
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    return {s: a for a in parser._actions for s in a.option_strings}


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelInfo:
    path: Path
    n_views: int | None     # views the model was finetuned for (None: any)
    preset: str | None      # geometry preset it was trained for
    bundled: bool

    @property
    def label(self) -> str:
        views = f"{self.n_views} views" if self.n_views else "any view count"
        origin = "bundled" if self.bundled else self.path.stem
        return f"DiCE ({origin}, {views})"


def model_info(path, bundled: bool = False) -> ModelInfo:
    """Read a model file's metadata (raises ``InputError`` for a foreign or corrupt file)."""
    core_location()
    from deepsparse_core.model.model_file import read_model_metadata

    meta = read_model_metadata(path)
    geometry = meta.get("geometry") or {}
    return ModelInfo(Path(path), meta.get("n_views"), geometry.get("name"), bundled)


def bundled_models() -> list[ModelInfo]:
    """The models shipped with ``deepsparse_core`` (``inference.bundled_model_path`` if present,
    else every ``deepsparse_core/models/*.safetensors``)."""
    root = core_location() / "deepsparse_core"
    paths: list[Path] = []
    try:
        from deepsparse_core.inference import bundled_model_path
    except ImportError:
        bundled_model_path = None
    if bundled_model_path is not None:
        for n in BUNDLED_VIEW_COUNTS:
            try:
                p = bundled_model_path(n)
            except Exception:  # no model for this view count
                continue
            if p is not None and Path(p).is_file():
                paths.append(Path(p))
    else:
        paths = sorted((root / "models").glob("*.safetensors"))
    return _readable_models(dict.fromkeys(paths), bundled=True)


def user_models(folder) -> list[ModelInfo]:
    """Finetuned models saved by the panel in ``folder`` (kept across Slicer restarts)."""
    folder = Path(folder)
    return _readable_models(sorted(folder.glob("*.safetensors")) if folder.is_dir() else [], bundled=False)


def _readable_models(paths, bundled: bool) -> list[ModelInfo]:
    from deepsparse_core.errors import DeepSparseError

    models = []
    for p in paths:
        try:
            models.append(model_info(p, bundled))
        except DeepSparseError:
            continue  # a foreign or broken file in the folder is not a model
    return models


# ---------------------------------------------------------------------------- commands
def simulate_command(ct_path, out_path, n_views: int, arc_degrees: float, preset: str | None,
                     geometry_path=None, noise: bool = True, photons: float = 1e5, seed: int = 0,
                     device: str = "auto") -> list[str]:
    args = ["simulate", ct_path, "--views", n_views, "--arc", arc_degrees, "--seed", seed,
            "--device", device, "--out", out_path]
    args += ["--geometry", geometry_path] if geometry_path else ["--preset", preset]
    args += ["--noise", "--photons", photons] if noise else ["--no-noise"]
    return core_command(*args)


def reconstruct_command(caps: Capabilities, projections_path, out_path, method: str, device: str,
                        units: str, model_path=None, iterations: int = 20, resolution: int = 0,
                        data_consistency: bool = False) -> list[str]:
    """``reconstruct`` for fdk/sart (foundation CLI) or dice (assumed: ``--model``, optional
    ``--resolution R`` and a data-consistency flag, as issue 3 specifies)."""
    args = ["reconstruct", projections_path, "--method", method, "--device", device,
            "--units", units, "--out", out_path]
    if method == "sart":
        args += ["--iterations", iterations]
    if method == "dice":
        args += ["--model", model_path]
        if resolution and "--resolution" in caps.reconstruct_options:
            args += ["--resolution", resolution]
        flag = caps.reconstruct_flag("consistency")
        if data_consistency and flag:
            args.append(flag)
    return core_command(*args)


def train_command(*args) -> list[str]:
    """``[python, -m, deepsparse_core.training, --progress, json, *args]`` (= ``deepsparse train``;
    also the entry point ``torchrun`` runs)."""
    return [python_executable(), "-m", "deepsparse_core.training", "--progress", "json", *map(str, args)]


TRAIN_REQUIRED = ("--stage", "--data", "--out", "--init", "--views", "--steps")


def finetune_commands(caps: Capabilities, cts, work_dir, geometry_path, n_candidates: int, n_views: int,
                      steps_step1: int, steps_step2: int, base_model, batch_size: int = 2,
                      device: str = "auto", points: int | None = None) -> tuple[list[list[str]], Path]:
    """The two-step finetuning as commands, and the model file the last one writes.

    1. ``candidates`` per CT: ``n_candidates`` projections over the geometry's arc (paper: 200 over
       [0, 180) degrees) into ``<work>/cache``, the training set folder;
    2. ``train --stage step1 --init BASE`` (dataset adaptation) into ``<work>/step1``;
    3. ``train --stage step2 --init <work>/step1`` (view adjustment) into ``<work>/step2``, whose
       ``model.safetensors`` is the new model.
    """
    from deepsparse_core.errors import DeepSparseError

    opts = caps.train_options
    if opts is None:
        raise DeepSparseError("this deepsparse_core has no training command (`deepsparse train`), so "
                              "finetuning is not available")
    missing = [o for o in TRAIN_REQUIRED if o not in opts]
    if missing:
        raise DeepSparseError(f"the installed `deepsparse train` lacks {', '.join(missing)}; "
                              "see DeepSparseSlicerLib/engine.py")
    work_dir = Path(work_dir)
    cache = work_dir / "cache"
    commands = [core_command("candidates", ct, "--geometry", geometry_path, "--count", n_candidates,
                             "--device", device, "--out", cache / f"ct_{i:03d}.safetensors")
                for i, ct in enumerate(cts)]
    extra = []
    for option, value in (("--batch-size", batch_size), ("--device", device), ("--points", points),
                          ("--val-every", 0)):  # no validation split in a panel run
        if value is not None and option in opts:
            extra += [option, value]
    runs = {"step1": work_dir / "step1", "step2": work_dir / "step2"}
    for stage, steps, init in (("step1", steps_step1, base_model), ("step2", steps_step2, runs["step1"])):
        commands.append(train_command("--stage", stage, "--data", cache, "--out", runs[stage], "--init", init,
                                      "--views", n_views, "--steps", steps, *extra))
    return commands, runs["step2"] / "model.safetensors"


def sample_command(name: str) -> list[str]:
    return core_command("samples", "--fetch", name)
