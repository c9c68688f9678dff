"""``deepsparse bundle``: score a trained model on held-out CTs and write it as a bundled model with its card.

One day of a training campaign ends with::

    deepsparse bundle runs/day2/last.safetensors --held-out HELDOUT_DIR --info card_info.json \\
        --data-consistency auto --out deepsparse_core/models/dice_6-10views.safetensors --only-if-better

For every view count (default: the ends and the middle of the model's view range) and every held-out
CT (candidate caches, ``n`` uniform views from candidate 0): FDK, SART (20 iterations), the network
alone and the network with K data-consistency passes, scored with PSNR / SSIM / VIF. ``auto`` picks K
as the smallest of ``DC_CANDIDATES`` within 0.05 dB of the best mean PSNR at the lowest view count (a
PSNR / SSIM sweep first; VIF, which takes seconds per volume, only for the final scores).
The card (:mod:`deepsparse_core.model.card`) gets the scores, K, the campaign totals from the
training run's card, and what ``--info`` says (data, augmentation, licences, commands). With
``--only-if-better`` an existing bundled file is kept unless, at every scored view count, the new
model's mean PSNR with DC is higher and its network alone is not lower, on the same held-out CTs
with the same K (the larger of the two models' K): a bundled file whose card was scored on another
set, with another DC method or another K is scored again before the comparison. A better mean does not
hide a regional loss: the file is also kept when any held-out CT, at any scored view count, is more
than ``--max-ct-loss`` dB (default 0.3) below the bundled model with DC (campaign days 10 and 11: a
GPU-trained model that gained on every chest lost 0.6-1.1 dB on the only abdomen CT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..arguments import add_device_argument
from ..errors import InputError
from ..progress import dumps, emit, progress

DC_CANDIDATES = (0, 1, 2, 3, 5, 8, 12, 16, 20)   # data-consistency passes tried by --data-consistency auto
MAX_CT_LOSS = 0.3   # dB: the most any held-out CT may lose with DC for --only-if-better to replace a file
METRICS = ("psnr", "ssim", "vif")


def held_out_scores(model, files, views, ks=(0,), sart_iterations: int = 20, device: str = "cpu",
                    show_progress: bool = True, vif: bool = True, volumes: dict | None = None) -> dict:
    """``{n: {"fdk" | "sart" | k: {metric: mean}}}`` and per-volume rows, see the module docstring.

    The network output is computed once per volume and view count; each K refines that output.
    ``vif=False`` skips VIF (NaN), the slow metric (seconds per 128^3 volume), for sweeps.
    ``volumes``: a dict shared between calls that keeps every reconstruction (and the network's
    time), so a second call (the final scores after the sweep that chose K) recomputes nothing.
    """
    from ..evaluation.metrics import evaluate, psnr, ssim
    from ..evaluation.quality import sparse_views
    from ..inference import DiceReconstructor
    from ..physics.data_consistency import refine
    from ..reconstruct import reconstruct

    rec = DiceReconstructor(model, device)
    volumes = {} if volumes is None else volumes
    means, rows = {}, []
    with progress(len(views) * len(files), "held-out", enabled=show_progress, unit="scan") as bar:
        for n in views:
            per: dict = {}
            for path in files:
                data = sparse_views(Path(path), n)
                ref = data.reference
                cases = volumes.setdefault((n, str(path)), {})
                if 0 not in cases:
                    t0 = time.perf_counter()
                    cases[0] = rec.reconstruct(data, data_consistency=0)
                    cases["seconds"] = time.perf_counter() - t0
                if "fdk" not in cases:  # model-independent: a rescoring of another model passes them in
                    cases["fdk"] = reconstruct(data, "fdk").clamp(0, 1)
                if "sart" not in cases:
                    cases["sart"] = reconstruct(data, "sart", iterations=sart_iterations)
                for k in ks:
                    if k not in cases:
                        cases[k] = refine(cases[0], data.projections, data.geometry, iterations=k)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="VIF needs")
                    for name in ("fdk", "sart", *ks):
                        vol = cases[name]
                        s = {m: float(v) for m, v in evaluate(vol, ref).items()} if vif else \
                            {"psnr": psnr(vol, ref), "ssim": ssim(vol, ref), "vif": float("nan")}
                        per.setdefault(name, []).append(s)
                        rows.append({"volume": Path(path).stem, "views": n, "method": str(name), **s})
                bar.update(1)
            means[n] = {name: {m: _mean([s[m] for s in v]) for m in METRICS} for name, v in per.items()}
    seconds = [volumes[(n, str(p))]["seconds"] for n in views for p in files]
    return {"means": means, "rows": rows, "dice_seconds": float(np.mean(seconds))}


def _mean(values) -> float | None:
    """Mean of the finite values (VIF is NaN on slices under 41 pixels), None if there are none."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def recommended_k(means: dict, ks) -> int:
    """The smallest K within 0.05 dB of the best mean PSNR at the lowest scored view count."""
    lowest = means[min(means)]
    best = max(lowest[k]["psnr"] for k in ks)
    return min(k for k in ks if lowest[k]["psnr"] >= best - 0.05)


