"""DiCE model files: ``safetensors`` weights + JSON metadata (never pickle).

A model file holds every tensor of the model's ``state_dict`` (parameters, BatchNorm statistics,
codebooks) and metadata:

* ``format`` = "deepsparse-dice", ``version`` = "1";
* ``config``: the :class:`~deepsparse_core.model.config.DiceConfig` (the architecture);
* ``geometry``: the geometry (preset) the model was trained for, without angles;
* ``n_views``: the sparse-view count it was finetuned for (step-2 models), or null;
* ``card``: free JSON (training data summary, time, metrics...).

Weights may be stored in float16 (bundled models); loading casts to float32 (or ``dtype``).
Reading the metadata imports neither torch nor the network (the Slicer module's GUI thread does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..physics.geometry import Geometry
from ..safetensors_io import read_metadata, save_atomic
from .config import DiceConfig

if TYPE_CHECKING:
    import torch

    from .dice import DiCE

FORMAT = "deepsparse-dice"
VERSION = "1"


def save_model(path: str | Path, model: DiCE, geometry: Geometry | None = None, n_views: int | None = None,
               card: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` atomically; ``dtype=torch.float16`` halves the file (floating tensors only,
    except the codebooks' EMA state: float16 rounds small counts to 0 and overflows sums above 65,504)."""
    from .vq import CODEBOOK_STATE

    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point() and k.rsplit(".", 1)[-1] not in CODEBOOK_STATE:
            v = v.to(dtype)
        tensors[k] = v.contiguous()
    geo = None
    if geometry is not None:
        geo = geometry.to_dict()
        geo.pop("angles")
    meta = {"format": FORMAT, "version": VERSION, "config": json.dumps(model.config.to_dict()),
            "geometry": json.dumps(geo), "n_views": json.dumps(n_views), "card": json.dumps(card or {})}
    return save_atomic(tensors, path, meta)


def read_model_metadata(path: str | Path) -> dict:
    """The parsed metadata of a model file (config, geometry, n_views, card) without loading weights."""
    meta = read_metadata(path, FORMAT, VERSION, "DeepSparse DiCE model file")
    try:
        out = {"config": DiceConfig.from_dict(json.loads(meta["config"])),
               "geometry": json.loads(meta.get("geometry", "null")),
               "n_views": json.loads(meta.get("n_views", "null")),
               "card": json.loads(meta.get("card", "{}"))}
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} has corrupt metadata ({e})") from None
    n = out["n_views"]
    for field, ok in (("card", isinstance(out["card"], dict)),
                      ("geometry", out["geometry"] is None or isinstance(out["geometry"], dict)),
                      ("n_views", n is None or isinstance(n, int) and not isinstance(n, bool) and n >= 1)):
        if not ok:
            raise InputError(f"{path} has corrupt metadata: {field} is {out[field]!r}")
    return out


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> tuple[DiCE, dict]:
    """(model in eval mode on ``device``, metadata; float32 unless ``dtype``). Corrupt or foreign
    files raise ``InputError``."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .dice import DiCE

    meta = read_model_metadata(path)
    model = DiCE(meta["config"])
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"cannot read model weights from {path}: {str(e).splitlines()[0]}") from None
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise InputError(f"{path} does not match its own config ({len(missing)} missing, "
                         f"{len(unexpected)} unexpected tensors)")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise InputError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise InputError(f"{path}: tensor {k} holds NaN or infinite values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model = model.to(device=device, dtype=dtype or torch.float32).eval()
    return model, meta


def model_geometry(meta: dict, n_views: int, arc_degrees: float = 180.0) -> Geometry | None:
    """The geometry a model was trained for, with ``n_views`` uniform angles over ``arc_degrees``."""
    if not meta.get("geometry"):
        return None
    return Geometry.from_dict({**meta["geometry"], "n_views": n_views, "arc_degrees": arc_degrees})
