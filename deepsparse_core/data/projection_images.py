"""Scanner projection images on disk: a stack (``.mha``, ``.nrrd``, ``.nii``, multi-page TIFF...)
or a folder of 2D images (natural name order), read as (views, rows, columns) float32 arrays.

Images follow RTK: index (u, v, view), pixel (0, 0) at the image origin, in projection physical
coordinates; 2D formats without a physical header (TIFF, PNG) report no spacing nor origin. Flat
and dark fields are read the same way (:func:`read_field`). Used by :mod:`.scanner_io` (``import``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, library_reason

STACK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".nii", ".nii.gz", ".tif", ".tiff")
IMAGE_SUFFIXES = STACK_SUFFIXES + (".png",)
NO_HEADER_SUFFIXES = (".tif", ".tiff", ".png")     # no physical spacing or origin in the file

@dataclass
class ProjectionImages:
    """Projection images as read: ``array`` (V, nv, nu) float32; ``spacing`` (dv, du) mm and
    ``origin`` (v0, u0) mm of pixel (0, 0) in projection physical coordinates (None: not in the file)."""

    array: np.ndarray
    spacing: tuple[float, float] | None
    origin: tuple[float, float] | None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in sorted(IMAGE_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def projection_files(source: str | Path) -> list[Path]:
    """The image files of a projections folder (natural order), or ``[source]`` for one file."""
    source = Path(source)
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.is_file() and _suffix(p)),  # (not the sidecar JSON)
                       key=_natural_key)
        if not files:
            raise InputError(f"{source} holds no projection images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not source.is_file():
        raise InputError(f"projections not found: {source}")
    if not _suffix(source):
        raise InputError(f"cannot read projections {source.name}: use a stack ({', '.join(STACK_SUFFIXES)}) "
                         f"or a folder of images")
    return [source]


def _read_image(path: Path):
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path), sitk.sitkFloat32)
    except RuntimeError as e:
        raise InputError(f"cannot read {path}: {library_reason(e)}") from None


def _detector_frame(dim, size, spacing, origin, direction, path: Path):
    """(nv, nu), (dv, du), (v0, u0) of pixel (0, 0) after flipping axes whose direction is -1, and
    the flips (columns, rows), from an image header."""
    if dim not in (2, 3):
        raise InputError(f"{path} is {dim}D: projections are 2D images or 3D stacks (u, v, view)")
    d = np.asarray(direction).reshape(dim, dim)[:2, :2]
    if not np.allclose(np.abs(d), np.eye(2), atol=1e-6):
        raise InputError(f"{path} has a rotated projection direction {d.round(4).tolist()}: only axis-aligned "
                         f"detectors (direction +-1) are supported")
    (nu, nv), (du, dv), (u0, v0) = size[:2], spacing[:2], origin[:2]
    flip_u, flip_v = bool(d[0, 0] < 0), bool(d[1, 1] < 0)
    u0 = u0 - (nu - 1) * du if flip_u else u0    # reversed columns: origin at the new first one
    v0 = v0 - (nv - 1) * dv if flip_v else v0
    return (int(nv), int(nu)), (float(dv), float(du)), (float(v0), float(u0)), (flip_u, flip_v)


def _as_stack(image, path: Path) -> tuple[np.ndarray, tuple, tuple]:
    """(V, nv, nu) array, (dv, du), (v0, u0) of an image, flipping axes whose direction is -1."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per pixel: "
                         f"projections are single-channel")
    _, spacing, origin, (flip_u, flip_v) = _detector_frame(
        image.GetDimension(), image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), path)
    arr = sitk.GetArrayFromImage(image)
    arr = arr[None] if arr.ndim == 2 else arr
    arr = arr[:, :, ::-1] if flip_u else arr
    arr = arr[:, ::-1, :] if flip_v else arr
    return np.ascontiguousarray(arr, dtype=np.float32), spacing, origin


@dataclass(frozen=True)
class ImagesHeader:
    """What the files say before their pixels are read: projections, (nv, nu), (dv, du) and
    (v0, u0) mm (None for formats without a physical header: TIFF, PNG)."""

    n_images: int
    detector_shape: tuple[int, int]
    spacing: tuple[float, float] | None
    origin: tuple[float, float] | None


def read_header(files: list[Path]) -> ImagesHeader:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(files[0]))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(f"cannot read {files[0]}: {library_reason(e)}") from None
    size = reader.GetSize()
    shape, spacing, origin, _ = _detector_frame(reader.GetDimension(), size, reader.GetSpacing(),
                                                reader.GetOrigin(), reader.GetDirection(), files[0])
    n = len(files) if len(files) > 1 else (1 if len(size) == 2 else int(size[2]))
    header = _suffix(files[0]) not in NO_HEADER_SUFFIXES
    return ImagesHeader(n, shape, spacing if header else None, origin if header else None)


def read_projection_images(files: list[Path], views=None) -> ProjectionImages:
    """Read projections (only ``views`` of a folder; a stack is read whole, then indexed)."""
    if len(files) == 1:
        arr, spacing, origin = _as_stack(_read_image(files[0]), files[0])
        if views is not None:
            arr = arr[np.asarray(views, dtype=np.int64)]
        header = _suffix(files[0]) not in NO_HEADER_SUFFIXES
        return ProjectionImages(arr, spacing if header else None, origin if header else None)
    chosen = [files[i] for i in (range(len(files)) if views is None else views)]
    arrays, spacing, origin = [], None, None
    for path in chosen:
        arr, sp, org = _as_stack(_read_image(path), path)
        if arr.shape[0] != 1:
            raise InputError(f"{path} holds {arr.shape[0]} images: a projections folder has one 2D image per file")
        if arrays and arr.shape[1:] != arrays[0].shape:
            raise InputError(f"{path} is {arr.shape[1]} x {arr.shape[2]} pixels but {chosen[0].name} is "
                             f"{arrays[0].shape[0]} x {arrays[0].shape[1]}: all projections must be the same size")
        arrays.append(arr[0])
        spacing, origin = spacing or sp, origin or org
    header = _suffix(chosen[0]) not in NO_HEADER_SUFFIXES
    return ProjectionImages(np.stack(arrays), spacing if header else None, origin if header else None)


def read_field(path: str | Path, detector_shape, what: str) -> torch.Tensor:
    """A flat or dark field (nv, nu): one 2D image, or the mean of a stack of them."""
    arr, _, _ = _as_stack(_read_image(Path(path)), Path(path))
    if tuple(arr.shape[1:]) != tuple(detector_shape):
        raise InputError(f"the {what} field {Path(path).name} is {arr.shape[1]} x {arr.shape[2]} pixels but the "
                         f"projections are {detector_shape[0]} x {detector_shape[1]}")
    return torch.from_numpy(arr.astype(np.float64).mean(axis=0))


__all__ = ["STACK_SUFFIXES", "IMAGE_SUFFIXES", "NO_HEADER_SUFFIXES", "ProjectionImages", "ImagesHeader",
           "projection_files", "read_header", "read_projection_images", "read_field"]
