"""What the installed ``deepsparse_core`` offers: where it lives, its command line, its models.

``deepsparse_core`` is installed next to this module by the extension (``<modules>/deepsparse_core``),
sits one folder up in a source checkout, or is pip-installed. Nothing here imports torch at module
load; the functions import ``deepsparse_core`` when called.

The module runs the engine through its command line (``python -m deepsparse_core --progress json
...``). Features that other parts of the project are still adding (DiCE reconstruction, ``train``)
are detected by reading the command line's argparse parser, so the panel offers exactly what the
installed engine can do; the assumptions about their options are all in the ``*_command``
functions below.
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


def core_command(*args) -> list[str]:
    """``[python, -m, deepsparse_core, --progress, json, *args]``."""
    return [python_executable(), "-m", "deepsparse_core", "--progress", "json", *map(str, args)]


# ---------------------------------------------------------------------------- command line
@dataclass
class Capabilities:
    """What ``deepsparse``'s command line accepts (read from its parser)."""

    methods: tuple[str, ...] = ()                    # reconstruct --method choices
    reconstruct_options: dict = field(default_factory=dict)  # option string -> argparse action
    train_options: dict | None = None                # None: no ``train`` command
    prepare_options: dict | None = None              # None: no ``prepare`` command

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
    return Capabilities(methods, recon, _subcommand_options(parser, "train"),
                        _subcommand_options(parser, "prepare"))


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


def _pick(options: dict, *candidates: str) -> str | None:
    return next((c for c in candidates if c in options), None)


def finetune_commands(caps: Capabilities, data, work_dir, n_views: int, epochs_step1: int,
                      epochs_step2: int, base_model, out_path, device: str = "auto") -> list[list[str]]:
    """Commands for the two finetuning steps (and ``prepare`` first when the CLI has it).

    Assumed command line (issue 3; ``deepsparse train`` is being written): ``train --stage step1
    |step2`` with the data (``--data``), the target view count (``--views``), ``--epochs``, the
    starting model (``--init``/``--model``/``--base``) and ``--out``. Option names are matched
    against the installed parser; a missing one raises ``DeepSparseError`` naming it.
    """
    from deepsparse_core.errors import DeepSparseError

    opts = caps.train_options
    if opts is None:
        raise DeepSparseError("this deepsparse_core has no `train` command yet, so finetuning is "
                              "not available")
    work_dir = Path(work_dir)
    commands = []
    if caps.prepare_options is not None:  # raw CTs -> training cache (issue 4's `deepsparse prepare`)
        cache = work_dir / "cache"
        out_opt = _pick(caps.prepare_options, "--out", "--output", "--cache")
        commands.append(core_command("prepare", data, *( [out_opt, cache] if out_opt else [cache])))
        data = cache
    names = {"data": _pick(opts, "--data", "--cache", "--train-data", "--cts", "--input"),
             "views": _pick(opts, "--views", "--n-views", "--target-views"),
             "epochs": _pick(opts, "--epochs", "--num-epochs"),
             "init": _pick(opts, "--init", "--model", "--base", "--base-model", "--from"),
             "out": _pick(opts, "--out", "--output"),
             "stage": _pick(opts, "--stage")}
    missing = [k for k, v in names.items() if v is None]
    if missing:
        raise DeepSparseError("the installed `deepsparse train` does not take the options the panel "
                              f"needs ({', '.join(missing)}); see DeepSparseSlicerLib/engine.py")
    step1_out = work_dir / "step1.safetensors"
    for stage, epochs, init, out in (("step1", epochs_step1, base_model, step1_out),
                                     ("step2", epochs_step2, step1_out, out_path)):
        args = ["train", names["stage"], stage, names["data"], data, names["views"], n_views,
                names["epochs"], epochs, names["init"], init, names["out"], out]
        if "--device" in opts:
            args += ["--device", device]
        commands.append(core_command(*args))
    return commands


def sample_command(name: str) -> list[str]:
    return core_command("samples", "--fetch", name)
