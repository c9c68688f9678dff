"""Side-by-side PNG of ground truth and reconstructions (axial, coronal, sagittal mid-slices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_path


def _slices(vol: np.ndarray) -> list[np.ndarray]:
    """Axial (z mid), coronal (y mid) and sagittal (x mid) slices of a (z, y, x) LPS volume.

    Coronal and sagittal slices are flipped so that superior is up; all slices are shown in
    radiological convention (patient left on the image right) as Slicer does.
    """
    nz, ny, nx = vol.shape
    axial = vol[nz // 2][:, ::-1]                 # rows: anterior -> posterior, cols: right -> left
    coronal = vol[::-1, ny // 2, ::-1]            # rows: superior -> inferior
    sagittal = vol[::-1, :, nx // 2]              # cols: anterior -> posterior
    return [axial, coronal, sagittal]


def comparison_png(path: str | Path, volumes: dict[str, np.ndarray], spacing=(1.0, 1.0, 1.0),
                   difference_to: str | None = None, tile: int = 192) -> Path:
    """Write a grid image: one column per volume (in [0, 1]), rows axial/coronal/sagittal.

    With ``difference_to`` (a key of ``volumes``), extra rows show |volume - reference| x 4.
    """
    names = list(volumes)
    font = ImageFont.load_default()
    rows = []
    ref = volumes.get(difference_to) if difference_to else None
    for name in names:
        col = [np.clip(s, 0, 1) for s in _slices(np.asarray(volumes[name], np.float32))]
        if ref is not None:
            diff = np.abs(np.asarray(volumes[name], np.float32) - ref)
            col += [np.clip(4 * s, 0, 1) for s in _slices(diff)]
        rows.append(col)
    sz, sy, sx = spacing
    aspects = [sy / sx, sz / sx, sz / sy]  # physical height/width per pixel of each view
    n_rows = len(rows[0])
    label_h = 16
    canvas = Image.new("L", (tile * len(names), label_h + tile * n_rows), 0)
    draw = ImageDraw.Draw(canvas)
    for c, (name, col) in enumerate(zip(names, rows)):
        draw.text((c * tile + 4, 2), name, fill=255, font=font)
        for r, sl in enumerate(col):
            h, w = sl.shape
            aspect = aspects[r % 3]
            scale = tile / max(w, h * aspect)
            img = Image.fromarray((sl * 255).astype(np.uint8)).resize(
                (max(1, int(w * scale)), max(1, int(h * aspect * scale))), Image.BILINEAR)
            x0 = c * tile + (tile - img.width) // 2
            y0 = label_h + r * tile + (tile - img.height) // 2
            canvas.paste(img, (x0, y0))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)
