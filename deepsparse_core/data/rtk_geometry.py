"""RTK's geometry XML <-> our circular :class:`~deepsparse_core.physics.geometry.Geometry`.

RTK (``rtk::ThreeDCircularProjectionGeometry``, RTK's ``documentation/docs/Geometry.md``) gives
each view a SourceToIsocenterDistance, SourceToDetectorDistance, GantryAngle, OutOfPlaneAngle,
InPlaneAngle, ProjectionOffsetX/Y and SourceOffsetX/Y. We do not re-derive its conventions from
those names: per view we take the source position (``GetSourcePosition``) and the matrix taking
projection physical coordinates ``(u, v, 0, 1)`` (image origin + index x spacing) to the fixed
frame (``GetProjectionCoordinatesToFixedSystemMatrix``), map RTK's frame to ours
(ours (x, y, z) = RTK (Z, X, Y), see :mod:`deepsparse_core.physics.backends.rtk`) and fit our model:

* angle ``theta = atan2(s_y, s_x)`` and DSO ``= |s_xy|`` from the source ``s``;
* DSD, detector offsets ``(offset_v, offset_u)`` from the detector centre pixel.

Exactness: the fit is exact (to float rounding) for circular scans with constant distances and
offsets, RTK's usual output for Varian and Elekta scanners. Two kinds of deviation are measured,
in mm of detector-pixel (or source) displacement over the whole scan:

* *per-view* DSO, DSD or offsets (flexmaps): our Geometry has one value of each, so the mean is
  used and a warning states the largest deviation (mm and pixels);
* what no per-view circular model holds (tilted detector: in-plane or out-of-plane angles, source
  offsets, source out of the rotation plane): beyond :data:`TILT_TOLERANCE_PX` pixels an error.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import GeometryError, InputError, library_reason

ROOT_TAG = "RTKThreeDCircularGeometry"  # root element written by RTK's XML writer (version 3)
FLEX_TOLERANCE_MM = 1e-3    # per-view deviations below this are float noise of the XML text
TILT_TOLERANCE_PX = 0.05    # displacement (pixels) of what our model cannot hold that still passes
# ours (x, y, z) = RTK (Z, X, Y): row r of _TO_OURS picks the RTK axis of our axis r
_TO_OURS = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def require_rtk():
    """``(itk, itk.RTK)``, or an InputError naming the package to install."""
    from ..physics.backends import rtk as backend

    if not backend.available():
        raise InputError("reading or writing RTK geometry XML needs the itk-rtk package: pip install itk-rtk")
    import itk
    from itk import RTK

    return itk, RTK


# ---------------------------------------------------------------------------- reading, writing
def read_rtk_xml(path: str | Path):
    """An ``rtk.ThreeDCircularProjectionGeometry`` read from RTK's XML; InputError for a missing,
    malformed or empty file (RTK's reader itself accepts garbage as an empty geometry)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"geometry file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(f"{path} is not valid XML: {e}") from None
    if root.tag != ROOT_TAG:
        raise InputError(f"{path} is not an RTK geometry file: its root element is <{root.tag}>, "
                         f"expected <{ROOT_TAG}>")
    _, rtk = require_rtk()
    reader = rtk.ThreeDCircularProjectionGeometryXMLFileReader.New()
    reader.SetFilename(str(path))
    try:
        reader.GenerateOutputInformation()
    except RuntimeError as e:
        raise InputError(f"RTK cannot read {path}: {library_reason(e)}") from None
    geometry = reader.GetOutputObject()
    if len(geometry.GetGantryAngles()) == 0:
        raise InputError(f"{path} holds no projection (no <Projection> element)")
    if any(float(d) == 0.0 for d in geometry.GetSourceToDetectorDistances()):
        raise GeometryError(f"{path} describes a parallel-beam scan (SourceToDetectorDistance 0, RTK's convention); "
                            "only cone-beam scans are supported")
    if geometry.GetRadiusCylindricalDetector() != 0:
        raise GeometryError(f"{path} describes a cylindrical detector (radius "
                            f"{geometry.GetRadiusCylindricalDetector():g} mm); only flat panels are supported")
    return geometry


def write_rtk_xml(geometry, path: str | Path) -> Path:
    """Write our Geometry's RTK twin (:func:`backends.rtk.to_rtk_geometry`) atomically.

    Detector offsets are not in the XML: like RTK's own tools, they travel in the projection
    images' origin (see :func:`backends.rtk.projections_to_itk`).
    """
    _, rtk = require_rtk()
    from ..physics.backends.rtk import to_rtk_geometry

    rtk_geometry = to_rtk_geometry(geometry)  # keep a reference: SetObject does not own it (segfault)
    writer = rtk.ThreeDCircularProjectionGeometryXMLFileWriter.New()
    writer.SetObject(rtk_geometry)
    with atomic_path(path) as tmp:
        writer.SetFilename(str(tmp))
        writer.WriteFile()
    return Path(path)


# ---------------------------------------------------------------------------- fitting
def view_frames(rtk_geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per view, in our frame (mm): source (V, 3), the point of projection coordinates (0, 0)
    (V, 3), and the directions of the projection u and v axes (V, 3) each."""
    import itk

    src, zero, axis_u, axis_v = [], [], [], []
    for i in range(len(rtk_geometry.GetGantryAngles())):
        m = itk.array_from_matrix(rtk_geometry.GetProjectionCoordinatesToFixedSystemMatrix(i))
        s = np.array([float(rtk_geometry.GetSourcePosition(i)[k]) for k in range(3)])
        src.append(s), zero.append(m[:3, 3]), axis_u.append(m[:3, 0]), axis_v.append(m[:3, 1])
    return tuple(np.asarray(a) @ _TO_OURS.T for a in (src, zero, axis_u, axis_v))


@dataclass(frozen=True)
class CircularFit:
    """Our circular model fitted to RTK's views; lengths in mm, angles in radians."""

    dso: float
    dsd: float
    angles: tuple[float, ...]              # unwrapped, in acquisition order
    detector_offset: tuple[float, float]   # (offset_v, offset_u), mean over views
    flex_mm: dict                          # largest per-view deviation from the mean: dso, dsd, offset_u, offset_v
    unrepresentable_mm: float              # largest displacement our per-view circular model misses


def fit_circular(rtk_geometry, detector_shape, detector_spacing, detector_origin) -> CircularFit:
    """Fit our Geometry's scanner part to RTK views.

    Args:
        detector_shape: (nv, nu) pixels; detector_spacing: (dv, du) mm;
        detector_origin: (v0, u0) projection physical coordinates of pixel (0, 0), mm (the
            projection image's origin, RTK's convention).
    """
    (nv, nu), (dv, du), (v0, u0) = detector_shape, detector_spacing, detector_origin
    src, zero, axis_u, axis_v = view_frames(rtk_geometry)
    theta = np.unwrap(np.arctan2(src[:, 1], src[:, 0]))
    theta = theta - 2 * np.pi * np.floor(theta[0] / (2 * np.pi))     # first angle in [0, 2 pi)
    c, s = np.cos(theta), np.sin(theta)
    e_s = np.stack([c, s, 0 * c], -1)
    e_u = np.stack([-s, c, 0 * c], -1)
    e_v = np.broadcast_to(np.array([0.0, 0.0, 1.0]), e_s.shape)
    dso = np.hypot(src[:, 0], src[:, 1])
    uc, vc = u0 + (nu - 1) / 2 * du, v0 + (nv - 1) / 2 * dv            # centre pixel, projection coords
    centre = zero + uc * axis_u + vc * axis_v
    dsd = dso - np.einsum("vk,vk->v", centre, e_s)
    off_u, off_v = np.einsum("vk,vk->v", centre, e_u), np.einsum("vk,vk->v", centre, e_v)
    # pixel positions our per-view model gives vs RTK's, at the four corners (and the source height)
    missed = np.abs(src[:, 2])
    for cu in (0, nu - 1):
        for cv in (0, nv - 1):
            rtk_point = zero + (u0 + cu * du) * axis_u + (v0 + cv * dv) * axis_v
            ours = ((dso - dsd)[:, None] * e_s + (off_u + (cu - (nu - 1) / 2) * du)[:, None] * e_u
                    + (off_v + (cv - (nv - 1) / 2) * dv)[:, None] * e_v)
            missed = np.maximum(missed, np.linalg.norm(rtk_point - ours, axis=1))
    flex = {k: float(np.abs(x - x.mean()).max()) for k, x in
            (("dso", dso), ("dsd", dsd), ("offset_u", off_u), ("offset_v", off_v))}
    return CircularFit(float(dso.mean()), float(dsd.mean()), tuple(float(a) for a in theta),
                       (float(off_v.mean()), float(off_u.mean())), flex, float(missed.max()))


def check_fit(fit: CircularFit, detector_spacing, source: str = "the geometry") -> list[str]:
    """Raise GeometryError when ``fit`` misses more than TILT_TOLERANCE_PX pixels; return the
    warnings (flexmap approximated by its mean, small tilts ignored), empty when exact."""
    pixel = min(detector_spacing)
    notes = []
    if fit.unrepresentable_mm > TILT_TOLERANCE_PX * pixel:
        raise GeometryError(
            f"{source} cannot be represented by our circular geometry: a tilted detector (in-plane or "
            f"out-of-plane angle) or a source offset moves detector pixels by up to "
            f"{fit.unrepresentable_mm:.3g} mm ({fit.unrepresentable_mm / pixel:.2f} pixels); only "
            f"circular scans with an upright detector are supported")
    if fit.unrepresentable_mm > FLEX_TOLERANCE_MM:
        notes.append(f"{source} has a slightly tilted detector or offset source, ignored: it moves detector "
                     f"pixels by at most {fit.unrepresentable_mm:.3g} mm ({fit.unrepresentable_mm / pixel:.3f} pixels)")
    flex = {k: v for k, v in fit.flex_mm.items() if v > FLEX_TOLERANCE_MM}
    if flex:
        worst = max(flex.values())
        parts = ", ".join(f"{k} by {v:.3g} mm" for k, v in flex.items())
        notes.append(f"{source} varies per view (a flexmap: {parts}); approximated by the mean values "
                     f"(DSO {fit.dso:.6g} mm, DSD {fit.dsd:.6g} mm, offsets v {fit.detector_offset[0]:.4g} mm, "
                     f"u {fit.detector_offset[1]:.4g} mm), so rays are off by up to {worst:.3g} mm "
                     f"({worst / pixel:.2f} pixels) on the detector")
    return notes


def scanner_from_rtk(path, detector_shape, detector_spacing, detector_origin) -> CircularFit:
    """Read ``path`` (RTK XML) and fit it; warnings for approximations, GeometryError when impossible."""
    fit = fit_circular(read_rtk_xml(path), detector_shape, detector_spacing, detector_origin)
    for note in check_fit(fit, detector_spacing, Path(path).name):
        warnings.warn(note, stacklevel=2)
    return fit

