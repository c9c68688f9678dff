"""Model cards: what a bundled DiCE file says about itself, and the float16 file that carries it.

A card is the ``card`` JSON of a model file (:mod:`.model_file`). A bundled model's card must hold
``CARD_FIELDS``:

* ``architecture``: the config name and parameter count (the config itself is in the metadata);
* ``views``: ``{"min": a, "max": b}``, the view counts it serves (read by the bundled-model lookup);
* ``data``: training CTs with their sources and licences, augmentation, phantoms, the held-out set;
* ``training``: the stages with their settings, and ``totals`` (steps, volume-samples, CPU-hours);
* ``held_out``: per view count, mean PSNR (dB) / SSIM / VIF of the model alone, the model with the
  recommended data consistency, FDK and SART on the held-out CTs;
* ``held_out_rows``: the same per held-out CT; ``mean_also_without`` (optional, from ``--info``):
  CT names left out of a second mean in the Markdown (a crop mostly in air inflates the mean);
* ``inference``: ``{"data_consistency": K, "correction_tv": w, "correction_threshold": t,
  "output_tv": v}``, the default refinement passes and how they were filtered when scored
  (:func:`~deepsparse_core.physics.data_consistency.refine`; a missing key is 0: plain passes before
  2026-12-04, no garrote nor final TV before its seventh session);
* ``commands``: the command lines that reproduce the file.

``docs/models.md`` repeats the cards (:func:`card_markdown`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import InputError

CARD_FIELDS = ("architecture", "views", "data", "training", "held_out", "inference", "commands")
MAX_BUNDLED_BYTES = 8 * 1024 ** 2   # per bundled file (issue: at most 8 MB)


TOTALS = ("steps", "volume_samples", "wall_hours", "cpu_hours")


def card_totals(card: dict | None) -> dict:
    """The campaign totals a model's card records: ``totals`` in a training run's card,
    ``training.totals`` in a bundled one (a warm start may begin from either); {} if none."""
    card = card or {}
    return card.get("totals") or (card.get("training") or {}).get("totals") or {}


def campaign_totals(init_card: dict | None, run: dict) -> dict:
    """The totals of the model ``init_card`` started from, plus this ``run``'s work (steps,
    volume-samples, wall and CPU hours), and one more run.

    A run on a GPU (``run["device"]`` "cuda") also adds its wall hours (times its processes) to
    ``gpu_hours``: its ``cpu_hours`` are only the host process's CPU time, which would understate
    the work."""
    before = card_totals(init_card)
    totals = {k: round(before.get(k, 0) + run[k], 6) for k in TOTALS}
    gpu = _gpu_hours(init_card) + _run_gpu_hours(run)
    if gpu:
        totals["gpu_hours"] = round(gpu, 6)
    totals["runs"] = before.get("runs", 0) + 1
    return totals


def _run_gpu_hours(run: dict | None) -> float:
    """A run's GPU-hours: its wall hours times its processes, when it ran on CUDA."""
    run = run or {}
    return run["wall_hours"] * run.get("processes", 1) if run.get("device") == "cuda" else 0.0


def _gpu_hours(card: dict | None) -> float:
    """The GPU-hours in a card's history. Cards written before ``gpu_hours`` existed lack the total:
    then it is rebuilt from the run the card records (``run``, or ``training.last_run`` in a bundled
    card) and, recursively, the card it started from."""
    card = card or {}
    totals = card_totals(card)
    if "gpu_hours" in totals:
        return totals["gpu_hours"]
    run = card.get("run") or (card.get("training") or {}).get("last_run")   # a run's card, or a bundled one
    return _run_gpu_hours(run) + (_gpu_hours(card["init_card"]) if card.get("init_card") else 0.0)


def history_card(card: dict | None) -> dict | None:
    """What a card keeps of the card of the model it started from (``init_card``): that model's
    campaign totals (GPU-hours included), view range, architecture and DC method, not its own
    ``init_card``. Cards used to nest every earlier card, about 30 KB more per campaign day; the
    totals already sum that history. Idempotent; None stays None."""
    if not card:
        return None
    totals = dict(card_totals(card))
    gpu = _gpu_hours(card)
    if gpu:
        totals["gpu_hours"] = round(gpu, 6)
    return {"totals": totals, **{k: card[k] for k in ("views", "architecture", "inference") if k in card}}


