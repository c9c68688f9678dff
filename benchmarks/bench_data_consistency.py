"""Data consistency for a trained DiCE: held-out PSNR / SSIM for a range of refinement passes K.

Usage:
    python benchmarks/bench_data_consistency.py MODEL DATA [DATA ...] [--views 6 8 10]
        [--k 0 1 2 3 5 8 12] [--sart-iterations 20] [--json FILE]

DATA: cache files or a prepared folder (its test split, else val), each reconstructed from ``n``
uniform views (candidate offset 0). For each volume and view count the network output is computed
once and refined with K bounded SART passes (:func:`deepsparse_core.physics.data_consistency.refine` with its
defaults: relaxation 0.5, |change| <= 0.1), next to FDK and SART of the same views
(:func:`deepsparse_core.training.bundle.held_out_scores`, what ``deepsparse bundle`` records in a
model card). Prints the per-K means, the margin over SART and the K that ``bundle`` would recommend.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from deepsparse_core.evaluation.quality import held_out_files
from deepsparse_core.training.bundle import held_out_scores, recommended_k


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
    files = held_out_files(args.data if len(args.data) > 1 else args.data[0])
    result = held_out_scores(args.model, files, args.views, args.k, args.sart_iterations, show_progress=False,
                             vif=False)
    print(f"mean over {len(files)} volumes ({', '.join(p.stem for p in files)}): PSNR dB (SSIM) [margin over SART]; "
          f"network alone {result['dice_seconds']:.1f} s per volume")
    for n, means in result["means"].items():
        sart = means["sart"]["psnr"]
        cells = "  ".join(f"K={k}: {means[k]['psnr']:.2f} ({means[k]['ssim']:.3f}) [{means[k]['psnr'] - sart:+.2f}]"
                          for k in args.k)
        print(f"{n:2d} views  FDK {means['fdk']['psnr']:.2f}  SART {sart:.2f} ({means['sart']['ssim']:.3f})  {cells}")
    for row in result["rows"]:
        print(f"  {row['volume']:24s} {row['views']:2d} views {row['method']:>5s}: {row['psnr']:.2f} dB, "
              f"SSIM {row['ssim']:.3f}")
    print(f"recommended K (smallest within 0.05 dB of the best at {min(args.views)} views): "
          f"{recommended_k(result['means'], args.k)}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"means": {str(n): {str(k): v for k, v in m.items()} for n, m in result["means"].items()},
             "rows": result["rows"]}, indent=1))


if __name__ == "__main__":
    main()
