"""DiCE inference: a trained model + projections -> a volume on any grid, in memory-sized chunks.

    rec = DiceReconstructor("dice_6views.safetensors")   # loads once; reuse for many scans
    volume = rec.reconstruct(data, resolution=256)          # (nz, ny, nx) CPU float32 in [0, 1]

The shared 2D and 3D features are computed once per scan (``DiCE.encode``); the voxel centres of the
output grid are then decoded a chunk at a time, the chunk size following the free memory (GPU:
``torch.cuda.mem_get_info``; CPU: available RAM, capped). The network reads geometry as input, so
the output grid can have any resolution over the scan's field of view (``resolution``): points are
decoded, not voxels.

Numerics: encoding (convolutions, back-projection, vector quantization) runs in float32 everywhere:
bfloat16 detector coordinates would be off by about a pixel at 256 columns and could flip codebook
assignments. On CUDA the point decoder (the MLP, most of the arithmetic) runs under bfloat16
autocast, with features sampled in float32; on the CPU everything is float32.

Geometry compatibility (``check_compatibility``): any geometry can be fed to the network, but what
it learned is tied to scales in mm. The 2D encoder's kernels see structures at the detector pixel
pitch referred to the isocentre, ``pitch * DSO / DSD``, and the 3D decoder's kernels at the grid
extent / M (the low-resolution grid spans the reconstruction grid). A factor 2 in either moves every
structure one full level of the encoder's octave pyramid (stride 2 per scale) away from the level
the kernels were trained at, which no part of training covers: that is an error. Beyond 25 % it is a
warning naming the training geometry. Projections are line integrals of the [0, 1] volume in mm, so
they must use the model's HU window: windows that both start at -1000 HU (air = 0) differ by a
factor, which is applied to the projections and undone on the output; other windows only warn.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch

from .data.hu import AIR_HU, UNITS, to_units
from .data.projections_file import ProjectionData
from .devices import resolve_device
from .errors import GeometryError, InputError
from .physics.data_consistency import refine
from .physics.geometry import Geometry
from .progress import Cancelled
from .limits import MAX_DATA_CONSISTENCY

MODELS_DIR = Path(__file__).parent / "models"

# Geometry compatibility (see the module docstring): error beyond a factor 2 in isocentre pixel pitch
# or grid extent, warning beyond 25 %.
GEOMETRY_TOLERANCE = 2.0
GEOMETRY_WARNING = 1.25

# Chunk sizing: bytes per decoded point are estimated from the config (``_bytes_per_point``) and
# multiplied by this margin for allocator fragmentation and temporaries the estimate misses.
_MEMORY_MARGIN = 1.5
_GPU_MEMORY_FRACTION = 0.5          # of the free GPU memory
_GPU_MAX_CHUNK = 1 << 21            # points; 8 chunks for 256^3, beyond which launch overhead is nil
_CPU_MEMORY_FRACTION = 0.25         # of the available RAM, but at most:
_CPU_MEMORY_CAP = 112 * 1024 ** 2   # decoding on the CPU is cache-bound: measured (2 cores, AVX2) fastest
#   at ~8k points per chunk for DiceConfig.small and ~4k for paper, i.e. this budget; 4x larger chunks
#   were 40-60 % slower, 2x smaller ones 10 % slower.
_MIN_CHUNK = 1024


# ---------------------------------------------------------------------------- bundled models
def model_view_range(meta: dict) -> tuple[int, int] | None:
    """The view counts a model serves, from its metadata: a step-2 model's ``n_views`` (n, n); else the
    card's ``views`` range ``{"min": a, "max": b}`` (a model trained on n uniform in [a, b]); else None
    (no recorded range: any view count, the caller decides)."""
    if meta.get("n_views") is not None:
        n = int(meta["n_views"])
        return n, n
    views = (meta.get("card") or {}).get("views")
    if isinstance(views, dict) and isinstance(views.get("min"), int) and isinstance(views.get("max"), int):
        return views["min"], views["max"]
    return None


def bundled_models() -> list[tuple[Path, tuple[int, int]]]:
    """The bundled model files (``models/dice_*views.safetensors``) with the view range each serves
    (from its metadata; a file without one serves the count in its name, ``dice_{n}views``)."""
    from .model.model_file import read_model_metadata

    found = []
    for path in sorted(MODELS_DIR.glob("dice_*views.safetensors")):
        try:
            span = model_view_range(read_model_metadata(path))
        except InputError:
            continue  # unreadable: the lookup skips it; loading it directly gives the error
        digits = path.name[len("dice_"):-len("views.safetensors")]
        if span is None and digits.isdigit():
            span = (int(digits), int(digits))
        if span is not None:
            found.append((path, span))
    return found


def bundled_model_path(n_views: int) -> Path | None:
    """The bundled model for ``n_views`` views, or None: the one made for exactly that count
    (``dice_{n}views.safetensors`` or a one-count range) first, else the narrowest range covering it."""
    n = int(n_views)
    covering = [(hi - lo, path.name != f"dice_{n}views.safetensors", path)
                for path, (lo, hi) in bundled_models() if lo <= n <= hi]
    return min(covering)[2] if covering else None


def bundled_view_counts() -> list[int]:
    """View counts some bundled model serves, ascending."""
    return sorted({n for _, (lo, hi) in bundled_models() for n in range(lo, hi + 1)})


def default_model_for(data: ProjectionData) -> Path:
    """The bundled model for ``data``'s number of views; ``InputError`` naming the alternatives if none."""
    n = data.geometry.n_views
    path = bundled_model_path(n)
    if path is not None:
        return path
    counts = bundled_view_counts()
    if not counts:
        raise InputError(f"no bundled DiCE model is installed for {n} views: pass a model file (--model)")
    raise InputError(f"no bundled DiCE model for {n} views (bundled: {_ranges(counts)} views): "
                     f"pass a model file (--model) or use projections with one of those view counts")


