"""Validation swings from BatchNorm running statistics: the same checkpoints with and without calibration.

Usage:
    python benchmarks/bench_bn_calibration.py SNAPSHOTS DATA [DATA ...] [--views 6]

SNAPSHOTS: a folder of ``step<N>/`` folders, each with ``raw.safetensors`` (a run's
``model.safetensors`` at that checkpoint: running BatchNorm statistics, momentum 0.1 over the
last batches) and ``calibrated.safetensors`` (the run's ``last.safetensors`` of the same step:
statistics averaged over ``--bn-batches`` training batches). DATA: held-out cache files or a folder.
For each step it prints the held-out mean PSNR / SSIM of both at ``--views`` uniform views (the
network alone), then the mean absolute change between consecutive checkpoints for each: the swing
that precise BatchNorm statistics remove if the running statistics caused it.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch

from deepsparse_core.evaluation.metrics import psnr, ssim
from deepsparse_core.evaluation.quality import held_out_files, sparse_views
from deepsparse_core.inference import DiceReconstructor


def scores(model: Path, files, n_views: int) -> tuple[float, float]:
    rec = DiceReconstructor(model, "cpu")
    ps, ss = [], []
    for path in files:
        d = sparse_views(path, n_views)
        vol = rec.reconstruct(d, data_consistency=0)
        ps.append(psnr(vol, d.reference))
        ss.append(ssim(vol, d.reference))
    return float(np.mean(ps)), float(np.mean(ss))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snapshots")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--views", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    files = held_out_files(args.data if len(args.data) > 1 else args.data[0])
    steps = sorted((int(m.group(1)), p) for p in Path(args.snapshots).iterdir()
                   if (m := re.fullmatch(r"step(\d+)", p.name)) and (p / "calibrated.safetensors").is_file())
    rows = []
    print(f"held-out: {', '.join(p.stem for p in files)}; {args.views} views; network alone")
    print(f"{'step':>6s} {'running BN':>18s} {'calibrated BN':>18s}")
    for step, folder in steps:
        raw, cal = scores(folder / "raw.safetensors", files, args.views), \
            scores(folder / "calibrated.safetensors", files, args.views)
        rows.append((step, raw, cal))
        print(f"{step:6d} {raw[0]:9.2f} dB {raw[1]:.3f} {cal[0]:9.2f} dB {cal[1]:.3f}", flush=True)
    if len(rows) > 1:
        swing = lambda k: np.mean(np.abs(np.diff([r[k][0] for r in rows])))  # noqa: E731
        print(f"mean |change| between consecutive checkpoints: running {swing(1):.2f} dB, "
              f"calibrated {swing(2):.2f} dB")


if __name__ == "__main__":
    main()
