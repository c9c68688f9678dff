"""The main job on an embedded default (README command 1).

A real sample CT -> preprocessed reference on the preset's grid -> sparse noisy projections ->
reconstructions (FDK, SART; DiCE when a bundled model exists) -> volumes, a metrics table and a
side-by-side PNG in one output folder.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from .atomic import atomic_path, write_text
from .data.projections_file import save_projections
from .data.simulate import simulate
from .data.volume_io import write_volume
from .evaluation.figures import comparison_figure
from .evaluation.metrics import evaluate
from .inference import bundled_model_path
from .physics.geometry import Geometry
from .physics.noise import NoiseModel
from .progress import emit, progress
from .reconstruct import reconstruct


def run_demo(out: str | Path, sample: str = "chest", n_views: int = 6, preset: str = "fast",
             noise: NoiseModel = NoiseModel(), seed: int = 0, device: str = "auto",
             sart_iterations: int = 20, ct_path: str | Path | None = None) -> dict:
    """Run the whole pipeline; returns {method: {psnr, ssim, vif, seconds}}. ``ct_path`` overrides ``sample``."""
    from .data import samples

    from .devices import resolve_device

    out = Path(out)
    ct = Path(ct_path) if ct_path else samples.fetch_sample(sample)  # bad input fails before --out is made
    geometry = Geometry.preset(preset, n_views)
    device = str(resolve_device(device))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run_demo(out, ct, geometry, sample, n_views, preset, noise, seed, device, sart_iterations, ct_path)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a folder this run made and wrote nothing into
        raise


def _run_demo(out: Path, ct: Path, geometry: Geometry, sample, n_views, preset, noise, seed, device,
              sart_iterations, ct_path) -> dict:
    print(f"CT: {ct}\ngeometry: {preset}, {geometry.views_phrase()}, "
          f"grid {geometry.volume_shape} at {geometry.volume_spacing[0]} mm, noise {'on' if noise.enabled else 'off'}")
    data = simulate(ct, geometry, noise, seed=seed, device=device)
    save_projections(out / "projections.safetensors", data)
    reference = data.reference.numpy()
    write_volume(data.to_volume(reference), out / "reference.nii.gz")

    runs = {"FDK": dict(method="fdk"), "SART": dict(method="sart", iterations=sart_iterations)}
    model = bundled_model_path(n_views)
    caveat = None
    if model is not None:
        from .inference import get_reconstructor
        from .model.card import read_card, trained_on

        k = get_reconstructor(model, device).recommended_data_consistency
        print(f"DiCE: bundled model {model.name}, {k} data-consistency passes (its card's recommendation)")
        runs["DiCE"] = dict(method="dice", model=str(model), data_consistency=k)
        if ct_path is None and trained_on(read_card(model), sample):
            caveat = (f"caveat: the '{sample}' CT is in {model.stem}'s training set (augmented variants), so DiCE's "
                      "score here is optimistic; its held-out scores are in docs/models.md")
            print(caveat)
    else:
        print(f"no bundled DiCE model for {n_views} views: reconstructing with FDK and SART only")
        stale = out / "dice.nii.gz"  # an earlier run's: this one writes none
        if stale.exists():
            stale.unlink()
            print(f"removed {stale.name} of an earlier run (no DiCE reconstruction in this one)")
    volumes, results = {"ground truth": reference}, {}
    for name, opts in runs.items():
        t0 = time.perf_counter()
        with progress(opts.get("iterations", 1), name) as bar:  # SART reports per iteration
            vol = reconstruct(data, device=device, progress=bar if opts["method"] == "sart" else None,
                              **opts).numpy()
        seconds = time.perf_counter() - t0
        scores = evaluate(vol, reference)
        results[name] = {**scores, "seconds": round(seconds, 3)}
        volumes[name] = vol
        write_volume(data.to_volume(vol), out / f"{name.lower()}.nii.gz")
        print(f"{name:5s} PSNR {scores['psnr']:6.2f} dB  SSIM {scores['ssim']:.3f}  VIF {scores['vif']:.3f}  "
              f"({seconds:.1f} s)")
        emit("result", method=name, **results[name])

    with atomic_path(out / "metrics.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "psnr_db", "ssim", "vif", "seconds"])
        for name, r in results.items():
            w.writerow([name, f"{r['psnr']:.3f}", f"{r['ssim']:.4f}", f"{r['vif']:.4f}", r["seconds"]])
    write_text(out / "metrics.json", json.dumps({"ct": str(ct), "preset": preset, "views": n_views,
                                                   "noise": noise.to_dict(), "results": results,
                                                   "dice_trained_on_this_ct": caveat is not None}, indent=1))
    reference_vol = volumes.pop("ground truth")
    centre = data.to_volume(reference).index_to_lps(np.array([s // 2 for s in reference.shape]))
    noise_text = (f"Poisson noise I0 = {noise.photons:.3g} photons/pixel + electronic sigma {noise.electronic_sigma:g}"
                  if noise.enabled else "no noise")
    notes = [f"{geometry.views_phrase()}, {noise_text}; SART {sart_iterations} iterations",
             f"slices through the grid centre: axial z = {centre[2]:.1f} mm, coronal y = {centre[1]:.1f} mm, "
             f"sagittal x = {centre[0]:.1f} mm (LPS); radiological view, superior up"]
    comparison_figure(out / "comparison.png", reference_vol, volumes, geometry.volume_spacing, scores=results,
                      title=f"{ct.name}, {preset} preset", hu_window=geometry.hu_window,
                      notes=notes + ([caveat] if caveat else []))
    names = ", ".join(f"{n.lower()}.nii.gz" for n in runs)
    print(f"outputs in {out.resolve()}: reference.nii.gz, {names}, projections.safetensors, "
          "metrics.csv, metrics.json, comparison.png")
    return results
