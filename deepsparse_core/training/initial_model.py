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


POINT = "point_decoder."


def _mlp_shape(state: dict) -> tuple[list[int], int] | None:
    """(widths of the hidden layers and the output, point features read) of a state's point MLP."""
    if POINT + "first.weight" not in state:
        return None
    widths, k = [state[POINT + "first.weight"].shape[0]], 0
    while f"{POINT}layers.{k}.weight" in state:
        widths.append(state[f"{POINT}layers.{k}.weight"].shape[0])
        k += 1
    return widths, state[POINT + "first.weight"].shape[1]


def _grow_point_decoder(state: dict, own: dict, appended: bool) -> dict | None:
    """A point MLP of the same depth, wider and/or reading more point features: each old unit keeps its
    weights, its inputs from new units and new features start at zero, and new units keep their fresh
    initialization. The grown MLP computes what the old one did, and the zero weights get gradients from
    the first step. More features only with ``appended`` (the old features come first, unchanged, as with
    ``view_pool`` "max+mean"). None when it does not fit."""
    old_shape, new_shape = _mlp_shape(state), _mlp_shape(own)
    if old_shape is None or new_shape is None or old_shape == new_shape:
        return None
    (w_old, c_old), (w_new, c_new) = old_shape, new_shape
    if len(w_old) != len(w_new) or any(a > b for a, b in zip(w_old, w_new)) or \
            c_old > c_new or (c_old < c_new and not appended):
        return None
    starts = [sum(w_new[1:j]) for j in range(1, len(w_new))]  # skip's row block of each later layer
    rows = {"first": list(range(w_old[0])), "skip": [o + i for o, w in zip(starts, w_old[1:]) for i in range(w)]}
    cols = {"first": c_old, "skip": c_old}
    for k in range(len(w_old) - 1):
        rows[f"layers.{k}"], cols[f"layers.{k}"] = list(range(w_old[k + 1])), w_old[k]
        rows[f"norms.{k}"] = list(range(w_old[k]))
    grown = {}
    for name, target in own.items():
        if not name.startswith(POINT) or name not in state:
            continue
        module, leaf = name[len(POINT):].rsplit(".", 1)
        old = state[name].to(target.dtype)
        if leaf == "num_batches_tracked" or module not in rows:
            grown[name] = old.clone() if old.shape == target.shape else target.clone()
            continue
        index = torch.tensor(rows[module], dtype=torch.long)
        value = target.clone()
        if value.dim() == 2:
            value[index, :] = 0.0
            value[index, :cols[module]] = old
        else:
            value[index] = old
        grown[name] = value
    return grown


def transfer_weights(model: DiCE, state: dict, source: DiceConfig | None = None) -> tuple[list[str], list[str]]:
    """Copy into ``model`` every tensor of ``state`` whose name and shape match; (copied, left as
    initialized) tensor names. A warm start across an architecture change (a wider grid M changes no
    shape; a wider 3D decoder re-initializes the layers it touches; a codebook grown by a whole factor
    is split from the old one, see :func:`_split_codebook`; a point MLP of the same depth grown wider or
    reading more point features keeps computing what the old one did, see :func:`_grow_point_decoder`;
    split and grown tensors count as copied). ``source``, the config of ``state``, tells whether the old
    point features come first in the new ones (the same 2D and 3D widths); without it they must be equal."""
    own = model.state_dict()
    take = {k: state[k].to(own[k].dtype) for k, v in own.items() if k in state and state[k].shape == v.shape}
    appended = source is not None and source.scale_channels == model.config.scale_channels and \
        source.decoder_channels == model.config.decoder_channels
    take.update(_grow_point_decoder(state, own, appended) or {})
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
            copied, fresh = transfer_weights(torch_model, source.state_dict(), source.config)
            split = target.codebook_size != source.config.codebook_size and \
                any(k.endswith("quantizer.codebook") for k in copied)
            old_mlp, new_mlp = _mlp_shape(source.state_dict()), _mlp_shape(torch_model.state_dict())
            grown = old_mlp != new_mlp and not any(k.startswith(POINT) for k in fresh)
            if not {name for name, _ in torch_model.named_parameters()} & set(copied):
                raise InputError(f"no tensor of {path} fits the --config architecture: nothing to warm-start "
                                 "(drop --init to train it from scratch)")
            meta = {**meta, "transfer": f"warm start from {path} into a new architecture: {len(copied)} of "
                                        f"{len(copied) + len(fresh)} tensors copied"
                                        + (f" (codebooks split from {source.config.codebook_size} to "
                                           f"{target.codebook_size} codes)" if split else "")
                                        + (f" (point MLP grown from {old_mlp[0][:-1]} on {old_mlp[1]} features to "
                                           f"{new_mlp[0][:-1]} on {new_mlp[1]}: old units kept, new inputs at zero "
                                           "weight)" if grown else "")
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
