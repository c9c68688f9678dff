"""Simulating projections of a CT node and reconstructing projections nodes, as background jobs.

Each job's inputs are written by the GUI thread before it starts; the job runs ``deepsparse simulate`` / ``reconstruct`` in a
child process and, when it succeeds, makes the output nodes on the polling thread. Outputs in
patient space (ground truth, reconstruction) are placed like the CT (its IJKToRAS through the
engine's LPS placement) and put under the CT's parent transform.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from . import engine, parameters
from .background import Background, write_volumes
from .catalog import Catalog
from .geometry_bridge import volume_from_node
from .jobs import Job
from .nodes import METHOD, REF_PROJECTIONS, REF_SOURCE, SceneNodes, error
from .projections import Projections, geometry_from_settings


@dataclass(frozen=True)
class MethodChoice:
    key: str          # stored in the parameter node: dice (the bundled model for the view count),
    #                   dice:bundled/<file name>, dice:user/<file name>, dice-file, fdk or sart
    label: str
    method: str       # fdk | sart | dice
    model: engine.ModelInfo | None = None

    @property
    def short(self) -> str:
        """The method in output node names (the full label is the node's METHOD attribute)."""
        if self.model is not None:
            return self.model.short
        return "DiCE" if self.method == "dice" else self.label


BUNDLED = MethodChoice("dice", "DiCE (bundled model for the view count)", "dice")  # the panel's default


class Reconstruction:
    def __init__(self, nodes: SceneNodes, projections: Projections, catalog: Catalog, background: Background):
        self.nodes, self.projections, self.catalog, self.background = nodes, projections, catalog, background

    # ------------------------------------------------------------------ simulate
    def start_simulation(self, ct_node, settings: dict | None = None, seed: int = 0, on_done=None,
                         on_progress=None, on_log=None) -> Job:
        """Simulate sparse-view projections of ``ct_node``; the job makes a projections node
        (``job.outputs["projections"]``) and a ground-truth node (``job.outputs["reference"]``)."""
        s = settings or self.nodes.settings()
        volume = volume_from_node(ct_node)
        geometry = geometry_from_settings(s)
        device, note = self.catalog.resolve_device(s["device"])
        work = self.background.work_dir("simulate")
        with self.background.removed_on_error(work):
            ct_path, geometry_path = work / "ct.nii", None
            if s["geometryPreset"] == parameters.CUSTOM_GEOMETRY:
                geometry_path = work / "geometry.json"
                geometry.save(geometry_path)
            write_volumes({ct_path: volume})
        out = work / "projections.safetensors"
        command = engine.simulate_command(ct_path, out, geometry.n_views, s["arcDegrees"],
                                          s["geometryPreset"], geometry_path, s["noise"], s["photons"],
                                          seed, device)
        ct_id, units = ct_node.GetID(), s["outputUnits"]

        def finish(job: Job):
            from deepsparse_core.data.projections_file import read_projection_arrays

            source = self.nodes.by_id(ct_id)
            name = source.GetName() if source is not None else "CT"
            job.outputs.update(self.projections.add_nodes(read_projection_arrays(out), name, source, units))

        job = self.background.job([command], "simulation", work, on_progress, on_log)
        job.notes += [note] if note else []
        return self.background.start(job, finish, work, on_done)

    # ------------------------------------------------------------------ methods
    def methods(self) -> list:
        """Reconstruction methods: DiCE models (bundled, finetuned), a model file, FDK, SART."""
        models = self.catalog.models()
        choices = [BUNDLED] if any(m.bundled for m in models) else []
        choices += [MethodChoice(m.key, m.label, "dice", m) for m in models]
        choices.append(MethodChoice("dice-file", "DiCE (model file...)", "dice"))
        return choices + [MethodChoice("fdk", "FDK", "fdk"), MethodChoice("sart", "SART", "sart")]

    def method_choice(self, key: str, model_file: str = "") -> MethodChoice:
        if key == BUNDLED.key:  # the engine picks the bundled model for the projections' view count
            return BUNDLED
        if key == "dice-file":
            if not model_file or not Path(model_file).is_file():
                raise error("choose a DiCE model file (.safetensors)")
            return MethodChoice(key, "DiCE (model file...)", "dice", engine.model_info(model_file))
        for choice in self.methods():  # (dice:<absolute path>: a scene saved by an earlier version)
            if choice.key == key or choice.model is not None and key == f"dice:{choice.model.path}":
                return choice
        if key.startswith("dice:"):
            raise error(f"the DiCE model {key[len('dice:'):]} is gone: choose another method")
        raise error(f"unknown reconstruction method '{key}'")

    # ------------------------------------------------------------------ reconstruct
    def start_reconstruction(self, projections_node, settings: dict | None = None, on_done=None,
                             on_progress=None, on_log=None) -> Job:
        """Reconstruct; the job makes a new scalar volume node (``job.outputs["volume"]``) in the
        same physical space as the CT the projections came from. The engine checks a DiCE model
        against the projections (view count, geometry) and its message is the job's error."""
        from deepsparse_core.data.projections_file import save_projection_arrays

        s = settings or self.nodes.settings()
        data = self.projections.data(projections_node)
        choice = self.method_choice(s["method"], s["modelFile"])
        resolution = engine.output_grid(data.geometry.volume_shape, int(s["resolution"]))
        device, note = self.catalog.resolve_device(s["device"])
        units = s["outputUnits"] if s["outputUnits"] in parameters.UNITS else "hu"
        k = int(s["dataConsistency"])
        work = self.background.work_dir("reconstruct")
        proj_path, out = work / "projections.safetensors", work / "reconstruction.nrrd"
        with self.background.removed_on_error(work):
            save_projection_arrays(proj_path, data.projections, data.geometry, data.noise, None, data.placement)
        command = engine.reconstruct_command(proj_path, out, choice.method, device, units,
                                             choice.model.path if choice.model else None,
                                             s["sartIterations"], resolution, k if k >= 0 else None)
        proj_id, window = projections_node.GetID(), data.geometry.hu_window
        name = f"{choice.short} {data.geometry.n_views} views"

        def finish(job: Job):
            from deepsparse_core.data.volume_io import read_volume

            proj = self.nodes.by_id(proj_id)
            source = proj.GetNodeReference(REF_SOURCE) if proj is not None else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # [0, 1] outputs are not HU, on purpose
                volume = read_volume(out, check_hu=False, allow_constant=True)
            base = source.GetName() if source is not None else "DeepSparse"
            with self.nodes.new_nodes() as created:
                node = self.nodes.add_volume(volume, f"{base} {name}", created, units=units, window=window,
                                             role="reconstruction")
                node.SetAttribute(METHOD, choice.label)
                if proj is not None:
                    node.SetNodeReferenceID(REF_PROJECTIONS, proj.GetID())
                self.nodes.same_parent_transform(node, source)
            job.outputs["volume"] = node

        job = self.background.job([command], f"{choice.label} reconstruction", work, on_progress, on_log)
        job.notes += [note] if note else []
        return self.background.start(job, finish, work, on_done)
