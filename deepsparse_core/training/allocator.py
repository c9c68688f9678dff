"""Keep freed host memory for reuse during training (glibc malloc on Linux).

A training step allocates and frees the same large tensors every step (the pixel-aligned point
features grow with batch x views x channels x points: tens of MB at batch 2). glibc serves
blocks above its mmap threshold (at most 32 MiB) with fresh ``mmap`` calls and gives them back on
``free``, so such a process page-faults its working set in again every step. On the campaign machine
one of two otherwise equal one-thread runs did so (about 110,000 minor faults a second, a quarter of
its CPU time in the kernel) and took 0.77 s a step against 0.58 s; with the settings below both took
0.57-0.60 s (docs/model_status.md, day 14).

:func:`keep_freed_memory` first returns what the process holds free (``malloc_trim``: the training
set's loading leaves large freed buffers behind), then makes every later block come from the heap
(``M_MMAP_MAX = 0``) and keeps freed heap memory up to 2 GiB at its top (``M_TRIM_THRESHOLD``), so the
steps reuse their memory. The resident size then stays at the peak of one step. It changes no
numbers. Elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1   # glibc <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2 ** 31 - 1  # bytes (mallopt takes an int)


def _glibc():
    """The C library if it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("mallopt", "malloc_trim", "gnu_get_libc_version")):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Release free memory, then keep later freed blocks for reuse; True if glibc took the settings."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(ctypes.c_size_t(0))
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
