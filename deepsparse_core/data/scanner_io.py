"""Real scanner projections in and out: ``deepsparse import`` and ``deepsparse export``.

Import: a projection stack (``.mha``, ``.nrrd``, ``.nii``, multi-page TIFF...) or a folder of 2D
images (read in natural name order), with RTK's geometry XML (read through itk-rtk, see
:mod:`deepsparse_core.data.rtk_geometry`) or our geometry YAML/JSON, becomes a projections file like
``simulate``'s (no reference, no placement). Values:

* intensities with a flat and a dark field or a scalar I0: ``p = -log((I - dark) / (flat - dark))``
  (RTK's convention, ``rtk::ProjectionsReader`` with I0 and IDark), dark defaulting to 0;
* or line integrals ``-log(I / I0)`` already (``--line-integrals``).

Both are physical (``integral of mu dl``, mu in 1/mm) and are divided by
:func:`~deepsparse_core.physics.noise.attenuation_scale` (``mu_water (hi - lo) / 1000`` per mm) to become
our line integrals of the normalized [0, 1] volume in mm.

Projection images (:mod:`.projection_images`) follow RTK: index (u, v, view), pixel (0, 0) at the
image origin, in projection physical coordinates; detector offsets come from the origin and the XML
together. 2D image formats without a physical header (TIFF, PNG) get a centred origin and need
``--pixel-spacing``.

Export writes ``projections.mha`` (line integrals ``-log(I / I0)``, RTK's layout),
``geometry.xml`` (RTK) and ``deepsparse.json`` (what RTK's XML has no room for: grid, HU window,
mu_water, noise model, placement). Importing ``projections.mha`` again picks up
``deepsparse.json`` next to it and reproduces the projections file (to float32 rounding).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path, write_text
from ..errors import GeometryError, InputError
from ..physics.geometry import Geometry
from ..physics.noise import MU_WATER_PER_MM, NoiseModel, attenuation_scale
from .placement import Placement
from .projection_images import projection_files, read_field, read_header, read_projection_images
from .projections_file import ProjectionData

SIDECAR = "deepsparse.json"
SIDECAR_FORMAT = "deepsparse-export/1"
EXPORT_PROJECTIONS, EXPORT_GEOMETRY = "projections.mha", "geometry.xml"
RATIO_FLOOR = 1e-6          # (I - dark) / (flat - dark) floor: line integrals <= 13.8
DEAD_PIXEL_LIMIT = 0.01     # fraction of flat-field pixels <= dark tolerated (set to no attenuation)
DEFAULT_MAX_GRID = 256      # voxels per axis of the default grid
DEFAULT_MULTIPLE = 16       # resampled detector sizes: multiples of DiCE's 2D downsampling (2^(S-1), S <= 5)


# ---------------------------------------------------------------------------- values
def line_integrals(intensities: torch.Tensor, flat=None, dark=None, i0: float | None = None) -> torch.Tensor:
    """Physical line integrals ``-log((I - dark) / (flat - dark))`` (dimensionless), float64.

    ``flat`` (nv, nu) or the scalar ``i0`` (exactly one), ``dark`` (nv, nu), a scalar or None (0).
    Guards: flat-field pixels at or below the dark field ("dead": an error beyond
    DEAD_PIXEL_LIMIT of the detector, else set to no attenuation); intensities at or below the dark
    field clamped to RATIO_FLOOR of the flat field; each with a warning giving the count.
    """
    if (flat is None) == (i0 is None):
        raise InputError("intensities need exactly one of a flat field or I0")
    i = intensities.to(torch.float64)
    dark = torch.zeros((), dtype=torch.float64) if dark is None else torch.as_tensor(dark, dtype=torch.float64)
    full = torch.as_tensor(i0 if flat is None else flat, dtype=torch.float64) - dark
    dead = full <= 0
    if bool(dead.all()):
        raise InputError("the flat field (or I0) is nowhere above the dark field: are flat and dark swapped?")
    if bool(dead.any()):
        fraction = float(dead.double().mean())
        if fraction > DEAD_PIXEL_LIMIT:
            raise InputError(f"the flat field is at or below the dark field on {fraction:.1%} of the detector: "
                             "are flat and dark swapped, or from another detector mode?")
        warnings.warn(f"{int(dead.sum())} detector pixels have a flat field at or below the dark field; "
                      "they are set to no attenuation", stacklevel=2)
    ratio = (i - dark) / full.clamp_min(1e-300)
    low = ratio < RATIO_FLOOR
    if bool(low.any()):
        warnings.warn(f"{float(low.double().mean()):.2%} of the projection pixels are at or below the dark "
                      f"field (no photons); clamped to a line integral of {-math.log(RATIO_FLOOR):.1f}",
                      stacklevel=2)
    p = -torch.log(ratio.clamp_min(RATIO_FLOOR))
    return torch.where(dead.expand_as(p), torch.zeros_like(p), p)


# ---------------------------------------------------------------------------- views
def pick_views(angles, n: int, arc: float | None = None) -> list[int]:
    """Indices (increasing angle) of the ``n`` views nearest to uniform over the acquired arc.

    Targets ``a_min + m * A / n`` (m = 0..n-1, end excluded like :func:`geometry.uniform_angles`),
    ``A`` = ``arc`` (radians, the views used lie in [a_min, a_min + arc)) or the acquired arc
    (span + mean step, at most 2 pi). The matching is the one of least total angular deviation
    among distinct views, in angle order (dynamic programme, exact).
    """
    a = np.asarray(angles, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    s = a[order]
    if arc is not None:
        if not 0 < arc <= 2 * math.pi + 1e-9:
            raise InputError(f"--arc must be in (0, 360] degrees, got {math.degrees(arc):g}")
        keep = s < s[0] + arc - 1e-9
        s, order = s[keep], order[keep]
    if not 1 <= n <= len(s):
        raise InputError(f"cannot pick {n} views out of {len(s)}" + (" within the arc" if arc is not None else ""))
    if arc is None:
        arc = min(2 * math.pi, (s[-1] - s[0]) * len(s) / max(len(s) - 1, 1)) if len(s) > 1 else math.pi
    t = s[0] + arc * np.arange(n) / n
    cost = np.abs(s[None, :] - t[:, None])                # (n, V')
    best = np.full_like(cost, np.inf)
    best[0] = cost[0]
    for m in range(1, n):                                  # target m at view i, earlier at views < i
        prefix = np.minimum.accumulate(best[m - 1])
        best[m, 1:] = prefix[:-1] + cost[m, 1:]
    chosen, i = [], int(np.argmin(best[-1]))
    for m in range(n - 1, -1, -1):
        chosen.append(i)
        if m:
            i = int(np.argmin(best[m - 1, :i]))
    return [int(order[j]) for j in chosen[::-1]]


def parse_indices(text: str, n_images: int) -> list[int]:
    """'0,10,20' or '0-90:10' style view indices (Python ranges, end excluded), checked."""
    out = []
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not m:
            raise InputError(f"--view-indices: cannot read {part!r}; use e.g. 0,10,20 or 0-200:25")
        lo, hi, step = m.group(1), m.group(2), m.group(3)
        out += [int(lo)] if hi is None else list(range(int(lo), int(hi), int(step or 1)))
    if not out:
        raise InputError("--view-indices selects no view")
    bad = [i for i in out if i >= n_images]
    if bad:
        raise InputError(f"--view-indices {bad[0]} is out of range: there are {n_images} projections (0-{n_images - 1})")
    if len(set(out)) != len(out):
        raise InputError("--view-indices lists a view twice")
    return out


# ---------------------------------------------------------------------------- grid
def field_of_view(dso: float, dsd: float, detector_shape, spacing, offset, full_circle: bool) -> tuple[float, float]:
    """(radius, height) in mm of the cylinder at the isocentre that every view sees; a displaced
    detector on a full circle sees the larger half-fan radius."""
    (nv, nu), (dv, du), (ov, ou) = detector_shape, spacing, offset
    lo, hi = ou - nu * du / 2, ou + nu * du / 2
    width = max(abs(lo), abs(hi)) if full_circle else (min(-lo, hi) if lo < 0 < hi else 0.0)
    if width <= 0:
        raise GeometryError("the detector does not see the rotation axis: check the detector offset")
    radius = dso * math.sin(math.atan(width / dsd))
    return radius, nv * dv * dso / dsd


def default_grid(dso, dsd, detector_shape, spacing, offset, angles, shape=None, voxel=None):
    """(volume_shape, volume_spacing, volume_offset) covering the field of view: a square slab of the
    seen cylinder's diameter, its height, centred at the isocentre (z shifted with the detector);
    voxels at the isocentre pitch, coarsened to at most DEFAULT_MAX_GRID per axis, unless given."""
    a = np.sort(np.mod(np.asarray(angles), 2 * math.pi))
    gaps = np.diff(np.concatenate([a, a[:1] + 2 * math.pi]))
    full = len(a) > 2 and gaps.max() < math.pi / 2
    radius, height = field_of_view(dso, dsd, detector_shape, spacing, offset, full)
    extent = np.array([height, 2 * radius, 2 * radius])
    if shape is not None:
        shape = np.broadcast_to(np.asarray(shape, dtype=np.int64), (3,))
        voxel = extent / shape if voxel is None else np.broadcast_to(np.asarray(voxel, np.float64), (3,))
    else:
        if voxel is None:
            voxel = max(min(spacing) * dso / dsd, extent.max() / DEFAULT_MAX_GRID)
        voxel = np.broadcast_to(np.asarray(voxel, np.float64), (3,))
        shape = np.maximum(1, np.round(extent / voxel)).astype(np.int64)
    return tuple(int(n) for n in shape), tuple(float(s) for s in voxel), (offset[0] * dso / dsd, 0.0, 0.0)


# ---------------------------------------------------------------------------- import
def _read_sidecar(files: list[Path]) -> dict | None:
    """``deepsparse.json`` next to a stack that it names (written by export), else None."""
    if len(files) != 1:
        return None
    path = files[0].parent / SIDECAR
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise InputError(f"{path} is not a DeepSparse export description (format {SIDECAR_FORMAT})")
    return meta if meta.get("projections") == files[0].name else None


def _geometry_source(path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".xml":
        return "rtk"
    if suffix in (".yaml", ".yml", ".json"):
        return "yaml"
    raise InputError(f"--geometry {Path(path).name}: use RTK's geometry XML (.xml) or a DeepSparse geometry "
                     f"(.yaml, .yml, .json)")


def import_projections(projections, geometry, *, flat=None, dark=None, i0=None, line_integrals_given=False,
                       views=None, view_indices=None, arc_degrees=None, pixel_spacing=None,
                       grid_shape=None, grid_spacing=None, hu_window=None, mu_water=None,
                       detector_like=None, multiple=DEFAULT_MULTIPLE) -> ProjectionData:
    """Scanner projections + geometry (RTK XML or our YAML/JSON) -> :class:`ProjectionData`.

    Args:
        projections: stack file or folder of 2D images (see the module docstring).
        geometry: path of RTK's ``.xml`` or a DeepSparse ``.yaml``/``.json`` geometry.
        flat: flat-field image (path); dark: dark-field image (path) or a number; i0: scalar
            unattenuated intensity (``dark`` subtracted from it too, as RTK's ProjectionsReader
            does); line_integrals_given: values are ``-log(I/I0)`` already.
        views: pick this many views nearest to uniform (:func:`pick_views`); view_indices: list
            of indices instead; arc_degrees: only views within this arc from the first.
        pixel_spacing: (dv, du) mm, overriding the files' (required for TIFF/PNG with RTK XML).
        grid_shape, grid_spacing: reconstruction grid (1 or 3 values); default: the field of view.
        hu_window: (lo, hi) HU of the normalized units (default -1000 1000), mu_water: 1/mm (0.02).
        detector_like: preset name or Geometry: resample the detector to its isocentre pitch and use
            its grid (extent and shape) and HU window, unless given (``multiple``: pixel counts).
    """
    files = projection_files(projections)
    source = _geometry_source(geometry)
    sidecar = _read_sidecar(files)
    values_from_sidecar = not (flat is not None or i0 is not None or line_integrals_given)
    if flat is not None and i0 is not None:
        raise InputError("give either --flat or --i0, not both")
    if line_integrals_given and (flat is not None or i0 is not None or dark is not None):
        raise InputError("--line-integrals takes no --flat, --dark or --i0")
    if values_from_sidecar:
        if sidecar is None or sidecar.get("values") != "line-integrals":
            raise InputError("say what the images hold: intensities (--flat FILE [--dark FILE] or --i0 VALUE) "
                             "or line integrals -log(I/I0) (--line-integrals)")
        if dark is not None:
            raise InputError("--dark needs --flat or --i0")
        line_integrals_given = True
    if i0 is not None and not (math.isfinite(i0) and i0 > 0):
        raise InputError(f"--i0 must be a positive number, got {i0:g}")
    if views is not None and view_indices is not None:
        raise InputError("give either --views or --view-indices, not both")
    side = sidecar or {}
    if mu_water is None:
        mu_water = float(side.get("mu_water", MU_WATER_PER_MM))
    if not (math.isfinite(mu_water) and mu_water > 0):
        raise InputError(f"--mu-water must be a positive number (1/mm), got {mu_water:g}")
    target = Geometry.preset(detector_like, 1) if isinstance(detector_like, str) else detector_like

    head = read_header(files)
    n_images, (nv, nu) = head.n_images, head.detector_shape
    if source == "rtk":
        from .rtk_geometry import read_rtk_xml
        n_geometry = len(read_rtk_xml(geometry).GetGantryAngles())
    else:
        base = Geometry.load(geometry)
        n_geometry = base.n_views
    if n_geometry != n_images:
        where = f"{files[0].parent}" if len(files) > 1 else files[0].name
        raise InputError(f"{Path(geometry).name} describes {n_geometry} projections but {where} holds {n_images} "
                         f"images: a truncated file, a mislabelled one, or the geometry of another scan")

    # the detector, from the files (or --pixel-spacing), then the scanner
    spacing = tuple(pixel_spacing) if pixel_spacing is not None else head.spacing
    if source == "rtk":
        if spacing is None:
            raise InputError(f"{files[0].name} carries no pixel size (TIFF/PNG): pass --pixel-spacing DV [DU] (mm)")
        origin = head.origin if head.origin is not None and pixel_spacing is None else \
            (-(nv - 1) / 2 * spacing[0], -(nu - 1) / 2 * spacing[1])
        from .rtk_geometry import scanner_from_rtk
        fit = scanner_from_rtk(geometry, (nv, nu), spacing, origin)
        dso, dsd, all_angles, offset = fit.dso, fit.dsd, fit.angles, fit.detector_offset
        name = Path(geometry).stem
    else:
        if base.detector_shape != (nv, nu):
            raise InputError(f"{Path(geometry).name} has a {base.detector_shape[0]} x {base.detector_shape[1]} "
                             f"detector but the images are {nv} x {nu} pixels")
        dso, dsd, all_angles, offset = base.dso, base.dsd, base.angles, base.detector_offset
        spacing, name = (tuple(pixel_spacing) if pixel_spacing is not None else base.detector_spacing), base.name
    if hu_window is None:   # given, else the export's, the preset's, the YAML's, or the standard window
        hu_window = side.get("hu_window") or (target.hu_window if target is not None else None) or \
            (base.hu_window if source == "yaml" else (-1000.0, 1000.0))

    # views
    if view_indices is not None:
        chosen = parse_indices(view_indices, n_images) if isinstance(view_indices, str) else list(view_indices)
    elif views is not None or arc_degrees is not None:
        arc = None if arc_degrees is None else math.radians(arc_degrees)
        chosen = pick_views(all_angles, n_images if views is None else views, arc)
    else:
        chosen = list(range(n_images))
    angles = [all_angles[i] for i in chosen]

    # values -> our normalized line integrals
    images = read_projection_images(files, views=chosen)
    if images.array.shape[1:] != (nv, nu):
        raise InputError(f"{files[0].name} holds {images.array.shape[1]} x {images.array.shape[2]} images, "
                         f"its header says {nv} x {nu}")
    raw = torch.from_numpy(images.array)
    if line_integrals_given:
        p = raw.double()
    else:
        flat_t = None if flat is None else read_field(flat, (nv, nu), "flat")
        dark_t = dark if dark is None or isinstance(dark, (int, float)) else read_field(dark, (nv, nu), "dark")
        p = line_integrals(raw, flat_t, dark_t, i0)
    if not bool(torch.isfinite(p).all()):
        raise InputError(f"{files[0].name} holds NaN or infinite values")
    p = (p / attenuation_scale(hu_window, mu_water)).float()

    # grid (given, else the preset's, the export's, the YAML's, or the field of view) and Geometry
    given = grid_shape is not None or grid_spacing is not None
    if not given and target is not None:
        gs, gsp, goff = target.volume_shape, target.volume_spacing, (offset[0] * dso / dsd, 0.0, 0.0)
    elif not given and "grid" in side:
        gs, gsp, goff = side["grid"]["volume_shape"], side["grid"]["volume_spacing"], side["grid"]["volume_offset"]
    elif not given and source == "yaml":
        gs, gsp, goff = base.volume_shape, base.volume_spacing, base.volume_offset
    else:
        gs, gsp, goff = default_grid(dso, dsd, (nv, nu), spacing, offset, all_angles, grid_shape, grid_spacing)
    try:
        g = Geometry(dso=dso, dsd=dsd, detector_shape=(nv, nu), detector_spacing=spacing, volume_shape=gs,
                     volume_spacing=gsp, angles=angles, detector_offset=offset, volume_offset=goff,
                     hu_window=tuple(hu_window), name=str(side.get("name", name)))
    except TypeError as e:
        raise InputError(f"bad grid in {SIDECAR}: {e}") from None
    noise = NoiseModel.from_dict(side["noise"]) if "noise" in side else NoiseModel(enabled=False, mu_water=mu_water)
    data = ProjectionData(p, g, noise, None, Placement.from_dict(side.get("placement"), SIDECAR))
    if target is not None:
        from .detector_resampling import adapt_to_model
        data = adapt_to_model(data, target, multiple, grid=grid_shape is None and grid_spacing is None)
    return data


# ---------------------------------------------------------------------------- export
def export_projections(data: ProjectionData, out_dir: str | Path) -> list[Path]:
    """Write ``projections.mha`` (line integrals -log(I/I0), RTK layout: index (u, v, view), origin =
    pixel (0, 0) with the detector offset), ``geometry.xml`` (RTK) and ``deepsparse.json`` into
    ``out_dir``; each file atomically, the description last."""
    import SimpleITK as sitk

    from .rtk_geometry import require_rtk, write_rtk_xml

    require_rtk()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    g = data.geometry
    scale = attenuation_scale(g.hu_window, data.noise.mu_water)
    p = (data.projections.detach().cpu().double() * scale).float().numpy()
    img = sitk.GetImageFromArray(p)
    (dv, du), (nv, nu) = g.detector_spacing, g.detector_shape
    img.SetSpacing((du, dv, 1.0))
    img.SetOrigin((g.detector_offset[1] - (nu - 1) / 2 * du, g.detector_offset[0] - (nv - 1) / 2 * dv, 0.0))
    paths = [out / EXPORT_PROJECTIONS, out / EXPORT_GEOMETRY, out / SIDECAR]
    with atomic_path(paths[0]) as tmp:
        sitk.WriteImage(img, str(tmp))
    write_rtk_xml(g, paths[1])
    meta = {"format": SIDECAR_FORMAT, "projections": EXPORT_PROJECTIONS, "geometry": EXPORT_GEOMETRY,
            "values": "line-integrals", "units": "-log(I/I0), mu in 1/mm",
            "mu_water": data.noise.mu_water, "hu_window": list(g.hu_window), "name": g.name,
            "grid": {"volume_shape": list(g.volume_shape), "volume_spacing": list(g.volume_spacing),
                     "volume_offset": list(g.volume_offset)},
            "noise": data.noise.to_dict(),
            "placement": data.placement.to_dict() if data.placement else None}
    write_text(paths[2], json.dumps(meta, indent=1))
    return paths


# ---------------------------------------------------------------------------- command line
def _one_or_two(values, option):
    if values is None:
        return None
    if len(values) not in (1, 2) or min(values) <= 0 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{option} takes one or two positive sizes (rows, columns) in mm")
    return (values[0], values[-1])


def _one_or_three(values, option, kind=float):
    if values is None:
        return None
    if len(values) not in (1, 3) or min(values) <= 0 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{option} takes one or three positive values (z y x)")
    return tuple(kind(v) for v in (values * 3 if len(values) == 1 else values))


def _file_or_number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def cmd_import(args) -> int:
    from ..outputs import check_output_file
    from ..progress import emit, say
    from .projections_file import save_projections

    if Path(args.out).suffix != ".safetensors":
        raise InputError(f"projections files end in .safetensors, got {Path(args.out).name}")
    check_output_file(args.out, create_folder=True)
    if args.views is not None and args.views < 1:
        raise InputError(f"--views must be >= 1, got {args.views}")
    if args.multiple < 1:
        raise InputError(f"--multiple must be >= 1, got {args.multiple}")
    data = import_projections(
        args.projections, args.geometry, flat=args.flat, dark=args.dark, i0=args.i0,
        line_integrals_given=args.line_integrals, views=args.views, view_indices=args.view_indices,
        arc_degrees=args.arc, pixel_spacing=_one_or_two(args.pixel_spacing, "--pixel-spacing"),
        grid_shape=_one_or_three(args.grid_shape, "--grid-shape", int),
        grid_spacing=_one_or_three(args.grid_spacing, "--grid-spacing"),
        hu_window=None if args.hu_window is None else tuple(args.hu_window), mu_water=args.mu_water,
        detector_like=args.detector_like, multiple=args.multiple)
    data.geometry.validate()
    save_projections(args.out, data)
    g = data.geometry
    say(f"wrote {args.out}: {g.views_phrase()}, {g.detector_shape[0]}x{g.detector_shape[1]} pixels of "
        f"{g.detector_spacing[0]:.4g} x {g.detector_spacing[1]:.4g} mm; grid {'x'.join(map(str, g.volume_shape))} "
        f"at {'x'.join(f'{s:.3g}' for s in g.volume_spacing)} mm")
    emit("result", projections=str(args.out), views=g.n_views, detector=list(g.detector_shape))
    return 0


def cmd_export(args) -> int:
    from ..progress import emit, say
    from .projections_file import load_projections

    data = load_projections(args.projections, with_reference=False)
    paths = export_projections(data, args.out)
    say(f"wrote {', '.join(str(p) for p in paths)}")
    emit("result", files=[str(p) for p in paths])
    return 0


def add_import_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``import`` on an argparse sub-parsers object."""
    from ..physics.geometry import preset_names

    p = subparsers.add_parser("import", help="real scanner projections (+ RTK geometry XML) -> a projections file",
                              description="Real scanner projections (intensities or line integrals) with RTK's "
                                          "geometry XML or a DeepSparse geometry -> a projections file for reconstruct.")
    p.add_argument("projections", help="projection stack (.mha, .nrrd, .nii, TIFF) or a folder of 2D images")
    p.add_argument("--geometry", required=True, metavar="FILE",
                   help="RTK geometry XML (needs itk-rtk) or a DeepSparse geometry (.yaml/.json)")
    values = p.add_argument_group("values (one of)")
    values.add_argument("--flat", metavar="FILE", help="flat field (no object), one image or a stack averaged")
    values.add_argument("--i0", type=float, metavar="VALUE", help="unattenuated intensity I0 instead of --flat")
    values.add_argument("--line-integrals", action="store_true", help="the images hold -log(I/I0) already")
    p.add_argument("--dark", metavar="FILE|VALUE", type=_file_or_number,
                   help="dark field (beam off): an image or a value, subtracted from the images and flat/I0")
    p.add_argument("--views", type=int, metavar="N", help="pick N views nearest to uniform over the arc")
    p.add_argument("--view-indices", metavar="LIST", help="views to use, e.g. 0,45,90 or 0-360:60 (end excluded)")
    p.add_argument("--arc", type=float, metavar="DEG",
                   help="use only views within DEG degrees from the first (e.g. 180 for the bundled DiCE models)")
    p.add_argument("--pixel-spacing", type=float, nargs="+", metavar="MM",
                   help="detector pitch (rows [columns]) in mm, overriding the files' (needed for TIFF/PNG)")
    p.add_argument("--grid-shape", type=int, nargs="+", metavar="N", help="reconstruction grid N or NZ NY NX")
    p.add_argument("--grid-spacing", type=float, nargs="+", metavar="MM", help="voxel size, 1 or 3 values (z y x)")
    p.add_argument("--hu-window", type=float, nargs=2, metavar=("LO", "HI"),
                   help="HU window of the normalized units (default -1000 1000, or --detector-like's)")
    p.add_argument("--mu-water", type=float, metavar="PER_MM",
                   help=f"attenuation of water, 1/mm, at the scan's energy (default {MU_WATER_PER_MM})")
    p.add_argument("--detector-like", choices=preset_names(), metavar="PRESET",
                   help="resample the detector to this preset's pixel pitch at the isocentre (area-weighted) "
                        "and use its grid, so its models accept the data (e.g. fast)")
    p.add_argument("--multiple", type=int, default=DEFAULT_MULTIPLE,
                   help=f"with --detector-like: detector sizes in multiples of this (default {DEFAULT_MULTIPLE})")
    p.add_argument("--out", required=True, help="projections file (.safetensors)")
    p.set_defaults(func=cmd_import)
    return p


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on an argparse sub-parsers object."""
    p = subparsers.add_parser("export", help="a projections file -> projections.mha + RTK geometry.xml")
    p.add_argument("projections", help="projections file (.safetensors)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_export)
    return p


__all__ = ["line_integrals", "pick_views", "parse_indices", "field_of_view", "default_grid", "import_projections", "export_projections",
           "add_import_parser", "add_export_parser"]
