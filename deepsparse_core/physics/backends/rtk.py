"""RTK (``itk-rtk``, CPU) backend: geometry conversion, Joseph projection, FDK and SART (the
interface of :mod:`deepsparse_core.physics.backends`).

Frame mapping. RTK rotates about its Y axis with the source at ``sid (sin phi, 0, cos phi)``;
ours rotates about z with the source at ``DSO (cos theta, sin theta, 0)``. With
``RTK (X, Y, Z) = ours (y, z, x)`` (a proper rotation) and ``phi = theta`` the two agree, and the
detector axes match too: RTK's u axis is ours ``e_u`` and its v axis is ours ``e_v = z``.
Volumes are therefore handed to RTK as ``array.transpose(2, 0, 1)`` (RTK numpy order (Z, Y, X) =
ours (x, z, y)), with identity direction.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import DeepSparseError
from ..geometry import Geometry
from ..filters import check_filter


def available() -> bool:
    try:
        import itk  # noqa: F401
        from itk import RTK  # noqa: F401
    except Exception:  # ImportError, or a broken install raising something else
        return False
    return True


def _rtk():
    if not available():
        raise DeepSparseError("the RTK backend needs the itk-rtk package: pip install itk-rtk")
    import itk
    from itk import RTK

    return itk, RTK


def to_rtk_geometry(geometry: Geometry):
    """RTK ``ThreeDCircularProjectionGeometry`` with the same sources and detector planes.

    Detector offsets are carried by the projection images' origin (see :func:`projections_to_itk`).
    """
    _, rtk = _rtk()
    g = rtk.ThreeDCircularProjectionGeometry.New()
    for a in geometry.angles:
        g.AddProjection(geometry.dso, geometry.dsd, math.degrees(a))
    return g


def volume_to_itk(array: np.ndarray, geometry: Geometry):
    """Our (nz, ny, nx) volume as an RTK-frame ITK image (float32)."""
    itk, _ = _rtk()
    img = itk.image_from_array(np.ascontiguousarray(np.asarray(array, np.float32).transpose(2, 0, 1)))
    (sz, sy, sx), (nz, ny, nx) = geometry.volume_spacing, geometry.volume_shape
    oz, oy, ox = geometry.volume_offset
    # RTK index axes (i, j, k) = ours (y, z, x).
    img.SetSpacing([sy, sz, sx])
    img.SetOrigin([oy - (ny - 1) / 2 * sy, oz - (nz - 1) / 2 * sz, ox - (nx - 1) / 2 * sx])
    return img


def volume_from_itk(img) -> np.ndarray:
    itk, _ = _rtk()
    return np.ascontiguousarray(itk.array_from_image(img).transpose(1, 2, 0))


def projections_to_itk(projections: np.ndarray, geometry: Geometry):
    """Our (V, nv, nu) projections as an RTK projection stack (index (u, v, view))."""
    itk, _ = _rtk()
    img = itk.image_from_array(np.ascontiguousarray(np.asarray(projections, np.float32)))
    (dv, du), (nv, nu) = geometry.detector_spacing, geometry.detector_shape
    img.SetSpacing([du, dv, 1.0])
    img.SetOrigin([geometry.detector_offset[1] - (nu - 1) / 2 * du,
                   geometry.detector_offset[0] - (nv - 1) / 2 * dv, 0.0])
    return img


def _empty_projections(geometry: Geometry):
    return projections_to_itk(np.zeros((geometry.n_views, *geometry.detector_shape), np.float32), geometry)


def _empty_volume(geometry: Geometry):
    return volume_to_itk(np.zeros(geometry.volume_shape, np.float32), geometry)


def forward_project(volume: np.ndarray, geometry: Geometry) -> np.ndarray:
    """RTK Joseph forward projection of our (nz, ny, nx) volume -> (V, nv, nu)."""
    itk, rtk = _rtk()
    img_type = itk.Image[itk.F, 3]
    fp = rtk.JosephForwardProjectionImageFilter[img_type, img_type].New()
    fp.SetInput(0, _empty_projections(geometry))
    fp.SetInput(1, volume_to_itk(volume, geometry))
    fp.SetGeometry(to_rtk_geometry(geometry))
    fp.Update()
    return np.asarray(itk.array_from_image(fp.GetOutput()))


def back_project(projections: np.ndarray, geometry: Geometry) -> np.ndarray:
    """RTK Joseph back-projection (adjoint of its forward projector) -> (nz, ny, nx)."""
    itk, rtk = _rtk()
    img_type = itk.Image[itk.F, 3]
    bp = rtk.JosephBackProjectionImageFilter[img_type, img_type].New()
    bp.SetInput(0, _empty_volume(geometry))
    bp.SetInput(1, projections_to_itk(projections, geometry))
    bp.SetGeometry(to_rtk_geometry(geometry))
    bp.Update()
    return volume_from_itk(bp.GetOutput())


# RTK's FFTRampImageFilter setters of our FILTERS; Ram-Lak needs none at the full band.
_WINDOW_SETTERS = {"ram-lak": "SetRamLakCutFrequency", "hann": "SetHannCutFrequency",
                   "cosine": "SetCosineCutFrequency", "shepp-logan": "SetSheppLoganCutFrequency"}


def fdk(projections, geometry: Geometry, filter: str = "ram-lak", cutoff: float = 1.0,
        short_scan: bool | None = None) -> np.ndarray:
    """RTK FDK (displaced-detector weights, Parker weights for short scans, the ramp with RTK's
    ``filter`` window up to ``cutoff`` x Nyquist) -> (nz, ny, nx).

    Arcs too short for Parker (e.g. 6 views over [0, 180) degrees) get the torch backend's uniform
    view weights 2 pi / V: RTK has none, so each view is scaled by (2 pi / V) / RTK's half-gap weight
    before RTK's filter applies the half-gap weight (:func:`deepsparse_core.physics.fdk.scan_weighting`).
    """
    from ..fdk import angular_weights, scan_weighting

    check_filter(filter, cutoff)
    itk, rtk = _rtk()
    img_type = itk.Image[itk.F, 3]
    geo = to_rtk_geometry(geometry)
    mode = scan_weighting(geometry)
    if short_scan is None and mode == "uniform":
        scale = (2 * np.pi / geometry.n_views) / angular_weights(geometry)
        projections = np.asarray(projections.detach().cpu() if hasattr(projections, "detach") else projections,
                                 dtype=np.float32) * scale[:, None, None].astype(np.float32)
    proj = projections_to_itk(projections, geometry)
    if short_scan is None:  # Parker only where it is defined
        short_scan = mode == "parker"
    # Displaced (offset) detector weighting, as RTK's rtkfdk application does.
    displaced = rtk.DisplacedDetectorImageFilter[img_type].New()
    displaced.SetInput(proj)
    displaced.SetGeometry(geo)
    displaced.SetPadOnTruncatedSide(False)
    displaced.Update()
    proj = displaced.GetOutput()
    if short_scan:
        parker = rtk.ParkerShortScanImageFilter[img_type].New()
        parker.SetInput(proj)
        parker.SetGeometry(geo)
        parker.Update()
        proj = parker.GetOutput()
    f = rtk.FDKConeBeamReconstructionFilter[img_type].New()
    f.SetInput(0, _empty_volume(geometry))
    f.SetInput(1, proj)
    f.SetGeometry(geo)
    if filter != "ram-lak" or cutoff < 1.0:
        getattr(f.GetRampFilter(), _WINDOW_SETTERS[filter])(float(cutoff))
    f.Update()
    return volume_from_itk(f.GetOutput())


def sart(projections, geometry: Geometry, iterations: int = 20, relaxation: float = 0.3,
         views_per_subset: int = 1, nonnegative: bool = True, backprojector: str = "voxel") -> np.ndarray:
    """RTK SART/OS-SART (lambda = ``relaxation``) with its Joseph forward projector -> (nz, ny, nx).

    ``backprojector``: "voxel" (RTK's default, pixel-interpolating) or "joseph" (the adjoint).
    """
    if backprojector not in ("voxel", "joseph"):
        raise DeepSparseError(f"unknown RTK back-projector {backprojector!r}: use voxel or joseph")
    itk, rtk = _rtk()
    img_type = itk.Image[itk.F, 3]
    s = rtk.SARTConeBeamReconstructionFilter[img_type, img_type].New()
    s.SetInput(0, _empty_volume(geometry))
    s.SetInput(1, projections_to_itk(projections, geometry))
    s.SetGeometry(to_rtk_geometry(geometry))
    s.SetNumberOfIterations(iterations)
    s.SetLambda(relaxation)
    s.SetNumberOfProjectionsPerSubset(views_per_subset)
    s.SetEnforcePositivity(nonnegative)
    if backprojector == "joseph":
        s.SetBackProjectionFilter(s.BackProjectionType_BP_JOSEPH)
    s.Update()
    return volume_from_itk(s.GetOutput())