def missing_card_fields(card: dict) -> list[str]:
    """The required fields a card lacks or leaves empty (also checks the nested essentials)."""
    missing = [f for f in CARD_FIELDS if not card.get(f)]
    views = card.get("views") or {}
    if not (isinstance(views.get("min"), int) and isinstance(views.get("max"), int) and views["min"] <= views["max"]):
        missing.append("views.min/max")
    totals = (card.get("training") or {}).get("totals") or {}
    missing += [f"training.totals.{k}" for k in ("steps", "volume_samples", "cpu_hours") if k not in totals]
    if not isinstance((card.get("inference") or {}).get("data_consistency"), int):
        missing.append("inference.data_consistency")
    for n, rows in (card.get("held_out") or {}).items():
        for method in ("dice", "fdk", "sart"):
            if not isinstance((rows or {}).get(method, {}).get("psnr"), (int, float)):
                missing.append(f"held_out.{n}.{method}.psnr")
    return missing


def write_bundled(source: str | Path, out: str | Path, card: dict) -> Path:
    """Write ``source``'s model to ``out`` in float16 with ``card`` (complete, see ``CARD_FIELDS``)."""
    from .model_file import load_model, save_model

    missing = missing_card_fields(card)
    if missing:
        raise InputError(f"the model card lacks {', '.join(missing)}")
    model, meta = load_model(source)
    path = save_model(out, model, _geometry(meta), meta.get("n_views"), card=card, dtype=torch.float16)
    if path.stat().st_size > MAX_BUNDLED_BYTES:
        size = path.stat().st_size / 2 ** 20
        path.unlink()
        raise InputError(f"{out} would be {size:.1f} MiB, more than the {MAX_BUNDLED_BYTES // 2 ** 20} MiB "
                         "allowed for a bundled model")
    return path


def _geometry(meta: dict):
    from ..physics.geometry import Geometry

    g = meta.get("geometry")
    return Geometry.from_dict({**g, "n_views": 1, "arc_degrees": 180.0}) if g else None


def _dc_filtering(inference: dict) -> str:
    """The DC filtering of a card's ``inference`` in words, e.g. " (correction TV-denoised, weight 0.01)"."""
    parts = []
    if inference.get("correction_tv"):
        parts.append(f"correction TV-denoised, weight {inference['correction_tv']}")
    if inference.get("correction_threshold"):
        parts.append(f"correction garrote-thresholded at {inference['correction_threshold']}")
    if inference.get("output_tv"):
        parts.append(f"result TV-denoised, weight {inference['output_tv']}")
    return f" ({'; '.join(parts)})" if parts else ""


