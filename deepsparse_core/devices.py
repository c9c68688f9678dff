"""Device choice shared by every entry point (imports torch only)."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(device: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error.

    Under torchrun (``local_rank`` given) CUDA means ``cuda:LOCAL_RANK``.
    """
    if isinstance(device, torch.device):
        return device
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise InputError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was requested but no CUDA GPU is available (use --device cpu or auto)")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if local_rank is not None:
        return torch.device("cuda", local_rank)
    dev = torch.device("cuda" if device == "auto" else device)
    return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
