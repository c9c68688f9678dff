"""The module's own background commands (``python -m DeepSparseSlicerLib.worker ...``).

They run in a job's child process (PythonSlicer inside Slicer), never in the GUI process, and
talk JSON lines like ``deepsparse --progress json``: ``progress``, ``result`` and ``error`` events.
No MRML, no Qt: files in, files out.

* ``catalog [--user-models DIR]``: :func:`.engine.catalog` (torch version, devices, models).
* ``compare SPEC.json``: PSNR/SSIM (and VIF) of reconstructions against a ground truth, with the
  engine's metrics, after resampling the ground truth onto each reconstruction's grid; optional
  difference volumes. Volumes are LPS files (``deepsparse_core.data.volume_io``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np


def _read(path):
    from deepsparse_core.data.volume_io import read_volume

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # [0, 1] volumes are not HU, on purpose
        return read_volume(path, check_hu=False, allow_constant=True)


def on_grid(volume, grid) -> np.ndarray:
    """``volume``'s voxels resampled (linear, physical LPS space) onto ``grid``'s, or as they are
    when the grids match; outside the volume: its minimum (air)."""
    same = (volume.shape == grid.shape and np.allclose(volume.spacing, grid.spacing)
            and np.allclose(volume.origin, grid.origin, atol=1e-3)
            and np.allclose(volume.direction, grid.direction, atol=1e-6))
    if same:
        return volume.array
    import SimpleITK as sitk

    out = sitk.Resample(volume.to_sitk(), grid.to_sitk(), sitk.Transform(), sitk.sitkLinear,
                        float(volume.array.min()), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def normalized(array: np.ndarray, units: str, window) -> np.ndarray:
    """[0, 1] attenuation: HU through the window (``normalize_hu``), [0, 1] volumes clipped."""
    from deepsparse_core.data.hu import normalize_hu

    if units == "hu":
        return normalize_hu(array, tuple(window))
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def compare(spec: dict) -> list[dict]:
    """Scores per reconstruction of ``spec`` (see :meth:`.compare.Comparison.start`)."""
    from deepsparse_core.data.volume_io import write_volume
    from deepsparse_core.evaluation.metrics import psnr, ssim, vif
    from deepsparse_core.progress import emit, progress

    gt = _read(spec["ground_truth"]["path"])
    units, window = spec["ground_truth"]["units"], spec["window"]
    rows = []
    with progress(len(spec["reconstructions"]), "compare") as bar:
        for i, entry in enumerate(spec["reconstructions"]):
            rec = _read(entry["path"])
            gt01 = normalized(on_grid(gt, rec), units, window)
            rec01 = normalized(rec.array, entry["units"], window)
            row = {"index": i, "psnr": psnr(rec01, gt01), "ssim": ssim(rec01, gt01)}
            if spec.get("vif"):
                row["vif"] = vif(rec01, gt01)
            if spec.get("difference"):
                scale = (window[1] - window[0]) if units == "hu" else 1.0
                path = Path(spec["out_dir"]) / f"difference_{i}.nii"
                write_volume(rec.with_array((rec01 - gt01) * scale), path, compress=False)
                row["difference"] = str(path)
            emit("result", **row)
            rows.append(row)
            bar.update(1)
    return rows


def main(argv=None) -> int:
    from deepsparse_core.errors import DeepSparseError
    from deepsparse_core.progress import emit, set_mode

    parser = argparse.ArgumentParser(prog="DeepSparseSlicerLib.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("catalog")
    p.add_argument("--user-models", default=None)
    p = sub.add_parser("compare")
    p.add_argument("spec")
    args = parser.parse_args(argv)
    set_mode(json_lines=True)
    try:
        if args.command == "catalog":
            from .engine import catalog

            emit("result", **catalog(args.user_models))
        else:
            compare(json.loads(Path(args.spec).read_text()))
    except DeepSparseError as exc:
        emit("error", message=str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
