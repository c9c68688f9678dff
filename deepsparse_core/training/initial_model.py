"""The model a stage starts from: a fresh DiCE, a model file, or a run folder's weights."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..model import DiCE, DiceConfig
from ..model.config import model_config
from ..model.model_file import load_model
from ..model.vq import CODEBOOK_STATE
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


SPLIT_NOISE = 1e-3  # std of the offset given to each split code, relative to the codebook's per-dimension std


def _split_codebook(state: dict, own: dict, prefix: str, seed: int = 0) -> dict | None:
    """A codebook grown by a whole factor f, by splitting (Linde-Buzo-Gray): each old code is kept and
    f - 1 copies at a small random offset join it, the EMA counts shared among the f copies. The
    quantizer's output at the start is unchanged up to that offset, and the copies drift apart as
    training assigns features to them. None when the shapes do not fit."""
    names = [prefix + n for n in CODEBOOK_STATE]
    if not all(n in state and n in own for n in names):
        return None
    old, new = state[names[0]], own[names[0]]
    k_old, k_new = old.shape[0], new.shape[0]
    if old.dim() != 2 or old.shape[1:] != new.shape[1:] or k_new <= k_old or k_new % k_old:
        return None
    f = k_new // k_old
    g = torch.Generator().manual_seed(seed)
    old = old.to(new.dtype)
    spread = old.std(0, unbiased=False)
    spread = torch.where(spread > 0, spread, old.abs().mean().clamp_min(1.0))  # one code, or a flat dimension
    offset = torch.randn(k_new - k_old, old.shape[1], generator=g, dtype=new.dtype) * (spread * SPLIT_NOISE)
    codebook = torch.cat([old, old.repeat(f - 1, 1) + offset])
    size = state[names[1]].to(new.dtype).repeat(f) / f
    return {names[0]: codebook, names[1]: size, names[2]: codebook * size.unsqueeze(1)}


# the point MLP's layers that read the point features; DiCE appends new features after the old ones
POINT_INPUTS = ("point_decoder.first.weight", "point_decoder.skip.weight")


def transfer_weights(model: DiCE, state: dict) -> tuple[list[str], list[str]]:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match; (copied, left as
    initialized) tensor names. A warm start across an architecture change (a wider grid M changes no
    shape; a wider decoder or point MLP re-initializes the layers it touches; a codebook grown by a
    whole factor is split from the old one, see :func:`_split_codebook`, and counts as copied; point
    features appended after the old ones, as ``view_pool`` "max+mean" does, get zero weights in the point
    MLP's input layers, so the warm-started model computes what the old one did)."""
    own = model.state_dict()
    take = {k: state[k].to(own[k].dtype) for k, v in own.items() if k in state and state[k].shape == v.shape}
    for name in POINT_INPUTS:  # more point features appended (view_pool "max+mean"): zero weights on them
        if name in own and name in state and name not in take:
            old, new = state[name], own[name]
            if old.dim() == 2 and old.shape[0] == new.shape[0] and old.shape[1] < new.shape[1]:
                take[name] = torch.cat([old.to(new.dtype), new.new_zeros(new.shape[0], new.shape[1] - old.shape[1])], 1)
    for i, prefix in enumerate(sorted({k[: -len("codebook")] for k in own if k.endswith("quantizer.codebook")})):
        if prefix + "codebook" not in take:
            take.update(_split_codebook(state, own, prefix, seed=i) or {})
    model.load_state_dict({**own, **take})
    return [k for k in own if k in take], [k for k in own if k not in take]


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
            split = target.codebook_size != source.config.codebook_size and \
                any(k.endswith("quantizer.codebook") for k in copied)
            widened = target.point_features > source.config.point_features and POINT_INPUTS[0] in copied
            if not {name for name, _ in torch_model.named_parameters()} & set(copied):
                raise InputError(f"no tensor of {path} fits the --config architecture: nothing to warm-start "
                                 "(drop --init to train it from scratch)")
            meta = {**meta, "transfer": f"warm start from {path} into a new architecture: {len(copied)} of "
                                        f"{len(copied) + len(fresh)} tensors copied"
                                        + (f" (codebooks split from {source.config.codebook_size} to "
                                           f"{target.codebook_size} codes)" if split else "")
                                        + (f" (point features widened from {source.config.point_features} to "
                                           f"{target.point_features}, the new ones at zero weight)" if widened else "")
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
