"""The ``deepsparse`` command line (also ``python -m deepsparse_core``).

Errors caused by the input print one line ``error: ...`` and exit with status 2; nothing is left
half-written (every file is written to a temporary name and renamed).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .arguments import add_device_argument, check_seed, plain
from .errors import DeepSparseError, InputError
from .outputs import check_inputs_are_safe, check_output_file, check_output_folder
from .progress import Cancelled, dumps, emit, progress, say, set_mode


# ---------------------------------------------------------------------------- helpers
def _geometry(args, n_views: int | None = None):
    from .physics.geometry import Geometry

    if getattr(args, "geometry", None):
        g = Geometry.load(args.geometry)
        if n_views is not None or args.arc is not None:
            g = g.with_views(g.n_views if n_views is None else n_views,
                             None if args.arc is None else math.radians(args.arc))
    else:
        g = Geometry.preset(args.preset, 200 if n_views is None else n_views, args.arc)
    return g.validate()


CT_HELP = "CT file (NIfTI, NRRD, MHA/MHD, MRC, NPY) or DICOM folder, in HU"


def _add_geometry_args(p):
    from .physics.geometry import preset_names

    p.add_argument("--preset", default="fast", choices=preset_names(),
                   help="geometry preset (default: fast, 128^3 for CPU use)")
    p.add_argument("--geometry", metavar="FILE", help="geometry file (YAML/JSON), overrides --preset")
    p.add_argument("--arc", type=float, default=None, metavar="DEG",
                   help="angular range in degrees (default: the preset's, 180)")


def _add_noise_args(p):
    p.add_argument("--noise", dest="noise", action="store_true", default=True,
                   help="add Poisson + Gaussian noise (default)")
    p.add_argument("--no-noise", dest="noise", action="store_false", help="noiseless projections")
    p.add_argument("--photons", type=float, default=1e5, help="incident photons per pixel I0 (default 1e5)")
    p.add_argument("--electronic-sigma", type=float, default=10.0,
                   help="electronic noise std in photon counts (default 10)")


def _noise(args):
    from .physics.noise import NoiseModel

    return NoiseModel(enabled=args.noise, photons=args.photons, electronic_sigma=args.electronic_sigma)


def _check_volume_path(path) -> None:
    """An output volume path: a known extension, in an existing writable folder (before any work)."""
    from .data.volume_io import WRITE_EXTENSIONS

    if not str(path).lower().endswith(WRITE_EXTENSIONS):
        raise InputError(f"cannot write {path}: use one of {', '.join(WRITE_EXTENSIONS)}")
    check_output_file(path, create_folder=False)


def _check_projections_path(path) -> None:
    """An output projections file: ``.safetensors``, writable (its folder is created if missing)."""
    if Path(path).suffix != ".safetensors":
        raise InputError(f"projections files end in .safetensors, got {Path(path).name}")
    check_output_file(path, create_folder=True)


def _at_most(value, maximum: int, option: str, what: str) -> None:
    if value is not None and value > maximum:
        raise InputError(f"{option} {value} is above the maximum of {maximum} {what} (days of work)")


def _at_least(value, minimum: int, option: str) -> None:
    if value is not None and value < minimum:
        raise InputError(f"{option} must be >= {minimum}, got {value}")


# reconstruct options -> the methods they apply to (given for another method, they are an error)
METHOD_OPTIONS = {"filter": ("fdk",), "cutoff": ("fdk",), "iterations": ("sart",), "relaxation": ("sart",),
                  "model": ("dice",), "data_consistency": ("dice",)}


def _choose_method(args, data) -> tuple[str, str | None]:
    """(method, why it was chosen or None when given): ``--method``, or by default the bundled DiCE
    model when one serves the scan, else SART. Options for another method are an error, never ignored."""
    method, why = args.method, None
    if method is None:
        from .inference import bundled_model_serving

        path, why = bundled_model_serving(data)
        method = "dice" if path is not None or args.model else "sart"
        why = "the default, as --model names a DiCE model" if args.model else f"the default, as {why}"
    given = [o for o in METHOD_OPTIONS if getattr(args, o) is not None and method not in METHOD_OPTIONS[o]]
    given += ["backend"] if args.backend not in (None, "torch") and method == "dice" else []
    if given:
        flags = ", ".join("--" + o.replace("_", "-") for o in given)
        verb = "does" if len(given) == 1 else "do"
        applies = "; ".join(f"--{o.replace('_', '-')} is for {' and '.join(METHOD_OPTIONS.get(o, ('fdk', 'sart')))}"
                            for o in given)
        chosen = f" ({why}; give --method to choose)" if why else ""
        raise InputError(f"{flags} {verb} not apply to {method}{chosen}: {applies}")
    return method, why


def _recon_options(args, method: str) -> dict:
    """The options given for ``method``; :func:`~deepsparse_core.reconstruct.reconstruct` fills the rest."""
    return {o: getattr(args, o) for o, methods in METHOD_OPTIONS.items()
            if method in methods and getattr(args, o) is not None}


def _output_geometry(args, data):
    """The geometry of the output grid (``--resolution``), checked against the free memory first."""
    values = args.resolution
    geometry = data.geometry.with_resolution(None if values is None else tuple(values))
    if values is not None:
        from .resources import require_available

        # the output grid, its copy written to disk and the method's work arrays: about 3 float32 volumes
        require_available(3 * 4.0 * math.prod(geometry.volume_shape), f"--resolution {' '.join(map(str, values))}")
    return geometry


def _steps(args, method, data, shape) -> int:
    if method == "sart":
        from .reconstruct import OPTIONS

        return args.iterations or OPTIONS["sart"]["iterations"]
    if method == "dice":
        from .inference import default_model_for, get_reconstructor

        model = args.model or default_model_for(data)
        return get_reconstructor(model, args.device).steps(data, shape, args.data_consistency)
    return 1


# ---------------------------------------------------------------------------- commands
def cmd_samples(args) -> int:
    from .data import samples

    if args.fetch:
        names = [s.name for s in samples.list_samples()] if args.fetch == ["all"] else args.fetch
        for name in names:
            path = samples.fetch_sample(name)
            say(f"{name}: {path}")
            emit("result", sample=name, path=str(path))
        return 0
    for s in samples.list_samples():
        state = "cached" if s.cached else "not fetched"
        say(f"{s.name:8s} {state:12s} {s.description}")
    return 0


def cmd_simulate(args) -> int:
    from .data.projections_file import save_projections
    from .data.simulate import simulate
    from .data.volume_io import write_volume

    check_seed(args.seed)
    _check_projections_path(args.out)  # outputs first: no work for a path that cannot be written
    if args.reference_out:
        _check_volume_path(args.reference_out)
    g = _geometry(args, args.views)
    t0 = time.perf_counter()
    data = simulate(args.ct, g, _noise(args), seed=args.seed, piece=args.piece, device=args.device)
    save_projections(args.out, data)
    if args.reference_out:
        try:
            write_volume(data.to_volume(data.reference), args.reference_out)
        except Exception:
            Path(args.out).unlink(missing_ok=True)
            raise
    dt = time.perf_counter() - t0
    say(f"wrote {args.out}: {g.views_phrase()}, {g.detector_shape[0]}x{g.detector_shape[1]} pixels "
        f"({'noisy' if args.noise else 'noiseless'}) in {dt:.1f} s")
    if args.reference_out:
        say(f"wrote reference {args.reference_out}")
    emit("result", projections=str(args.out), reference=args.reference_out, seconds=dt)
    return 0


def cmd_reconstruct(args) -> int:
    from .data.projections_file import load_projections
    from .data.volume_io import write_volume
    from .reconstruct import MAX_DATA_CONSISTENCY, MAX_SART_ITERATIONS, reconstruct

    _check_volume_path(args.out)
    _at_least(args.iterations, 1, "--iterations")
    _at_least(args.data_consistency, 0, "--data-consistency")
    _at_most(args.iterations, MAX_SART_ITERATIONS, "--iterations", "SART iterations")
    _at_most(args.data_consistency, MAX_DATA_CONSISTENCY, "--data-consistency", "data-consistency passes")
    data = load_projections(args.projections, with_reference=False)
    method, why = _choose_method(args, data)
    shape = _output_geometry(args, data).volume_shape  # sizes are checked before any work
    t0 = time.perf_counter()
    with progress(_steps(args, method, data, shape), method) as bar:
        vol = reconstruct(data, method, device=args.device, backend=args.backend or "torch", progress=bar,
                          resolution=shape, **_recon_options(args, method))
    dt = time.perf_counter() - t0
    lo, hi = (float(v) for v in data.geometry.hu_window)
    what = (f"HU clipped to [{lo:g}, {hi:g}]" if args.units == "hu" else
            f"attenuation, HU {lo:g}..{hi:g} -> 0..1" + (", unclipped" if method != "dice" else ""))
    write_volume(data.to_volume(vol.clamp(0, 1) if args.units == "hu" else vol, args.units), args.out,
                 notes=f"DeepSparse {method}, {data.geometry.n_views} views: {what}",
                 fields={"DeepSparse_method": method, "DeepSparse_units": args.units,
                         "DeepSparse_hu_window": f"{lo:g} {hi:g}", "DeepSparse_views": data.geometry.n_views})
    say(f"wrote {args.out} ({method}{f': {why}' if why else ''}; {data.geometry.n_views} views, {dt:.1f} s)")
    emit("result", volume=str(args.out), method=method, why=why, seconds=dt)
    return 0


def _load_normalized(path, window, units):
    """(the volume, its voxels in [0, 1]): HU through ``window``; ``units`` 'auto' guesses them."""
    from .data.hu import guess_units, normalize_hu
    from .data.volume_io import read_volume

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # [0, 1] volumes are expected here, not HU
        v = read_volume(path, check_hu=False, allow_constant=True)
    if units == "auto":
        units = guess_units(v.array)
    if units == "hu":
        return v, normalize_hu(v.array, window)
    if units != "normalized":
        raise InputError(f"unknown units {units!r}")
    return v, v.array


def _same_grid(a, b) -> bool:
    import numpy as np

    return (a.shape == b.shape and np.allclose(a.spacing, b.spacing, rtol=1e-3)
            and np.allclose(a.origin, b.origin, atol=1e-2) and np.allclose(a.direction, b.direction, atol=1e-4))


def _resampled_to(volume, values, reference):
    """``values`` (on ``volume``'s grid) linearly resampled onto ``reference``'s grid in LPS space;
    voxels outside ``volume`` read 0."""
    import SimpleITK as sitk

    from .data.volume import Volume

    image = Volume(values.astype("float32"), volume.spacing, volume.origin, volume.direction).to_sitk()
    return sitk.GetArrayFromImage(sitk.Resample(image, reference.to_sitk(), sitk.Transform(), sitk.sitkLinear, 0.0))


def score_line(scores: dict) -> str:
    """``PSNR 25.95 dB  SSIM 0.739  VIF 0.412``, the demo's format."""
    vif = scores.get("vif")
    return (f"PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.3f}"
            + (f"  VIF {vif:.3f}" if vif is not None and math.isfinite(vif) else ""))


def cmd_evaluate(args) -> int:
    from .atomic import write_text
    from .evaluation.metrics import evaluate

    if args.json:
        check_output_file(args.json, create_folder=False)
    if not all(math.isfinite(w) for w in args.window) or args.window[1] <= args.window[0]:
        raise InputError(f"--window needs finite LO < HI, got {args.window[0]:g} {args.window[1]:g}")
    ref, a = _load_normalized(args.reference, tuple(args.window), args.units)
    rec, b = _load_normalized(args.reconstruction, tuple(args.window), args.units)
    resampled = not _same_grid(ref, rec)
    if resampled:
        if not args.resample:
            raise InputError(f"the reconstruction's grid ({'x'.join(map(str, rec.shape))} voxels) is not the "
                             f"reference's ({'x'.join(map(str, ref.shape))}), or their spacing, origin or "
                             "direction differ: pass --resample to resample it onto the reference's grid")
        b = _resampled_to(rec, b, ref)
    scores = evaluate(b, a)
    say(score_line(scores) + (" (reconstruction resampled to the reference grid)" if resampled else ""))
    if args.json:  # strict JSON: a non-finite score (PSNR of identical volumes) is written as null
        write_text(args.json, dumps(scores, indent=1))
    emit("result", **scores)
    return 0


def cmd_demo(args) -> int:
    """The main job on an embedded default: sample CT -> sparse projections -> FDK/SART -> report."""
    from .demo import run_demo
    from .reconstruct import MAX_SART_ITERATIONS

    check_seed(args.seed)
    check_output_folder(args.out)
    _at_least(args.views, 1, "--views")
    _at_least(args.iterations, 1, "--iterations")
    _at_most(args.iterations, MAX_SART_ITERATIONS, "--iterations", "SART iterations")
    _announce_download(args.sample)
    run_demo(args.out, sample=args.sample, n_views=args.views, preset=args.preset, noise=_noise(args),
             seed=args.seed, device=args.device, sart_iterations=args.iterations)
    return 0


def _announce_download(name: str) -> None:
    """Say so on stderr when a sample CT must be downloaded first (the demo's first run)."""
    from .data import samples

    info = next((s for s in samples.list_samples() if s.name == name), None)
    if info is not None and not info.cached:
        print(f"fetching the {name} sample CT ({info.size_bytes / 2**20:.0f} MB, {info.source}) "
              f"into {samples.cache_dir()}; later runs use the cached copy", file=sys.stderr)


def cmd_candidates(args) -> int:
    from .data.candidates import build_candidates

    check_seed(args.seed)
    _check_projections_path(args.out)
    g = _geometry(args)
    path = build_candidates(args.ct, g.with_views(args.count, g.arc), args.out, noise=_noise(args),
                            seed=args.seed, device=args.device)
    say(f"wrote {path}")
    emit("result", candidates=str(path))
    return 0


PHANTOM_BYTES_PER_VOXEL = 32  # peak memory of one phantom: 25-29 bytes a voxel measured at 160^3, every kind


def cmd_phantoms(args) -> int:
    """Write seeded synthetic CTs (HU, NIfTI) for training corpora: ``<kind>-<seed>.nii.gz``."""
    from .data.phantoms import PHANTOM_KINDS, phantom_volume
    from .data.volume_io import write_volume
    from .errors import InputError

    kinds = PHANTOM_KINDS if args.kinds == ["all"] else args.kinds
    unknown = sorted(set(kinds) - set(PHANTOM_KINDS))
    if unknown:
        raise InputError(f"unknown phantom kind(s) {', '.join(unknown)}; choose from {', '.join(PHANTOM_KINDS)} or all")
    if args.count < 1 or args.shape < 8:
        raise InputError("--count must be >= 1 and --shape >= 8")
    check_seed(args.seed)
    check_seed(args.seed + args.count - 1)
    from .resources import require_available

    require_available(PHANTOM_BYTES_PER_VOXEL * args.shape ** 3, f"a {args.shape}^3 phantom")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(kind, args.seed + i) for kind in kinds for i in range(args.count)]
    written = []
    try:
        with progress(len(jobs), "phantoms") as bar:
            for kind, seed in jobs:
                path = out / f"{kind}-{seed:04d}.nii.gz"
                if not path.exists():  # each file is written atomically: an existing one is whole
                    write_volume(phantom_volume(kind, (args.shape,) * 3, seed=seed), path)
                written.append(str(path))
                bar.update(1)
    except BaseException:
        if created and not any(out.iterdir()):  # a folder this run made and filled with nothing
            out.rmdir()
        raise
    print(f"wrote {len(written)} phantom CTs to {out}", file=sys.stderr)
    emit("result", phantoms=written)
    return 0


