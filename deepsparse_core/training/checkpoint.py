"""Run folders: everything needed to continue training exactly, with no pickle anywhere.

A run folder holds

* ``model.safetensors``: the weights (:func:`~deepsparse_core.model.model_file.save_model`; the card
  records stage and step), usable directly as a model file;
* ``optimizer.safetensors``: the optimizer state flattened to tensors ``state.<param name>.<key>``,
  its param groups (hyper-parameters) as JSON metadata;
* ``rng.safetensors``: each process's torch CPU (and CUDA) generator state as uint8 tensors;
* ``state.json``: step, stage, training config, the numpy bit-generator state of each process, best
  validation PSNR, elapsed time, written last;
* ``best.safetensors`` (model with the best validation PSNR) and ``log.jsonl`` (metrics), optional.

Saving writes all four files under temporary names first, then renames them into place with
``state.json`` last, so a crash while writing (the slow part) leaves the previous checkpoint intact.
Each file carries the step in its metadata; :func:`load_run` refuses a folder whose files disagree
(a crash in the few microseconds between renames) instead of resuming from a mix.
Files are read with safetensors / json only: never ``torch.load``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..model.model_file import load_model, read_model_metadata, save_model
from ..progress import strict_json

RUN_FORMAT = "deepsparse-training-run"
RUN_VERSION = "1"
OPTIMIZER_FORMAT = "deepsparse-optimizer"
RNG_FORMAT = "deepsparse-rng"
FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")  # numpy's; state.json may name only these


class CheckpointError(InputError):
    """A run folder or checkpoint file is missing, corrupt, foreign or inconsistent."""


# ---------------------------------------------------------------------------- RNG state
def rng_state(rng: np.random.Generator, device: torch.device) -> dict:
    """This process's generator states as JSON-able data (torch states base64)."""
    state = {"numpy": rng.bit_generator.state,
             "torch_cpu": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if device.type == "cuda":
        state["torch_cuda"] = base64.b64encode(torch.cuda.get_rng_state(device).numpy().tobytes()).decode()
    return state


def restore_rng(state: dict, device: torch.device) -> np.random.Generator:
    """Set the torch generators from ``state`` and return the numpy generator it describes."""
    torch.set_rng_state(_bytes_tensor(state["torch_cpu"]))
    if device.type == "cuda" and "torch_cuda" in state:
        torch.cuda.set_rng_state(_bytes_tensor(state["torch_cuda"]), device)
    numpy_state = state.get("numpy")
    name = numpy_state.get("bit_generator") if isinstance(numpy_state, dict) else None
    if name not in BIT_GENERATORS:
        raise CheckpointError(f"state.json names an unknown numpy bit generator {name!r}; "
                              f"expected one of {', '.join(BIT_GENERATORS)}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = numpy_state
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"state.json holds a corrupt {name} generator state ({e})") from None
    return np.random.Generator(bit_generator)


def _bytes_tensor(b64: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(b64)), dtype=torch.uint8).clone()


# ---------------------------------------------------------------------------- optimizer state
def optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict, dict]:
    """(tensors, metadata) of ``optimizer.state_dict()``; ``names`` maps id(param) -> parameter name so
    the state is keyed by name, not by position."""
    sd = optimizer.state_dict()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    index_name = {i: names[id(p)] for i, p in enumerate(params)}
    tensors, scalars = {}, {}
    for i, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index_name[i]}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index_name[i]}.{key}"] = value
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index_name[i] for i in g["params"]]}
              for g in sd["param_groups"]]
    meta = {"format": OPTIMIZER_FORMAT, "class": type(optimizer).__name__,
            "param_groups": json.dumps(groups), "scalars": json.dumps(scalars)}
    return tensors, meta


