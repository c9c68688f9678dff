"""Atomic safetensors writing and checked metadata reading, shared by every file format here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_path, kept_note
from .errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import torch


def save_atomic(tensors: dict[str, torch.Tensor | np.ndarray], path: str | Path, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (all torch tensors, or all numpy arrays: then torch is not imported) to
    ``path`` through a temporary file in the same folder and a rename, so a failure never leaves a
    half-written file."""
    from safetensors import SafetensorError

    if all(hasattr(t, "__array_interface__") for t in tensors.values()):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file

    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except SafetensorError as e:  # e.g. "I/O error: No space left on device (os error 28)"
        reason = str(e).splitlines()[0].replace("Error while serializing: ", "")
        raise InputError(f"{path}: cannot write: {reason}; {kept_note(path)}") from None
    return Path(path)


def read_metadata(path: str | Path, fmt: str, version: str, what: str) -> dict[str, str]:
    """The metadata of a safetensors file of format ``fmt``/``version``; one-line InputError otherwise."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only: no torch needed
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"cannot read {what} {path}: {str(e).splitlines()[0]}") from None
    if meta.get("format") != fmt:
        raise InputError(f"{path} is not a {what} (format {meta.get('format')!r}, expected {fmt!r})")
    if meta.get("version") != version:
        raise InputError(f"{path} has {what} version {meta.get('version')}, expected {version}")
    _require_tensor_memory(path, what)
    return meta


def _require_tensor_memory(path: Path, what: str) -> None:
    """Refuse a file whose header declares tensors beyond its own size (truncated) or beyond the
    memory available now (e.g. a sparse file declaring 36 GiB), before any tensor is read. Loading
    may convert float16 to float32 and copy once: 3x the stored bytes are asked for."""
    import json
    import struct

    from .resources import require_available

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))  # safe_open has just parsed the same header
    ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
    stored = max(ends, default=0)
    if 8 + n + stored > path.stat().st_size:
        raise InputError(f"{path}: truncated {what} (its header declares {stored} bytes of tensors)")
    require_available(3.0 * stored, f"{path.name} ({what})")
