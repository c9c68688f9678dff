"""The DiCE training loop: one loop, four stages (scratch, HyViP pretraining, finetuning steps 1 and 2).

:func:`train` sets up the processes and the device; ``_train`` then reads top to bottom: run folder
(new or resumed, ``_open_run``), data, optimizer, random streams, DDP, mixed precision, and the one
loop with its schedule, loss (:meth:`~.stages.Stage.loss`), clipping, stop rule, validation and
checkpoints. What the run writes (checkpoints, exported models, their card and CPU-hours) is
``_Run``'s. The stages differ only in their :class:`~.stages.Stage`: views, frozen groups and loss
weights.

Defaults are the released training script's (``code/train.py``): AdamW lr 1e-4, weight decay 1e-3,
gradient clipping 1.0, 10,000 points per volume, constant learning rate; batch size 2 per process
(released finetuning; the paper pretrains with 16 = 4 GPUs x 4).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ..arguments import check_seed
from ..errors import DeepSparseError, GeometryError, InputError
from ..model.card import campaign_totals, history_card
from ..model.model_file import save_model
from ..progress import Cancelled
from . import distributed
from .allocator import keep_freed_memory
from .checkpoint import load_optimizer_state, load_run, read_state, restore_rng, rng_state, run_lock, save_run
from .data import POINTS_PER_VOLUME, CandidateSet
from .initial_model import initial_model
from .log import TrainLog
from .stages import LAMBDA_D, LAMBDA_Q, STAGES, Stage, make_stage
from .validation import BN_BATCHES, calibrated_copy, validate


class TrainingError(DeepSparseError):
    """Training cannot go on (e.g. the loss diverged); the last checkpoint is intact."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved in ``state.json``. Fields marked (run) may change on resume."""

    data: str | list                    # training set folder, or several (run)
    out: str                            # run folder (run)
    val_data: str | list | None = None  # (run) validation volumes: the val split of these folders (default: data's)
    stage: str | None = None            # scratch | pretrain | step1 | step2 (None: resume's)
    views: int | None = None            # target n (step1/step2; scratch: fixed n; pretrain: validation n)
    min_views: int = 6                  # n_min, paper Sec. 3.5
    max_views: int = 24                 # n_max = M, paper Sec. 3.5
    view_weights: list | None = None    # scratch: relative weights of n = min..max views (None: uniform)
    init: str | None = None             # model file or run folder to start from
    model: str | dict | None = None     # paper | small | tiny | JSON file / dict; None: paper, or init's own
    #   with init: the architecture to warm-start into (tensors whose name and shape match are copied)
    steps: int | None = None            # stop after this many steps in total (run)
    minutes: float | None = None        # stop after this many minutes of this invocation (run)
    batch_size: int = 2                 # volumes per step and process (released: 2; paper pretraining: 16 on 4 GPUs)
    points: int = POINTS_PER_VOLUME     # points per volume, released 10,000
    edge_fraction: float = 0.0          # share of points drawn among edge voxels (0 = uniform, released)
    lr: float = 1e-4                    # released
    weight_decay: float = 1e-3          # released
    grad_clip: float = 1.0              # released; 0 = off
    schedule: str = "constant"          # constant (released) | cosine (to min_lr over decay_steps)
    warmup_steps: int = 0
    min_lr: float = 0.0
    decay_steps: int | None = None      # cosine horizon (default: steps)
    lambda_q: float = LAMBDA_Q          # quantization loss weight, released 0.1
    lambda_d: float = LAMBDA_D          # denoise loss weight (step 2), released 1.0
    val_every: int = 500                # (run) validate every k steps; 0 = never
    val_limit: int | None = 4           # (run) validation volumes (None = all)
    val_stride: int = 1                 # (run) evaluate every s-th voxel
    bn_batches: int = BN_BATCHES        # (run) batches averaged into the validated/exported BatchNorm statistics
    freeze_norm: bool = False           # BatchNorm statistics stay the initial model's (finetuning; bn_batches unused)
    checkpoint_every: int = 1000        # (run)
    log_every: int = 10                 # (run)
    seed: int = 0
    device: str = "auto"                # (run) auto | cpu | cuda
    data_on_device: bool = True         # (run) keep the training set on the training device
    amp: bool = True                    # bf16 autocast on CUDA (CPU always runs fp32)
    compile: bool = False               # (run) torch.compile
    tensorboard: bool = False           # (run)
    resume: bool = False                # (run) continue the run in ``out``: its config, (run) fields from here

    RUN_FIELDS = ("data", "val_data", "out", "resume", "steps", "minutes", "val_every", "val_limit", "val_stride", "bn_batches",
                  "checkpoint_every", "log_every", "device", "data_on_device", "compile", "tensorboard")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainResult:
    run_dir: Path
    step: int                 # steps done in total
    steps_run: int            # steps done by this call
    seconds: float            # wall time of the loop in this call
    loss: float               # last training loss
    val: dict                 # last validation scores ({} if none)
    best_val_psnr: float | None
    stopped: str              # "steps" | "time" | "signal" | "cancelled"


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Learning rate of the step numbered ``step`` (0-based): linear warmup, then constant or cosine."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    horizon = cfg.decay_steps or cfg.steps
    ratio = min(1.0, (step - cfg.warmup_steps) / max(1, horizon - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def train(cfg: TrainConfig, callback=None, cancel=None) -> TrainResult:
    """Train (or resume) one run; see :class:`TrainConfig`. Under torchrun every process calls this.

    ``callback(info)`` / ``cancel()`` are passed to the progress reporter (rank 0): cancelling stops
    the run cleanly with a checkpoint, like ``--minutes`` running out or SIGINT / SIGTERM.
    """
    _check_config(cfg)
    # ------------------------------------------------------------------ processes and device
    world, rank, local_rank = distributed.environment()
    device = _device(cfg.device, local_rank if world > 1 else None)
    if world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    try:
        with run_lock(cfg.out) if master else contextlib.nullcontext():  # one run at a time per folder
            result = _train(cfg, callback, cancel, world, rank, device, master)
        if world > 1:
            # Rank 0 writes the last checkpoint after the final collective while the others are already
            # done: without this barrier a peer shuts gloo down (and exits) while rank 0 still holds the
            # connections, which aborted that peer ("terminate called without an active exception").
            dist.barrier()
        return result
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, callback, cancel, world: int, rank: int, device: torch.device,
           master: bool) -> TrainResult:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg, stage, model, saved, run_meta, init_meta = _open_run(cfg)           # new or resumed
    step = saved.step if saved else 0
    if cfg.freeze_norm:
        model.freeze_statistics()
    model.to(device).train()
    # ------------------------------------------------------------------ data (each process holds the whole set)
    data_device = device if cfg.data_on_device else torch.device("cpu")
    train_set = CandidateSet(cfg.data, "train", data_device).require("training")
    geometry = train_set.geometry
    _check_step_size(cfg, stage, model.config, geometry)
    if saved:
        _check_same_geometry(run_meta, geometry, Path(cfg.out), cfg.data)
    sampler = stage.view_sampler(train_set.n_candidates, geometry.arc)
    val_set = _validation_set(cfg, geometry, data_device) if master and cfg.val_every else None
    if device.type == "cpu" and os.environ.get("DEEPSPARSE_KEEP_FREED_MEMORY", "1") != "0":
        keep_freed_memory()   # the steps reuse their host memory instead of page-faulting it in (allocator.py)
    # ------------------------------------------------------------------ optimizer (trainable groups only)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = {id(p): n for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    if saved:
        load_optimizer_state(optimizer, Path(cfg.out) / "optimizer.safetensors", names)
    rng = _random_stream(cfg, saved, world, rank, step, device)               # one per process
    # ------------------------------------------------------------------ compile, DDP, mixed precision
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if world > 1:
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and cfg.amp \
        else contextlib.nullcontext()
    # ------------------------------------------------------------------ bookkeeping and reporting
    if saved:  # the card, wall and CPU seconds so far travel with the run
        card, wall_before, cpu_before = saved.extra.get("card", {}), saved.elapsed_s, saved.extra.get("cpu_s", 0.0)
    else:
        card = {"init": cfg.init, "data": cfg.data, "val_data": cfg.val_data, "init_card": history_card((init_meta or {}).get("card"))}
        wall_before = cpu_before = 0.0
    run = _Run(cfg, stage, Path(cfg.out), raw_model, optimizer, names, rng, geometry, device, world, master,
               card, wall_before, cpu_before)
    if master:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    log = TrainLog(run.run_dir, master, step, cfg.steps, cfg.minutes, cfg.tensorboard and master,
                   callback if master else None, cancel if master else None)
    if master:
        log.message(f"{raw_model.summary()}")
        if init_meta and init_meta.get("transfer"):
            log.message(init_meta["transfer"])
        log.message(f"{stage.describe()}; {len(train_set)} training / {len(val_set) if val_set else 0} validation "
                    f"volumes, {train_set.n_candidates} candidates, batch {cfg.batch_size} x {world} process(es), "
                    f"{cfg.points} points, {device.type}" + (f", from step {step}" if step else ""))
    best_psnr = saved.best_val_psnr if saved else None
    val_scores: dict = {}
    # ------------------------------------------------------------------ the loop
    deadline = run.t0 + 60.0 * cfg.minutes if cfg.minutes else None
    start_step, loss_value, stopped = step, float("nan"), "steps"
    with _StopSignals() as signals, contextlib.closing(log):
        while cfg.steps is None or step < cfg.steps:
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            b = train_set.batch(rng, cfg.batch_size, sampler, cfg.points, cfg.edge_fraction).to(device)
            with amp:
                out = model(b.projections, geometry, b.points, b.view_mask_2d, b.view_mask_3d, b.angles)
            loss, mse = stage.loss(out, b.targets)                                 # Eq. 9-13
            optimizer.zero_grad(set_to_none=True)
            loss.backward()                                                        # DDP averages gradients here
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(trainable.values(), cfg.grad_clip)
            optimizer.step()
            step += 1
            # --- report (rank 0), then one stop decision shared by all processes
            cancelled = False
            done = cfg.steps is not None and step >= cfg.steps
            if master and (step % cfg.log_every == 0 or done):
                loss_value = loss.item()
                try:
                    log.step(step, **_loss_terms(stage, loss_value, mse, out, lr))
                except Cancelled:
                    cancelled = True
            timeout = deadline is not None and time.perf_counter() >= deadline
            diverged, timeout, signalled, cancelled = distributed.any_flags(
                [not torch.isfinite(loss.detach()).item(), timeout, signals.received, cancelled], device, world)
            if diverged:
                last = max(start_step, (step - 1) - (step - 1) % cfg.checkpoint_every)
                kept = f"the checkpoint of step {last} is intact" if last else "no checkpoint was written"
                raise TrainingError(f"the loss is not finite at step {step} (lr {lr:g}); {kept}: "
                                    "lower --lr or check the data")
            stopping = done or timeout or signalled or cancelled
            if stopping and master:
                loss_value = loss.item()
            stopped = "time" if timeout else "signal" if signalled else "cancelled" if cancelled else "steps"
            # --- validation and model export (rank 0; the others wait at the next collective)
            validating = val_set is not None and (step % cfg.val_every == 0 or stopping)
            if validating or val_set is None and stopping and master:  # without validation: the final model
                evaluated = calibrated_copy(raw_model, train_set, sampler, cfg.bn_batches, cfg.batch_size,
                                            cfg.points, seed=cfg.seed * 1_000_003 + step, autocast=amp)
                best = False
                if validating:
                    val_scores = validate(evaluated, val_set, stage, cfg.val_stride, autocast=amp)
                    log.validation(step, {**val_scores, "code_perplexity": raw_model.codebook_perplexity()})
                    best = best_psnr is None or val_scores["psnr"] > best_psnr
                    best_psnr = val_scores["psnr"] if best else best_psnr
                run.export(step, evaluated, val_scores if validating else {}, best)
                del evaluated
            if step % cfg.checkpoint_every == 0 or stopping:
                run.checkpoint(step, best_psnr, {"val": val_scores, "stopped": stopped if stopping else None})
            if stopping:
                break
    seconds = time.perf_counter() - run.t0
    return TrainResult(run.run_dir, step, step - start_step, seconds, loss_value, val_scores, best_psnr, stopped)


def _open_run(cfg: TrainConfig):
    """(cfg, stage, model, saved state or None, saved model metadata or None, init model metadata or
    None): the run folder's run to resume, or a new run from ``cfg.stage`` and ``cfg.init``."""
    run_dir = Path(cfg.out)
    if cfg.resume:
        stored = TrainConfig.from_dict(read_state(run_dir).config)
        if cfg.stage not in (None, stored.stage):
            raise InputError(f"{run_dir} is a {stored.stage} run: resume it without --stage "
                             f"or with --stage {stored.stage}")
        cfg = dataclasses.replace(stored, **{k: getattr(cfg, k) for k in TrainConfig.RUN_FIELDS})
        _check_config(cfg)
        model, run_meta, saved = load_run(run_dir)
        stage = Stage.from_dict(saved.stage)
        model.freeze(*stage.frozen)
        return cfg, stage, model, saved, run_meta, None
    if (run_dir / "state.json").exists():
        raise InputError(f"{run_dir} already holds a training run: resume it (--resume) or choose another --out")
    if cfg.stage is None:
        raise InputError(f"give the training stage (--stage {' | '.join(STAGES)})")
    stage = make_stage(cfg.stage, cfg.views, cfg.min_views, cfg.max_views, cfg.lambda_q, cfg.lambda_d,
                       cfg.view_weights)
    torch.manual_seed(cfg.seed)  # same initial weights in every process
    model, init_meta = initial_model(stage, cfg.init, cfg.model)
    return cfg, stage, model, None, None, init_meta


def _validation_set(cfg: TrainConfig, geometry, device) -> CandidateSet | None:
    """The validation volumes (the val split of ``val_data``, default ``data``), None if there are none."""
    val_set = CandidateSet(cfg.val_data or cfg.data, "val", device, limit=cfg.val_limit)
    if len(val_set) and val_set.geometry.to_dict() != geometry.to_dict():
        raise GeometryError(f"the validation volumes of {val_set.folder} have another geometry than the training ones")
    return val_set if len(val_set) else None


def _random_stream(cfg: TrainConfig, saved, world: int, rank: int, step: int, device) -> np.random.Generator:
    """This process's sampling stream: restored exactly on resume, else seeded by (seed, rank, step)."""
    if saved and len(saved.rng) == world:
        return restore_rng(saved.rng[rank], device)
    if saved:
        warnings.warn(f"resuming a {len(saved.rng)}-process run on {world} process(es): "
                      "new sampling streams, the continuation is not bit-identical")
    return np.random.default_rng([cfg.seed, rank, step])


def _loss_terms(stage: Stage, loss: float, mse: torch.Tensor, out: dict, lr: float) -> dict:
    """The logged values of a step: the loss, its MSE, the learning rate and the stage's other terms."""
    terms = {"loss": loss, "mse": mse.item(), "lr": lr}
    if stage.lambda_q:
        terms["vq"] = out["vq_loss"].item()
    if stage.denoise:
        terms["denoise"] = out["denoise_loss"].item()
    return terms


@dataclass
class _Run:
    """What a run writes besides the weights it trains: checkpoints, exported models and their card."""

    cfg: TrainConfig
    stage: Stage
    run_dir: Path
    model: torch.nn.Module            # the raw model (not compiled, not DDP-wrapped)
    optimizer: torch.optim.Optimizer
    names: dict                       # id(parameter) -> name, of the trainable parameters
    rng: np.random.Generator
    geometry: object
    device: torch.device
    world: int
    master: bool
    card: dict                        # init, data, the init model's card
    wall_before: float                # seconds of the resumed run before this invocation
    cpu_before: float
    t0: float = dataclasses.field(default_factory=time.perf_counter)
    c0: float = dataclasses.field(default_factory=time.process_time)

    @property
    def n_views(self) -> int | None:
        return self.stage.fixed_views if self.stage.denoise else None  # step-2 models record their view count

    def effort(self, step: int) -> dict:
        """This run's work so far and the campaign totals (the init model's card totals + this run)."""
        run = {"stage": self.stage.name, "steps": step, "volume_samples": step * self.cfg.batch_size * self.world,
               "wall_hours": round((self.wall_before + time.perf_counter() - self.t0) / 3600, 6),
               "cpu_hours": round((self.cpu_before + time.process_time() - self.c0) * self.world / 3600, 6),
               "device": self.device.type, "processes": self.world, "threads": torch.get_num_threads()}
        return {"run": run, "totals": campaign_totals(self.card.get("init_card"), run)}

    def export(self, step: int, evaluated, val_scores: dict, best: bool) -> None:
        """``last.safetensors`` (and ``best.safetensors`` when ``best``): the validated model with its card."""
        card = {**self.card, "stage": self.stage.name, "step": step, "val": val_scores,
                "bn_batches": self.cfg.bn_batches, **self.effort(step),
                "views": {"min": self.stage.n_min, "max": self.stage.n_max,   # n uniform in [n_min, n_max],
                          **({"weights": list(self.stage.n_weights)} if self.stage.n_weights else {})}}  # or weighted
        for name in ("last", "best") if best else ("last",):
            save_model(self.run_dir / f"{name}.safetensors", evaluated, self.geometry, self.n_views, card=card)

    def checkpoint(self, step: int, best: float | None, extra: dict) -> None:
        """Weights, optimizer, every process's random stream and the state: a collective under DDP."""
        device, world = self.device, self.world
        states = [json.loads(b) for b in distributed.all_gather_bytes(
            json.dumps(rng_state(self.rng, device)).encode(), device, world)]
        if world > 1:
            sums = distributed.all_gather_bytes(distributed.parameter_checksum(self.model).encode(), device, world)
            extra = {**extra, "rank_checksums": [s.decode() for s in sums]}
        if self.master:
            save_run(self.run_dir, self.model, self.optimizer, self.names, step, self.stage.to_dict(),
                     self.cfg.to_dict(), states, self.geometry, self.n_views, best,
                     self.wall_before + time.perf_counter() - self.t0,
                     {**extra, "card": self.card, "cpu_s": self.cpu_before + time.process_time() - self.c0})


def _check_config(cfg: TrainConfig) -> None:
    if cfg.steps is None and cfg.minutes is None:
        raise InputError("give --steps or --minutes (or both) to bound the run")
    if cfg.steps is not None and cfg.steps < 1 or cfg.minutes is not None and cfg.minutes <= 0:
        raise InputError("--steps must be >= 1 and --minutes > 0 (a run of no step would leave an empty run)")
    if cfg.batch_size < 1 or cfg.points < 1 or cfg.log_every < 1 or cfg.checkpoint_every < 1:
        raise InputError("batch size, points, log_every and checkpoint_every must be >= 1")
    if cfg.val_every < 0 or cfg.val_stride < 1 or cfg.bn_batches < 0:
        raise InputError("val_every and bn_batches must be >= 0 and val_stride >= 1")
    if cfg.schedule not in ("constant", "cosine"):
        raise InputError(f"unknown learning-rate schedule {cfg.schedule!r}: constant or cosine")
    if cfg.schedule == "cosine" and not (cfg.decay_steps or cfg.steps):
        raise InputError("the cosine schedule needs --steps (or decay_steps) as its horizon")
    floats = {f: getattr(cfg, f) for f in ("lr", "weight_decay", "grad_clip", "min_lr", "edge_fraction",
                                           "lambda_q", "lambda_d", "minutes")}
    bad = [f for f, v in floats.items() if v is not None and not math.isfinite(v)]
    if bad:
        raise InputError(f"{', '.join('--' + f.replace('_', '-') for f in bad)} must be a finite number")
    if cfg.lr <= 0 or cfg.weight_decay < 0 or cfg.grad_clip < 0:
        raise InputError("lr must be > 0, weight decay and grad clip >= 0")
    if cfg.lr > 1.0:
        raise InputError(f"--lr {cfg.lr:g} is far above any useful AdamW rate (at most 1; the recipes use 1e-4-5e-4)")
    if cfg.min_lr is not None and not 0 <= cfg.min_lr <= cfg.lr:
        raise InputError(f"--min-lr must be in [0, --lr {cfg.lr:g}], got {cfg.min_lr:g}")
    if cfg.warmup_steps < 0:  # longer than --steps is allowed: a probe run that is resumed further
        raise InputError(f"--warmup-steps must be >= 0, got {cfg.warmup_steps}")
    for name in ("lambda_q", "lambda_d"):
        value = getattr(cfg, name)
        if value is not None and not 0 <= value <= 100:
            raise InputError(f"--{name.replace('_', '-')} must be in [0, 100], got {value:g}")
    if cfg.edge_fraction is not None and not 0 <= cfg.edge_fraction <= 1:
        raise InputError(f"--edge-fraction is a share of the points, in [0, 1]; got {cfg.edge_fraction:g}")
    if cfg.val_limit is not None and cfg.val_limit < 0:
        raise InputError(f"--val-volumes must be >= 0 (0 = all), got {cfg.val_limit}")
    check_seed(cfg.seed)
    if cfg.views is not None and cfg.views < 1 or cfg.min_views < 1 or cfg.max_views < cfg.min_views:
        raise InputError(f"need --views >= 1 and 1 <= --min-views <= --max-views, got views {cfg.views}, "
                         f"min {cfg.min_views}, max {cfg.max_views}")


def _check_step_size(cfg: TrainConfig, stage, config, geometry) -> None:
    """Refuse ``--points`` beyond the grid's voxels, and a batch whose point features alone (a
    lower bound of a step's memory: points x views x the per-view point features, float32, kept
    for the backward pass with their gradient and one work copy) exceed the memory available."""
    from ..resources import require_available

    voxels = math.prod(geometry.volume_shape)
    if cfg.points > voxels:
        raise InputError(f"--points {cfg.points} is more than the {voxels} voxels of the training grid "
                         f"{'x'.join(map(str, geometry.volume_shape))}")
    per_sample = 3 * 4.0 * cfg.points * max(stage.n_max, 1) * config.point_features
    require_available(per_sample * cfg.batch_size, f"a training step of batch {cfg.batch_size} x {cfg.points} points")


def _check_same_geometry(run_meta: dict, geometry, run_dir: Path, data) -> None:
    """A resumed run keeps the geometry its model was trained for (angles aside): refuse other data."""
    ignore = ("angles", "name")
    recorded = {k: v for k, v in (run_meta.get("geometry") or {}).items() if k not in ignore}
    now = {k: v for k, v in json.loads(json.dumps(geometry.to_dict())).items() if k not in ignore}
    if recorded and recorded != now:
        differ = sorted(k for k in now if now[k] != recorded.get(k))
        raise GeometryError(f"the data in {data} has another geometry ({', '.join(differ)}) than the run "
                            f"{run_dir} was trained for; resume with the run's data or start a new run "
                            f"with --init {run_dir}")


def _device(name: str, local_rank: int | None) -> torch.device:
    """auto | cpu | cuda -> the device of this process (cuda:LOCAL_RANK under torchrun)."""
    from ..devices import resolve_device

    return resolve_device(name, local_rank)


class _StopSignals:
    """SIGINT / SIGTERM ask for a clean stop (checkpoint, exit); a second SIGINT interrupts at once."""

    def __init__(self):
        self.received = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
