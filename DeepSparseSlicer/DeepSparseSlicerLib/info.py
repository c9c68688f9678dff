"""One-line descriptions of the panel's input CT and projections (GUI thread: no torch import)."""

from __future__ import annotations

import json

from .nodes import GEOMETRY


def volume_info(node) -> str:
    """'512 x 512 x 120 voxels at 0.781 x 0.781 x 2.5 mm' (i, j, k), or '' without voxels."""
    image = node.GetImageData() if node is not None else None
    if image is None:
        return ""
    dims, spacing = image.GetDimensions(), node.GetSpacing()
    return (f"{dims[0]} x {dims[1]} x {dims[2]} voxels at "
            f"{spacing[0]:.3g} x {spacing[1]:.3g} x {spacing[2]:.3g} mm")


def projections_info(node) -> str:
    """The views (the engine's wording), detector, distances and grid of a projections node."""
    text = node.GetAttribute(GEOMETRY) if node is not None else None
    if not text:
        return ""
    try:
        g = json.loads(text)
        from deepsparse_core.physics.angles import views_phrase

        (nv, nu), (dv, du) = g["detector_shape"], g["detector_spacing"]
        grid, spacing = "x".join(str(int(n)) for n in g["volume_shape"]), g["volume_spacing"]
        return (f"{views_phrase(g['angles'])}; detector {nu} x {nv} at {du:.3g} x {dv:.3g} mm, DSO {g['dso']:g} / "
                f"DSD {g['dsd']:g} mm; grid {grid} at {spacing[0]:.3g} mm ({g.get('name') or 'custom'})")
    except (ValueError, KeyError, TypeError, ImportError):
        return "projections with an unreadable geometry"
