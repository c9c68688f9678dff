"""Memory bounds: refuse sizes the machine cannot hold before allocating anything."""

from __future__ import annotations

import os

from .errors import InputError


def physical_memory_bytes() -> int | None:
    """Total physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation without swapping (Linux ``MemAvailable``), else the
    physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory_bytes()


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human string (binary units): 1.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def require_memory(nbytes: float, what: str, error=InputError) -> None:
    """Raise ``error`` when ``nbytes`` (one array of ``what``) exceeds this machine's memory."""
    total = physical_memory_bytes()
    if total is not None and nbytes > total:
        raise error(f"{what} needs {format_bytes(nbytes)} of memory, more than this machine's "
                    f"{format_bytes(total)}")


def require_available(nbytes: float, what: str, error=InputError) -> None:
    """Raise ``error`` before reading a file whose header declares ``nbytes`` (what ``what`` would
    take in memory) when that is more than the memory available now: "needs ~N GiB, M GiB available"."""
    available = available_memory_bytes()
    if available is not None and nbytes > available:
        raise error(f"{what} needs ~{format_bytes(nbytes)} of memory, {format_bytes(available)} available")
