"""The comparison figure: layout, signed error colours on one shared scale, colour bar, titles."""

import numpy as np
from PIL import Image

from deepsparse_core.evaluation import figures


def test_diverging_map_is_white_at_zero_red_positive_blue_negative():
    rgb = figures.diverging(np.array([-1.0, 0.0, 1.0, 5.0]))
    assert rgb[1].tolist() == [255, 255, 255]
    assert rgb[2][0] == 255 and rgb[2][2] < 60           # +1: red
    assert rgb[0][2] == 255 and rgb[0][0] < 60           # -1: blue
    assert rgb[3].tolist() == rgb[2].tolist()            # clipped beyond the scale


def _tile(img, row, col, tile=96):
    top, left = figures.HEADER_H + row * tile, figures.ROW_LABEL_W + col * tile
    return img[top + 8:top + tile - 8, left + 8:left + tile - 8].astype(int)


def test_error_rows_show_sign_on_one_scale_and_the_gt_column_holds_the_colour_bar(tmp_path):
    ref = np.full((16, 16, 16), 0.5, np.float32)
    recs = {"over": ref + 0.1, "under": ref - 0.1, "failed": None}
    path = figures.comparison_figure(tmp_path / "c.png", ref, recs, scores={"over": {"psnr": 20.0, "ssim": 0.9}},
                                     tile=96, title="t")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1::-1] == figures.figure_size(3, 96)
    over, under = _tile(img, 3, 1), _tile(img, 3, 2)
    assert (over[..., 0] - over[..., 2] > 150).all()       # + error: red, the full scale (shared 0.1)
    assert (under[..., 2] - under[..., 0] > 150).all()     # - error: blue
    assert _tile(img, 3, 3).max() < 100                     # the failed method has no map (n/a)
    bar = img[figures.HEADER_H + 3 * 96 + 30:figures.HEADER_H + 6 * 96 - 20, figures.ROW_LABEL_W + 16]
    assert bar[0, 0] > bar[0, 2] and bar[-1, 2] > bar[-1, 0]   # colour bar: red on top, blue below
    assert _tile(img, 0, 0).std() < 1 and _tile(img, 0, 0).mean() > 100   # ground truth slice in grey


def test_error_scale_ignores_one_outlier_method():
    ref = np.zeros((8, 8, 8), np.float32)
    scale = figures.error_scale(ref, {"a": ref + 0.1, "b": ref + 0.1, "broken": ref + 1.0})
    assert abs(scale - 0.1) < 1e-6


def test_the_default_figure_reads_on_a_slide(tmp_path):
    """Issue 17: at least 1600 px wide with 14 px text by default, caption lines below the error rows."""
    ref = np.full((16, 16, 16), 0.5, np.float32)
    recs = {"FDK": ref + 0.05, "SART": ref - 0.02, "DiCE": ref + 0.01}
    notes = ["6 views 30 degrees apart", "slices through the grid centre"]
    path = figures.comparison_figure(tmp_path / "c.png", ref, recs, hu_window=(-1000.0, 1000.0), notes=notes,
                                     scores={k: {"psnr": 30.0, "ssim": 0.9} for k in recs})
    img = np.asarray(Image.open(path).convert("RGB"))
    tile = figures.default_tile(3)
    assert img.shape[1::-1] == figures.figure_size(3, tile, len(notes)) and img.shape[1] >= 1600
    from PIL import ImageFont

    font = figures._font()
    assert isinstance(font, ImageFont.FreeTypeFont) and font.size == figures.FONT_PX >= 14
    caption = img[figures.HEADER_H + 6 * tile:, :]
    rows_with_text = np.flatnonzero(caption.max(axis=(1, 2)) > 128)
    assert rows_with_text.max() - rows_with_text.min() > 2 * figures.LINE_H  # three caption lines drawn
