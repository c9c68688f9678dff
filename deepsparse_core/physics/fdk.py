"""FDK (Feldkamp-Davis-Kress) filtered back-projection for circular cone-beam CT, in torch.

Follows RTK's ``FDKConeBeamReconstructionFilter`` step by step (RTK v2.7 sources), so the two agree
to float precision apart from the detector border handling of the back-projector:

1. Displaced-detector weights (``DisplacedDetectorImageFilter``, as in ``rtkfdk``) when the detector
   centre is offset by 5 % of its width or more, so the central rays are not counted twice.
2. Parker short-scan weights (``ParkerShortScanImageFilter``) for arcs below 2 pi.
3. Feldkamp cosine weight ``DSD / sqrt(DSD^2 + u^2 + v^2)`` and the angular weight of each view:
   half the angular distance between its two neighbours on the circle (RTK's ``GetAngularGaps``).
4. Ramp filter along detector rows: the band-limited spatial ramp of Kak & Slaney (ch. 3, eq. 61)
   sampled at the detector pitch scaled to the isocentre, applied by FFT with zero padding to the
   next power of two >= 2 nu (no circular wrap), optionally apodized in frequency.
5. Voxel-driven back-projection with the distance weight (DSO / (DSO - depth))^2.

With the kernel at the isocentre pitch the FDK constant is 1/2 (a full turn back-projects every
ray twice), which equals RTK's ``DSD / (2 DSO)`` with the kernel at the detector pitch.
Output units are those of the projected volume (normalized attenuation per mm).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import GeometryError
from .filters import FILTERS, check_filter
from .geometry import Geometry, check_projections
from .projector import back_project_voxel_driven

# RTK's ParkerShortScanImageFilter only weights scans whose largest angular gap reaches 20 degrees.
PARKER_GAP_THRESHOLD = math.pi / 9


def _circle_angles(geometry: Geometry) -> np.ndarray:
    """Projection angles wrapped to [0, 2 pi), as RTK stores gantry angles."""
    a = np.asarray(geometry.angles, dtype=np.float64)
    return a - 2 * np.pi * np.floor(a / (2 * np.pi))


def angular_weights(geometry: Geometry) -> np.ndarray:
    """(V,) radians: half the angle between each view's two neighbours on the circle.

    RTK's ``ThreeDCircularProjectionGeometry::GetAngularGaps``: the delta-theta of the FDK sum for
    any (also non-uniform) angle list. The first and last sorted views wrap around 2 pi, so the end
    views of a short scan get large weights, which Parker's weights (near 0 there) cancel.
    """
    a = _circle_angles(geometry)
    if a.size == 1:
        return np.array([2 * np.pi])
    order = np.argsort(a, kind="stable")
    s = a[order]
    prev = np.roll(s, 1)
    nxt = np.roll(s, -1)
    prev[0] -= 2 * np.pi
    nxt[-1] += 2 * np.pi
    gaps = np.empty_like(a)
    gaps[order] = 0.5 * (nxt - prev)
    return gaps


def parker_weights(geometry: Geometry) -> np.ndarray | None:
    """(V, nu) Parker short-scan weights in [0, 2], or None when RTK sees no short scan.

    Exactly RTK's ``ParkerShortScanImageFilter``: the scan starts at the view after the largest
    angular gap, ``delta = (arc - pi) / 2`` wrapped to [0, 2 pi) and the weights of Parker (1982,
    with the corrected denominator of eq. 12) for the fan angle ``alpha = atan(-u / DSD)`` of each
    detector column. For arcs shorter than pi + fan angle RTK only warns and still applies the
    formula; below pi the wrapped delta is close to 2 pi, which makes every weight small
    (``2 sin^2(pi beta / (4 (delta - alpha)))``): the reconstruction then loses most of its scale.
    We reproduce that behaviour rather than silently changing the method.
    """
    a = _circle_angles(geometry)
    n = a.size
    if n < 2:
        return None
    unique = np.unique(a)                              # RTK's std::map of sorted unique angles
    order = np.argsort(a, kind="stable")
    s = a[order]
    gaps_next = np.empty_like(a)                       # GetAngularGapsWithNext
    gaps_next[order[:-1]] = s[1:] - s[:-1]
    gaps_next[order[-1]] = s[0] + 2 * np.pi - s[-1]
    last_pos = int(np.argmax(gaps_next))              # first index of the largest gap
    if gaps_next[last_pos] < PARKER_GAP_THRESHOLD:
        return None
    k = int(np.searchsorted(unique, a[last_pos]))
    first_angle = unique[(k + 1) % unique.size]
    last_angle = a[last_pos]
    if last_angle < first_angle:
        last_angle += 2 * np.pi
    delta = 0.5 * (last_angle - first_angle - np.pi)
    delta = delta - 2 * np.pi * math.floor(delta / (2 * np.pi))
    _, u = geometry.pixel_centres(torch.float64)
    alpha = np.arctan(-u.numpy() / geometry.dsd)[None, :]          # (1, nu)
    beta = (a - first_angle)[:, None]
    beta = np.where(beta < 0, beta + 2 * np.pi, beta)               # (V, 1)
    pi = np.pi
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = 2 * np.sin(pi * beta / (4 * (delta - alpha))) ** 2
        fall = 2 * np.sin(pi * (pi + 2 * delta - beta) / (4 * (delta + alpha))) ** 2
    return np.where(beta <= 2 * delta - 2 * alpha, rise,
                    np.where(beta <= pi - 2 * alpha, 2.0,
                             np.where(beta <= pi + 2 * delta, fall, 0.0)))


def displaced_detector_weights(geometry: Geometry) -> np.ndarray | None:
    """(nu,) weights for a laterally offset detector (half-fan scans), or None if not displaced.

    RTK's ``DisplacedDetectorImageFilter`` (without padding): columns seen from both sides of the
    rotation axis get a smooth 0 -> 2 ramp over the overlap ``|l| < theta`` (isocentre coordinate
    l), the others 0 or 2. A detector offset by less than 5 % of its width is "not displaced".
    """
    nu, du = geometry.detector_shape[1], geometry.detector_spacing[1]
    scale = geometry.dso / geometry.dsd                            # detector -> isocentre
    inf = (geometry.detector_offset[1] - (nu - 1) / 2 * du) * scale
    sup = (geometry.detector_offset[1] + (nu - 1) / 2 * du) * scale
    if inf > 0 or sup < 0:
        raise GeometryError(f"the detector offset ({geometry.detector_offset[1]} mm) is larger than half "
                            "the detector: the rotation axis is not seen")
    if abs(inf + sup) < 0.1 * abs(sup - inf):
        return None
    theta = min(-inf, sup)
    _, u = geometry.pixel_centres(torch.float64)
    l = u.numpy() * scale
    ramp = np.sin(np.pi * np.arctan(l / geometry.dso) / (2 * np.arctan(theta / geometry.dso)))
    if inf + sup > 0:
        return np.where(l <= -theta, 0.0, np.where(l >= theta, 2.0, 1 + ramp))
    return np.where(l <= -theta, 2.0, np.where(l >= theta, 0.0, 1 - ramp))


def _padded_length(n: int) -> int:
    """FFT length: the next power of two >= 2 n (RTK without FFTW: greatest prime factor 2)."""
    return 1 << max(1, (2 * n - 1).bit_length())


def ramp_filter_response(n_columns: int, spacing: float, filter: str = "ram-lak", cutoff: float = 1.0,
                         dtype=torch.float32, device=None) -> torch.Tensor:
    """(N // 2 + 1,) real frequency response of the apodized ramp for rows of ``n_columns`` pixels.

    ``N`` is :func:`_padded_length`. The kernel is the band-limited ramp sampled at ``spacing`` mm,
    times the pixel size (Kak & Slaney eq. 61 with the convolution's ``tau`` folded in):
    ``h[0] = 1 / (4 tau)``, ``h[k odd] = -1 / (pi^2 k^2 tau)``, 0 for even k; RTK's windows, on
    bins ``i < ncut = round(cutoff * (N // 2 + 1))`` (0 beyond): hann ``(1 + cos(pi i / ncut)) / 2``,
    cosine ``cos(pi i / (2 ncut))``, shepp-logan ``sinc(i / (2 ncut))``, ram-lak 1.
    """
    check_filter(filter, cutoff)
    N = _padded_length(n_columns)
    k = torch.arange(N, dtype=torch.float64)
    dist = torch.minimum(k, N - k)
    h = torch.where(dist % 2 == 1, -1.0 / (math.pi ** 2 * dist.clamp(min=1) ** 2 * spacing),
                    torch.zeros_like(k))
    h[0] = 1.0 / (4.0 * spacing)
    h[N // 2] = 0.0
    response = torch.fft.rfft(h).real
    nf = response.numel()
    ncut = int(math.floor(nf * cutoff + 0.5))
    i = torch.arange(nf, dtype=torch.float64)
    x = i / max(ncut, 1)
    if filter == "hann":
        window = 0.5 * (1 + torch.cos(math.pi * x))
    elif filter == "cosine":
        window = torch.cos(0.5 * math.pi * x)
    elif filter == "shepp-logan":
        window = torch.sinc(0.5 * x)                 # torch.sinc(t) = sin(pi t) / (pi t)
    else:
        window = torch.ones_like(x)
    window[ncut:] = 0.0
    return (response * window).to(dtype=dtype, device=device)


def ramp_filter(projections: torch.Tensor, spacing: float, filter: str = "ram-lak",
                cutoff: float = 1.0) -> torch.Tensor:
    """Filter the rows (last axis) of ``projections`` with the apodized ramp, by zero-padded FFT."""
    n = projections.shape[-1]
    N = _padded_length(n)
    response = ramp_filter_response(n, spacing, filter, cutoff, projections.dtype, projections.device)
    spectrum = torch.fft.rfft(projections, n=N, dim=-1)
    return torch.fft.irfft(spectrum * response, n=N, dim=-1)[..., :n]


def scan_weighting(geometry: Geometry) -> str:
    """How :func:`fdk` weights views when ``short_scan`` is None: 'rtk', 'parker' or 'uniform'.

    * 'rtk': a full scan (largest angular gap under 20 degrees, RTK's rule, or views spread evenly
      over the whole circle, e.g. 8 views over 360 degrees) - half-gap weights.
    * 'parker': the views cover at least pi + fan angle - Parker short-scan weights.
    * 'uniform': shorter arcs (e.g. the paper's 6 views over [0, 180) degrees cover 150 degrees):
      Parker weights are undefined there (RTK's formula shrinks every weight, losing most of the
      scale) and half-gap weights give the two end views the whole missing arc. Each view instead
      stands for itself and its conjugate, 2 pi / V. On a 64^3 chest phantom at 6 views this gave
      18.1 dB PSNR against 15.3 dB (half-gap) and 12.6 dB (RTK's Parker).
    """
    a = np.sort(_circle_angles(geometry))
    if a.size < 2:
        return "rtk"
    gaps = np.diff(np.concatenate([a, a[:1] + 2 * np.pi]))
    if gaps.max() < PARKER_GAP_THRESHOLD or gaps.max() <= 1.5 * 2 * np.pi / a.size:
        return "rtk"
    covered = 2 * np.pi - gaps.max()
    (_, nu), (_, du) = geometry.detector_shape, geometry.detector_spacing
    half_width = nu * du / 2 + abs(geometry.detector_offset[1])
    fan = 2 * math.atan(half_width / geometry.dsd)
    return "parker" if covered >= np.pi + fan - 1e-9 else "uniform"


def fdk(projections, geometry: Geometry, filter: str = "ram-lak", short_scan: bool | None = None,
        cutoff: float = 1.0) -> torch.Tensor:
    """FDK reconstruction of cone-beam projections.

    Args:
        projections: (V, nv, nu) or (B, V, nv, nu) line integrals (attenuation x mm), a tensor on
            any device (the computation runs there) or an array.
        geometry: the acquisition; ``geometry.n_views`` must equal V.
        filter: ramp apodization, one of ``FILTERS``: "ram-lak", "shepp-logan", "hann", "cosine".
        short_scan: True: Parker weights (RTK's filter, also on arcs too short for it); False:
            RTK's half-gap angular weights only. None (default) decides from the scan (see
            :func:`scan_weighting`): full scans and scans covering pi + fan angle are weighted as
            RTK does; shorter arcs, like the paper's 180 degrees, get uniform weights 2 pi / V.
        cutoff: window cut-off as a fraction of the Nyquist frequency, in (0, 1].

    Returns:
        (nz, ny, nx) or (B, nz, ny, nx) volume in the units of the projected volume (per mm).
    """
    p = check_projections(projections, geometry)
    check_filter(filter, cutoff)
    dtype, device = p.dtype, p.device
    # Weights in float64 on the host, factored as (nv, nu) x (V, nu) to stay small.
    v, u = (t.numpy() for t in geometry.pixel_centres(torch.float64))
    cosine = geometry.dsd / np.sqrt(geometry.dsd ** 2 + u[None, :] ** 2 + v[:, None] ** 2)     # (nv, nu)
    # Angular weight times the FDK factor 1/2 (kernel at the isocentre pitch), per view and column.
    mode = scan_weighting(geometry) if short_scan is None else ("parker" if short_scan else "rtk")
    gaps = np.full(geometry.n_views, 2 * np.pi / geometry.n_views) if mode == "uniform" else angular_weights(geometry)
    view_column = 0.5 * gaps[:, None] * np.ones_like(u)[None, :]                              # (V, nu)
    column_weights = displaced_detector_weights(geometry)
    if column_weights is not None:
        view_column = view_column * column_weights[None, :]
    if mode == "parker":
        parker = parker_weights(geometry)
        if parker is not None:
            view_column = view_column * parker
    weighted = p * torch.as_tensor(cosine, dtype=dtype, device=device) \
        * torch.as_tensor(view_column, dtype=dtype, device=device)[:, None, :]
    filtered = ramp_filter(weighted, geometry.detector_spacing[1] * geometry.dso / geometry.dsd, filter, cutoff)
    return back_project_voxel_driven(filtered, geometry, fdk_weighting=True)


__all__ = ["FILTERS", "fdk", "scan_weighting", "angular_weights", "parker_weights",
           "displaced_detector_weights", "ramp_filter", "ramp_filter_response"]
