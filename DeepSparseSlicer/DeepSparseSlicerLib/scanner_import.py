"""The Import section: scanner projections through ``deepsparse import``, in a background process.

The panel takes what ``deepsparse import`` takes: a projection stack (``.mha``, ``.nrrd``,
``.nii``, TIFF...) or a folder of 2D images; RTK's geometry XML or a geometry YAML/JSON; what the
images hold (line integrals ``-log(I/I0)``, intensities with flat (+ dark) field files, or
intensities with a scalar I0 (+ dark)); the views (N nearest to uniform, within an arc, or
indices); the detector pitch for files without one; the preset whose detector to resample to
(``fast`` by default, so that the bundled models accept the data). The job runs the engine's
command line (:func:`.engine.import_command`), so the checks, the one-line errors and the warnings
are the command's: errors are the job's error, warnings and the command's summary line its notes.
A projections file of ``simulate`` or ``import`` (``.safetensors``) needs no conversion: it is read
as is (:meth:`.projections.Projections.import_file`).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import engine, parameters
from .background import Background
from .jobs import Job
from .nodes import SceneNodes, error
from .projections import Projections

PROJECTIONS_FILE_SUFFIX = ".safetensors"
WARNING_PREFIX = "warning: "
STACK_NAME = r"\.(safetensors|nii\.gz|nii|nrrd|nhdr|mha|mhd|tiff?|png)$"


def is_projections_file(path) -> bool:
    """A projections file of ``deepsparse simulate`` / ``import``, read without conversion."""
    return bool(path) and str(path).lower().endswith(PROJECTIONS_FILE_SUFFIX)


def _absolute(path: str) -> str:
    """The path as the user sees it (the job runs in its own working folder)."""
    return str(Path(path).expanduser().absolute())


def import_options(s: dict) -> dict:
    """Keyword arguments of :func:`.engine.import_command` from the settings; raises a one-line
    error for what the panel must say before a command can be built (the engine checks the rest)."""
    source, geometry = s["projectionsFile"].strip(), s["geometryFile"].strip()
    if not source:
        raise error("choose the projections to import: a projections file, an image stack or a folder of images")
    if not Path(source).expanduser().exists():
        raise error(f"projections not found: {source}")
    if not geometry:
        raise error("scanner projections need their geometry file (RTK XML, YAML or JSON)")
    values = s["importValues"]
    if values not in engine.IMPORT_VALUES:
        raise error(f"unknown value mode '{values}': choose one of {', '.join(engine.IMPORT_VALUES)}")
    options = {"values": values}
    if values == "flat-dark":
        if not s["flatFile"].strip():
            raise error("choose the flat field file (images without the object), or another value mode")
        options["flat_path"] = _absolute(s["flatFile"].strip())
    if values == "i0":
        options["i0"] = s["i0Value"]
    if values != "line-integrals":
        dark_file, dark_value = s["darkFile"].strip(), float(s["darkValue"])
        if dark_file and dark_value:
            raise error("give a dark field file or a dark value, not both")
        options["dark"] = _absolute(dark_file) if dark_file else (dark_value or None)
    preset = s["detectorLike"]
    options.update(n_views=s["importViews"] or None, view_indices=s["viewIndices"].strip() or None,
                   arc_degrees=s["importArc"] or None, pixel_spacing=s["importPixelSpacing"] or None,
                   detector_like=None if preset in ("", parameters.NO_DETECTOR_PRESET) else preset)
    return options


def import_name(path) -> str:
    """Node name of imported projections: the file name without its suffix, the folder's name for a
    folder, or for a file named ``projections`` (as ``deepsparse export`` writes) its folder's."""
    path = Path(path)
    if path.is_dir():
        return path.name
    stem = re.sub(STACK_NAME, "", path.name, flags=re.I)
    return path.parent.name if stem.lower() == "projections" and path.parent.name else stem


class ScannerImport:
    def __init__(self, nodes: SceneNodes, projections: Projections, background: Background):
        self.nodes, self.projections, self.background = nodes, projections, background

    def start(self, settings: dict | None = None, on_done=None, on_progress=None, on_log=None) -> Job:
        """Run ``deepsparse import`` on the Import settings; the job makes a projections node
        (``job.outputs["projections"]``; ``"reference"`` is None: real scans have no ground truth),
        and its notes hold the engine's warnings and summary (``job.outputs["warnings"]``,
        ``["summary"]``)."""
        s = settings or self.nodes.settings()
        options = import_options(s)
        source = _absolute(s["projectionsFile"].strip())
        name, units = import_name(source), s["outputUnits"]
        work = self.background.work_dir("import")
        out = work / "imported.safetensors"
        command = engine.import_command(source, _absolute(s["geometryFile"].strip()), out, **options)
        wrote = f"wrote {out}: "

        def finish(job: Job):
            from deepsparse_core.data.projections_file import read_projection_arrays

            warnings = [line.strip() for line in job.log if line.startswith(WARNING_PREFIX)]
            summary = next((line[len(wrote):] for line in job.log if line.startswith(wrote)), "")
            outputs = self.projections.add_nodes(read_projection_arrays(out), name, None, units)
            job.outputs.update(outputs, warnings=warnings, summary=summary)
            job.notes += [f"{outputs['projections'].GetName()}: {summary}."] if summary else []
            job.notes += warnings

        job = self.background.job([command], f"import of {name}", work, on_progress, on_log)
        return self.background.start(job, finish, work, on_done)
