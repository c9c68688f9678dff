"""Projection angles in words (no torch: the Slicer panel shows them on its GUI thread)."""

from __future__ import annotations

import math


def views_phrase(angles) -> str:
    """'6 views 30° apart (arc 180°)' for uniform steps (arc = n x step, as ``Geometry.arc``), else
    '5 views over 0-170° (gaps 20-70°)'. ``angles`` in radians, in acquisition order."""
    deg = [math.degrees(float(a)) for a in angles]
    n = len(deg)
    if n < 2:
        return f"{n} view" + ("" if n == 1 else "s")
    gaps = [abs(b - a) for a, b in zip(deg, deg[1:])]
    if max(gaps) - min(gaps) <= 0.01 * max(gaps) + 1e-6:
        step = sum(gaps) / len(gaps)
        return f"{n} views {step:.3g}° apart (arc {step * n:.4g}°)"
    return f"{n} views over {min(deg):.4g}-{max(deg):.4g}° (gaps {min(gaps):.3g}-{max(gaps):.3g}°)"