def build_card(model_path: Path, info: dict, scores: dict, k: int, files) -> dict:
    """The bundled card: ``info`` + architecture, views, totals and held-out scores."""
    from ..model.card import campaign_totals, history_card
    from ..model.model_file import load_model
    from ..physics.data_consistency import DC_METHOD

    model, meta = load_model(model_path)
    run_card = meta["card"]
    views = run_card.get("views") or info.get("views")
    if not views:
        raise InputError(f"{model_path} records no view range (card 'views'); give it in --info as "
                         '"views": {"min": a, "max": b}')
    cfg = model.config
    architecture = {"name": info.get("architecture", "DiCE"), "parameters": model.num_parameters(),
                    "summary": f"S={cfg.n_scales}, M={cfg.volume_resolution}, channels "
                               f"{list(cfg.scale_channels)}, decoder {cfg.decoder_channels}, "
                               f"codebooks {cfg.codebook_size}, point MLP {list(cfg.point_hidden)}"
                               + ("" if cfg.view_pool == "max" else f", view pool {cfg.view_pool}"),
                    "codebook_perplexity": model.codebook_perplexity()}
    held_out = {}
    for n, m in scores["means"].items():
        held_out[str(n)] = {"fdk": m["fdk"], "sart": m["sart"], "dice": m[0], "dice_dc": m[k]}
    training = dict(info.get("training", {}))
    bundled = run_card.get("training") if isinstance(run_card.get("training"), dict) else None
    if bundled is not None and not run_card.get("run"):
        # a bundled file scored again (a new held-out set or DC method): its own work, unchanged
        training.update({key: bundled.get(key) for key in ("totals", "last_run", "checkpoint")})
    else:
        # recomputed from the run and the model it started from (run or bundled card), not copied
        training["totals"] = campaign_totals(run_card.get("init_card"), run_card["run"]) if run_card.get("run") \
            else run_card.get("totals") or {}
        training["last_run"] = run_card.get("run")
        training["checkpoint"] = {"stage": run_card.get("stage"), "step": run_card.get("step"),
                                  "bn_batches": run_card.get("bn_batches")}
    card = {**{k2: v for k2, v in info.items() if k2 not in ("training", "architecture")},
            "architecture": architecture, "views": views, "training": training, "held_out": held_out,
            "held_out_volumes": [Path(f).stem for f in files], "held_out_rows": scores["rows"],
            "inference": {"data_consistency": int(k), **DC_METHOD, "seconds_128": round(scores["dice_seconds"], 2)},
            "init_card": history_card(run_card.get("init_card"))}
    return json.loads(dumps(card, default=float))   # strict JSON: non-finite scores become null


def same_dc_method(a: dict, b: dict) -> bool:
    """Whether two cards' ``inference`` entries record the same DC filtering (a missing key is 0: the
    cards before 2026-12-04 had plain passes, those before its seventh session no garrote nor final TV)."""
    from ..physics.data_consistency import DC_METHOD

    return all(float(a.get(key) or 0.0) == float(b.get(key) or 0.0) for key in DC_METHOD)