def cmd_geometry(args) -> int:
    if args.out:
        if Path(args.out).suffix.lower() not in (".yaml", ".yml", ".json"):
            raise InputError(f"--out {args.out}: a geometry file ends in .yaml, .yml or .json")
        check_output_file(args.out, create_folder=True)
    import yaml

    g = _geometry(args, args.views)
    if args.out:
        g.save(args.out)
        say(f"wrote {args.out}: {g.views_phrase()}")
    else:  # the text a --out FILE.yaml would hold (angles in radians on one line)
        say(f"# deepsparse geometry, {g.views_phrase()}: what --out FILE.yaml writes\n"
            + yaml.safe_dump(g.to_dict(), sort_keys=False, default_flow_style=None, width=10**6).rstrip())
    print(f"{100 * g.covered_fraction():.0f} % of the grid's voxels are seen by every view "
          "(a circular scan misses a cube's corners; below 60 % is warned about)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .physics.geometry import preset_names
    from .reconstruct import BACKENDS, FILTERS, METHODS, OPTIONS

    parser = _Parser(prog="deepsparse", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepsparse {__version__}")
    parser.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                        help="progress display: bar (tqdm), json (JSON lines on stdout) or none")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("samples", help="list or fetch the real sample CTs")
    p.add_argument("--fetch", nargs="+", metavar="NAME", help="fetch these samples ('all' for every one)")
    p.set_defaults(func=cmd_samples)

    p = sub.add_parser("simulate", help="simulate sparse-view projections of a CT")
    p.add_argument("ct", help=CT_HELP)
    p.add_argument("--views", type=int, required=True, help="number of projections")
    _add_geometry_args(p)
    _add_noise_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--piece", type=int, default=None,
                   help="a scan longer than the grid's z extent is cut into pieces of that length; which one "
                        "to simulate, from 0 at the first slice (default: the middle piece)")
    add_device_argument(p)
    p.add_argument("--out", required=True, help="projections file (.safetensors)")
    p.add_argument("--reference-out", metavar="GT", help="also write the preprocessed [0, 1] reference volume")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("reconstruct", help="reconstruct a volume from a projections file")
    p.add_argument("projections", help="projections file (.safetensors) of deepsparse simulate or import")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="fdk (analytic, fast), sart (iterative, --iterations) or dice (learned, --model); "
                        "default: dice when a bundled model serves the scan's view count and geometry, else sart")
    p.add_argument("--model", help="DiCE model file (default: the bundled model for the view count)")
    p.add_argument("--data-consistency", type=int, default=None, metavar="K",
                   help="DiCE: refine with K bounded SART passes against the measured views, 0 = the network "
                        "alone (default: the model card's recommendation, measured on held-out CTs)")
    p.add_argument("--resolution", type=int, nargs="+", metavar="N",
                   help="output grid: N (cube) or NZ NY NX over the geometry's extent (default: its grid)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="torch (default, CPU or CUDA), rtk (itk-rtk, CPU) or tigre (CUDA); fdk and sart only")
    p.add_argument("--filter", default=None, choices=FILTERS,
                   help=f"FDK ramp filter window (default {OPTIONS['fdk']['filter']}), the same on every backend")
    p.add_argument("--cutoff", type=float, default=None,
                   help="FDK: the window's cut-off, a fraction of the Nyquist frequency in (0, 1] "
                        f"(default {OPTIONS['fdk']['cutoff']:g})")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"SART iterations, >= 1 (default {OPTIONS['sart']['iterations']})")
    p.add_argument("--relaxation", type=float, default=None,
                   help=f"SART relaxation lambda, > 0 (default {OPTIONS['sart']['relaxation']:g}, RTK's)")
    add_device_argument(p)
    p.add_argument("--units", choices=("normalized", "hu"), default="normalized",
                   help="normalized (default): attenuation scaled so that the geometry's HU window (e.g. "
                        "-1000..1000) maps to 0..1; DiCE stays in 0..1, FDK and SART are not clipped (below 0 "
                        "and above 1 occur); hu: Hounsfield units clipped to that window (bone and contrast "
                        "above its top read as the top); the file's header says which")
    p.add_argument("--out", required=True, help="output volume (.nii.gz, .nii, .nrrd, .mha)")
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("evaluate", help="PSNR, SSIM and VIF of a reconstruction against a reference")
    p.add_argument("--reference", required=True, help="reference volume (HU or [0, 1])")
    p.add_argument("--reconstruction", required=True, help="reconstructed volume of the same grid")
    p.add_argument("--units", choices=("auto", "normalized", "hu"), default="auto",
                   help="volume units; HU volumes are mapped to [0, 1] with --window")
    p.add_argument("--window", type=float, nargs=2, default=(-1000.0, 1000.0), metavar=("LO", "HI"),
                   help="HU window mapped to [0, 1] (default -1000 1000)")
    p.add_argument("--resample", action="store_true",
                   help="score a reconstruction on another grid (size, spacing, origin, direction) after "
                        "resampling it linearly onto the reference's grid in patient space (default: refuse)")
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="the main job: sample CT -> sparse views -> reconstructions -> report",
                       description="Fetch a real sample CT (once), simulate sparse noisy views, reconstruct them "
                                   "with FDK, SART and the bundled DiCE model, and write the volumes, their "
                                   "PSNR/SSIM and a comparison figure to --out.")
    p.add_argument("--sample", default="chest", help="sample CT name (see `deepsparse samples`)")
    p.add_argument("--views", type=int, default=6, help="number of sparse projections (default 6)")
    p.add_argument("--preset", default="fast", choices=preset_names(),
                   help="geometry preset (default fast, 128^3 for CPU use)")
    p.add_argument("--iterations", type=int, default=20, help="SART iterations (default 20)")
    _add_noise_args(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    add_device_argument(p)
    p.add_argument("--out", default="deepsparse_output", help="output folder (default ./deepsparse_output)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("candidates", help="pre-generate the candidate projections of a CT (training cache)",
                       description="Simulate COUNT candidate views of one CT over the arc (a training cache, "
                                   "float16); deepsparse prepare does this for a whole folder.")
    p.add_argument("ct", help=CT_HELP)
    _add_geometry_args(p)
    _add_noise_args(p)
    p.add_argument("--count", type=int, default=200, help="candidate views over the arc (default 200, the paper's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    add_device_argument(p)
    p.add_argument("--out", required=True, help="cache file (.safetensors, float16)")
    p.set_defaults(func=cmd_candidates)

    p = sub.add_parser("phantoms", help="write seeded synthetic CTs (NIfTI, HU) of every body region")
    p.add_argument("--kinds", nargs="+", default=["all"], metavar="KIND",
                   help="phantom kinds of deepsparse_core.data.phantoms (an unknown one lists them), or all (default)")
    p.add_argument("--count", type=int, default=1, help="phantoms per kind (seeds SEED ... SEED+COUNT-1)")
    p.add_argument("--shape", type=int, default=128, help="voxels per side (default 128)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_phantoms)

    from .data.prepare import add_prepare_parser
    from .data.scanner_io import add_export_parser, add_import_parser
    from .evaluation.quality import add_quality_parser
    from .training.bundle import add_bundle_parser
    from .training.command import add_train_parser

    add_prepare_parser(sub)
    add_import_parser(sub)
    add_export_parser(sub)
    add_train_parser(sub)
    add_bundle_parser(sub)
    add_quality_parser(sub)

    p = sub.add_parser("geometry", help="show or export a geometry preset")
    _add_geometry_args(p)
    p.add_argument("--views", type=int, default=200, help="number of projections (default 200)")
    p.add_argument("--out", help="write it to this YAML/JSON file")
    p.set_defaults(func=cmd_geometry)
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, command in sub.choices.items():  # docstring text reads as plain text in --help
        line = helps.get(name) or ""
        command.description = plain(command.description) or (line[:1].upper() + line[1:] + "." if line else None)
        for action in command._actions:
            action.help = plain(action.help)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _os_error_line(e: OSError) -> str:
    """``error:`` text of an environment failure (disk full, permission...) not caught earlier."""
    what = e.strerror or type(e).__name__
    return f"{what}: {e.filename}" if e.filename else _one_line(str(e) or what)


class UsageError(SystemExit):
    """A command-line error of argparse (exit status 2), raised so that :func:`main` can report it as
    JSON under ``--progress json``; otherwise it is printed the argparse way."""

    def __init__(self, parser, message: str):
        super().__init__(2)
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # subparsers are made with the same class
        raise UsageError(self, message)


def _json_requested(argv) -> bool:
    """Whether the raw arguments ask for ``--progress json`` (before the subcommand)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return any(a == "--progress=json" or a == "--progress" and i + 1 < len(args) and args[i + 1] == "json"
               for i, a in enumerate(map(str, args)))


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        text = _one_line(f"{e.parser.prog}: {e.message}")
        if _json_requested(argv):  # a JSON reader (the Slicer module) gets JSON, stderr one line
            print(dumps({"event": "error", "message": text}), flush=True)
            print(f"error: {text}", file=sys.stderr)
        else:
            e.parser.print_usage(sys.stderr)
            print(f"{e.parser.prog}: error: {e.message}", file=sys.stderr)
        return 2
    return run_command(args)


def run_command(args) -> int:
    """Run ``args.func(args)`` the command-line way: one ``error:`` line and status 2 for bad input,
    and under ``--progress json`` JSON lines only on stdout (with an ``error`` event on failure)."""
    json_mode = args.progress == "json"
    # JSON mode: stdout carries JSON lines only; any other print (ours or a library's) goes to stderr
    set_mode(json_lines=json_mode, quiet=args.progress == "none", stream=sys.stdout if json_mode else None)
    old = warnings.showwarning
    warnings.showwarning = _warning_line
    try:
        with contextlib.redirect_stdout(sys.stderr) if json_mode else contextlib.nullcontext():
            check_inputs_are_safe(args)
            return args.func(args)
    except DeepSparseError as e:
        emit("error", message=_one_line(e))
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        emit("error", message=_os_error_line(e))
        print(f"error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    except Cancelled as e:
        emit("error", message=str(e))
        print(f"cancelled: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        emit("error", message="interrupted")
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: keep the traceback, but tell a JSON reader too
        emit("error", message=f"internal error: {type(e).__name__}: {_one_line(e)}")
        raise
    finally:
        warnings.showwarning = old
        set_mode(json_lines=False, quiet=False)


if __name__ == "__main__":
    sys.exit(main())
