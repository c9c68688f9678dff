"""PSNR cost of serving a fine detector through resampling (issue 12, item 3).

For each view count: simulate a CT at the ``fast`` preset's scanner with a finer detector of the
same extent (default 512^2 at 1.2 mm instead of 128^2 at 4.8 mm), export it (projections.mha +
RTK geometry.xml), import it with ``--detector-like fast`` (area-weighted resampling to the
preset's isocentre pitch), reconstruct, and compare with the same CT simulated at the ``fast``
preset directly. Methods: FDK, SART and DiCE when a bundled model serves the view count
(``inference.bundled_model_path``). Noise: none, and Poisson + Gaussian at equal dose per mm^2 (the
fine pixels get I0 x (fine pitch / coarse pitch)^2 photons each; the default I0 is 1e5 per fast pixel).

Usage: python benchmarks/bench_detector_resampling.py [--views 6 12 24] [--fine 512] [--ct FILE]
       [--size 128] [--matched-readout] [--noisy-only] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from deepsparse_core.data.phantoms import phantom_volume
from deepsparse_core.data.scanner_io import export_projections, import_projections
from deepsparse_core.data.simulate import simulate
from deepsparse_core.data.volume_io import read_volume
from deepsparse_core.evaluation.metrics import psnr
from deepsparse_core.inference import bundled_model_path
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.noise import NoiseModel
from deepsparse_core.reconstruct import reconstruct


def methods_for(n_views: int) -> list[tuple[str, dict]]:
    out = [("fdk", {}), ("sart", {"iterations": 20})]
    model = bundled_model_path(n_views)
    if model is not None:
        out.append(("dice", {"model": str(model), "data_consistency": 0}))
    return out


def run(ct, n_views: int, fine: int, photons: float | None, seed: int = 0, matched_readout: bool = False) -> dict:
    coarse_g = Geometry.preset("fast", n_views)
    extent = coarse_g.detector_extent
    fine_g = dataclasses.replace(coarse_g, detector_shape=(fine, fine),
                                 detector_spacing=(extent[0] / fine, extent[1] / fine), name="fine")
    ratio = (coarse_g.detector_shape[0] / fine) ** 2
    coarse_noise = NoiseModel(enabled=photons is not None, photons=photons or 1e5)
    fine_noise = dataclasses.replace(coarse_noise, photons=(photons or 1e5) * ratio)
    if matched_readout:   # electronic noise of the binned pixels equal to the coarse pixel's
        fine_noise = dataclasses.replace(fine_noise, electronic_sigma=coarse_noise.electronic_sigma * ratio ** 0.5)
    direct = simulate(ct, coarse_g, coarse_noise, seed=seed, device="cpu")
    fine_data = simulate(ct, fine_g, fine_noise, seed=seed, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_projections(fine_data, tmp)
        t0 = time.perf_counter()
        imported = import_projections(paths[0], paths[1], detector_like="fast")
        import_s = time.perf_counter() - t0
    assert imported.geometry.detector_shape == coarse_g.detector_shape
    reference = direct.reference
    row = {"views": n_views, "noise": "none" if photons is None else
           f"I0={photons:g}/fast pixel{', matched readout' if matched_readout else ''}",
           "fine": f"{fine}^2 at {fine_g.detector_spacing[0]:.3g} mm", "import_s": round(import_s, 2),
           "projection_rel_diff": float((imported.projections - direct.projections).norm() / direct.projections.norm())}
    for method, options in methods_for(n_views):
        a = reconstruct(direct, method, device="cpu", **options).clamp(0, 1)
        b = reconstruct(imported, method, device="cpu", **options).clamp(0, 1)
        row[method] = {"direct_psnr": round(psnr(a, reference), 2), "resampled_psnr": round(psnr(b, reference), 2),
                       "gap_db": round(psnr(a, reference) - psnr(b, reference), 2)}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, nargs="+", default=[6, 12, 24])
    ap.add_argument("--fine", type=int, default=512, help="fine detector pixels per side (same extent as fast)")
    ap.add_argument("--ct", help="CT file in HU (default: the seeded chest phantom)")
    ap.add_argument("--size", type=int, default=128, help="phantom voxels per side (default 128)")
    ap.add_argument("--photons", type=float, default=1e5, help="I0 per fast pixel for the noisy rows")
    ap.add_argument("--matched-readout", action="store_true",
                    help="scale the fine pixels' electronic noise by their area ratio^0.5, so the binned readout "
                         "noise equals the coarse detector's (isolates the resampling from the panel's noise)")
    ap.add_argument("--noisy-only", action="store_true", help="skip the noiseless rows")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    ct = read_volume(args.ct) if args.ct else phantom_volume("chest", (args.size,) * 3)
    rows = []
    for n in args.views:
        for photons in ((args.photons,) if args.noisy_only else (None, args.photons)):
            row = run(ct, n, args.fine, photons, matched_readout=args.matched_readout)
            rows.append(row)
            gaps = "  ".join(f"{m} {row[m]['direct_psnr']:.2f} -> {row[m]['resampled_psnr']:.2f} dB "
                             f"(gap {row[m]['gap_db']:+.2f})" for m in ("fdk", "sart", "dice") if m in row)
            print(f"{n:3d} views, noise {row['noise']}: projections differ by {row['projection_rel_diff']:.2%}; "
                  f"{gaps}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
