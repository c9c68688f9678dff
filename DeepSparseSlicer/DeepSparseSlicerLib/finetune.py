"""Finetuning a DiCE model on the user's CTs, in one job.

Training data is made by ``deepsparse prepare`` (the engine's one path from CTs to a training
folder: every piece of a long scan, a manifest), from a folder of CTs or from volume nodes
written by the GUI thread before the job starts; then one ``deepsparse train`` run adapts the base
model at the target view count with a low rate and its BatchNorm statistics kept
(:func:`engine.finetune_commands`; why: docs/slicer.md). The new model is saved in the user models
folder as ``<name>.safetensors`` and joins the method list.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

from . import engine
from .background import Background, write_volumes
from .catalog import Catalog
from .geometry_bridge import volume_from_node
from .jobs import Job
from .nodes import SceneNodes, error
from .projections import geometry_from_settings


class Finetuning:
    def __init__(self, nodes: SceneNodes, catalog: Catalog, background: Background, user_models_dir: Path):
        self.nodes, self.catalog, self.background = nodes, catalog, background
        self.user_models_dir = Path(user_models_dir)

    def base_model_path(self, key: str, model_file: str, n_views: int) -> Path:
        """The model to start from: a model file, a listed model, or the bundled one serving
        ``n_views`` (else any bundled model: finetuning adapts it to ``n_views``)."""
        if key == "file":
            if not model_file or not Path(model_file).is_file():
                raise error("choose the base model file (.safetensors)")
            return Path(model_file)
        if key:  # a listed model: bundled/<file name> or user/<file name> (or an absolute path, older scenes)
            for model in self.catalog.models():
                if model.key == f"dice:{key}" or str(model.path) == key:
                    return model.path
            raise error(f"the base model {key} is gone: choose another one")
        bundled = [m for m in self.catalog.models() if m.bundled]
        for model in bundled:
            if n_views in model.view_counts or model.n_views == n_views:
                return model.path
        if bundled:
            return bundled[0].path
        raise error("no bundled DiCE model to start from: choose a base model file")

    def _training_input(self, folder, volume_nodes, work: Path):
        """(input of ``prepare``, number of CTs); volume nodes are written to ``work`` first."""
        if volume_nodes:
            cts = work / "cts"
            cts.mkdir(parents=True)
            files = {cts / f"ct_{i:03d}.nii": volume_from_node(n) for i, n in enumerate(volume_nodes)}
            write_volumes(files)
            return cts, len(files)
        if not folder or not Path(folder).is_dir():
            raise error("choose a folder of CTs (or check volume nodes) to finetune on")
        engine.core_location()
        from deepsparse_core.data.prepare import find_cts

        return Path(folder), len(find_cts(folder))  # InputError names prepare's CT_SUFFIXES

    def start(self, name: str, n_views: int, epochs: int, base_model,
              folder=None, volume_nodes=(), device: str = "auto", n_candidates: int = 200,
              points: int | None = None, on_done=None, on_progress=None, on_log=None) -> Job:
        """Finetune ``base_model`` on a folder of CTs or on volume nodes, in the background. An
        epoch is one pass over the CTs (steps = ceil(epochs x CTs / batch of 2)); the new model is
        ``job.outputs["model"]``."""
        from deepsparse_core.model.model_file import model_geometry, read_model_metadata

        if int(epochs) < 1:
            raise error(f"epochs must be at least 1, got {epochs}")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "").strip("._")
        if not safe:
            raise error("give the new model a name")
        final = self.user_models_dir / f"{safe}.safetensors"
        if final.exists():
            raise error(f"a model named '{safe}' exists already ({final}); choose another name")
        base_model = Path(base_model)
        # candidates on the scanner the base model was trained for (the settings' one if it does not say)
        geometry = model_geometry(read_model_metadata(base_model), n_candidates, 180.0) \
            or geometry_from_settings(self.nodes.settings()).with_views(n_candidates, math.pi)
        device, note = self.catalog.resolve_device(device)
        work = self.background.work_dir("finetune")
        with self.background.removed_on_error(work):
            source, n_cts = self._training_input(folder, volume_nodes, work)
            geometry.save(work / "geometry.json")
            batch = min(2, n_cts)
            steps = math.ceil(int(epochs) * n_cts / batch)
            commands, model_out = engine.finetune_commands(source, work, work / "geometry.json", n_candidates,
                                                           n_views, steps, base_model, batch, device, points)

        def finish(job: Job):
            engine.model_info(model_out)  # a readable model, or the job fails with the reason
            self.user_models_dir.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(f".{final.name}.partial")
            shutil.copyfile(model_out, partial)
            os.replace(partial, final)
            self.catalog.add_model(final)
            job.outputs["model"] = final

        job = self.background.job(commands, f"finetuning '{safe}'", work, on_progress, on_log)
        job.notes += [note] if note else []
        return self.background.start(job, finish, work, on_done)