def _compared_k(card: dict, old_card: dict) -> int:
    """The DC passes two models are compared with: the larger of the two cards' K."""
    return max(int(card["inference"]["data_consistency"]),
               int((old_card.get("inference") or {}).get("data_consistency", 0)))


def _better(card: dict, existing: Path, rescore=None, score_candidate=None,
            old_card: dict | None = None) -> tuple[bool, str]:
    """Whether ``card``'s model beats the bundled file's at every scored view count: its mean PSNR
    with DC higher and its network alone not lower, both models with the same K passes.

    K is the larger of the two cards' K, so neither model is compared with fewer passes than it ships
    with (a day-7 model once won only because it was scored with 16 passes against the bundled
    card's 12). ``score_candidate(k)`` scores the new model with ``k`` passes when that is not its
    own K. The bundled card's stored means are used when they were scored on the same held-out CTs,
    with the same DC method and that K; otherwise ``rescore(model_path, k)`` scores the bundled model
    now. Both return ``{n: {"dice" | "dice_dc": {metric: mean}}}``. ``old_card``: the bundled file's
    card when the caller has read it already (else it is read from ``existing``).
    """
    from ..model.card import read_card

    if old_card is None:
        try:
            old_card = read_card(existing)
        except InputError:
            return True, f"{existing} is unreadable"
    old = old_card.get("held_out") or {}
    k_new = int(card["inference"]["data_consistency"])
    old_inference = old_card.get("inference") or {}
    k_old = int(old_inference.get("data_consistency", 0))
    k = _compared_k(card, old_card)
    new = card["held_out"]
    if k != k_new:
        if score_candidate is None:
            return False, f"{existing} ships with {k_old} DC passes and the new model was not scored with them"
        new = score_candidate(k)
    same_method = same_dc_method(old_inference, card["inference"])
    same_set = old_card.get("held_out_volumes") == card["held_out_volumes"] and set(new) <= set(old)
    comparable = same_set and same_method and k_old == k
    if not comparable:
        if rescore is None:
            return False, f"{existing} was scored on other held-out CTs, another DC method or K; cannot compare"
        old = rescore(existing, k)
    note = "" if comparable else " (rescored)"
    for n, rows in new.items():
        if n not in old:
            continue
        if rows["dice"]["psnr"] < old[n]["dice"]["psnr"]:
            return False, (f"{n} views: the network alone, {rows['dice']['psnr']:.2f} dB, is below the bundled "
                           f"{old[n]['dice']['psnr']:.2f} dB" + note)
        if rows["dice_dc"]["psnr"] <= old[n]["dice_dc"]["psnr"]:
            return False, (f"{n} views: {rows['dice_dc']['psnr']:.2f} dB with {k} DC passes is not above the "
                           f"bundled {old[n]['dice_dc']['psnr']:.2f} dB" + note)
    return True, f"better at every scored view count, alone and with {k} DC passes" + \
        ("" if comparable else " (bundled model rescored)")


def worst_ct_loss(new_rows, old_rows, k) -> tuple[float, str, int, float, float] | None:
    """The held-out CT and view count where the new model's PSNR with ``k`` DC passes falls furthest
    below the old one's: ``(loss dB, volume, views, new dB, old dB)``; None when no (volume, views)
    pair is in both row lists. Rows as in :func:`held_out_scores` (``method`` is ``str(k)``)."""
    def psnr(rows):
        return {(r["volume"], int(r["views"])): r["psnr"] for r in rows
                if r.get("method") == str(k) and r.get("psnr") is not None}

    new, old = psnr(new_rows), psnr(old_rows)
    pairs = [(old[key] - new[key], *key, new[key], old[key]) for key in new if key in old]
    return max(pairs) if pairs else None


