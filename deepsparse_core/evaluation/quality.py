"""Evaluation report: FDK, SART and every DiCE variant on held-out volumes (``deepsparse benchmark-quality``).

For each held-out candidate cache (200 projections over [0, 180) and the [0, 1] reference) and each
view count n, the candidates floor(j K / n), j = 0 .. n-1 (the authors' evaluation views,
:func:`~deepsparse_core.data.view_selection.evaluation_indices`) are reconstructed with every method, timed, and scored with PSNR / SSIM / VIF against the reference.
A method that cannot run (missing model file, incompatible geometry, numerical failure) becomes an
``n/a`` row with its reason; the others go on.

``--protocol paper`` is the one evaluation whose numbers can be set beside the paper's Tables 2-3:
the network alone (no data-consistency passes), noise-free caches, the preset's own grid (256^3 for
the paper's presets), the authors' evaluation views; anything else is refused before any work
(:func:`check_paper_protocol`). The data set, its split and crop must be the authors' too
(``docs/recipes``), which a cache cannot show: the report says so.

Outputs in ``out``: ``quality.csv`` (one row per volume x views x method), ``quality.md`` (tables
per view count, best values bold), ``quality.json`` (everything, machine-readable) and
``slices_<n>views.png`` (mid-slices of one volume: ground truth, each method, |rec - gt| maps).
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..arguments import add_device_argument
from ..atomic import atomic_path, write_text
from ..errors import DeepSparseError, InputError
from ..progress import emit, progress, strict_json
from ..reconstruct import METHODS
from .figures import comparison_figure, figure_size  # noqa: F401 (figure_size: public, re-exported)

DEFAULT_VIEWS = (6, 8, 10)
PROTOCOLS = ("ours", "paper")
PAPER_PROTOCOL_NOTE = (
    "**Paper protocol** (`--protocol paper`): the network alone (no data-consistency passes), noise-free "
    "caches on the preset's own grid, the authors' evaluation views floor(j K / n) of K candidates over "
    "[0, 180) (the authors use K = 200 for LUNA16 and AbdomenAtlas, 50 for PANORAMA, PENGWIN and "
    "ToothFairy). Numbers here are comparable with the paper's Tables 2-3 only when the volumes are the "
    "authors' test set with their crop (docs/recipes: splits/, labels), which this report cannot check.")
METRICS = ("psnr", "ssim", "vif")
CSV_COLUMNS = ("volume", "views", "method", "psnr", "ssim", "vif", "seconds", "error")


# ---------------------------------------------------------------------------- what to run
@dataclass(frozen=True)
class Variant:
    """One reconstruction method as a table column: 'fdk', 'sart' or a named DiCE model."""

    name: str                     # column name, e.g. "fdk", "dice", "scratch"
    method: str                   # 'fdk' | 'sart' | 'dice'
    model: str | None = None      # DiCE model file; None with ``unavailable`` set: nothing to run
    unavailable: str | None = None  # why it cannot run (reported as n/a)


@dataclass(frozen=True)
class ModelSpec:
    """A ``--model`` entry: ``[name:]N[,N...]=PATH``."""

    name: str | None
    views: tuple[int, ...]
    path: str


def parse_model_spec(text: str) -> ModelSpec:
    """``'6=m.safetensors'``, ``'scratch:6=m.safetensors'`` or ``'pre:6,8,10=m.safetensors'``."""
    head, sep, path = text.partition("=")
    if not sep or not path or not head:
        raise InputError(f"--model takes [name:]VIEWS=PATH (e.g. 6=model.safetensors or "
                         f"scratch:6=model.safetensors), got {text!r}")
    name, colon, counts = head.rpartition(":")
    if colon and not name:
        raise InputError(f"empty model name in --model {text!r}")
    try:
        views = tuple(int(v) for v in counts.split(","))
    except ValueError:
        raise InputError(f"--model {text!r}: view counts must be integers, got {counts!r}") from None
    if any(v < 1 for v in views):
        raise InputError(f"--model {text!r}: view counts must be positive")
    return ModelSpec(name or None, views, path)


def variants_for(n_views: int, methods, model_specs=(), bundled: bool = True) -> list[Variant]:
    """Columns for ``n_views``: fdk / sart as asked, then the bundled DiCE model and the ``--model``
    entries for that view count (unnamed entries are called ``dice:<file stem>``)."""
    out = [Variant(m, m) for m in methods if m in ("fdk", "sart")]
    if "dice" not in methods:
        return out
    dice = []
    if bundled:
        from ..inference import bundled_model_path

        path = bundled_model_path(n_views)
        if path is not None:
            dice.append(Variant("dice", "dice", str(path)))
    for spec in model_specs:
        if n_views not in spec.views:
            continue
        name = spec.name or f"dice:{Path(spec.path).stem}"
        reason = None if Path(spec.path).is_file() else f"model file not found: {spec.path}"
        dice.append(Variant(name, "dice", spec.path, reason))
    if not dice:
        why = f"no bundled DiCE model for {n_views} views" if bundled else "bundled models disabled"
        dice.append(Variant("dice", "dice", None, f"{why} and no --model given for {n_views} views"))
    names = [v.name for v in out + dice]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"method names must be distinct for {n_views} views, repeated: {', '.join(duplicates)} "
                         f"(name the models: --model NAME:{n_views}=PATH)")
    return out + dice


# ---------------------------------------------------------------------------- held-out data
def held_out_files(data, split: str = "test") -> list[Path]:
    """The cache files to evaluate: ``data`` is one training-cache folder (its ``split`` file;
    'test' falls back to 'val', then to every file with a warning) or a list of cache files."""
    from ..data.splits import cache_files, has_split_files, split_files

    items = [Path(p) for p in ([data] if isinstance(data, (str, Path)) else data)]
    if not items:
        raise InputError("no data given: pass a training-cache folder or cache files")
    if len(items) == 1 and items[0].is_dir():
        folder = items[0]
        has_splits = has_split_files(folder)
        names = split_files(folder, split) if has_splits else []
        if not names and split == "test" and has_splits:
            names = split_files(folder, "val")
            if names:
                warnings.warn(f"{folder} has no test volumes: evaluating the validation split")
        if not names:
            names = cache_files(folder)
            if not names:
                raise InputError(f"no candidate cache files (*.safetensors) in {folder}")
            warnings.warn(f"{folder} has no {split} split (or it is empty): evaluating all {len(names)} volumes, "
                          f"which may include training volumes")
        return [folder / n for n in sorted(names)]
    for p in items:
        if p.is_dir():
            raise InputError(f"{p} is a folder: pass either one training-cache folder or cache files")
        if not p.is_file():
            raise InputError(f"cache file not found: {p}")
    return items


def n_candidates(path: Path) -> int:
    """Number of candidate projections in a cache file (read from its metadata only)."""
    from ..data.projections_file import FORMAT, VERSION
    from ..physics.geometry import Geometry
    from ..safetensors_io import read_metadata

    meta = read_metadata(path, FORMAT, VERSION, "DeepSparse projections file")
    try:
        return Geometry.from_dict(json.loads(meta["geometry"])).n_views
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path} has corrupt metadata ({e})") from None


def sparse_views(path: Path, n_views: int):
    """The ``n_views`` evaluation views of ``path`` (``floor(j * K / n)`` from candidate 0, the
    authors' choice: :func:`~deepsparse_core.data.view_selection.evaluation_indices`) with the reference."""
    from ..data.projections_file import load_projections
    from ..data.view_selection import evaluation_indices

    k = n_candidates(path)
    if n_views > k:
        raise InputError(f"{path.name} has {k} candidate projections, fewer than {n_views} views")
    idx = evaluation_indices(n_views, k)
    data = load_projections(path, views=idx)
    if data.reference is None:
        raise InputError(f"{path} has no reference volume to score against")
    return data


# ---------------------------------------------------------------------------- running
@dataclass
class Result:
    volume: str
    views: int
    method: str
    psnr: float | None = None
    ssim: float | None = None
    vif: float | None = None
    seconds: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _run_one(data, variant: Variant, device: str, sart_iterations: int, data_consistency: int | None):
    """(volume (nz, ny, nx) numpy, seconds); raises on failure."""
    from ..reconstruct import reconstruct

    if variant.unavailable:
        raise InputError(variant.unavailable)
    options = {}
    if variant.method == "sart":
        options["iterations"] = sart_iterations
    elif variant.method == "dice":
        from ..inference import get_reconstructor

        get_reconstructor(variant.model, device)   # load outside the timed part (cached)
        options.update(model=variant.model, data_consistency=data_consistency)
    t0 = time.perf_counter()
    vol = reconstruct(data, variant.method, device=device, **options)
    return vol.numpy().astype(np.float32), time.perf_counter() - t0


def _score(rec: np.ndarray, reference: np.ndarray) -> dict:
    from .metrics import evaluate

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="VIF needs")  # said once per run instead
        return evaluate(rec, reference)


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if isinstance(e, DeepSparseError) else f"{type(e).__name__}: {text}"


