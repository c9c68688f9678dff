"""Checks of output paths, made before any work so a bad ``--out`` fails at once, in one line.

:func:`check_inputs_are_safe` is run for every command: no output may be one of the command's
inputs (the same file through symbolic or hard links), and no output may be an existing special
file or link, since writes are atomic renames that would replace it with a regular file.
"""

from __future__ import annotations

import contextlib
import os
import stat
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


# command-line options (argparse dests) that name files a command writes, and those it reads
OUTPUT_OPTIONS = ("out", "reference_out", "json", "markdown")
TEXT_OUTPUTS = ("json", "markdown")
VOLUME_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".mrc", ".dcm", ".npy")  # CT volume files
DATA_EXTENSIONS = VOLUME_EXTENSIONS + (".safetensors",)  # volumes, projections and model files
INPUT_OPTIONS = ("ct", "projections", "reference", "reconstruction", "geometry", "input", "recipe", "split_file",
                 "flat", "dark", "model", "init", "info", "data", "val_data", "held_out")


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _paths(value, pairs: bool = False) -> list[str]:
    """Path-like strings of an option value (lists; with ``pairs``, ``NAME:N=PATH`` model pairs;
    numbers are skipped)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in values:
        if v is None or isinstance(v, (bool, int, float)):
            continue
        text = os.fspath(v) if isinstance(v, os.PathLike) else str(v)
        out.append(text.split("=", 1)[1] if pairs and "=" in text and not os.path.exists(text) else text)
    return out


def check_inputs_are_safe(args) -> None:
    """Refuse, before any work, an input that is not a regular file or folder (a FIFO or a device
    would hang the read), and an output that names one of the command's inputs or an existing file
    that is not a regular one (a device such as /dev/null, a FIFO, a symbolic link)."""
    outputs = [(d, p) for d in OUTPUT_OPTIONS for p in _paths(getattr(args, d, None))]
    inputs = [(d, p) for d in INPUT_OPTIONS for p in _paths(getattr(args, d, None), pairs=d == "model")]
    for dest, src in inputs:  # a FIFO or a device would block the read forever, or never end
        if os.path.exists(src) and not (os.path.isfile(src) or os.path.isdir(src)):
            raise InputError(f"{_option(dest)} {src} is not a regular file (a pipe or a device?): give a file")
    for dest, out in outputs:
        if not os.path.lexists(out) or os.path.isdir(out):
            continue  # folders (also through a link): written into, never renamed onto; the command checks them
        mode = os.lstat(out).st_mode
        if not stat.S_ISREG(mode):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise InputError(f"{_option(dest)} {out} is {kind}: writing would replace it; give a new file name")
        if dest in TEXT_OUTPUTS and out.lower().endswith(DATA_EXTENSIONS):
            raise InputError(f"{_option(dest)} {out} is an existing volume or model file: writing text would "
                             "replace it; give a new file name")
        for in_dest, src in inputs:
            if os.path.exists(src) and os.path.samefile(out, src):
                raise InputError(f"{_option(dest)} {out} is the input {_option(in_dest)} {src}: "
                                 "writing would destroy it; give another output name")
    seen: dict = {}
    for dest, out in outputs:
        key = os.path.realpath(out)
        if key in seen:
            raise InputError(f"{_option(dest)} and {_option(seen[key])} name the same file {out}")
        seen[key] = dest


@contextlib.contextmanager
def folder_lock(folder: Path, busy: str, error=InputError):
    """Hold an exclusive ``flock`` on the existing ``folder`` itself for the block (no lock file is
    ever left behind); another process holding it raises ``error(busy)`` at once. Unlocked where
    there is no flock (Windows)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except OSError:
            raise error(busy) from None
        yield folder
    finally:
        os.close(fd)  # releases the lock
