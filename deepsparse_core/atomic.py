"""File helpers: atomic writes (temporary name in the target folder, renamed when complete), checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it is renamed to ``path`` with the usual
    permissions (0666 minus umask), on error it is removed, so no half-written file is ever left.
    ``suffix``: the temporary name's extension (default ``path``'s last one; a writer that picks its
    format by extension passes the whole one, e.g. ".nii.gz")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short hidden name (not the target's: a 250-byte target name plus a suffix would pass 255 bytes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ds-", suffix=".tmp" + (suffix or path.suffix)[:16])
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def kept_note(path: str | Path) -> str:
    """The end of a failed write's message: whether an earlier file at ``path`` is still there."""
    return "the existing file was left as it was" if Path(path).exists() else "nothing was written"


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
