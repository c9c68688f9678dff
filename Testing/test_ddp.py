"""Distributed data parallel training: two CPU processes (gloo) under torchrun on a tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepsparse_core.model import DiceConfig
from deepsparse_core.model.model_file import load_model
from deepsparse_core.training import make_synthetic_cache, small_geometry
from deepsparse_core.training.distributed import parameter_checksum

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_gloo_processes_train_in_step_and_rank0_checkpoints(tmp_path):
    data = tmp_path / "data"
    make_synthetic_cache(data, 2, small_geometry(32, 16, 16), seed=0)
    out = tmp_path / "run"
    config = tmp_path / "tiny-restart.json"  # with dead-code restarts: every rank takes part in their broadcast
    config.write_text(json.dumps({**DiceConfig.tiny().to_dict(), "codebook_restart": 1.0}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "deepsparse_core.training", "--progress", "json", "--stage", "pretrain", "--data", str(data),
           "--out", str(out), "--config", str(config), "--min-views", "2", "--max-views", "6", "--points", "200",
           "--batch-size", "1", "--steps", "3", "--device", "cpu", "--val-every", "0", "--log-every", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # only rank 0 reports: one JSON line per step, one result
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in lines if r["event"] == "progress"] == [1, 2, 3]
    assert sum(r["event"] == "result" for r in lines) == 1
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 3 and len(state["rng"]["numpy"]) == 2
    assert state["rng"]["numpy"][0] != state["rng"]["numpy"][1]          # one sampling stream per rank
    sums = state["rank_checksums"]
    model, _ = load_model(out / "model.safetensors")
    assert sums[0] == sums[1] == parameter_checksum(model)               # both ranks hold the saved weights
