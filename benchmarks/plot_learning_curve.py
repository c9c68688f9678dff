"""The campaign's learning curve: held-out PSNR of each bundled day against cumulative CPU-hours.

Usage: python benchmarks/plot_learning_curve.py [--data docs/learning_curve.json] [--out docs/learning_curve.png]

Reads the per-day scores recorded in ``docs/learning_curve.json`` (each from ``deepsparse bundle``)
and draws DiCE + DC, DiCE alone and SART at 6 and 10 views on a log2 CPU-hour axis, with the
least-squares slope in dB per doubling of CPU for DiCE + DC. A day whose model had GPU work in its
history (``gpu_hours`` in the day's entry, cumulative) is drawn with a hollow marker and labelled
with its GPU-hours; the slope is fitted on the CPU-only days, which the CPU-hours alone describe.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def slope_per_doubling(hours: list[float], psnr: list[float]) -> float | None:
    """Least-squares dB per doubling of CPU-hours (None for fewer than two points)."""
    if len(hours) < 2:
        return None
    x = [math.log2(h) for h in hours]
    mx, my = sum(x) / len(x), sum(psnr) / len(psnr)
    sxx = sum((a - mx) ** 2 for a in x)
    return sum((a - mx) * (b - my) for a, b in zip(x, psnr)) / sxx if sxx else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "docs" / "learning_curve.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "learning_curve.png"))
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = json.loads(Path(args.data).read_text())["days"]
    sets = [s for s in ("two_ct", "seven_ct") if any(s in d for d in days)]
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.8), squeeze=False)
    for ax, name in zip(axes[0], sets):
        rows = [d for d in days if name in d]
        for views, colour in (("6", "tab:blue"), ("10", "tab:orange")):
            for method, style, label in (("dice_dc", "-o", "DiCE + DC"), ("dice", "--s", "DiCE alone"),
                                         ("sart", ":x", "SART")):
                points = [(d["cpu_hours"], d[name][views][method], d.get("gpu_hours", 0)) for d in rows
                          if method in d[name].get(views, {})]
                if not points:
                    continue
                h, y = [p[0] for p in points], [p[1] for p in points]
                cpu = [(a, b) for a, b, g in points if not g]
                extra = ""
                if method == "dice_dc":
                    s = slope_per_doubling([a for a, _ in cpu], [b for _, b in cpu])
                    extra = (f" ({s:+.2f} dB per doubling{', CPU-only days' if len(cpu) < len(points) else ''})"
                             if s is not None else "")
                ax.plot(h, y, style, color=colour, label=f"{views} views, {label}{extra}")
                written = None
                for a, b, g in points:
                    if g and method != "sart":  # GPU work in this model's history: hollow, and the GPU-hours written beside it
                        ax.plot([a], [b], style[-1], color=colour, markerfacecolor="white", markersize=9)
                        if method == "dice_dc" and g != written:   # written where the cumulative GPU-hours change
                            written = g
                            ax.annotate(f"+{g:.2f} GPU-h", (a, b), textcoords="offset points", xytext=(-8, 6),
                                        ha="right", fontsize=7, color=colour)
        ax.set_xscale("log", base=2)
        hours = sorted({d["cpu_hours"] for d in rows})
        labels, last = [], None  # a point within 15 % of the last labelled one keeps its tick, not its label
        for h in hours:
            show = last is None or h > 1.15 * last
            labels.append(f"{h:.2f}" if show else "")
            last = h if show else last
        ax.set_xticks(hours, labels, rotation=45, ha="right")
        ax.minorticks_off()
        ax.set_xlabel("cumulative training CPU-hours (2-core machine), log scale")
        ax.set_ylabel("held-out mean PSNR (dB)")
        ax.set_title({"two_ct": "lung2 + liver (days 1-3 set)", "seven_ct": "7 held-out CTs (from day 4)"}[name])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
