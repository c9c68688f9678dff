"""Data-consistency variants that might keep the PSNR gain without the SSIM cost (issue 16, item 3).

Usage:
    python benchmarks/bench_dc_variants.py MODEL DATA [DATA ...] [--views 6 10] [--passes 16]
        [--fewer 8] [--halves] [--final] [--only NAME ...] [--coarsen 1 2] [--threads 2] [--json FILE]

For each held-out cache and view count (the authors' evaluation views) the network output x0 is
computed once, refined once by ``--passes`` bounded SART passes (the card's default K;
:func:`deepsparse_core.physics.data_consistency.refine`, |change| <= 0.1), and each variant filters
the correction d = x_K - x0 before adding it back, x = clip(x0 + F(d), 0, 1):

* ``plain``: F = identity (the plain passes);
* ``gauss s``: a Gaussian of s voxels: only the correction's low frequencies survive (the passes
  fix the network's bias at large scales; their streaks, what costs SSIM, live at small ones);
* ``guided r e``: the guided filter (He et al., TPAMI 2013) of d with x0 as the guide, box radius r
  voxels, regularization e (normalized units squared): locally F(d) = a x0 + b, so the parts of d
  that follow the network's own edges (contrast, bias) stay and what x0 cannot explain (streaks)
  goes; a large e tends to the box mean of d;
* ``tv w``: d denoised by Chambolle's total variation (weight w; ``physics/tv.py``, the engine's): piecewise-constant corrections
  survive, oscillating streaks do not (the DC default until the seventh session of 2026-12-04);
  ``tv w x0.75`` adds three quarters of it; ``tv w shrink t``, ``tv w hard t`` and ``tv w garrote t``
  threshold it by t: soft (|d| - t, sign kept), hard (d where |d| > t) and the garrote
  (d - t^2 / d where |d| > t, :func:`~deepsparse_core.physics.data_consistency.garrote`): small
  corrections, where streaks dominate, are dropped;
* ``gauss 2 + shrunk rest``: the correction's low frequencies (Gaussian, 2 voxels) kept whole, the
  rest of its TV-denoised part only where larger than 0.01;
* ``--halves``: the passes are also run over the even and over the odd views alone; ``consensus``
  keeps d only where both halves correct in the same direction (a network bias is seen by every
  view; a streak is one view's residual), ``consensus min`` takes the smaller half-correction there;
* ``--fewer K'``: K' passes instead of K, the correction TV-denoised (0.01);
* ``--final``: x0 + F(d) lightly TV-denoised as a whole; ``tv 0.01 garrote 0.01, final tv 0.005`` is
  the engine's default since the seventh session of 2026-12-04 (every step kept inside the box,
  as :func:`~deepsparse_core.physics.data_consistency.refine` does).

``--coarsen 1 2`` also runs the passes on a grid twice as coarse per axis (``refine(coarsen=2)``,
about 8 times cheaper) and scores it plain and with the TV filter; the passes' mean seconds per
grid are printed, each measured in this process.

SART's scores come from the model card's held-out rows (the same caches and views). Prints per view
count each variant's mean PSNR / SSIM, its margin over SART and on how many CTs its SSIM falls more
than 0.005 below the network alone's (the acceptance criterion); then a leave-one-CT-out choice:
for each CT the variant is picked on the other CTs only (fewest SSIM losses at every view count,
then the highest mean PSNR) and scored on the left-out CT, so the selection does not flatter itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from deepsparse_core.evaluation.metrics import psnr, ssim
from deepsparse_core.evaluation.quality import held_out_files, sparse_views
from deepsparse_core.inference import DiceReconstructor
from deepsparse_core.model.card import read_card
from deepsparse_core.physics.data_consistency import PLAIN, apply_correction, dc_box, garrote, refine
from deepsparse_core.physics.tv import tv_denoise

SSIM_SLACK = 0.005  # issue 16 acceptance: SSIM with DC at least SSIM alone - 0.005 on every CT


def box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^3 neighbourhood, shrunk at the borders (voxels outside do not count)."""
    return F.avg_pool3d(x[None, None], 2 * r + 1, stride=1, padding=r, count_include_pad=False)[0, 0]


