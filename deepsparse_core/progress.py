"""Progress reporting: tqdm bars for people, JSON lines for programs (the Slicer module).

Every long operation takes a ``progress`` argument: ``None`` (silent), or a :class:`Progress`
created with :func:`progress`. In JSON mode each update is one line on stdout, e.g.
``{"event": "progress", "task": "sart", "done": 3, "total": 20, "elapsed_s": 1.2, "eta_s": 6.8}``;
results and errors are ``{"event": "result", ...}`` / ``{"event": "error", "message": ...}``.
Cancellation: a ``cancel`` callable returning True makes :meth:`Progress.update` raise
:class:`Cancelled`. When stderr is not a terminal (a log file, a pipe) the bar is replaced by a plain
line every :data:`LOG_INTERVAL_S` seconds (percentage, elapsed, ETA) and, after any, one at the end:
work shorter than the interval prints nothing.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Callable

_MODE = {"json": False, "quiet": False, "stream": None}


class Cancelled(Exception):
    """The user cancelled the operation."""


def set_mode(json_lines: bool = False, quiet: bool = False, stream=None) -> None:
    """Global output mode chosen by the command line (``--progress json|bar|none``).

    ``stream``: where JSON lines go (default: ``sys.stdout`` at the time of each event); the
    command line passes the real stdout and sends everything else printed to stderr.
    """
    _MODE.update(json=json_lines, quiet=quiet, stream=stream)


def mode() -> str:
    """The current output mode: 'json', 'none' (quiet) or 'bar'."""
    return "json" if _MODE["json"] else "none" if _MODE["quiet"] else "bar"


def strict_json(value):
    """``value`` with every non-finite float (NaN, +-Infinity) replaced by None, so that
    ``json.dumps(..., allow_nan=False)`` writes strict JSON (RFC 8259 has no NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps(value, **kwargs) -> str:
    """Strict JSON text of ``value`` (non-finite floats become null)."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def emit(event: str, **fields) -> None:
    """One strict JSON line on stdout (JSON mode only)."""
    if _MODE["json"]:
        print(dumps({"event": event, **fields}), file=_MODE["stream"] or sys.stdout, flush=True)


def say(text: str) -> None:
    """A line for people: on stdout, or as a ``message`` event in JSON mode (stdout is JSON only)."""
    if _MODE["json"]:
        emit("message", text=text)
    else:
        print(text)


LOG_INTERVAL_S = 5.0  # seconds between progress lines when stderr is not a terminal


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


def log_line(info: dict) -> str:
    """One progress line for a log: ``sart: 45% (9/20), 0:12 elapsed, ETA 0:15``."""
    total, done = info["total"], info["done"]
    pct = f"{100 * done / total:.0f}% " if total else ""
    eta = f", ETA {_clock(info['eta_s'])}" if info.get("eta_s") is not None and done < total else ""
    return f"{info['task']}: {pct}({done}/{total}), {_clock(info['elapsed_s'])} elapsed{eta}"


class Progress:
    """A progress bar / JSON-lines reporter with optional callback and cancellation."""

    def __init__(self, total: int, task: str, callback: Callable[[dict], None] | None = None,
                 cancel: Callable[[], bool] | None = None, unit: str = "it"):
        self.total, self.task, self.done = total, task, 0
        self.callback, self.cancel = callback, cancel
        self.start = time.perf_counter()
        self._bar, self._lines, self._last_line, self._printed, self._ended = None, False, self.start, False, False
        if not _MODE["json"] and not _MODE["quiet"] and callback is None:
            if _is_terminal(sys.stderr):
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=task, unit=unit, file=sys.stderr, leave=False)
            else:  # a log file or a pipe: a plain line every LOG_INTERVAL_S, no carriage returns
                self._lines = True

    def update(self, n: int = 1, **fields) -> None:
        if self.cancel is not None and self.cancel():
            self.close()
            raise Cancelled(f"{self.task} cancelled")
        self.done += n
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        info = {"task": self.task, "done": self.done, "total": self.total,
                "elapsed_s": round(elapsed, 3), "eta_s": None if eta is None else round(eta, 3), **fields}
        if self._bar is not None:
            self._bar.update(n)
            if fields:
                self._bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in fields.items()})
        emit("progress", **info)
        if self._lines and not self._ended:
            last = self.done >= self.total
            if time.perf_counter() - self._last_line >= LOG_INTERVAL_S or last and self._printed:
                self._last_line, self._printed, self._ended = time.perf_counter(), True, last
                print(log_line(info), file=sys.stderr, flush=True)
        if self.callback is not None:
            self.callback(info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(total: int, task: str, callback=None, cancel=None, enabled: bool = True, unit: str = "it"):
    """A :class:`Progress`, or a silent one when ``enabled`` is False and no callback is given."""
    if not enabled and callback is None and cancel is None:
        return _Silent()
    return Progress(total, task, callback, cancel, unit)


class _Silent:
    def update(self, n: int = 1, **fields) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
