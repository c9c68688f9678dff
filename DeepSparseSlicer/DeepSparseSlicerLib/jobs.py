"""Background processes that run ``deepsparse_core`` and report through JSON lines.

A :class:`Job` runs one or more commands one after the other (e.g. finetuning: prepare, then train),
each in a child process whose standard output and error are merged. A reader thread queues the lines;
:meth:`Job.poll` -- called from a ``qt.QTimer`` in Slicer, or in a loop by :meth:`Job.wait` --
parses them on the caller's thread: ``{"event": "progress" | "result" | "error", ...}`` lines
(``python -m deepsparse_core --progress json ...``) update :attr:`Job.progress`,
:attr:`Job.results` and :attr:`Job.error`; ``{"event": "message", "text": ...}`` and every other
line go to :attr:`Job.log`. Callbacks
(``on_progress``, ``on_log`` and the done callbacks) therefore run on the thread that polls, the
only one allowed to touch the MRML scene and the GUI.

:meth:`Job.cancel` stops the whole process tree without waiting for it: each command starts in a new
session (POSIX) or process group (Windows), so its children (data loaders, pip...) die with it;
SIGTERM now, SIGKILL after :data:`KILL_GRACE_S` from a reaper thread, which then runs what waited
for the processes to end (:meth:`Job.when_stopped`: removing the working folder). On Linux a job
also dies with its parent (``PR_SET_PDEATHSIG``), so a crashed Slicer leaves nothing running.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
_END = object()  # queued by the reader thread at end of output
LOG_LINES_KEPT = 2000
KILL_GRACE_S = 3.0


class Job:
    """Commands run in sequence in a background process; see the module docstring."""

    def __init__(self, commands: list[list[str]], name: str = "job", env: dict | None = None,
                 cwd: str | None = None, on_progress: Callable[[dict], None] | None = None,
                 on_log: Callable[[str], None] | None = None):
        if not commands:
            raise ValueError("a job needs at least one command")
        self.commands = [[str(a) for a in c] for c in commands]
        self.name, self.env, self.cwd = name, env, cwd
        self.on_progress, self.on_log = on_progress, on_log
        self.status = "pending"
        self.step = -1                   # index of the running command (progress: "part" = step + 1)
        self.returncode: int | None = None
        self.progress: dict = {}         # the last progress event
        self.results: list[dict] = []    # every result event, in order
        self.error: str | None = None    # the message of an error event or of the failure
        self.log: list[str] = []         # non-JSON output lines (last LOG_LINES_KEPT)
        self.notes: list[str] = []       # messages for the user (e.g. "no GPU: running on the CPU")
        self.outputs: dict = {}          # what the done callbacks made (nodes, files)
        self.started_at = self.finished_at = None
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue = queue.Queue()
        self._done_callbacks: list[Callable[[Job], None]] = []
        self._stopping: list[Callable[[], object]] | None = None  # after a cancel, until the tree is gone
        self._stopping_lock = threading.Lock()

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def add_done_callback(self, callback: Callable[["Job"], None]) -> None:
        """``callback(job)`` once the job has ended (any status), from :meth:`poll`, in order added."""
        self._done_callbacks.append(callback)

    def fail(self, message: str) -> None:
        """Mark a finished job as failed (used by done callbacks that cannot import its outputs)."""
        self.status, self.error = FAILED, message

    # ------------------------------------------------------------------ running
    def start(self) -> "Job":
        self.status, self.started_at = RUNNING, time.monotonic()
        self._start_step(0)
        return self

    def _start_step(self, index: int) -> None:
        self.step = index
        kwargs = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            kwargs["start_new_session"] = True
            if sys.platform.startswith("linux"):
                kwargs["preexec_fn"] = _die_with_parent
        try:
            self._proc = subprocess.Popen(self.commands[index], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=self.env, cwd=self.cwd, text=True, encoding="utf-8",
                                          errors="replace", bufsize=1, **kwargs)
        except OSError as exc:
            self._finish(FAILED, f"cannot start {self.commands[index][0]}: {exc}")
            return
        threading.Thread(target=self._read, args=(self._proc, self._lines), daemon=True).start()

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\r\n"))
        proc.stdout.close()
        lines.put(_END)

    def poll(self) -> bool:
        """Handle the output received so far; start the next command or finish. True while running."""
        if self.status != RUNNING:
            return False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return True
            if line is _END:
                break
            self._handle_line(line)
        self.returncode = self._proc.wait()
        if self.status != RUNNING:  # cancelled meanwhile
            return False
        if self.returncode == 0 and self.step + 1 < len(self.commands):
            self._start_step(self.step + 1)
            return self.status == RUNNING
        if self.returncode == 0:
            self._finish(SUCCEEDED)
        else:
            self._finish(FAILED, self.error or self._death_message())
        return False

    def _handle_line(self, line: str) -> None:
        event = None
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if not isinstance(event, dict) or "event" not in event:
            self.log.append(line)
            del self.log[:-LOG_LINES_KEPT]
            if self.on_log:
                self.on_log(line)
            return
        kind = event.pop("event")
        if kind == "progress":  # "part": which of the job's commands (1-based) of "parts"
            self.progress = {**event, "part": self.step + 1, "parts": len(self.commands)}
            if self.on_progress:
                self.on_progress(self.progress)
        elif kind == "message":
            self._handle_line(str(event.get("text", "")))
        elif kind == "result":
            self.results.append(event)
        elif kind == "error":
            self.error = str(event.get("message", "unknown error"))

    def _death_message(self) -> str:
        rc = self.returncode
        how = f"exit code {rc}"
        if rc is not None and rc < 0:
            try:
                how = f"killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                how = f"killed by signal {-rc}"
        tail = [line for line in self.log[-5:] if line.strip()]
        detail = f": {tail[-1].strip()}" if tail else ""
        return f"the background process for {self.name} stopped unexpectedly ({how}){detail}"

    def _finish(self, status: str, error: str | None = None) -> None:
        self.status, self.finished_at = status, time.monotonic()
        if error is not None:
            self.error = error
        for callback in self._done_callbacks:
            try:
                callback(self)
            except Exception as exc:  # a failing callback must not hide the others
                self.fail(f"{self.name}: {exc}")

    def cancel(self, reason: str | None = None) -> None:
        """End the job as cancelled now (done callbacks run), its error "<name> cancelled" or
        "<name> cancelled: <reason>"; its process tree is stopped in the background (never blocks)."""
        if self.status != RUNNING:
            return
        if self._proc is not None and self._proc.poll() is None:
            self._stopping = []
            threading.Thread(target=self._reap, args=(self._proc,), daemon=True).start()
        self._finish(CANCELLED, f"{self.name} cancelled" + (f": {reason}" if reason else ""))

    def _reap(self, proc: subprocess.Popen) -> None:
        try:
            kill_process_tree(proc)
        finally:
            with self._stopping_lock:
                after, self._stopping = self._stopping or [], None
            for fn in after:
                fn()

    def when_stopped(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` now, or, after a cancel, once the process tree has exited (on the reaper
        thread: ``fn`` must not touch the scene or the GUI), e.g. remove the working folder that a
        stopping process may still write into."""
        with self._stopping_lock:
            if self._stopping is not None:
                self._stopping.append(fn)
                return
        fn()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> str:
        """Poll until the job ends (for tests and scripts); cancel it after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                self.error = f"{self.name} took longer than {timeout:g} s and was cancelled"
                break
            time.sleep(interval)
        return self.status

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the parent (Slicer) dies, even by a crash. The
    job runs in its own session (for the process-group cancel), so the terminal's hang-up would not
    reach it. Elsewhere a crashed Slicer leaves the job to finish on its own."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_process_tree(proc: subprocess.Popen, grace_s: float = KILL_GRACE_S) -> None:
    """Terminate ``proc`` and every process of its session (POSIX) or tree (Windows)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group id is the child's pid (start_new_session)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:  # whatever ignored SIGTERM, grandchildren included
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass


def python_executable() -> str:
    """The Python that runs jobs: PythonSlicer inside the Slicer application, else this Python."""
    import shutil

    try:
        import slicer

        in_app = hasattr(slicer, "app")
    except ImportError:
        in_app = False
    if in_app:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable


def job_environment(extra_python_paths: list[str] = ()) -> dict:
    """Environment for a job: Slicer's startup environment (or this one) + ``PYTHONPATH`` entries."""
    env = None
    try:
        import slicer

        if hasattr(slicer, "app"):
            env = slicer.util.startupEnvironment()
    except ImportError:
        pass
    env = dict(os.environ if env is None else env)
    paths = [str(p) for p in extra_python_paths] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env