def guided(d: torch.Tensor, guide: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter of ``d`` by ``guide`` (both (nz, ny, nx)), radius r, regularization eps."""
    mg, md = box(guide, r), box(d, r)
    a = (box(guide * d, r) - mg * md) / (box(guide * guide, r) - mg * mg + eps)
    b = md - a * mg
    return box(a, r) * guide + box(b, r)


def gauss(d: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.from_numpy(ndimage.gaussian_filter(d.numpy(), sigma))


def shrink(d: torch.Tensor, t: float) -> torch.Tensor:
    """Soft threshold: each voxel's |d| less t, sign kept (0 where |d| <= t)."""
    return d.sign() * (d.abs() - t).clamp_min(0)


def hard(d: torch.Tensor, t: float) -> torch.Tensor:
    """Hard threshold: d where |d| > t, else 0."""
    return torch.where(d.abs() > t, d, torch.zeros_like(d))


def consensus(c: dict) -> torch.Tensor:
    """The correction where the passes over the even and over the odd views agree in sign, else 0.

    A bias of the network is seen by every view, so both halves' passes correct it the same way; a
    streak is the back-projection of one view's residual, so the halves disagree on it."""
    da, db = c["halves"]
    return torch.where(da * db > 0, c["d"], torch.zeros_like(c["d"]))


def consensus_min(c: dict) -> torch.Tensor:
    """Where the halves agree in sign, the smaller of their two corrections (by magnitude), else 0."""
    da, db = c["halves"]
    return torch.where(da * db > 0, da.sign() * torch.minimum(da.abs(), db.abs()), torch.zeros_like(da))


# name: correction filter F(c), c = {"d": x_K - x0, "x0": network output, "halves": (d_even, d_odd)
# or None, "fewer": {k: x_k - x0}}; None = the network alone. "final" variants filter the whole result.
FILTERS = {
    "alone": None,
    "plain": lambda c: c["d"],
    "gauss 1": lambda c: gauss(c["d"], 1.0),
    "guided 1 1e-4": lambda c: guided(c["d"], c["x0"], 1, 1e-4),
    "guided 2 1e-3": lambda c: guided(c["d"], c["x0"], 2, 1e-3),
    "tv 0.005": lambda c: tv_denoise(c["d"], 0.005),
    "tv 0.01": lambda c: tv_denoise(c["d"], 0.01),
    "tv 0.02": lambda c: tv_denoise(c["d"], 0.02),
    "tv 0.01 x0.75": lambda c: 0.75 * tv_denoise(c["d"], 0.01),
    "tv 0.01 shrink 0.003": lambda c: shrink(tv_denoise(c["d"], 0.01), 0.003),
    "tv 0.01 shrink 0.006": lambda c: shrink(tv_denoise(c["d"], 0.01), 0.006),
    "tv 0.01 hard 0.006": lambda c: hard(tv_denoise(c["d"], 0.01), 0.006),
    "tv 0.01 garrote 0.006": lambda c: garrote(tv_denoise(c["d"], 0.01), 0.006),
    "tv 0.01 garrote 0.008": lambda c: garrote(tv_denoise(c["d"], 0.01), 0.008),
    "tv 0.01 garrote 0.01": lambda c: garrote(tv_denoise(c["d"], 0.01), 0.01),
    "tv 0.01 garrote 0.012": lambda c: garrote(tv_denoise(c["d"], 0.01), 0.012),
    "tv 0.01 garrote 0.015": lambda c: garrote(tv_denoise(c["d"], 0.01), 0.015),
    "tv 0.005 garrote 0.01": lambda c: garrote(tv_denoise(c["d"], 0.005), 0.01),
    "gauss 2 + shrunk rest": lambda c: (lambda lo: lo + shrink(tv_denoise(c["d"], 0.01) - lo, 0.01))(gauss(c["d"], 2.0)),
}
HALF_FILTERS = {  # need the passes over each half of the views (--halves)
    "consensus, tv 0.01": lambda c: tv_denoise(consensus(c), 0.01),
    "consensus min, tv 0.01": lambda c: tv_denoise(consensus_min(c), 0.01),
    "consensus": consensus,
}
FINAL_FILTERS = {  # a light TV of the whole result x0 + F(d): name: (weight, F)
    "tv 0.01, final tv 0.002": (0.002, lambda c: tv_denoise(c["d"], 0.01)),
    "tv 0.01, final tv 0.005": (0.005, lambda c: tv_denoise(c["d"], 0.01)),
    "tv 0.01 garrote 0.01, final tv 0.005": (0.005, lambda c: garrote(tv_denoise(c["d"], 0.01), 0.01)),
}


COARSE_FILTERS = ("plain", "tv 0.01")  # scored on the coarser grids too


def variant_names(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["variant"] for r in rows))


