"""TIGRE backend (the projector of the paper's authors): CUDA GPUs only, optional.

TIGRE is not on PyPI; install it from source where a CUDA GPU exists. Calling any TIGRE operator
on a machine without a GPU kills the process, so :func:`available` asks
``tigre.utilities.gpu.getGpuNames()`` first and every entry point goes through it.

TIGRE's circular cone-beam convention is ours (see docs/conventions.md): at angle 0 the source is
at ``x = +DSO``, the rotation is about +z, volumes are numpy (z, y, x) with ``offOrigin`` (z, y, x)
and projections are (angle, v, u) with ``nDetector``/``dDetector``/``offDetector`` as (v, u).
No test runs TIGRE on the project's CPU machines; ``benchmarks/bench_projector.py`` compares it with the
torch projector wherever TIGRE and a GPU are present.
"""

from __future__ import annotations

import numpy as np

from ...errors import DeepSparseError, InputError
from ..geometry import Geometry
from ..filters import check_filter


def available() -> bool:
    """True when TIGRE imports and sees at least one GPU."""
    try:
        import tigre  # noqa: F401
        from tigre.utilities.gpu import getGpuNames
    except Exception:
        return False
    try:
        return len(getGpuNames()) > 0
    except Exception:
        return False


def _tigre():
    if not available():
        raise DeepSparseError("the TIGRE backend needs TIGRE (built from source) and a CUDA GPU; "
                              "use --backend torch")
    import tigre

    return tigre


def to_tigre_geometry(geometry: Geometry):
    """TIGRE ``geometry`` object for ``geometry`` (angles are passed separately to TIGRE calls)."""
    tigre = _tigre()
    g = tigre.geometry()
    g.mode = "cone"
    g.DSO, g.DSD = float(geometry.dso), float(geometry.dsd)
    g.nDetector = np.array(geometry.detector_shape)
    g.dDetector = np.array(geometry.detector_spacing, dtype=float)
    g.sDetector = g.nDetector * g.dDetector
    g.nVoxel = np.array(geometry.volume_shape)
    g.dVoxel = np.array(geometry.volume_spacing, dtype=float)
    g.sVoxel = g.nVoxel * g.dVoxel
    g.offOrigin = np.array(geometry.volume_offset, dtype=float)
    g.offDetector = np.array(geometry.detector_offset, dtype=float)
    g.accuracy = 0.5
    g.COR = 0.0
    g.rotDetector = np.array([0.0, 0.0, 0.0])
    return g


def _angles(geometry: Geometry) -> np.ndarray:
    return np.asarray(geometry.angles, dtype=np.float32)


def forward_project(volume: np.ndarray, geometry: Geometry) -> np.ndarray:
    """TIGRE forward projection (interpolated ray-marching) -> (V, nv, nu)."""
    tigre = _tigre()
    return tigre.Ax(np.ascontiguousarray(volume, np.float32), to_tigre_geometry(geometry), _angles(geometry))


def fdk(projections, geometry: Geometry, filter: str = "ram-lak", cutoff: float = 1.0) -> np.ndarray:
    """TIGRE FDK with the ``filter`` window -> (nz, ny, nx). TIGRE's windows span the full band: a
    ``cutoff`` below 1 is an error rather than silently ignored."""
    check_filter(filter, cutoff)
    if cutoff != 1.0:
        raise InputError("the TIGRE backend has no filter cutoff: use --cutoff 1 or --backend torch|rtk")
    _tigre()  # availability check (never call TIGRE without a GPU)
    import tigre.algorithms as algs

    p = np.ascontiguousarray(projections, np.float32)
    return algs.fdk(p, to_tigre_geometry(geometry), _angles(geometry), filter=filter.replace("-", "_"))


def sart(projections, geometry: Geometry, iterations: int = 20, relaxation: float = 0.3,
         views_per_subset: int = 1, nonnegative: bool = True) -> np.ndarray:
    """TIGRE OS-SART with a constant lambda = ``relaxation`` -> (nz, ny, nx)."""
    _tigre()
    import tigre.algorithms as algs

    p = np.ascontiguousarray(projections, np.float32)
    return algs.ossart(p, to_tigre_geometry(geometry), _angles(geometry), iterations,
                       blocksize=views_per_subset, lmbda=relaxation, lmbda_red=1.0, nonneg=nonnegative,
                       Quameasopts=None, verbose=False)
