"""Slice views rendered offscreen (no Qt, no render window) and saved side by side as a PNG.

Uses each view's ``vtkMRMLSliceLogic``: its image pipeline produces the RGBA slice that Slicer
shows (background/foreground blend, window/level, lookup table), so the picture is what the user
sees in those views, without annotations. In Slicer the logics come from
``slicer.app.applicationLogic().GetSliceLogicByLayoutName(name)``; in tests from a
``vtkMRMLApplicationLogic`` that the test fills.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def slice_rgb(slice_logic) -> np.ndarray:
    """The view's current slice as an (height, width, 3) uint8 array, top row first."""
    from vtk.util import numpy_support

    producer = slice_logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    width, height, _ = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    rgba = scalars.reshape(height, width, -1)
    return np.ascontiguousarray(rgba[::-1, :, :3])  # VTK rows run bottom to top


def side_by_side_png(slice_logics, titles, path, gap: int = 6) -> tuple[Path, list[np.ndarray]]:
    """Save the views next to each other with a title above each; returns (path, per-view images)."""
    from PIL import Image, ImageDraw

    panes = [slice_rgb(logic) for logic in slice_logics]
    title_h = 22
    height = max(p.shape[0] for p in panes) + title_h
    width = sum(p.shape[1] for p in panes) + gap * (len(panes) - 1)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for pane, title in zip(panes, titles):
        canvas.paste(Image.fromarray(pane), (x, title_h))
        draw.text((x + 6, 5), str(title), fill=(235, 235, 235))
        x += pane.shape[1] + gap
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path, panes