def load_optimizer_state(optimizer: torch.optim.Optimizer, path: Path, names: dict[int, str]) -> None:
    """Restore ``optimizer`` from :func:`optimizer_tensors` output saved at ``path``."""
    tensors, meta = _read_safetensors(path, OPTIMIZER_FORMAT)
    if meta.get("class") != type(optimizer).__name__:
        raise CheckpointError(f"{path} holds a {meta.get('class')} state, not {type(optimizer).__name__}")
    try:
        groups, scalars = json.loads(meta["param_groups"]), json.loads(meta["scalars"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has corrupt metadata ({e})") from None
    params = [p for g in optimizer.param_groups for p in g["params"]]
    index = {names[id(p)]: i for i, p in enumerate(params)}
    saved = [n for g in groups for n in g["params"]]
    if sorted(saved) != sorted(index) or len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"{path} does not match the trainable parameters of this model/stage "
                              f"({len(saved)} saved, {len(index)} now)")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, rest = key.split(".", 1)
        name, field = rest.rsplit(".", 1)
        state.setdefault(index[name], {})[field] = value
    for key, value in scalars.items():
        name, field = key.rsplit(".", 1)
        state.setdefault(index[name], {})[field] = value
    current = optimizer.state_dict()["param_groups"]
    param_groups = []
    for g, now in zip(groups, current):
        g = {k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in g.items()}
        param_groups.append({**g, "params": [index[n] for n in g["params"]]})
    for i, st in state.items():
        p = params[i]
        for field, value in st.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                raise CheckpointError(f"{path}: state {field} of {names[id(p)]} has shape {tuple(value.shape)}, "
                                      f"expected {tuple(p.shape)}")
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


# ---------------------------------------------------------------------------- run folder
@contextlib.contextmanager
def run_lock(run_dir: str | Path):
    """Hold an exclusive lock on the run folder (created if needed) while training into it.

    The lock is ``flock`` on the folder itself, so no lock file is ever left behind; a second
    ``train`` into the same folder fails at once with one line. Temporaries of a checkpoint that a
    kill cut short (``.<file>.pending``) are removed once the lock is held. A folder this call created and
    that is still empty on exit (the run failed before writing anything) is removed again.
    """
    from ..outputs import check_output_folder, folder_lock

    run_dir = check_output_folder(run_dir)  # not a file, writable: before anything is made
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the run folder {run_dir}: {e.strerror}") from None
    try:
        with folder_lock(run_dir, f"another training run is using {run_dir}; wait for it to finish or choose "
                                  "another --out", CheckpointError):
            for stale in run_dir.glob(".*.pending"):  # a checkpoint cut short (SIGKILL): the lock says nobody writes
                with contextlib.suppress(OSError):
                    stale.unlink()
            yield run_dir
    finally:
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only succeeds while empty


@dataclass
class RunState:
    """Parsed ``state.json``."""

    step: int
    stage: dict
    config: dict
    rng: list[dict]              # one per process (rank order)
    best_val_psnr: float | None
    elapsed_s: float
    extra: dict


def save_run(run_dir: str | Path, model, optimizer, names: dict[int, str], step: int, stage: dict,
             config: dict, rng_states: list[dict], geometry, n_views: int | None,
             best_val_psnr: float | None, elapsed_s: float, extra: dict | None = None) -> Path:
    """Write a checkpoint of ``model`` (unwrapped DiCE) and ``optimizer`` into ``run_dir``."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    card = {"stage": stage["name"], "step": step, "best_val_psnr": strict_json(best_val_psnr)}
    pending = {name: run_dir / f".{name}.pending" for name in FILES}
    try:
        save_model(pending["model.safetensors"], model, geometry=geometry, n_views=n_views, card=card)
        tensors, meta = optimizer_tensors(optimizer, names)
        save_file(tensors, str(pending["optimizer.safetensors"]), metadata={**meta, "step": str(step)})
        rng_tensors = {}
        for rank, st in enumerate(rng_states):
            rng_tensors[f"torch_cpu.{rank}"] = _bytes_tensor(st["torch_cpu"])
            if "torch_cuda" in st:
                rng_tensors[f"torch_cuda.{rank}"] = _bytes_tensor(st["torch_cuda"])
        save_file(rng_tensors, str(pending["rng.safetensors"]), metadata={"format": RNG_FORMAT, "step": str(step)})
        state = {"format": RUN_FORMAT, "version": RUN_VERSION, "step": step, "stage": stage, "config": config,
                 "rng": {"numpy": [st["numpy"] for st in rng_states]},
                 "best_val_psnr": strict_json(best_val_psnr), "elapsed_s": elapsed_s, **(extra or {})}
        pending["state.json"].write_text(json.dumps(state, indent=1))
        for path in pending.values():
            _fsync(path)
        for name in FILES:  # state.json last
            os.replace(pending[name], run_dir / name)
        _fsync_dir(run_dir)
    finally:
        for path in pending.values():
            if path.exists():
                path.unlink()
    return run_dir


def read_state(run_dir: str | Path) -> RunState:
    """``state.json`` of a run folder, validated."""
    path = Path(run_dir) / "state.json"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir}: {path.name} not found")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e})") from None
    if not isinstance(d, dict) or d.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{path} is not a DeepSparse training state")
    if d.get("version") != RUN_VERSION:
        raise CheckpointError(f"{path} has version {d.get('version')}, expected {RUN_VERSION}")
    known = {"format", "version", "step", "stage", "config", "rng", "best_val_psnr", "elapsed_s"}
    missing = sorted(k for k in known if k not in d and k != "best_val_psnr")
    if missing:
        raise CheckpointError(f"{path}: the run state is damaged: {', '.join(missing)} missing")
    from .stages import STAGES

    def damaged(field, value, want):
        return CheckpointError(f"{path}: the run state is damaged: {field} is {value!r}, expected {want}")

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    step, stage, rng = d["step"], d["stage"], d["rng"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise damaged("step", step, "a whole number >= 0")
    if not isinstance(stage, dict) or stage.get("name") not in STAGES:
        raise damaged("stage", stage if not isinstance(stage, dict) else stage.get("name"),
                      f"a stage named one of {', '.join(STAGES)}")
    if not isinstance(d["config"], dict):
        raise damaged("config", d["config"], "an object")
    states = rng.get("numpy") if isinstance(rng, dict) else None
    if not isinstance(states, list) or not states or not all(isinstance(st, dict) and st for st in states):
        raise damaged("rng", rng, "the numpy generator state of each process")
    if not number(d["elapsed_s"]) or d["elapsed_s"] < 0:
        raise damaged("elapsed_s", d["elapsed_s"], "a finite number of seconds >= 0")
    best = d.get("best_val_psnr")
    if best is not None and not number(best):
        raise damaged("best_val_psnr", best, "a finite number or null")
    if "cpu_s" in d and (not number(d["cpu_s"]) or d["cpu_s"] < 0):
        raise damaged("cpu_s", d["cpu_s"], "a finite number of seconds >= 0")
    return RunState(step=step, stage=dict(stage), config=dict(d["config"]),
                    rng=[{"numpy": st} for st in states], best_val_psnr=best,
                    elapsed_s=float(d["elapsed_s"]), extra={k: v for k, v in d.items() if k not in known})


def load_run(run_dir: str | Path, device="cpu"):
    """(model in eval mode, model metadata, RunState) of a run folder, checked for consistency.

    The torch generator states are merged into ``RunState.rng`` (base64, like :func:`rng_state`).
    """
    run_dir = Path(run_dir)
    state = read_state(run_dir)
    meta = read_model_metadata(run_dir / "model.safetensors")
    if meta["card"].get("step") != state.step:
        raise CheckpointError(f"{run_dir}: model.safetensors is from step {meta['card'].get('step')} but state.json "
                              f"from step {state.step}; the run was interrupted while saving")
    model, meta = load_model(run_dir / "model.safetensors", device=device)
    tensors, rng_meta = _read_safetensors(run_dir / "rng.safetensors", RNG_FORMAT)
    _, opt_meta = _read_safetensors(run_dir / "optimizer.safetensors", OPTIMIZER_FORMAT, tensors=False)
    for name, m in (("rng.safetensors", rng_meta), ("optimizer.safetensors", opt_meta)):
        if m.get("step") != str(state.step):
            raise CheckpointError(f"{run_dir}: {name} is from step {m.get('step')} but state.json from step "
                                  f"{state.step}; the run was interrupted while saving")
    for rank, st in enumerate(state.rng):
        if f"torch_cpu.{rank}" not in tensors:
            raise CheckpointError(f"{run_dir}/rng.safetensors lacks the generator state of process {rank}")
        st["torch_cpu"] = base64.b64encode(tensors[f"torch_cpu.{rank}"].numpy().tobytes()).decode()
        if f"torch_cuda.{rank}" in tensors:
            st["torch_cuda"] = base64.b64encode(tensors[f"torch_cuda.{rank}"].numpy().tobytes()).decode()
    return model, meta, state


def _read_safetensors(path: Path, fmt: str, tensors: bool = True) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != fmt:
                raise CheckpointError(f"{path} is not a DeepSparse {fmt.split('-', 1)[1]} file")
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {str(e).splitlines()[0]}") from None
    return out, meta


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
