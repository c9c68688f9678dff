"""The compact real CTs that travel to a lent GPU machine (``.gpu_data/``, read by ``gpu_run.sh``).

Usage:
    python benchmarks/gpu_data.py [--out .gpu_data] [--min-spacing 2] NAME[:MM] [NAME[:MM] ...]

A device call carries at most 64 MiB, the repository and the SimpleITK + nibabel wheels (56 MB)
included, which leaves about 7 MB for CTs. Each named sample (``deepsparse samples``; it must be
in the cache already) is written as a gzip-compressed int16 NRRD:

* resampled to at least ``MM`` mm per axis (default ``--min-spacing``) by the engine's
  ``preprocess.resample`` (anti-aliased, grid centre kept); axes that are already coarser keep
  their spacing, so a CT that is coarse everywhere is copied unresampled;
* HU clipped to [-1024, 1200]: the training window is [-1000, 1000] HU, so nothing inside it
  changes, and the noise above it no longer costs bytes;
* with ``--hu-step S``, HU rounded to multiples of S: S = 8 adds a uniform error of 2.3 HU rms
  (0.0012 of the training window, far below a CT's own noise) and makes the files 0.45-0.65x as large
  (``body`` at 5 mm: 4.56 -> 2.11 MB), which leaves room for the whole-body CT. S is 1, 2, 4, 8 or
  16, which divide both bounds, so air and the padding outside the field both stay -1024.

The `fast` grid is 3.2 mm, so 2 mm sources lose little; 3 mm ones (``chest:3``) are slightly
softer. The 2026-12-04 GPU runs carried ``chest:3 chest4 abdomen2 head cta:3 tptbox`` (6.6 MB;
docs/model_status.md); without ``body`` they cost the held-out abdomen 0.6-1.1 dB, so the next carries
``--hu-step 8 chest:3 chest4 abdomen2 head cta:3 tptbox body lung1:3``. Prints each file's size and the total.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepsparse_core.data.preprocess import resample  # noqa: E402
from deepsparse_core.data.samples import fetch_sample  # noqa: E402
from deepsparse_core.data.volume import Volume  # noqa: E402
from deepsparse_core.errors import DeepSparseError  # noqa: E402

HU_RANGE = (-1024, 1200)
HU_STEPS = (1, 2, 4, 8, 16)   # the divisors of both bounds (gcd 16) that are powers of 2: air stays -1024


def compact(image: sitk.Image, min_spacing: float, hu_step: int = 1) -> sitk.Image:
    """``image`` resampled to at least ``min_spacing`` mm per axis, rounded to multiples of ``hu_step`` HU,
    HU clipped, int16.

    The resampling is the engine's (:func:`deepsparse_core.data.preprocess.resample`): linear, anti-aliased,
    the grid centre kept, points outside the input air.
    """
    volume = Volume.from_sitk(sitk.Cast(image, sitk.sitkFloat32))
    spacing = np.array(volume.spacing)                    # (sz, sy, sx) mm
    new = np.maximum(spacing, min_spacing)
    if (new > spacing).any():
        volume = resample(volume, new, order=1, fill=float(HU_RANGE[0]))
    array = np.clip(np.rint(volume.array / hu_step) * hu_step, *HU_RANGE).astype(np.float32)
    return sitk.Cast(volume.with_array(array).to_sitk(), sitk.sitkInt16)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("samples", nargs="+", metavar="NAME[:MM]", help="cached samples, each with an optional spacing")
    p.add_argument("--out", default=".gpu_data", help="output folder (default .gpu_data)")
    p.add_argument("--min-spacing", type=float, default=2.0, help="default minimum spacing, mm (default 2)")
    p.add_argument("--hu-step", type=int, default=1, choices=HU_STEPS, metavar="{1,2,4,8,16}",
                   help="round HU to multiples of this (default 1; 8 makes the files 0.45-0.65x as large)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for item in args.samples:
        name, _, mm = item.partition(":")
        try:
            spacing = float(mm) if mm else args.min_spacing
            if not spacing > 0:
                raise ValueError
        except ValueError:
            print(f"error: {item}: the spacing after ':' must be a positive number of mm", file=sys.stderr)
            return 2
        try:
            source = fetch_sample(name, "image", download=False)
        except DeepSparseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if source.is_dir():
            print(f"error: {name} is a DICOM series; give single-file samples", file=sys.stderr)
            return 2
        try:
            image = compact(sitk.ReadImage(str(source)), spacing, args.hu_step)
        except DeepSparseError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 2
        path = out / f"{name}.nrrd"
        sitk.WriteImage(image, str(path), True, 9)
        total += path.stat().st_size
        print(f"{path}: {image.GetSize()} at {', '.join(f'{s:.2f}' for s in image.GetSpacing())} mm, "
              f"{path.stat().st_size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