def _fmt(x, digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def card_markdown(name: str, card: dict) -> str:
    """The card as a Markdown section (``docs/models.md``)."""
    a, d, t = card["architecture"], card["data"], card["training"]
    views = card["views"]
    lines = [f"## `{name}`", "",
             f"- **Architecture:** {a.get('name', 'DiCE')}, {a['parameters']:,} parameters"
             + (f" ({a['summary']})" if a.get("summary") else "") + "."
             + (f" Codes in effective use per scale (perplexity of the EMA counts, finest first): "
                f"{', '.join(_fmt(x, 1) for x in a['codebook_perplexity'])}." if a.get("codebook_perplexity") else ""),
             f"- **Serves:** {views['min']}-{views['max']} views at the `{card.get('preset', 'fast')}` preset; "
             f"default data consistency: {card['inference']['data_consistency']} passes"
             + _dc_filtering(card["inference"]) + ".",
             f"- **Training CTs:** {', '.join(d['train'])}.",
             f"- **Augmentation:** {d['augmentation']}", f"- **Phantoms:** {d['phantoms']}",
             f"- **Held out (never trained on):** {', '.join(d['held_out'])}.", ""]
    tot = t["totals"]
    lines += [f"- **Training:** {t.get('summary', '')} Totals: {tot['steps']:,} steps, {tot['volume_samples']:,} "
              f"volume-samples, {tot['cpu_hours']:.2f} CPU-hours"
              + (f" and {tot['gpu_hours']:.2f} GPU-hours (the wall time of the runs on a GPU)"
                 if tot.get("gpu_hours") else "")
              + f" ({tot.get('wall_hours', 0):.2f} h wall, {tot.get('runs', 1)} run(s)).", ""]
    lines += ["Held-out mean over the held-out CTs (PSNR dB / SSIM / VIF):", "",
              "| views | FDK | SART | DiCE alone | DiCE + data consistency |", "|---:|---|---|---|---|"]
    for n, rows in sorted(card["held_out"].items(), key=lambda kv: int(kv[0])):
        cell = lambda r: "n/a" if not r else f"{_fmt(r.get('psnr'))} / {_fmt(r.get('ssim'), 3)} / {_fmt(r.get('vif'), 3)}"  # noqa: E731
        lines.append(f"| {n} | {cell(rows.get('fdk'))} | {cell(rows.get('sart'))} | {cell(rows.get('dice'))} | "
                     f"{cell(rows.get('dice_dc'))} |")
    lines += _per_ct_lines(card)
    lines += ["", "Reproduce:", "", "```bash", *card["commands"], "```", ""]
    return "\n".join(lines)


def per_ct_markdown(rows: list[dict], k: int, mean_also_without=None) -> str:
    """The per-CT table of :func:`card_markdown` for score ``rows`` (``held_out_scores``) with K passes."""
    return "\n".join(_per_ct_lines({"held_out_rows": rows, "inference": {"data_consistency": k},
                                     "mean_also_without": mean_also_without or []})) + "\n"


def _per_ct_lines(card: dict) -> list[str]:
    """Per held-out CT (PSNR dB / SSIM) and the DC margin over SART, from ``held_out_rows``; where
    ``mean_also_without`` names CTs (e.g. a crop mostly in air), the mean without them too."""
    rows = card.get("held_out_rows") or []
    if not rows:
        return []
    k = str(card["inference"]["data_consistency"])
    table: dict = {}
    for r in rows:
        table.setdefault((int(r["views"]), r["volume"]), {})[str(r["method"])] = r
    columns = ("fdk", "sart", "0", k)
    cell = lambda r: "n/a" if not r else f"{_fmt(r.get('psnr'))} / {_fmt(r.get('ssim'), 3)}"  # noqa: E731
    lines = ["", f"Per held-out CT (PSNR dB / SSIM; DiCE + DC has {k} passes):", "",
             "| views | CT | FDK | SART | DiCE alone | DiCE + DC | DC - SART | alone - SART |",
             "|---:|---|---|---|---|---|---:|---:|"]
    without = set(card.get("mean_also_without") or [])
    for n in sorted({n for n, _ in table}):
        names = sorted(v for m, v in table if m == n)
        for name in names:
            t = table[(n, name)]
            lines.append(f"| {n} | {name} | " + " | ".join(cell(t.get(c)) for c in columns)
                         + f" | {_margin(t, k)} | {_margin(t, '0')} |")
        groups = [("mean", names)] + ([(f"mean without {', '.join(sorted(without))}",
                                        [v for v in names if v not in without])] if without & set(names) else [])
        for label, members in groups:
            mean = {c: {m: _mean_of([table[(n, v)].get(c, {}).get(m) for v in members]) for m in ("psnr", "ssim")}
                    for c in columns}
            lines.append(f"| {n} | **{label}** ({len(members)}) | " + " | ".join(cell(mean[c]) for c in columns)
                         + f" | {_margin(mean, k)} | {_margin(mean, '0')} |")
    return lines


def _mean_of(values):
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _margin(t: dict, method: str) -> str:
    a, b = (t.get(method) or {}).get("psnr"), (t.get("sart") or {}).get("psnr")
    return "n/a" if a is None or b is None else f"{a - b:+.2f} dB"


def trained_on(card: dict, sample: str) -> bool:
    """Whether the card's training CTs (``data.train`` entries 'NAME: source...') include ``sample``."""
    entries = ((card.get("data") or {}).get("train") or []) if isinstance(card, dict) else []
    return any(isinstance(e, str) and e.split(":", 1)[0].strip() == sample for e in entries)


def read_card(path: str | Path) -> dict:
    """The card of a model file."""
    from .model_file import read_model_metadata

    return read_model_metadata(path)["card"]


def dump(path: str | Path) -> str:
    """The card of a model file as indented JSON."""
    return json.dumps(read_card(path), indent=1)