def cmd_bundle(args) -> int:
    from ..evaluation.quality import held_out_files
    from ..model.card import card_markdown, write_bundled
    from ..model.model_file import read_model_metadata
    from ..outputs import check_output_file
    from ..progress import mode

    model = Path(args.model)
    if Path(args.out).suffix != ".safetensors":
        raise InputError(f"--out {args.out}: a model file ends in .safetensors")
    if args.markdown:
        check_output_file(args.markdown, create_folder=False)
    meta = read_model_metadata(model)
    out = check_output_file(args.out)
    try:
        info = json.loads(Path(args.info).read_text()) if args.info else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read --info {args.info}: {str(e).splitlines()[0]}") from None
    if not isinstance(info, dict):
        raise InputError("--info must hold a JSON object")
    if args.views and min(args.views) < 1:
        raise InputError(f"--views must be >= 1, got {min(args.views)}")
    if not args.max_ct_loss >= 0:
        raise InputError(f"--max-ct-loss must be a number of dB >= 0 (inf: no per-CT check), got {args.max_ct_loss}")
    files = held_out_files(args.held_out if len(args.held_out) > 1 else args.held_out[0])
    views = meta["card"].get("views") or info.get("views") or {}
    if not (isinstance(views, dict) and all(isinstance(views.get(k, 6), int) and not isinstance(views.get(k, 6), bool)
                                            and views.get(k, 6) >= 1 for k in ("min", "max"))):
        raise InputError(f"the view range must be {{\"min\": a, \"max\": b}} with whole numbers >= 1, got {views!r}")
    counts = args.views or sorted({views.get("min", 6), (views.get("min", 6) + views.get("max", 6)) // 2,
                                   views.get("max", 6)})
    volumes: dict = {}   # the sweep's reconstructions, reused by the final scores
    if args.data_consistency == "auto":   # sweep K at the lowest view count (no VIF), then score with it
        sweep = held_out_scores(model, files, counts[:1], DC_CANDIDATES, args.sart_iterations, args.device,
                                show_progress=mode() == "bar", vif=False, volumes=volumes)
        ks = tuple(sorted({0, recommended_k(sweep["means"], DC_CANDIDATES)}))
    else:
        try:
            ks = tuple(sorted({0, int(args.data_consistency)}))
        except ValueError:
            raise InputError(f"--data-consistency takes a number >= 0 or auto, got {args.data_consistency!r}") from None
        if ks[0] < 0:
            raise InputError("--data-consistency must be >= 0")
    scores = held_out_scores(model, files, counts, ks, args.sart_iterations, args.device,
                             show_progress=mode() == "bar", volumes=volumes)
    k = max(ks)
    card = build_card(model, info, scores, k, files)
    for n, rows in card["held_out"].items():
        print(f"{n} views: FDK {rows['fdk']['psnr']:.2f}, SART {rows['sart']['psnr']:.2f}, DiCE "
              f"{rows['dice']['psnr']:.2f}, DiCE + {k} DC {rows['dice_dc']['psnr']:.2f} dB (mean of {len(files)})")
    if args.only_if_better and out.exists():
        rescored: dict = {}
        candidate: dict = {}

        def alone_and_dc(path, k, cache):
            """``path`` scored with 0 and ``k`` passes (no VIF), reusing ``cache``'s reconstructions."""
            scores = held_out_scores(path, files, counts, tuple(sorted({0, k})), args.sart_iterations, args.device,
                                     show_progress=mode() == "bar", vif=False, volumes=cache)
            return scores, {str(n): {"dice": m[0], "dice_dc": m[k]} for n, m in scores["means"].items()}

        def rescore(path, k):
            print(f"the bundled {path.name} was scored on other held-out CTs, another DC method or another K: "
                  f"scoring it on these ({len(files)}) with {k} DC passes", file=sys.stderr)
            shared = {key: {"fdk": c["fdk"], "sart": c["sart"]} for key, c in volumes.items()}  # same views
            old, means = alone_and_dc(path, k, shared)
            rescored.update(rows=old["rows"], k=k)
            for n, m in means.items():
                print(f"{n} views, bundled: DiCE {m['dice']['psnr']:.2f}, DiCE + {k} DC {m['dice_dc']['psnr']:.2f} dB "
                      f"(mean of {len(files)})")
            return means

        def score_candidate(k_old):
            print(f"the bundled {out.name} ships with {k_old} DC passes: scoring the new model with them too",
                  file=sys.stderr)
            scores, means = alone_and_dc(model, k_old, volumes)
            candidate.update(rows=scores["rows"])
            return means

        from ..model.card import read_card

        try:
            old_card = read_card(out)   # read once: for the means and for the per-CT guard
        except InputError:
            old_card = None             # unreadable: _better says so, and the file is replaced
        better, why = _better(card, out, rescore, score_candidate, old_card=old_card)
        if better and old_card is not None and args.max_ct_loss != float("inf"):
            k_cmp = _compared_k(card, old_card)   # the K of the rows compared, whichever model was rescored
            worst = worst_ct_loss(candidate.get("rows") or card["held_out_rows"],
                                  rescored.get("rows") or old_card.get("held_out_rows") or [], k_cmp)
            if worst is None:
                better, why = False, (f"{out} has no per-CT rows on these held-out CTs to check --max-ct-loss "
                                      "against (give --max-ct-loss inf to compare the means only)")
            elif worst[0] > args.max_ct_loss:
                loss, volume, n, new_db, old_db = worst
                better, why = False, (f"{volume} at {n} views: {new_db:.2f} dB with {k_cmp} DC passes, "
                                      f"{loss:.2f} dB below the bundled {old_db:.2f} dB (more than "
                                      f"--max-ct-loss {args.max_ct_loss:g}), although the means are better")
        if not better:
            print(f"kept {out}: {why}")
            if args.markdown:  # the candidate's card, and the kept model's per-CT scores when rescored
                from ..atomic import write_text
                from ..model.card import per_ct_markdown

                kept = "" if not rescored else (
                    f"\n{out.name} (kept), rescored on {len(files)} held-out CTs with {rescored['k']} DC passes\n"
                    + per_ct_markdown(rescored["rows"], rescored["k"], info.get("mean_also_without")))
                write_text(args.markdown, f"Not bundled ({why}):\n\n" + card_markdown(model.name, card) + kept)
            emit("result", written=False, reason=why)
            return 0
    path = write_bundled(model, out, card)
    if args.markdown:
        from ..atomic import write_text

        write_text(args.markdown, card_markdown(path.name, card))
    print(f"wrote {path} ({path.stat().st_size / 2 ** 20:.2f} MiB, data consistency {k})")
    emit("result", written=True, path=str(path), data_consistency=k)
    return 0


