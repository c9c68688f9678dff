"""The comparison figure of ground truth and reconstructions (demo and quality report).

Layout: one column per volume (ground truth first, then each method with "PSNR .. dB, SSIM .." under
its name); rows axial, coronal and sagittal mid-slices in grey ([0, 1] attenuation), then the
same slices of the signed error (reconstruction - ground truth) in a blue-white-red map on one
symmetric scale shared by every method. The ground-truth column of the error rows holds the colour
bar. Slices are in radiological convention, superior up, with the physical aspect of the voxels.
Below: a caption (grey window and error scale, in HU when the HU window is given) and the caller's
notes. 14 px text, at least 1600 px wide by default: it reads on a slide.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path

FONT_PX = 14        # text height: readable on a slide
LINE_H = 20         # px per line of text
ROW_LABEL_W = 130   # px, left column with the row names
HEADER_H = 3 * LINE_H   # title line, column names, column metrics
MIN_WIDTH = 1600    # px: the default tile grows until the figure is at least this wide
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


def default_tile(n_methods: int) -> int:
    """The tile (px) that makes the figure at least :data:`MIN_WIDTH` wide (160 at the least)."""
    return max(160, -(-(MIN_WIDTH - ROW_LABEL_W) // (1 + n_methods)))


def figure_size(n_methods: int, tile: int = 160, notes: int = 0) -> tuple[int, int]:
    """(width, height) in px of :func:`comparison_figure` with ``n_methods`` method columns and
    ``notes`` caption lines below the error line."""
    return ROW_LABEL_W + tile * (1 + n_methods), HEADER_H + 6 * tile + LINE_H * (1 + notes) + 4


def _font(px: int = FONT_PX):
    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def error_scale(reference: np.ndarray, reconstructions: dict) -> float:
    """The shared symmetric error scale: the median over methods of their 99.5th |error| percentile
    (one failed model must not wash out the others' maps)."""
    errors = [np.percentile(np.abs(np.asarray(v, np.float32) - reference), 99.5)
              for v in reconstructions.values() if v is not None]
    return max(float(np.median(errors)) if errors else 1.0, 1e-6)


def comparison_figure(path: str | Path, reference: np.ndarray, reconstructions: dict, spacing=(1.0, 1.0, 1.0),
                      scores: dict | None = None, title: str = "", tile: int | None = None,
                      error_range: float | None = None, hu_window: tuple[float, float] | None = None,
                      notes: list[str] | tuple = ()) -> Path:
    """Write the comparison PNG (see the module docstring).

    Args:
        reference: (z, y, x) ground truth in [0, 1].
        reconstructions: {method name: (z, y, x) volume or None}; None draws an 'n/a' column.
        spacing: (sz, sy, sx) mm, for the slices' aspect.
        scores: {method name: {"psnr": dB, "ssim": [0, 1]}} shown under the column names.
        tile: px per slice (default :func:`default_tile`: the figure is at least 1600 px wide).
        error_range: the error that maps to full blue / red (default :func:`error_scale`).
        hu_window: (lo, hi) HU mapped to [0, 1]: the caption gives the grey window and the error
            scale in HU.
        notes: more caption lines (views, noise, slice positions, caveats).
    """
    reference = np.asarray(reference, np.float32)
    names = list(reconstructions)
    tile = tile or default_tile(len(names))
    scale = error_range if error_range is not None else error_scale(reference, reconstructions)
    hu = None if hu_window is None else float(hu_window[1]) - float(hu_window[0])  # HU per [0, 1] unit
    sz, sy, sx = spacing
    aspects = [sy / sx, sz / sx, sz / sy]   # physical height / width of a pixel in each view
    width, height = figure_size(len(names), tile, len(notes))
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    white = (255, 255, 255)

    def paste(img: Image.Image, col: int, row: int, aspect: float):
        w, h = img.size
        s = tile / max(w, h * aspect)
        img = img.resize((max(1, int(w * s)), max(1, int(h * aspect * s))), Image.BILINEAR)
        canvas.paste(img, (ROW_LABEL_W + col * tile + (tile - img.width) // 2,
                           HEADER_H + row * tile + (tile - img.height) // 2))

    draw.text((4, 2), title, fill=white, font=font)
    for r, label in enumerate([*ROW_NAMES, *(f"error {n}" for n in ROW_NAMES)]):
        draw.text((4, HEADER_H + r * tile + tile // 2 - LINE_H // 2), label, fill=white, font=font)
    for c, name in enumerate(["ground truth", *names]):
        x = ROW_LABEL_W + c * tile + 4
        draw.text((x, LINE_H), name, fill=white, font=font)
        s = (scores or {}).get(name) if c else None
        if s and s.get("psnr") is not None:
            draw.text((x, 2 * LINE_H), f"PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}", fill=white, font=font)
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
    _colour_bar(draw, canvas, ROW_LABEL_W, HEADER_H + 3 * tile, tile, scale, font, hu)
    if hu is None:
        caption = (f"grey: attenuation 0 (black) to 1 (white); error = reconstruction - ground truth, blue "
                   f"-{scale:.3g} to red +{scale:.3g}, one scale for all methods")
    else:
        caption = (f"grey: {hu_window[0]:g} HU (black) to {hu_window[1]:g} HU (white); error = reconstruction - "
                   f"ground truth, blue -{scale * hu:.0f} HU to red +{scale * hu:.0f} HU, one scale for all methods")
    for i, line in enumerate([caption, *notes]):
        draw.text((4, HEADER_H + 6 * tile + 2 + i * LINE_H), line, fill=white, font=font)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Path(path)


def _colour_bar(draw, canvas, x0: int, y0: int, tile: int, scale: float, font, hu: float | None = None) -> None:
    """A vertical bar from +scale (top) to -scale (bottom) with ticks (in HU when ``hu``, the HU per
    attenuation unit, is given), in the 3 x tile error slot."""
    bar_w, top, bottom = 18, y0 + LINE_H + 4, y0 + 3 * tile - 16
    t = np.linspace(1, -1, bottom - top)[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(diverging(t)), (x0 + 8, top))
    draw.text((x0 + 4, y0 + 2), "error", fill=(255, 255, 255), font=font)
    for value in (scale, scale / 2, 0.0, -scale / 2, -scale):
        y = int(round(top + (1 - value / scale) / 2 * (bottom - top - 1)))
        draw.line([(x0 + 8 + bar_w, y), (x0 + 12 + bar_w, y)], fill=(255, 255, 255))
        text = f"{value * hu:+.0f} HU" if hu else f"{value:+.3f}"
        draw.text((x0 + 16 + bar_w, y - LINE_H // 2 + 2), text, fill=(255, 255, 255), font=font)