# one data-consistency pass costs about this share of the network's decoding at any grid size (both
# scale with voxels x views); measured on 2 CPU cores, 128^3, 6 views: 0.61 s a pass, 7.9 s network
DC_PASS_COST = 0.08


def dc_pass_weight(chunks: int) -> int:
    """Progress units of one data-consistency pass next to ``chunks`` decoding chunks of 1 unit each."""
    return max(1, round(DC_PASS_COST * chunks))


class _Weighted:
    """A progress whose every update counts ``weight`` units."""

    def __init__(self, progress, weight: int):
        self.progress, self.weight = progress, weight

    def update(self, n: int = 1, **fields) -> None:
        self.progress.update(n * self.weight, **fields)


def bundled_model_serving(data: ProjectionData) -> tuple[Path | None, str]:
    """(the bundled model that serves ``data``, or None; why, in a phrase): a bundled file for its
    view count whose training geometry passes :func:`check_compatibility`."""
    from .model.model_file import read_model_metadata

    n = data.geometry.n_views
    path = bundled_model_path(n)
    if path is None:
        return None, f"no bundled DiCE model serves {n} views"
    meta = read_model_metadata(path)
    training = _training_geometry(meta)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_compatibility(data.geometry, training)
    except GeometryError:
        return None, f"the bundled DiCE model {path.stem} was trained for another scanner geometry"
    k = int(getattr(meta.get("config"), "downsampling", 1) or 1)
    if any(int(s) % k for s in data.geometry.detector_shape):
        return None, f"the bundled DiCE model {path.stem} needs a detector in multiples of {k} pixels"
    if training is not None and hu_window_factor(data.geometry, training) is None:
        return None, f"the bundled DiCE model {path.stem} cannot read this HU window"
    return path, f"the bundled DiCE model {path.stem} serves {n} views at this geometry"


def _ranges(counts: list[int]) -> str:
    """[6, 7, 8, 10] -> '6-8, 10'."""
    parts, start = [], None
    for i, n in enumerate(counts):
        if start is None:
            start = n
        if i + 1 == len(counts) or counts[i + 1] != n + 1:
            parts.append(str(n) if n == start else f"{start}-{n}")
            start = None
    return ", ".join(parts)


# ---------------------------------------------------------------------------- compatibility
def _training_geometry(meta: dict) -> Geometry | None:
    g = meta.get("geometry")
    if not g:
        return None
    if isinstance(g, Geometry):
        return g
    return Geometry.from_dict({**g, "n_views": 1})  # angles do not matter here


