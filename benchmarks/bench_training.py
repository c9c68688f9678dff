"""Training throughput: the real training loop against a bare forward + backward + AdamW step.

Usage:
    python benchmarks/bench_training.py [--stages scratch scratch6-10 step1 step2] [--configs cpu64 small]
        [--steps 20] [--threads 2] [--batch-size 2] [--points 8000] [--device cpu]

For each stage and config, at the ``fast`` preset (128^2 detector, 128^3 grid) on a synthetic
training folder (phantom caches, 48 candidates), it prints steps/s and volume-samples/s of
``deepsparse_core.training.loop.train`` (everything the loop does per step: batch sampling from
the resident set, view sampling, loss, clipping, logging and stop checks; no validation) next to a
bare step of the same model on one fixed batch in the same process, and the loop's overhead as
their ratio. Both warm up for 2 steps first.

CPU timings on a shared machine: run with ``OMP_WAIT_POLICY=PASSIVE`` when other work loads the
cores (OpenMP spin-waiting otherwise multiplies the CPU time).

Stages: ``scratch`` [6 | 6]; ``scratch6-10`` n uniform in [6, 10], [n | n] (one model for 6-10
views); ``step1`` [6 | 24]; ``step2`` [6 | 6] + the 24-view denoise targets, encoder frozen.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deepsparse_core.model import DiCE
from deepsparse_core.model.config import model_config
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.training.data import CandidateSet
from deepsparse_core.training.initial_model import initial_model
from deepsparse_core.training.loop import TrainConfig, train
from deepsparse_core.training.stages import make_stage
from deepsparse_core.training.synthetic import make_synthetic_cache

CONFIGS = {  # cpu64: the bundled CPU model (docs/models.md); small: DiceConfig.small()
    "cpu64": {"base_channels": 8, "decoder_channels": 32, "volume_resolution": 16, "codebook_size": 256,
              "decoder_blocks": 1, "denoise_blocks": 2, "point_hidden": [64, 32, 16]},
    "small": "small",
}
STAGES = {"scratch": dict(stage="scratch", views=6), "scratch6-10": dict(stage="scratch", min_views=6, max_views=10),
          "step1": dict(stage="step1", views=6), "step2": dict(stage="step2", views=6)}


def bare_step_seconds(stage_args: dict, config, data: Path, steps: int, batch_size: int, points: int,
                      device: torch.device) -> float:
    """Seconds per step of forward + loss + backward + clip + AdamW on one fixed batch."""
    stage = make_stage(stage_args["stage"], stage_args.get("views"), stage_args.get("min_views", 6),
                       stage_args.get("max_views", 24))
    torch.manual_seed(0)
    model = DiCE(model_config(config))
    if stage.denoise:
        model.enable_denoise()
    model.freeze(*stage.frozen)
    model.to(device).train()
    train_set = CandidateSet(data, "train", device)
    sampler = stage.view_sampler(train_set.n_candidates, train_set.geometry.arc)
    b = train_set.batch(np.random.default_rng(0), batch_size, sampler, points)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-3, foreach=True)

    def one():
        out = model(b.projections, train_set.geometry, b.points, b.view_mask_2d, b.view_mask_3d, b.angles)
        loss, _ = stage.loss(out, b.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    for _ in range(2):
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


def loop_step_seconds(stage_args: dict, config, data: Path, work: Path, steps: int, batch_size: int,
                      points: int, device: str, init: str | None) -> float:
    """Seconds per step of the real loop (steps 3..2+steps of a fresh run: the first 2 warm up)."""
    common = dict(data=str(data), batch_size=batch_size, points=points, val_every=0, device=device,
                  checkpoint_every=10 ** 9, log_every=10, model=config, init=init,
                  **{k: v for k, v in stage_args.items()})
    run = work / f"run-{time.monotonic_ns()}"
    train(TrainConfig(out=str(run), steps=2, **common))
    result = train(TrainConfig(out=str(run), steps=2 + steps, resume=True, **common))
    return result.seconds / result.steps_run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--configs", nargs="+", default=["cpu64", "small"], choices=list(CONFIGS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--points", type=int, default=8000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write the rows as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    print(f"fast preset, batch {args.batch_size}, {args.points} points, {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, device {device}")
    print(f"{'stage':12s} {'config':6s} {'loop s/step':>11s} {'steps/s':>8s} {'volumes/s':>9s} "
          f"{'bare s/step':>11s} {'loop/bare':>9s}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        g = Geometry.preset("fast", 48)
        data = work / "data"
        make_synthetic_cache(data, 6, g, seed=0)
        for config_name in args.configs:
            config = CONFIGS[config_name]
            step1_model = None
            for stage_name in args.stages:
                stage_args = STAGES[stage_name]
                init = None
                if stage_args["stage"] == "step2":  # step 2 starts from a step-1 model: any weights will do
                    if step1_model is None:
                        torch.manual_seed(0)
                        m, _ = initial_model(make_stage("step1", 6), None, config)
                        from deepsparse_core.model.model_file import save_model

                        step1_model = str(save_model(work / f"{config_name}-step1.safetensors", m, g))
                    init = step1_model
                loop = loop_step_seconds(stage_args, config, data, work, args.steps, args.batch_size,
                                         args.points, args.device, init)
                bare = bare_step_seconds(stage_args, config, data, args.steps, args.batch_size, args.points, device)
                row = {"stage": stage_name, "config": config_name, "loop_s": loop, "steps_per_s": 1 / loop,
                       "volumes_per_s": args.batch_size / loop, "bare_s": bare, "ratio": loop / bare}
                rows.append(row)
                print(f"{stage_name:12s} {config_name:6s} {loop:11.3f} {1 / loop:8.2f} {args.batch_size / loop:9.2f} "
                      f"{bare:11.3f} {loop / bare:9.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