def add_bundle_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bundle", help="score a trained model on held-out CTs and write it with its model card",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="trained model file (a run's last.safetensors or best.safetensors)")
    p.add_argument("--held-out", nargs="+", required=True, metavar="DATA",
                   help="held-out candidate caches or a prepared folder (its test split, else val)")
    p.add_argument("--info", metavar="FILE.json", help="card fields: data, augmentation, licences, commands, ...")
    p.add_argument("--views", nargs="+", type=int, help="view counts to score (default: the model's range ends and middle)")
    p.add_argument("--data-consistency", default="auto", metavar="K|auto",
                   help=f"recommended passes, or auto: the best of {', '.join(map(str, DC_CANDIDATES))} (default auto)")
    p.add_argument("--sart-iterations", type=int, default=20, help="SART iterations of the baseline (default 20)")
    p.add_argument("--only-if-better", action="store_true",
                   help="keep an existing --out unless the new model scores higher with DC (same K) and not lower "
                        "alone at every view count, and no held-out CT loses more than --max-ct-loss with DC")
    p.add_argument("--max-ct-loss", type=float, default=MAX_CT_LOSS, metavar="DB",
                   help=f"with --only-if-better: the most dB any held-out CT may lose with DC at any view count "
                        f"(default {MAX_CT_LOSS}; inf: the means only)")
    p.add_argument("--markdown", metavar="FILE.md",
                   help="also write the card as Markdown (with --only-if-better and a kept file: the new model's "
                        "card, why it was not bundled, and the kept model's rescored per-CT rows)")
    add_device_argument(p)
    p.add_argument("--out", required=True, help="bundled model file (float16 .safetensors)")
    p.set_defaults(func=cmd_bundle)
    return p
