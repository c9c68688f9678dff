"""Training progress: a tqdm bar or JSON lines (through :mod:`deepsparse_core.progress`), ``log.jsonl`` in
the run folder and, when asked for and installed, TensorBoard.

JSON mode prints one line per ``log_every`` steps, e.g.
``{"event": "progress", "task": "train", "done": 120, "total": 1000, "elapsed_s": 61.2, "eta_s": 448.8,
"step": 120, "loss": 0.0042, "lr": 0.0001, "val_psnr": 24.1}`` (``done``/``total`` count steps, or seconds
of a ``--minutes`` budget), and ``{"event": "validation", "step": ..., "psnr": ..., "ssim": ...}``.
``log.jsonl`` holds the ``train`` records (with ``elapsed_s``, seconds since this invocation's loop
began: a step rate without the start-up) and the ``validation`` ones.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from ..progress import emit, progress


class TrainLog:
    """Reports of one process; silent (except ``log.jsonl``-free no-ops) on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool, start_step: int, max_steps: int | None,
                 minutes: float | None, tensorboard: bool = False, callback=None, cancel=None):
        self.enabled, self.start_step = enabled, start_step
        self.by_time = max_steps is None
        total = round(minutes * 60) if self.by_time else max_steps - start_step
        self.bar = progress(max(total, 0), "train", callback, cancel, enabled=enabled,
                            unit="s" if self.by_time else "step")
        self.t0 = time.perf_counter()
        self.done = 0
        self.last_val: dict = {}
        self.file = open(run_dir / "log.jsonl", "a") if enabled else None
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("TensorBoard is not installed (pip install tensorboard): logging without it")
            else:
                self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def step(self, step: int, **metrics) -> None:
        """Report training metrics of ``step`` (floats); may raise progress.Cancelled."""
        if not self.enabled:
            return
        self._write({"event": "train", "step": step, "elapsed_s": round(time.perf_counter() - self.t0, 3), **metrics})
        fields = {"step": step, **{k: round(v, 6) for k, v in metrics.items()}}
        if "psnr" in self.last_val:
            fields["val_psnr"] = round(self.last_val["psnr"], 3)
        now = round(time.perf_counter() - self.t0) if self.by_time else step - self.start_step
        self.bar.update(max(now - self.done, 0), **fields)
        self.done = max(now, self.done)

    def validation(self, step: int, scores: dict) -> None:
        if not self.enabled:
            return
        self.last_val = scores
        self._write({"event": "validation", "step": step, **scores})
        emit("validation", step=step, **scores)

    def message(self, text: str) -> None:
        """A line for people (stderr, above the bar); JSON mode emits it as a 'message' event."""
        if not self.enabled:
            return
        emit("message", text=text)
        from ..progress import mode  # noqa: PLC0415 (the bar owns stderr in bar mode)

        if mode() == "bar":
            from tqdm.auto import tqdm

            tqdm.write(text)

    def _write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None:
            step = record["step"]
            prefix = "val" if record["event"] == "validation" else "train"
            for k, v in record.items():
                if isinstance(v, float) and k != "elapsed_s":
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        self.bar.close()
        if self.file:
            self.file.close()
        if self.writer is not None:
            self.writer.close()
