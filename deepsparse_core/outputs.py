"""Checks of output paths, made before any work so a bad ``--out`` fails at once, in one line."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _require_writable_folder(folder: Path, target: Path) -> None:
    if not folder.is_dir():
        raise InputError(f"cannot write {target}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {target}: folder {folder} is not writable")


def check_output_file(path: str | os.PathLike, create_folder: bool = True) -> Path:
    """Refuse an output file path that cannot be written: a folder, a path below a file, a
    read-only folder, or (``create_folder=False``) a folder that does not exist."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder, give a file name")
    folder = _existing_ancestor(path.parent)
    if folder != Path(os.path.abspath(path.parent)) and folder.is_dir() and not create_folder:
        raise InputError(f"{path}: folder {path.parent} does not exist")
    _require_writable_folder(folder, path)
    return path


def check_output_folder(path: str | os.PathLike) -> Path:
    """Refuse an output folder that is an existing file, lies below a file or is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {path} exists and is not a folder")
    _require_writable_folder(_existing_ancestor(path), path)
    return path