def summarize(rows: list[dict], views: list[int], sart: dict) -> None:
    for n in views:
        cts = sorted({r["volume"] for r in rows if r["views"] == n})
        print(f"\n{n} views (mean of {len(cts)} CTs): PSNR dB / SSIM, margin over SART, CTs losing > {SSIM_SLACK} SSIM, "
              f"the worst SSIM change against the network alone (CT)")
        alone = {r["volume"]: r for r in rows if r["views"] == n and r["variant"] == "alone"}
        for name in variant_names(rows):
            mine = [r for r in rows if r["views"] == n and r["variant"] == name]
            p, s = np.mean([r["psnr"] for r in mine]), np.mean([r["ssim"] for r in mine])
            margins = [r["psnr"] - sart[(r["volume"], n)]["psnr"] for r in mine if (r["volume"], n) in sart]
            margin = f"{np.mean(margins):+.2f} dB" if len(margins) == len(mine) else "n/a (no card rows)"
            losing = sum(r["ssim"] < alone[r["volume"]]["ssim"] - SSIM_SLACK for r in mine)
            worst = min(mine, key=lambda r: r["ssim"] - alone[r["volume"]]["ssim"])
            print(f"  {name:26s} {p:6.2f} / {s:.3f}   {margin:>10s}   {losing}/{len(mine)}   "
                  f"{worst['ssim'] - alone[worst['volume']]['ssim']:+.3f} ({worst['volume']})")