def _describe(g: Geometry) -> str:
    (nv, nu), (dv, du) = g.detector_shape, g.detector_spacing
    ext = " x ".join(f"{e:g}" for e in g.volume_extent[::-1])
    return (f"'{g.name}' (DSO {g.dso:g} mm, DSD {g.dsd:g} mm, detector {nv} x {nu} at {dv:g} x {du:g} mm, "
            f"grid {ext} mm, HU window [{g.hu_window[0]:g}, {g.hu_window[1]:g}])")


def isocentre_pitch(g: Geometry) -> tuple[float, float]:
    """(dv, du) detector pixel pitch referred to the isocentre, mm: the scale the 2D encoder sees."""
    return tuple(s * g.dso / g.dsd for s in g.detector_spacing)


def hu_window_factor(data_geometry: Geometry, training: Geometry) -> float | None:
    """Factor taking the data's normalized units to the model's (1 when the windows agree).

    Exact when both windows start at -1000 HU (air = 0 in both, so normalized attenuation is
    proportional to HU + 1000); None when they differ otherwise (no linear map exists).
    """
    (lo_d, hi_d), (lo_m, hi_m) = data_geometry.hu_window, training.hu_window
    if (lo_d, hi_d) == (lo_m, hi_m):
        return 1.0
    if lo_d == AIR_HU and lo_m == AIR_HU:
        return (hi_d - lo_d) / (hi_m - lo_m)
    return None


def check_compatibility(data_geometry: Geometry, training: Geometry | None,
                        tolerance: float = GEOMETRY_TOLERANCE) -> list[str]:
    """Compare a scan's geometry with the model's training geometry (see the module docstring).

    Raises ``GeometryError`` when the isocentre pixel pitch or the grid extent differ by more than
    ``tolerance`` (a factor) on any axis; returns warning messages for smaller mismatches.
    """
    if training is None:
        return []
    checks = [("detector pixel at the isocentre", "mm", isocentre_pitch(data_geometry), isocentre_pitch(training)),
              ("grid extent (z, y, x)", "mm", data_geometry.volume_extent, training.volume_extent)]
    errors, notes = [], []
    for name, unit, got, want in checks:
        factor = max(max(a / b, b / a) for a, b in zip(got, want))
        if factor > GEOMETRY_WARNING:
            text = (f"{name} {' x '.join(f'{v:.3g}' for v in got)} {unit} vs "
                    f"{' x '.join(f'{v:.3g}' for v in want)} {unit} in training (factor {factor:.2f})")
            (errors if factor > tolerance else notes).append(text)
    if errors:
        raise GeometryError(f"the projections' geometry is too far from the model's training geometry "
                            f"{_describe(training)}: {'; '.join(errors)} (allowed factor {tolerance:g}); "
                            f"resample the data to that scanner's pixel size and field of view (deepsparse "
                            f"import ... --detector-like PRESET, or detector_resampling.adapt_to_model) or "
                            f"use a model trained for this geometry")
    warnings_ = []
    if notes:
        warnings_.append(f"the projections' geometry differs from the model's training geometry "
                         f"{_describe(training)}: {'; '.join(notes)}; expect lower quality")
    k = hu_window_factor(data_geometry, training)
    if k is None:
        warnings_.append(f"the projections use HU window {list(data_geometry.hu_window)} but the model was "
                         f"trained with {list(training.hu_window)}, which no scale factor maps onto it")
    elif k != 1.0:
        warnings_.append(f"projections rescaled from HU window {list(data_geometry.hu_window)} to the model's "
                         f"{list(training.hu_window)} (x{k:.3g}); values above {training.hu_window[1]:g} HU "
                         f"are outside the model's range")
    return warnings_


