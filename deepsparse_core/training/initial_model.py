"""The model a stage starts from: a fresh DiCE, a model file, or a run folder's weights."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..model import DiCE, DiceConfig
from ..model.config import model_config
from ..model.model_file import load_model
from .stages import Stage


def model_path(init: str | Path) -> Path:
    """A model file, or the ``model.safetensors`` of a run folder."""
    path = Path(init)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise InputError(f"--init model not found: {path}")
    return path


def check_model_views(meta: dict, n_views: int, path="the model") -> None:
    """A step-2 model (model-file ``n_views`` set) runs with exactly the views it was finetuned for."""
    trained = meta.get("n_views")
    if trained is not None and int(trained) != int(n_views):
        raise InputError(f"{path} was finetuned (step 2) for {trained} views and cannot take {n_views}: "
                         f"use {trained} projections, or finetune step 1 + step 2 for {n_views} views")


def transfer_weights(model: DiCE, state: dict) -> tuple[list[str], list[str]]:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match; (copied, left as
    initialized) tensor names. A warm start across an architecture change (a wider grid M changes no
    shape; a wider decoder or point MLP re-initializes the layers it touches)."""
    own = model.state_dict()
    copied = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    model.load_state_dict({**own, **{k: state[k].to(own[k].dtype) for k in copied}})
    kept = set(copied)
    return copied, [k for k in own if k not in kept]


def _layers(names: list[str]) -> str:
    """'point_decoder.net.0 (2), decoder3d.stages.1 (4)': tensor names grouped by their module."""
    groups: dict[str, int] = {}
    for name in names:
        module = name.rsplit(".", 1)[0]
        groups[module] = groups.get(module, 0) + 1
    return ", ".join(f"{m} ({n})" for m, n in groups.items())


def initial_model(stage: Stage, init: str | None, config: str | dict | DiceConfig | None) -> tuple[DiCE, dict | None]:
    """(model in train mode with the stage's layers and freezing applied, metadata of ``init`` or None).

    ``config`` None means the paper's architecture for a new model and ``init``'s own with ``init``.
    Given with ``init`` (stages scratch, pretrain, step1), it is the architecture to warm-start into:
    :func:`transfer_weights` copies what fits, and the metadata's ``transfer`` line says what.

    * scratch: a new DiCE from ``config``, or continue from ``init`` (a campaign of bounded runs that
      warm-starts each day from the last model file, e.g. a bundled one).
    * pretrain: new, or continue from ``init``.
    * step1: from ``init`` (the pretrained model; without it, the paper's "finetuning without
      pretraining" ablation from random weights).
    * step2: from ``init`` (the step-1 model), required; denoise layers are added (identity at start) and
      the encoder + quantization are frozen.
    """
    meta = None
    if init is None:
        if stage.name == "step2":
            raise InputError("stage step2 starts from a step-1 model: give --init MODEL_OR_RUN")
        torch_model = DiCE(model_config(config if config is not None else "paper"))
    else:
        path = model_path(init)
        torch_model, meta = load_model(path)
        target = None if config is None else model_config(config)
        if target is not None and target != torch_model.config:
            if stage.denoise or torch_model.denoise is not None:
                raise InputError("--config with --init changes the architecture, which step 2 and step-2 models "
                                 "cannot: drop --config (step 2 keeps the step-1 model's)")
            source = torch_model
            torch_model = DiCE(target)
            copied, fresh = transfer_weights(torch_model, source.state_dict())
            if not {name for name, _ in torch_model.named_parameters()} & set(copied):
                raise InputError(f"no tensor of {path} fits the --config architecture: nothing to warm-start "
                                 "(drop --init to train it from scratch)")
            meta = {**meta, "transfer": f"warm start from {path} into a new architecture: {len(copied)} of "
                                        f"{len(copied) + len(fresh)} tensors copied"
                                        + (f"; initialized afresh: {_layers(fresh)}" if fresh else "")}
        has_denoise = torch_model.denoise is not None
        if has_denoise and not stage.denoise:
            raise InputError(f"{path} is a step-2 model (denoise layers); stage {stage.name} needs a model "
                             "without them (start from the step-1 or pretrained model)")
        if stage.denoise:
            check_model_views(meta, stage.fixed_views, path)
    if stage.denoise:
        torch_model.enable_denoise()
    torch_model.freeze(*stage.frozen)
    return torch_model.train(), meta
