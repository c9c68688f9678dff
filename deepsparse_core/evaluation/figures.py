"""The comparison figure of ground truth and reconstructions (demo and quality report).

Layout: one column per volume (ground truth first, then each method with its PSNR / SSIM in the
column title); rows axial, coronal and sagittal mid-slices in grey ([0, 1] attenuation), then the
same slices of the signed error (reconstruction - ground truth) in a blue-white-red map on one
symmetric scale shared by every method. The ground-truth column of the error rows holds the colour
bar. Slices are in radiological convention, superior up, with the physical aspect of the voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path

ROW_LABEL_W = 84    # px, left column with the row names
HEADER_H = 34       # px, title line + column titles
FOOTER_H = 16       # px, note on the error scale
ROW_NAMES = ("axial", "coronal", "sagittal")


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


def diverging(t: np.ndarray) -> np.ndarray:
    """[-1, 1] -> RGB uint8: blue (-1) - white (0) - red (+1), clipped."""
    t = np.clip(np.asarray(t, np.float32), -1, 1)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    r = 1 - neg * 0.85
    g = 1 - np.maximum(pos, neg) * 0.85
    b = 1 - pos * 0.85
    return (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)


def figure_size(n_methods: int, tile: int = 160) -> tuple[int, int]:
    """(width, height) in px of :func:`comparison_figure` with ``n_methods`` method columns."""
    return ROW_LABEL_W + tile * (1 + n_methods), HEADER_H + 6 * tile + FOOTER_H


def error_scale(reference: np.ndarray, reconstructions: dict) -> float:
    """The shared symmetric error scale: the median over methods of their 99.5th |error| percentile
    (one failed model must not wash out the others' maps)."""
    errors = [np.percentile(np.abs(np.asarray(v, np.float32) - reference), 99.5)
              for v in reconstructions.values() if v is not None]
    return max(float(np.median(errors)) if errors else 1.0, 1e-6)


def comparison_figure(path: str | Path, reference: np.ndarray, reconstructions: dict, spacing=(1.0, 1.0, 1.0),
                      scores: dict | None = None, title: str = "", tile: int = 160,
                      error_range: float | None = None) -> Path:
    """Write the comparison PNG (see the module docstring).

    Args:
        reference: (z, y, x) ground truth in [0, 1].
        reconstructions: {method name: (z, y, x) volume or None}; None draws an 'n/a' column.
        spacing: (sz, sy, sx) mm, for the slices' aspect.
        scores: {method name: {"psnr": dB, "ssim": [0, 1]}} shown in the column titles.
        error_range: the error that maps to full blue / red (default :func:`error_scale`).
    """
    reference = np.asarray(reference, np.float32)
    names = list(reconstructions)
    scale = error_range if error_range is not None else error_scale(reference, reconstructions)
    sz, sy, sx = spacing
    aspects = [sy / sx, sz / sx, sz / sy]   # physical height / width of a pixel in each view
    width, height = figure_size(len(names), tile)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    white = (255, 255, 255)

    def paste(img: Image.Image, col: int, row: int, aspect: float):
        w, h = img.size
        s = tile / max(w, h * aspect)
        img = img.resize((max(1, int(w * s)), max(1, int(h * aspect * s))), Image.BILINEAR)
        canvas.paste(img, (ROW_LABEL_W + col * tile + (tile - img.width) // 2,
                           HEADER_H + row * tile + (tile - img.height) // 2))

    draw.text((4, 2), title, fill=white, font=font)
    for r, label in enumerate([*ROW_NAMES, *(f"error {n}" for n in ROW_NAMES)]):
        draw.text((4, HEADER_H + r * tile + tile // 2 - 6), label, fill=white, font=font)
    for c, name in enumerate(["ground truth", *names]):
        head = name[:26]
        s = (scores or {}).get(name) if c else None
        if s and s.get("psnr") is not None:
            head = f"{name[:12]} {s['psnr']:.2f} dB / {s['ssim']:.3f}"
        draw.text((ROW_LABEL_W + c * tile + 4, 18), head, fill=white, font=font)
        vol = reference if c == 0 else reconstructions[name]
        if vol is None:
            draw.text((ROW_LABEL_W + c * tile + tile // 2 - 10, HEADER_H + 3 * tile - 6), "n/a",
                      fill=(255, 80, 80), font=font)
            continue
        vol = np.asarray(vol, np.float32)
        for r, sl in enumerate(_slices(vol)):
            grey = (np.clip(sl, 0, 1) * 255).astype(np.uint8)
            paste(Image.fromarray(np.ascontiguousarray(grey)).convert("RGB"), c, r, aspects[r])
        if c > 0:
            for r, sl in enumerate(_slices(vol - reference)):
                paste(Image.fromarray(np.ascontiguousarray(diverging(sl / scale))), c, 3 + r, aspects[r])
    _colour_bar(draw, canvas, ROW_LABEL_W, HEADER_H + 3 * tile, tile, scale, font)
    draw.text((4, height - FOOTER_H + 2),
              f"error = reconstruction - ground truth, blue -{scale:.3g} to red +{scale:.3g} "
              "(attenuation, [0, 1] = HU window), one scale for all methods", fill=white, font=font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _colour_bar(draw, canvas, x0: int, y0: int, tile: int, scale: float, font) -> None:
    """A vertical bar from +scale (top) to -scale (bottom) with ticks, in the 3 x tile error slot."""
    bar_w, top, bottom = 18, y0 + 16, y0 + 3 * tile - 16
    t = np.linspace(1, -1, bottom - top)[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(diverging(t)), (x0 + 8, top))
    draw.text((x0 + 4, y0 + 2), "error", fill=(255, 255, 255), font=font)
    for value in (scale, scale / 2, 0.0, -scale / 2, -scale):
        y = int(round(top + (1 - value / scale) / 2 * (bottom - top - 1)))
        draw.line([(x0 + 8 + bar_w, y), (x0 + 12 + bar_w, y)], fill=(255, 255, 255))
        draw.text((x0 + 14 + bar_w, y - 6), f"{value:+.3f}", fill=(255, 255, 255), font=font)
