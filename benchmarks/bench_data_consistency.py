"""Data consistency for a trained DiCE: held-out PSNR / SSIM for a range of refinement passes K.

Usage:
    python benchmarks/bench_data_consistency.py MODEL DATA [DATA ...] [--views 6 8 10]
        [--k 0 1 2 3 5 8 12] [--sart-iterations 20] [--json FILE]

DATA: cache files or a prepared folder (its test split, else val; ``deepsparse benchmark-quality``
picks volumes the same way), each reconstructed from ``n`` uniform views (candidate offset 0). For each
volume and view count the network output is computed once and refined with K bounded SART passes
(:func:`deepsparse_core.data_consistency.refine`, its defaults: relaxation 0.5, |change| <= 0.1),
next to FDK and SART (20 iterations) of the same views. Prints the per-K mean and the margin over
SART, and the smallest K within 0.05 dB of the best mean PSNR at the lowest view count (the
recommendation written into a model card).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deepsparse_core.data_consistency import refine
from deepsparse_core.inference import DiceReconstructor
from deepsparse_core.metrics import psnr, ssim
from deepsparse_core.quality import held_out_files, sparse_views
from deepsparse_core.reconstruct import reconstruct


def sweep(model: str, data, views=(6, 8, 10), ks=(0, 1, 2, 3, 5, 8, 12), sart_iterations: int = 20,
          verbose: bool = True) -> dict:
    """{n: {"fdk"|"sart"|K: {"psnr", "ssim"} means over the volumes}, plus per-volume rows}."""
    rec = DiceReconstructor(model, "cpu")
    files = held_out_files(data)
    out, rows = {}, []
    for n in views:
        scores: dict = {}
        for path in files:
            d = sparse_views(path, n)
            ref = d.reference
            t0 = time.perf_counter()
            net = rec.reconstruct(d, data_consistency=0)
            t_net = time.perf_counter() - t0
            cases = {"fdk": reconstruct(d, "fdk").clamp(0, 1), "sart": reconstruct(d, "sart", iterations=sart_iterations)}
            for k in ks:
                cases[k] = refine(net, d, iterations=k) if k else net
            for name, vol in cases.items():
                s = {"psnr": psnr(vol, ref), "ssim": ssim(vol, ref)}
                scores.setdefault(name, []).append(s)
                rows.append({"volume": path.stem, "views": n, "method": str(name), **s})
            if verbose:
                line = ", ".join(f"{name}: {scores[name][-1]['psnr']:.2f}" for name in cases)
                print(f"{path.stem} {n} views (network {t_net:.1f} s): {line}", flush=True)
        out[n] = {name: {m: float(np.mean([s[m] for s in v])) for m in ("psnr", "ssim")} for name, v in scores.items()}
    lowest = min(views)
    best = max(out[lowest][k]["psnr"] for k in ks)
    recommended = min(k for k in ks if out[lowest][k]["psnr"] >= best - 0.05)
    return {"means": out, "rows": rows, "recommended_k": recommended, "volumes": [p.stem for p in files]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--views", nargs="+", type=int, default=[6, 8, 10])
    ap.add_argument("--k", nargs="+", type=int, default=[0, 1, 2, 3, 5, 8, 12])
    ap.add_argument("--sart-iterations", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = sweep(args.model, args.data if len(args.data) > 1 else args.data[0], args.views, args.k,
                   args.sart_iterations)
    print(f"\nmean over {len(result['volumes'])} volumes ({', '.join(result['volumes'])}): PSNR dB (SSIM)")
    for n, means in result["means"].items():
        sart = means["sart"]["psnr"]
        cells = "  ".join(f"K={k}: {means[k]['psnr']:.2f} ({means[k]['ssim']:.3f}) [{means[k]['psnr'] - sart:+.2f}]"
                          for k in args.k)
        print(f"{n:2d} views  FDK {means['fdk']['psnr']:.2f}  SART {sart:.2f} ({means['sart']['ssim']:.3f})  {cells}")
    print(f"recommended K (smallest within 0.05 dB of the best at {min(args.views)} views): {result['recommended_k']}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "means": {str(n): {str(k): v for k, v in m.items()}
                                                                   for n, m in result["means"].items()}}, indent=1))


if __name__ == "__main__":
    main()
