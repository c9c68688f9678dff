"""What the engine offers on this machine: DiCE models and devices, found by ``deepsparse_core``.

Finding them imports torch (``deepsparse_core.inference`` for the bundled models,
``deepsparse_core.devices`` for the device choice), which takes seconds, so it is always done in a
background process (:meth:`Catalog.start_probe`), never in Slicer's: the Widget starts the probe
when the panel opens and keeps the actions that need its answer waiting for it; scripts and tests
may just call the methods, which then run the probe and wait for it.
"""

from __future__ import annotations

from . import engine
from .background import Background
from .jobs import Job
from .nodes import error

PROBE_TIMEOUT_S = 300.0


class Catalog:
    """The engine's models (bundled, then the user's finetuned ones) and device choices."""

    def __init__(self, user_models_dir, background: Background):
        self.user_models_dir = user_models_dir
        self.background = background
        self._found: dict | None = None
        self._probe: Job | None = None

    @property
    def known(self) -> bool:
        """True once the engine was asked (background probe done, or a method called)."""
        return self._found is not None

    @property
    def searching(self) -> bool:
        """True while a probe runs and nothing is known yet."""
        return self._found is None and self._probe is not None and self._probe.running

    def found(self) -> dict:
        """:func:`.engine.catalog`'s answer; when no probe has answered yet, the running probe (or a
        new one) waited for. The panel never waits here: it keeps its actions waiting for the probe."""
        if self._found is None:
            job = self._probe if self._probe is not None and self._probe.running else self.start_probe()
            job.wait(PROBE_TIMEOUT_S)
            if self._found is None:
                raise error(f"DeepSparse's models and devices were not found: {job.error or job.status}")
        return self._found

    def start_probe(self, on_done=None) -> Job:
        """Ask the engine in a background process; its answer is used once the job ends."""
        work = self.background.work_dir("catalog")
        command = engine.worker_command("catalog", "--user-models", self.user_models_dir)

        def finish(job: Job):
            answers = [r for r in job.results if "devices" in r]
            if not answers:
                raise RuntimeError("the engine did not report its models and devices")
            self._found = answers[-1]

        self._probe = self.background.job([command], "model search", work)
        return self.background.start(self._probe, finish, work, on_done)

    def add_model(self, path) -> None:
        """A new model file (finetuned) joins the list without asking the engine again."""
        info = engine.model_info(path)
        models = self.found()["models"]
        models[:] = [m for m in models if m["path"] != str(info.path)] + [info.to_dict()]

    def models(self) -> list:
        return [engine.ModelInfo.from_dict(m) for m in self.found()["models"]]

    def resolve_device(self, requested: str) -> tuple[str, str | None]:
        """(device for the engine, note for the user), by ``deepsparse_core.devices``: a GPU request
        without a GPU runs on the CPU and says why."""
        entry = self.found()["devices"].get(requested) or self.found()["devices"]["auto"]
        if "error" in entry:
            return "cpu", f"No usable CUDA GPU ({entry['error']}): running on the CPU instead (slower)."
        if requested == "auto" and entry["device"] == "cpu":
            return "cpu", "No CUDA GPU found: using the CPU."
        return entry["device"], None

    def report(self) -> str:
        """What reconstructions run on, for the panel."""
        if not self.known:
            return "Looking for GPUs and models..."
        gpus = self.found()["gpus"]
        if gpus:
            return f"GPU found: {', '.join(gpus)}"
        return "No CUDA GPU found: reconstructions run on the CPU"
