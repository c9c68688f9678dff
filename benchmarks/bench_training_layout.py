"""Training throughput by process layout: the cores as one process with T threads, or P processes
(torchrun, DDP over gloo) with fewer threads each.

Usage:
    python benchmarks/bench_training_layout.py [--layouts 1x2 2x1] [--global-batch 2] [--steps 40]
        [--warmup 5] [--config docs/recipes/cpu64-meanmax-mlp128.json] [--points 8000] [--json FILE]

A layout PxT is P processes of T threads each (``OMP_NUM_THREADS=T``); every process draws
``--global-batch / P`` volumes a step, so each layout trains the same number of volume-samples a step.
For each layout, on a synthetic training folder at the ``fast`` preset (phantom caches, 48
candidates), a fresh run of the real ``python -m deepsparse_core.training`` does ``--warmup`` steps,
then is resumed for 10 more and again for ``--steps`` more. The rate is taken from rank 0's
``log.jsonl`` over the last invocation's logged steps (the loop alone: no start-up, no export). The
CPU seconds of a step are the difference of the two resumed invocations' CPU time (``getrusage`` of
the child processes, every process of the layout) over the difference of their steps, so start-up
and export cancel. Stage: scratch, n uniform in [6, 10] (the bundled model's). Run it on an idle
machine: it means to compare the layouts, and anything else on the cores distorts exactly that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_RECIPE = REPO / "docs" / "recipes" / "cpu64-meanmax-mlp128.json"
SHORT = 10   # steps of the short resumed invocation, whose CPU time is subtracted


def parse_layout(text: str) -> tuple[int, int]:
    """'2x1' -> (2 processes, 1 thread each)."""
    try:
        p, t = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bench_training_layout: a layout is PxT (processes x threads), e.g. 2x1; got {text!r}")
    if p < 1 or t < 1:
        raise SystemExit(f"bench_training_layout: processes and threads must be >= 1, got {text!r}")
    return p, t


def loop_rate(log_lines: list[str]) -> tuple[float, int]:
    """(seconds per step, steps timed) over the last invocation in a run's ``log.jsonl`` lines.

    ``elapsed_s`` restarts at each invocation; the rate is taken between the invocation's first and
    last logged training steps, so start-up before the first logged step does not count."""
    events = [json.loads(x) for x in log_lines if x.strip()]
    train = [e for e in events if e.get("event") == "train"]
    start = max((i for i in range(1, len(train)) if train[i]["elapsed_s"] <= train[i - 1]["elapsed_s"]), default=0)
    if len(train) - start < 2:
        raise ValueError("fewer than two logged training steps in the last invocation: raise --steps")
    first, last = train[start], train[-1]
    steps = last["step"] - first["step"]
    return (last["elapsed_s"] - first["elapsed_s"]) / steps, steps


def run_training(processes: int, threads: int, args: list[str]) -> float:
    """Run ``python -m deepsparse_core.training ARGS`` as ``processes`` x ``threads``; CPU seconds used."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    launcher = [sys.executable, "-m", "deepsparse_core.training"] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
         "-m", "deepsparse_core.training"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(launcher + ["--progress", "none"] + args, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench_training_layout: {processes}x{threads} failed: {tail}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="PxT: processes x threads (default 1x2 2x1)")
    ap.add_argument("--global-batch", type=int, default=2, help="volumes per step over all processes (default 2)")
    ap.add_argument("--steps", type=int, default=40, help="timed steps per layout (default 40)")
    ap.add_argument("--warmup", type=int, default=5, help="steps of the first invocation, not timed (default 5)")
    ap.add_argument("--config", default=str(SHIPPED_RECIPE), help="model config (default: the shipped width)")
    ap.add_argument("--points", type=int, default=8000)
    ap.add_argument("--json", help="also write the rows as JSON")
    a = ap.parse_args()
    layouts = [parse_layout(x) for x in a.layouts]
    for p, _ in layouts:
        if a.global_batch % p:
            raise SystemExit(f"bench_training_layout: --global-batch {a.global_batch} does not split over {p} processes")
    if a.steps < 20 or a.warmup < 1:
        raise SystemExit("bench_training_layout: --steps must be >= 20 (the loop logs every 10 steps) and --warmup >= 1")

    from deepsparse_core.physics.geometry import Geometry
    from deepsparse_core.training.synthetic import make_synthetic_cache

    print(f"fast preset, global batch {a.global_batch}, {a.points} points, {a.steps} timed steps, config "
          f"{Path(a.config).name}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    print(f"{'layout':>7s} {'s/step':>7s} {'volumes/s':>9s} {'CPU s/step':>10s} {'volumes/CPU-s':>13s} {'vs first':>8s}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        make_synthetic_cache(data, 6, Geometry.preset("fast", 48), seed=0)
        for p, t in layouts:
            out = work / f"run-{p}x{t}"
            common = ["--stage", "scratch", "--min-views", "6", "--max-views", "10", "--data", str(data),
                      "--out", str(out), "--batch-size", str(a.global_batch // p), "--points", str(a.points),
                      "--val-every", "0", "--checkpoint-every", "1000000", "--log-every", "10", "--device", "cpu",
                      "--bn-batches", "1", "--seed", "0"]
            run_training(p, t, common + ["--config", a.config, "--steps", str(a.warmup)])
            short = run_training(p, t, common + ["--resume", "--steps", str(a.warmup + SHORT)])
            long = run_training(p, t, common + ["--resume", "--steps", str(a.warmup + SHORT + a.steps)])
            sps, timed = loop_rate((out / "log.jsonl").read_text().splitlines())
            cpu_step = (long - short) / (a.steps - SHORT)
            row = {"layout": f"{p}x{t}", "processes": p, "threads": t, "s_per_step": sps,
                   "volumes_per_s": a.global_batch / sps, "cpu_s_per_step": cpu_step,
                   "volumes_per_cpu_s": a.global_batch / cpu_step, "timed_steps": timed}
            row["vs_first"] = row["volumes_per_cpu_s"] / (rows[0]["volumes_per_cpu_s"] if rows else row["volumes_per_cpu_s"])
            rows.append(row)
            print(f"{row['layout']:>7s} {sps:7.3f} {row['volumes_per_s']:9.2f} {row['cpu_s_per_step']:10.3f} "
                  f"{row['volumes_per_cpu_s']:13.2f} {row['vs_first']:7.2f}x", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
