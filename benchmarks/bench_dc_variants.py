"""Data-consistency variants that might keep the PSNR gain without the SSIM cost (issue 16, item 3).

Usage:
    python benchmarks/bench_dc_variants.py MODEL DATA [DATA ...] [--views 6 10] [--json FILE]

For each held-out cache and view count (the authors' evaluation views) the network output x0 is
computed once; each variant refines it (:func:`deepsparse_core.physics.data_consistency.refine`):

* ``K=16`` (the bundled default: relaxation 0.5, |change| <= 0.1), ``K=8``, ``K=16 box 0.05``;
* ``K=16 smooth s``: only the low frequencies of the correction are kept,
  x0 + G_s * (x_K - x0) with a Gaussian of s voxels: the passes correct the network's bias at
  large scales, while their streaks (what costs SSIM) live at small ones.

SART's scores come from the model card's held-out rows (the same caches and views), so nothing but
the network and the passes is computed. Prints, per view count, each variant's mean PSNR / SSIM,
its margin over SART, and on how many CTs its SSIM falls more than 0.005 below the network alone's
(the acceptance criterion).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from deepsparse_core.evaluation.metrics import psnr, ssim
from deepsparse_core.evaluation.quality import held_out_files, sparse_views
from deepsparse_core.inference import DiceReconstructor
from deepsparse_core.model.card import read_card
from deepsparse_core.physics.data_consistency import refine

VARIANTS = {  # name: (passes, refine options, smoothing sigma in voxels or None)
    "alone": (0, {}, None),
    "K=16": (16, {}, None),
    "K=8": (8, {}, None),
    "K=16 box 0.05": (16, {"max_change": 0.05}, None),
    "K=16 smooth 1": (16, {}, 1.0),
    "K=16 smooth 2": (16, {}, 2.0),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--views", nargs="+", type=int, default=[6, 10])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the per-CT rows as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = held_out_files(args.data if len(args.data) > 1 else args.data[0])
    card_rows = (read_card(args.model) or {}).get("held_out_rows", [])
    sart = {(r["volume"], r["views"]): r for r in card_rows if r["method"] == "sart"}
    rec = DiceReconstructor(args.model, "cpu")
    rows = []
    for n in args.views:
        for path in files:
            data = sparse_views(Path(path), n)
            ref = data.reference
            x0 = rec.reconstruct(data, data_consistency=0)
            refined = {}
            for name, (k, options, sigma) in VARIANTS.items():
                key = (k, tuple(sorted(options.items())))
                if key not in refined:
                    refined[key] = x0 if k == 0 else refine(x0, data.projections, data.geometry, iterations=k,
                                                           **options)
                x = refined[key]
                if sigma is not None:
                    correction = (x - x0).numpy()
                    x = (x0 + torch.from_numpy(ndimage.gaussian_filter(correction, sigma))).clamp(0, 1)
                rows.append({"volume": Path(path).stem, "views": n, "variant": name,
                             "psnr": psnr(x, ref), "ssim": ssim(x, ref)})
            print(f"{Path(path).stem} {n} views: " + ", ".join(
                f"{r['variant']} {r['psnr']:.2f}/{r['ssim']:.3f}" for r in rows[-len(VARIANTS):]), flush=True)
    for n in args.views:
        print(f"\n{n} views (mean of {len(files)} CTs): PSNR dB / SSIM, margin over SART, CTs losing > 0.005 SSIM")
        alone = {r["volume"]: r for r in rows if r["views"] == n and r["variant"] == "alone"}
        for name in VARIANTS:
            mine = [r for r in rows if r["views"] == n and r["variant"] == name]
            p, s = np.mean([r["psnr"] for r in mine]), np.mean([r["ssim"] for r in mine])
            margins = [r["psnr"] - sart[(r["volume"], n)]["psnr"] for r in mine if (r["volume"], n) in sart]
            margin = f"{np.mean(margins):+.2f} dB" if len(margins) == len(mine) else "n/a (no card rows)"
            losing = sum(r["ssim"] < alone[r["volume"]]["ssim"] - 0.005 for r in mine)
            print(f"  {name:15s} {p:6.2f} / {s:.3f}   {margin:>10s}   {losing}/{len(mine)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