@dataclass
class Benchmark:
    """All results of one run, plus what the report needs."""

    volumes: list[str]
    views: list[int]
    results: list[Result] = field(default_factory=list)
    columns: dict[int, list[str]] = field(default_factory=dict)     # views -> method names, in order
    figures: dict[int, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def rows(self, n_views: int, method: str | None = None, volume: str | None = None) -> list[Result]:
        return [r for r in self.results if r.views == n_views and (method is None or r.method == method)
                and (volume is None or r.volume == volume)]

    def mean(self, n_views: int, method: str, key: str) -> float | None:
        """Mean of ``key`` over the volumes where the method ran; None if it never ran."""
        values = [getattr(r, key) for r in self.rows(n_views, method) if r.ok]
        values = [v for v in values if v is not None and not math.isnan(v)]
        return float(np.mean(values)) if values else None


def check_paper_protocol(files, data_consistency) -> dict:
    """The paper protocol's conditions on these caches (one line naming the first that fails):
    noise-free projections, the preset's own grid; no data-consistency passes asked for. Returns
    ``{"candidates": sorted K values, "grids": sorted grid shapes}`` for the report."""
    import json as _json

    from ..data.projections_file import FORMAT, VERSION
    from ..physics.geometry import Geometry, preset_names
    from ..safetensors_io import read_metadata

    if data_consistency not in (None, 0):
        raise InputError(f"--protocol paper evaluates the network alone: drop --data-consistency {data_consistency}")
    candidates, grids = set(), set()
    for path in files:
        meta = read_metadata(path, FORMAT, VERSION, "DeepSparse projections file")
        noise = _json.loads(meta.get("noise", "null")) or {}
        if noise.get("enabled"):
            raise InputError(f"{Path(path).name} was prepared with noise (I0 {noise.get('photons'):g}): the paper "
                             "protocol is noise-free; prepare the held-out CTs again with --no-noise")
        geometry = Geometry.from_dict(_json.loads(meta["geometry"]))
        if geometry.name in preset_names():
            preset = Geometry.preset(geometry.name, geometry.n_views)
            if geometry.volume_shape != preset.volume_shape:
                raise InputError(f"{Path(path).name} is on a {'x'.join(map(str, geometry.volume_shape))} grid, not the "
                                 f"{geometry.name} preset's {'x'.join(map(str, preset.volume_shape))}: the paper "
                                 "protocol evaluates at the preset's grid")
        candidates.add(geometry.n_views)
        grids.add("x".join(map(str, geometry.volume_shape)))
    return {"candidates": sorted(candidates), "grids": sorted(grids)}


def run_benchmark(data, out, views=DEFAULT_VIEWS, methods=METHODS, model_specs=(),
                  split: str = "test", sart_iterations: int = 20, device: str = "auto",
                  limit: int | None = None, data_consistency: int | None = None, bundled: bool = True,
                  figure_volume: int = 0, show_progress: bool = True, protocol: str = "ours") -> Benchmark:
    """Reconstruct, score and report; returns the :class:`Benchmark` (files written into ``out``).
    ``protocol``: 'ours' (as asked) or 'paper' (:func:`check_paper_protocol`; DiCE without DC)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}: choose from {', '.join(METHODS)}")
    views = sorted({int(v) for v in views})
    if not views or views[0] < 1:
        raise InputError(f"view counts must be positive integers, got {views}")
    specs = [s if isinstance(s, ModelSpec) else parse_model_spec(s) for s in model_specs]
    for s in specs:
        if not set(s.views) & set(views):
            warnings.warn(f"--model {s.path} is for {s.views} views, none of which is evaluated ({views})")
    files = held_out_files(data, split)
    if limit is not None:
        files = files[:max(0, int(limit))]
    if not files:
        raise InputError("no volumes to evaluate")
    paper = check_paper_protocol(files, data_consistency) if protocol == "paper" else None
    if paper is not None:
        data_consistency = 0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bench = Benchmark([p.stem for p in files], views,
                      settings={"data": [str(p) for p in files], "split": split, "sart_iterations": sart_iterations,
                                "device": device,
                                "data_consistency": "model card" if data_consistency is None else data_consistency,
                                "candidate_offset": 0.0, "protocol": protocol,
                                **({"paper_protocol": paper} if paper is not None else {})})
    columns = {n: variants_for(n, methods, specs, bundled) for n in views}
    bench.columns = {n: [v.name for v in cols] for n, cols in columns.items()}
    fig_index = min(max(0, figure_volume), len(files) - 1)
    vif_warned = False
    total = sum(len(files) * len(cols) for cols in columns.values())
    with progress(total, "benchmark", enabled=show_progress, unit="rec") as bar:
        for n in views:
            figure_volumes = {}
            for i, path in enumerate(files):
                try:
                    data_n = sparse_views(path, n)
                except DeepSparseError as e:
                    for v in columns[n]:
                        bench.results.append(Result(path.stem, n, v.name, error=_short(e)))
                        bar.update()
                    continue
                reference = data_n.reference.numpy()
                if i == fig_index:
                    figure_volumes["ground truth"] = reference
                    fig_spacing = data_n.geometry.volume_spacing
                if not vif_warned and min(reference.shape[1:]) < 41:
                    warnings.warn(f"slices of {reference.shape[1]}x{reference.shape[2]} are too small for VIF "
                                  f"(needs 41x41): VIF is reported as n/a")
                    vif_warned = True
                for v in columns[n]:
                    result = Result(path.stem, n, v.name)
                    try:
                        rec, result.seconds = _run_one(data_n, v, device, sart_iterations, data_consistency)
                        scores = _score(rec, reference)
                        result.psnr, result.ssim, result.vif = (scores[k] for k in METRICS)
                        if i == fig_index:
                            figure_volumes[v.name] = rec
                    except Exception as e:   # noqa: BLE001 - one failing method must not stop the report
                        result.error = _short(e)
                        if i == fig_index:
                            figure_volumes[v.name] = None
                    bench.results.append(result)
                    bar.update(method=v.name, views=n)
                    emit("result", **_row_dict(result))
            if "ground truth" in figure_volumes:
                gt = figure_volumes.pop("ground truth")
                png = out / f"slices_{n}views.png"
                fig_scores = {r.method: {"psnr": r.psnr, "ssim": r.ssim} for r in bench.results
                              if r.views == n and r.volume == files[fig_index].stem and r.ok}
                slices_figure(png, gt, figure_volumes, spacing=fig_spacing, scores=fig_scores,
                              title=f"{files[fig_index].stem}, {n} views")
                bench.figures[n] = png.name
    write_reports(bench, out)
    return bench


# ---------------------------------------------------------------------------- reports
def _row_dict(r: Result) -> dict:
    return {"volume": r.volume, "views": r.views, "method": r.method, "psnr": r.psnr, "ssim": r.ssim,
            "vif": r.vif, "seconds": r.seconds, "error": r.error}


def _fmt(value, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.2f}" if key in ("psnr", "seconds") else f"{value:.3f}"


def _best(values: dict[str, float | None]) -> set[str]:
    """Names holding the highest value (ties all bold)."""
    finite = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if len(finite) < 2:
        return set()
    top = max(finite.values())
    return {k for k, v in finite.items() if math.isclose(v, top, rel_tol=1e-9, abs_tol=1e-12)}


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def markdown_report(bench: Benchmark) -> str:
    """The report: overview of mean PSNR, then per view count a mean table and a per-volume table."""
    lines = ["# Reconstruction quality on held-out volumes", "",
             f"{len(bench.volumes)} volume(s): {', '.join(bench.volumes)}. The n views are the candidate "
             f"projections floor(j K / n), j = 0 .. n-1, of the K over [0, 180) degrees (the authors' choice). "
             f"SART: {bench.settings.get('sart_iterations')} iterations. Metrics against the reference in [0, 1] "
             f"(PSNR in dB, data range 1); best value in bold; "
             f"seconds = reconstruction time per volume (DiCE model loading excluded), device "
             f"`{bench.settings.get('device')}`.", ""]
    paper = bench.settings.get("paper_protocol")
    if paper is not None:
        lines += [PAPER_PROTOCOL_NOTE + f" Here: K = {', '.join(map(str, paper['candidates']))}, grid "
                  f"{', '.join(paper['grids'])}.", ""]
    else:
        lines += ["Not the paper protocol (`--protocol paper`): these numbers are not comparable with the paper's "
                  "tables.", ""]
    all_methods = []
    for n in bench.views:
        all_methods += [m for m in bench.columns.get(n, []) if m not in all_methods]
    lines += ["## Mean PSNR (dB)", "", "| views | " + " | ".join(all_methods) + " |",
              "|---:|" + "---:|" * len(all_methods)]
    for n in bench.views:
        means = {m: bench.mean(n, m, "psnr") if m in bench.columns[n] else None for m in all_methods}
        best = _best(means)
        lines.append(f"| {n} | " + " | ".join(_bold(_fmt(means[m], "psnr"), m in best) for m in all_methods) + " |")
    for n in bench.views:
        methods = bench.columns[n]
        lines += ["", f"## {n} views", "", "Mean over the volumes where the method ran:", "",
                  "| method | PSNR | SSIM | VIF | seconds | volumes |", "|---|---:|---:|---:|---:|---:|"]
        means = {k: {m: bench.mean(n, m, k) for m in methods} for k in (*METRICS, "seconds")}
        best = {k: _best(means[k]) for k in METRICS}
        for m in methods:
            ran = sum(r.ok for r in bench.rows(n, m))
            cells = [_bold(_fmt(means[k][m], k), m in best[k]) for k in METRICS]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(means['seconds'][m], 'seconds')} | "
                         f"{ran}/{len(bench.volumes)} |")
        lines += ["", "Per volume:", "", "| volume | method | PSNR | SSIM | VIF | seconds | note |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for vol in bench.volumes:
            rows = bench.rows(n, volume=vol)
            best = {k: _best({r.method: getattr(r, k) for r in rows if r.ok}) for k in METRICS}
            for r in rows:
                cells = [_bold(_fmt(getattr(r, k), k), r.method in best[k]) for k in METRICS]
                note = "" if r.ok else r.error.replace("|", "\\|")
                lines.append(f"| {vol} | {r.method} | " + " | ".join(cells) +
                             f" | {_fmt(r.seconds, 'seconds')} | {note} |")
        if n in bench.figures:
            lines += ["", f"![{n} views: axial, coronal and sagittal mid-slices]({bench.figures[n]})"]
    return "\n".join(lines) + "\n"


def write_reports(bench: Benchmark, out: Path) -> None:
    """``quality.csv``, ``quality.md`` and ``quality.json`` in ``out``."""
    out = Path(out)
    with atomic_path(out / "quality.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in bench.results:
            d = _row_dict(r)
            w.writerow(["" if d[c] is None or (isinstance(d[c], float) and math.isnan(d[c]))
                        else (f"{d[c]:.6g}" if isinstance(d[c], float) else d[c]) for c in CSV_COLUMNS])
    write_text(out / "quality.md", markdown_report(bench))
    summary = {str(n): {m: {k: strict_json(bench.mean(n, m, k)) for k in (*METRICS, "seconds")}
                        for m in bench.columns[n]} for n in bench.views}
    doc = {"settings": bench.settings, "volumes": bench.volumes, "views": bench.views,
           "methods": {str(n): cols for n, cols in bench.columns.items()}, "mean": summary,
           "results": [{k: strict_json(v) for k, v in _row_dict(r).items()} for r in bench.results],
           "figures": {str(n): f for n, f in bench.figures.items()}}
    write_text(out / "quality.json", json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------------- figure
def slices_figure(path, reference: np.ndarray, reconstructions: dict, spacing=(1.0, 1.0, 1.0),
                  tile: int | None = None, title: str = "", diff_scale: float | None = None,
                  scores: dict | None = None) -> Path:
    """The comparison figure (:func:`deepsparse_core.evaluation.figures.comparison_figure`) of one held-out volume."""
    return comparison_figure(path, reference, reconstructions, spacing, scores=scores, title=title, tile=tile,
                             error_range=diff_scale)


# ---------------------------------------------------------------------------- command line
def cmd_benchmark_quality(args) -> int:
    from ..progress import mode

    bench = run_benchmark(args.data, args.out, views=args.views, methods=args.methods,
                          model_specs=args.model or (), split=args.split, sart_iterations=args.sart_iterations,
                          device=args.device, limit=args.limit, data_consistency=args.data_consistency,
                          bundled=not args.no_bundled, show_progress=mode() == "bar", protocol=args.protocol)
    out = Path(args.out)
    failed = sum(not r.ok for r in bench.results)
    for n in bench.views:
        means = ", ".join(f"{m} {_fmt(bench.mean(n, m, 'psnr'), 'psnr')} dB" for m in bench.columns[n])
        print(f"{n} views: mean PSNR {means}")
    print(f"wrote {out / 'quality.md'}, quality.csv, quality.json and {len(bench.figures)} figure(s)"
          + (f"; {failed} reconstruction(s) n/a (see the table)" if failed else ""))
    emit("result", report=str(out / "quality.md"), csv=str(out / "quality.csv"),
         json=str(out / "quality.json"), figures=[str(out / f) for f in bench.figures.values()], failed=failed)
    return 0


def add_quality_parser(subparsers):
    """Register ``benchmark-quality`` on the CLI's subparsers; returns the parser."""
    p = subparsers.add_parser("benchmark-quality",
                              help="FDK, SART and DiCE on held-out volumes: PSNR/SSIM/VIF table, times, slice figures")
    p.add_argument("data", nargs="+", metavar="DATA",
                   help="a training-cache folder (its split file picks the volumes) or candidate cache files")
    p.add_argument("--out", required=True, help="output folder for quality.csv/.md/.json and slices_<n>views.png")
    p.add_argument("--views", nargs="+", type=int, default=list(DEFAULT_VIEWS), help="view counts (default 6 8 10)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="methods to compare (default all); dice = the bundled models plus every --model")
    p.add_argument("--model", nargs="+", action="extend", metavar="[NAME:]N=PATH",
                   help="extra DiCE models, e.g. 6=model.safetensors or scratch:6=a.safetensors (N may be a "
                        "comma list: pre:6,8,10=b.safetensors); compared side by side under their names")
    p.add_argument("--no-bundled", action="store_true", help="do not include the bundled DiCE models")
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
                   help="which split of a cache folder (default test, falling back to val)")
    p.add_argument("--sart-iterations", type=int, default=20, help="SART iterations (default 20)")
    p.add_argument("--data-consistency", type=int, default=None, metavar="STEPS",
                   help="DiCE data-consistency refinement passes, 0 = the network alone "
                        "(default: each model card's recommendation)")
    add_device_argument(p)
    p.add_argument("--limit", type=int, metavar="K", help="evaluate only the first K volumes")
    p.add_argument("--protocol", choices=PROTOCOLS, default="ours",
                   help="ours (as the options say; the default) or paper: the network alone, noise-free caches at "
                        "the preset's grid, the authors' views, the only numbers comparable with the paper's "
                        "Tables 2-3 (refused when the caches do not qualify)")
    p.set_defaults(func=cmd_benchmark_quality)
    return p


__all__ = ["Variant", "ModelSpec", "Result", "Benchmark", "parse_model_spec", "variants_for", "held_out_files",
           "sparse_views", "run_benchmark", "markdown_report", "write_reports", "slices_figure", "figure_size",
           "add_quality_parser", "cmd_benchmark_quality"]