def leave_one_out(rows: list[dict], views: list[int]) -> None:
    """Pick a filter on all CTs but one (fewest SSIM losses over every view count, then highest mean
    PSNR) and score it on that one."""
    key = {(r["volume"], r["views"], r["variant"]): r for r in rows}
    cts = sorted({r["volume"] for r in rows})
    names = [n for n in variant_names(rows) if n != "alone"]

    def losses(name, ct, n):
        return key[(ct, n, name)]["ssim"] < key[(ct, n, "alone")]["ssim"] - SSIM_SLACK

    print("\nleave one CT out: variant chosen on the others -> its score on the left-out CT (PSNR / SSIM, "
          "minus the network alone's)")
    for ct in cts:
        others = [c for c in cts if c != ct]
        best = min(names, key=lambda m: (sum(losses(m, c, n) for c in others for n in views),
                                         -np.mean([key[(c, n, m)]["psnr"] for c in others for n in views])))
        cells = []
        for n in views:
            r, a = key[(ct, n, best)], key[(ct, n, "alone")]
            cells.append(f"{n} views {r['psnr']:.2f} / {r['ssim']:.3f} ({r['psnr'] - a['psnr']:+.2f} dB, "
                         f"{r['ssim'] - a['ssim']:+.3f})")
        print(f"  {ct}: {best}: " + "; ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--views", nargs="+", type=int, default=[6, 10])
    ap.add_argument("--passes", type=int, default=16, help="bounded SART passes K (default 16, the card's)")
    ap.add_argument("--fewer", nargs="*", type=int, default=[],
                    help="also score K' < K passes, TV-filtered (one more refine each)")
    ap.add_argument("--halves", action="store_true",
                    help="also run the passes over the even and the odd views alone (the consensus variants)")
    ap.add_argument("--final", action="store_true", help="also score a light TV of the whole result")
    ap.add_argument("--only", nargs="+", default=None,
                    help="score only these variants (names as printed; the network alone is always scored)")
    ap.add_argument("--coarsen", nargs="+", type=int, default=[1], help="grids for the passes (1 = full)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the per-CT rows as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if any(not 0 < k < args.passes for k in args.fewer):
        raise SystemExit(f"--fewer takes pass counts between 1 and {args.passes - 1}")
    files = held_out_files(args.data if len(args.data) > 1 else args.data[0])
    card_rows = (read_card(args.model) or {}).get("held_out_rows", [])
    sart = {(r["volume"], r["views"]): r for r in card_rows if r["method"] == "sart"}
    filters = dict(FILTERS)
    if args.halves:
        filters.update(HALF_FILTERS)
    filters.update({f"K = {k}, tv 0.01": (lambda k: lambda c: tv_denoise(c["fewer"][k], 0.01))(k) for k in args.fewer})
    if args.final:
        filters.update({name: (lambda w, f: lambda c: ("final", w, f(c)))(w, f) for name, (w, f) in FINAL_FILTERS.items()})
    if args.only is not None:
        unknown = sorted(set(args.only) - set(filters))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown} (the consensus ones need --halves, 'K = ...' --fewer, "
                             f"the final ones --final); known: {sorted(filters)}")
        if not set(args.only) - {"alone"}:
            raise SystemExit("--only needs at least one variant besides alone")
        filters = {k: v for k, v in filters.items() if k in args.only or k == "alone"}
    rec = DiceReconstructor(args.model, "cpu")
    rows, seconds = [], {}
    for n in args.views:
        for path in files:
            data = sparse_views(Path(path), n)
            ref = data.reference
            x0 = rec.reconstruct(data, data_consistency=0)
            first = len(rows)

            def passes(k, views=None, coarsen=1):
                p, g = data.projections, data.geometry
                if views is not None:
                    p, g = p[views], g.with_angles([g.angles[i] for i in views])
                return refine(x0, p, g, iterations=k, coarsen=coarsen, **PLAIN) - start

            start = x0.clamp(0, 1)                                      # refine's start and box (max_change 0.1)
            bounds = dc_box(x0, 0.1)
            ctx = {"x0": x0, "fewer": {k: passes(k) for k in args.fewer if f"K = {k}, tv 0.01" in filters},
                   "halves": (passes(args.passes, list(range(0, n, 2))), passes(args.passes, list(range(1, n, 2))))
                   if any(name in HALF_FILTERS for name in filters) else None}
            for c in args.coarsen:
                t0 = time.perf_counter()
                ctx["d"] = passes(args.passes, coarsen=c)
                seconds.setdefault(c, []).append(time.perf_counter() - t0)
                for name, filt in filters.items():
                    if c > 1 and name not in COARSE_FILTERS:
                        continue
                    if filt is None:
                        x = x0
                    else:
                        f = filt(ctx)   # F(d), or ("final", w, F(d)): a TV of the whole result, as refine's output_tv
                        _, final_tv, d = f if isinstance(f, tuple) else (None, 0.0, f)
                        x = apply_correction(start, d, bounds, final_tv)
                    rows.append({"volume": Path(path).stem, "views": n,
                                 "variant": name if c == 1 else f"coarse {c}: {name}",
                                 "psnr": psnr(x, ref), "ssim": ssim(x, ref)})
            print(f"{Path(path).stem} {n} views: " + ", ".join(
                f"{r['variant']} {r['psnr']:.2f}/{r['ssim']:.3f}" for r in rows[first:]), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
    for c, t in seconds.items():
        print(f"{args.passes} passes on the {'full' if c == 1 else f'{c}x coarser'} grid: {np.mean(t):.2f} s "
              f"(mean of {len(t)}, {args.threads} thread(s))")
    summarize(rows, args.views, sart)
    if len(files) > 2:
        leave_one_out(rows, args.views)


if __name__ == "__main__":
    main()