def check_magnitudes(projections: torch.Tensor, geometry: Geometry) -> list[str]:
    """Warnings when projections cannot be line integrals (mm) of a [0, 1] volume on this grid."""
    diagonal = math.sqrt(sum(e * e for e in geometry.volume_extent))  # longest path through the grid
    peak = float(projections.max())
    if peak > 1.5 * diagonal:
        return [f"projection values reach {peak:.4g} but a [0, 1] volume on this {diagonal:.0f} mm grid "
                f"gives at most ~{diagonal:.0f}: are they line integrals of the normalized volume in mm?"]
    if peak < 1e-3 * diagonal:
        return [f"projection values are at most {peak:.3g}, tiny for a {diagonal:.0f} mm grid: are they "
                f"line integrals in mm (not metres or intensities)?"]
    return []


# ---------------------------------------------------------------------------- memory
def available_memory(device: torch.device) -> int:
    """Bytes free for decoding on ``device``: CUDA free memory, or the RAM available to this process."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 * 1024 ** 3
    try:  # a container's cgroup (v2) limit can be far below the host's free memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            avail = min(avail, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return int(avail)


def _bytes_per_point(config, n_views: int) -> int:
    """Peak float32 working memory per decoded point (``DiCE.point_features`` + point decoder)."""
    ch, feat, hidden = config.scale_channels, config.point_features, config.point_hidden
    floats = (10 * n_views                    # detector coordinates and their temporaries
              + 2 * n_views * max(ch)         # grid_sample output + masked copy, widest scale
              + feat                          # pooled 2D features and the 3D one
              + 3 * feat                      # concatenation, transpose, reshape
              + 2 * (max(hidden) + feat) + 3 * max(hidden))  # MLP layer input (+ its cast) and outputs
    return 4 * floats


def chunk_size_for(config, n_views: int, device: torch.device, free_bytes: int | None = None) -> int:
    """Points per decoding chunk so that one chunk uses a fixed share of the free memory."""
    free = available_memory(device) if free_bytes is None else free_bytes
    if device.type == "cuda":
        budget = _GPU_MEMORY_FRACTION * free
    else:
        budget = min(_CPU_MEMORY_FRACTION * free, _CPU_MEMORY_CAP)
    n = int(budget / (_MEMORY_MARGIN * _bytes_per_point(config, n_views)))
    return max(_MIN_CHUNK, min(n, _GPU_MAX_CHUNK))


# ---------------------------------------------------------------------------- reconstruction
def _grid_points(geometry: Geometry, axes: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
    """(stop - start, 3) voxel centres (x, y, z) mm of flat voxel indices [start, stop), (z, y, x) order."""
    _, ny, nx = geometry.volume_shape
    idx = torch.arange(start, stop, device=axes[0].device)
    k, rem = idx // (ny * nx), idx % (ny * nx)
    return torch.stack([axes[2][rem % nx], axes[1][rem // nx], axes[0][k]], dim=-1)


class DiceReconstructor:
    """A DiCE model loaded once for reconstructing any number of scans.

    Args:
        model: a model file (``.safetensors`` written by ``save_model``) or a ``DiCE`` module (moved to
            ``device``; it runs in eval mode during ``reconstruct`` and gets its mode back afterwards,
            so a model being trained can be validated; pass ``meta`` for the geometry checks).
        device: 'auto' (CUDA when available), 'cpu' or 'cuda'.
        meta: metadata for a module (keys 'geometry', 'n_views' as in a model file); ignored for files.
        geometry_tolerance: largest factor between the scan's and the training geometry's isocentre
            pixel pitch or grid extent (``inf`` disables the check).
    """

    def __init__(self, model, device: str | torch.device = "auto", meta: dict | None = None,
                 geometry_tolerance: float = GEOMETRY_TOLERANCE):
        from .model import DiCE
        from .model.model_file import load_model

        self.device = resolve_device(device)
        if isinstance(model, DiCE):
            self.model = model.to(self.device)
            self.meta = {"geometry": None, "n_views": None, "card": {}, **(meta or {}),
                         "config": model.config}
            self.path = None
        else:
            self.path = Path(model)
            self.model, self.meta = load_model(self.path, self.device, torch.float32)
        self.config = self.model.config
        self.view_range = model_view_range(self.meta)
        self.training_geometry = _training_geometry(self.meta)
        self.geometry_tolerance = geometry_tolerance
        self.bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()

    def __repr__(self) -> str:
        src = self.path.name if self.path else "in-memory model"
        return f"DiceReconstructor({src}, {self.device}, n_views={self.meta.get('n_views')})"

    @property
    def recommended_data_consistency(self) -> int:
        """The data-consistency passes the model card recommends (measured on held-out CTs), else 0."""
        k = ((self.meta.get("card") or {}).get("inference") or {}).get("data_consistency", 0)
        if isinstance(k, int) and k > MAX_DATA_CONSISTENCY:
            raise InputError(f"the model card recommends {k} data-consistency passes, above the maximum "
                             f"{MAX_DATA_CONSISTENCY}: a damaged or foreign card; pass --data-consistency K")
        return int(k) if isinstance(k, int) and not isinstance(k, bool) and k >= 0 else 0

    # ------------------------------------------------------------------ checks
    def check(self, data: ProjectionData) -> float:
        """Validate ``data`` for this model; warn about soft mismatches; return the HU-window factor."""
        n_model, n = self.meta.get("n_views"), data.geometry.n_views
        if n_model is not None and n != n_model:
            other = bundled_model_path(n)
            hint = f"use the bundled model for {n} views ({other.name})" if other else \
                f"use a model finetuned for {n} views"
            raise InputError(f"this model was finetuned for {n_model} views, got {n}: {hint} or a "
                             f"step-1 (not view-specific) model")
        if self.view_range is not None and n_model is None and not self.view_range[0] <= n <= self.view_range[1]:
            lo, hi = self.view_range
            warnings.warn(f"this model was trained for {lo}-{hi} views, got {n}: expect lower quality", stacklevel=3)
        k = self.config.downsampling
        nv, nu = data.geometry.detector_shape
        if nv % k or nu % k:
            crop, pad = (nv // k * k, nu // k * k), (-(-nv // k) * k, -(-nu // k) * k)
            crop_text = f"crop them to {crop[0]} x {crop[1]} or " if min(crop) > 0 else ""
            raise InputError(f"the detector is {nv} x {nu} pixels but this model needs multiples of {k} "
                             f"({self.config.n_scales} scales): {crop_text}pad them to {pad[0]} x {pad[1]}")
        if not bool(torch.isfinite(data.projections).all()):
            raise InputError("projections contain NaN or infinite values")
        messages = check_compatibility(data.geometry, self.training_geometry, self.geometry_tolerance)
        messages += check_magnitudes(data.projections, data.geometry)
        for m in messages:
            warnings.warn(m, stacklevel=3)
        if self.training_geometry is None:
            return 1.0
        return hu_window_factor(data.geometry, self.training_geometry) or 1.0

    def chunk_size(self, n_views: int) -> int:
        """Points decoded per chunk on this device, from the memory free now."""
        return chunk_size_for(self.config, n_views, self.device)

    def steps(self, data: ProjectionData, resolution=None, data_consistency: int | None = 0,
              chunk_size: int | None = None) -> int:
        """Progress units of ``reconstruct``: the ``total`` to give a Progress bar. Encoding and each
        chunk count 1, each data-consistency pass :func:`dc_pass_weight` (so the ETA covers the passes)."""
        if data_consistency is None:
            data_consistency = self.recommended_data_consistency
        chunks = self._chunks(data, resolution, chunk_size)
        return 1 + chunks + int(data_consistency) * dc_pass_weight(chunks)

    def _chunks(self, data: ProjectionData, resolution=None, chunk_size: int | None = None) -> int:
        n = math.prod(data.geometry.with_resolution(resolution).volume_shape)
        return -(-n // (chunk_size or self.chunk_size(data.geometry.n_views)))

    # ------------------------------------------------------------------ reconstruction
    @torch.no_grad()
    def reconstruct(self, data: ProjectionData, resolution=None, progress=None, cancel=None,
                    data_consistency: int | None = 0, units: str = "normalized",
                    chunk_size: int | None = None) -> torch.Tensor:
        """Reconstruct ``data`` with the network.

        Args:
            data: projections (V, nv, nu) with their geometry (angles included).
            resolution: None (the data's grid), r (r^3) or (nz, ny, nx): a grid over the same extent.
            progress: Progress-like object; ``update(1, stage=...)`` after encoding, each chunk and
                each data-consistency pass (``steps`` gives the total).
            cancel: callable returning True to stop; checked between chunks, raises ``Cancelled``.
            data_consistency: bounded SART passes against the measured views afterwards (beyond the
                paper, see :mod:`deepsparse_core.physics.data_consistency`); 0 = the network output as is;
                None = the model card's recommendation (:attr:`recommended_data_consistency`).
            units: 'normalized' ([0, 1] in the data's HU window) or 'hu'.
            chunk_size: points per chunk; None sizes chunks from the free memory.

        Returns:
            (nz, ny, nx) CPU float32 tensor.
        """
        if units not in UNITS:
            raise InputError(f"unknown units {units!r}: use normalized or hu")
        if data_consistency is None:
            data_consistency = self.recommended_data_consistency
        if data_consistency < 0:
            raise InputError(f"data consistency iterations must be >= 0, got {data_consistency}")
        out_geometry = data.geometry.with_resolution(resolution)
        scale = self.check(data)

        def tick(**fields):
            if cancel is not None and cancel():
                raise Cancelled("DiCE reconstruction cancelled")
            if progress is not None:
                progress.update(1, **fields)

        if cancel is not None and cancel():
            raise Cancelled("DiCE reconstruction cancelled")
        was_training = self.model.training
        self.model.eval()  # BatchNorm running statistics, frozen codebooks
        try:
            volume = self._reconstruct(data, out_geometry, scale, chunk_size, tick)
        finally:
            self.model.train(was_training)
        if data_consistency:
            weight = dc_pass_weight(self._chunks(data, resolution, chunk_size))
            volume = refine(volume, data.projections, out_geometry, iterations=data_consistency,
                            progress=None if progress is None else _Weighted(progress, weight), cancel=cancel)
        return torch.from_numpy(to_units(volume.float().cpu().numpy(), data.geometry.hu_window, units))

    def _reconstruct(self, data, out_geometry, scale, chunk_size, tick) -> torch.Tensor:
        """Encode once, decode ``out_geometry``'s voxel centres chunk by chunk: (nz, ny, nx) on the device."""
        dev, model = self.device, self.model
        proj = data.projections.to(dev, torch.float32)
        features = model.encode((proj * scale if scale != 1.0 else proj).unsqueeze(0), data.geometry)
        tick(stage="encode")

        axes = [out_geometry.axis_centres(a, torch.float32, dev) for a in range(3)]
        shape = out_geometry.volume_shape
        n = math.prod(shape)
        chunk = int(chunk_size or self.chunk_size(data.geometry.n_views))
        out = torch.empty(n, dtype=torch.float32, device=dev)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            out[start:stop] = self._decode(features, _grid_points(out_geometry, axes, start, stop))
            tick(stage="decode", points=stop)
        volume = out.reshape(shape)
        return (volume / scale).clamp_(0.0, 1.0) if scale != 1.0 else volume

    def _decode(self, features, points: torch.Tensor) -> torch.Tensor:
        """Attenuation in [0, 1] at (N, 3) mm points: features sampled in float32, MLP in bf16 on CUDA."""
        model = self.model
        feats = model.point_features(features, points)               # (1, N, C) float32
        feats = feats.reshape(-1, feats.shape[-1])
        if self.bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pred = model.point_decoder(feats)
        else:
            pred = model.point_decoder(feats)
        return pred.float().clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------- cached entry point
_CACHE: dict[tuple, DiceReconstructor] = {}
_CACHE_SIZE = 2


def get_reconstructor(model: str | Path, device: str = "auto") -> DiceReconstructor:
    """A :class:`DiceReconstructor` for a model file, reused while the file is unchanged."""
    path = Path(model).resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        raise InputError(f"model file not found: {model}") from None
    key = (str(path), stamp, str(resolve_device(device)))
    if key not in _CACHE:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = DiceReconstructor(path, device)
    return _CACHE[key]


__all__ = ["DiceReconstructor", "bundled_model_path", "bundled_models", "bundled_view_counts", "default_model_for",
           "model_view_range",
           "check_compatibility", "check_magnitudes", "chunk_size_for", "get_reconstructor",
           "isocentre_pitch", "hu_window_factor"]
