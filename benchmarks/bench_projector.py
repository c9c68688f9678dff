"""Projector and FDK speed: ours next to RTK (CPU) and TIGRE (GPU, when installed), same process.

Usage: python benchmarks/bench_projector.py [--views 10] [--size 128] [--detector 256] [--repeat 3]

Targets (issue: foundation): CPU forward projection within 3x of RTK; on an H200, 200 views of
256^3 -> 256^2 at or under TIGRE's time, and FDK from 10 views within TIGRE's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from deepsparse_core.physics.backends import rtk, tigre
from deepsparse_core.physics.fdk import fdk
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.projector import back_project, forward_project


def timed(fn, repeat: int, sync=None) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best


def geometry(size: int, detector: int, views: int) -> Geometry:
    g = Geometry.preset("abdomen-atlas", views)
    return Geometry(**{**g.to_dict(), "volume_shape": (size,) * 3, "volume_spacing": (409.6 / size,) * 3,
                       "detector_shape": (detector, detector), "detector_spacing": (614.4 / detector,) * 2})


def row(name, ours, ref, ref_name):
    ratio = f"{ours / ref:6.2f}x {ref_name}" if ref else "   (no reference)"
    print(f"{name:38s} ours {ours * 1e3:9.1f} ms   {ref_name} {ref * 1e3 if ref else float('nan'):9.1f} ms   {ratio}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--detector", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = geometry(args.size, args.detector, args.views)
    vol = np.random.default_rng(0).random(g.volume_shape).astype(np.float32)
    v = torch.from_numpy(vol)
    print(f"CPU, {torch.get_num_threads()} threads: {args.views} views, {args.size}^3 -> {args.detector}^2")
    fp = timed(lambda: forward_project(v, g), args.repeat)
    p = forward_project(v, g)
    bp = timed(lambda: back_project(p, g), args.repeat)
    fd = timed(lambda: fdk(p, g), args.repeat)
    have_rtk = rtk.available()
    pn = p.numpy()
    row("forward projection (Joseph)", fp, timed(lambda: rtk.forward_project(vol, g), args.repeat) if have_rtk else None, "RTK")
    row("back-projection (Joseph adjoint)", bp, timed(lambda: rtk.back_project(pn, g), args.repeat) if have_rtk else None, "RTK")
    row("FDK", fd, timed(lambda: rtk.fdk(pn, g), args.repeat) if have_rtk else None, "RTK")

    if torch.cuda.is_available():
        sync = torch.cuda.synchronize
        print(f"\nGPU {torch.cuda.get_device_name()}")
        for views, name in ((200, "forward projection 200 views 256^3"), (10, "FDK 10 views 256^3")):
            gg = geometry(256, 256, views)
            vg = torch.rand(gg.volume_shape, device="cuda")
            if views == 200:
                ours = timed(lambda: forward_project(vg, gg), args.repeat, sync)
                ref = timed(lambda: tigre.forward_project(vg.cpu().numpy(), gg), args.repeat) if tigre.available() else None
            else:
                pg = forward_project(vg, gg)
                ours = timed(lambda: fdk(pg, gg), args.repeat, sync)
                ref = (timed(lambda: tigre.fdk(pg.cpu().numpy(), gg), args.repeat)
                       if tigre.available() else None)
            row(name, ours, ref, "TIGRE")


if __name__ == "__main__":
    main()
