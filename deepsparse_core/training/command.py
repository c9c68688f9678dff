"""``deepsparse train``: the command line of the training loop (also ``python -m deepsparse_core.training``,
which is what ``torchrun --nproc_per_node N -m deepsparse_core.training ...`` runs)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

from ..arguments import add_device_argument
from ..errors import InputError
from ..progress import emit
from .stages import STAGES


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand on ``subparsers`` (an argparse sub-parsers object)."""
    p = subparsers.add_parser(
        "train", help="train DiCE: from scratch, HyViP pretraining, finetuning step 1 or step 2",
        description="Train or finetune DiCE on a folder of candidate caches (`deepsparse candidates`). "
                    "Multi-GPU: torchrun --nproc_per_node N -m deepsparse_core.training ...")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)
    return p


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to train")
    what.add_argument("--stage", choices=STAGES, default=None,
                      help="scratch | pretrain (HyViP) | step1 (dataset adaptation) | step2 (view adjustment); "
                           "required unless --resume")
    what.add_argument("--data", metavar="FOLDER", nargs="+",
                      help="folder(s) of candidate caches (+ train/val/test.txt); several are read together")
    what.add_argument("--val-data", metavar="FOLDER", nargs="+",
                      help="validate on the val split of these folders instead (default: those of --data)")
    what.add_argument("--out", metavar="RUN_DIR", required=True, help="run folder (checkpoints, logs)")
    what.add_argument("--init", metavar="MODEL_OR_RUN", help="start from this model file or run folder")
    what.add_argument("--config", default=None, metavar="paper|small|tiny|FILE.json",
                      help="architecture of a new model (default paper); with --init, the architecture to "
                           "warm-start into (tensors whose name and shape match are copied, the rest start fresh)")
    what.add_argument("--views", type=int, help="target sparse views n (step1/step2: required; scratch: fixed n)")
    what.add_argument("--min-views", type=int, help="n_min (default 6)")
    what.add_argument("--max-views", type=int, help="n_max = M, views for the 3D features (default 24)")
    what.add_argument("--view-weights", type=float, nargs="+", metavar="W",
                      help="scratch stage without --views: relative weights of n = --min-views ... --max-views, "
                           "one per view count (default: uniform)")
    what.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    how_long = p.add_argument_group("how long")
    how_long.add_argument("--steps", type=int, help="stop at this step (total, resumed steps included)")
    how_long.add_argument("--minutes", type=float, help="stop cleanly after this many minutes (this invocation)")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--batch-size", type=int, help="volumes per step and process (default 2)")
    opt.add_argument("--points", type=int, help="points per volume (default 10000)")
    opt.add_argument("--edge-fraction", type=float, help="share of points on edge voxels (default 0: uniform)")
    opt.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-4)")
    opt.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-3)")
    opt.add_argument("--grad-clip", type=float, help="gradient norm clip, 0 = off (default 1.0)")
    opt.add_argument("--schedule", choices=("constant", "cosine"), help="learning-rate schedule (default constant)")
    opt.add_argument("--warmup-steps", type=int, help="linear warmup steps (default 0)")
    opt.add_argument("--min-lr", type=float, help="final learning rate of the cosine schedule (default 0)")
    opt.add_argument("--lambda-q", type=float, help="quantization loss weight (default 0.1)")
    opt.add_argument("--lambda-d", type=float, help="denoise loss weight, step 2 (default 1.0)")
    opt.add_argument("--freeze-norm", action="store_true", default=None,
                     help="keep the initial model's BatchNorm statistics (finetuning on a few CTs; "
                          "--bn-batches is then unused)")
    opt.add_argument("--seed", type=int, help="seed (default 0)")
    run = p.add_argument_group("running")
    add_device_argument(run, default=None)
    run.add_argument("--data-on-host", dest="data_on_device", action="store_false", default=None,
                     help="keep the training set in host memory (large sets) instead of on the GPU")
    run.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no bf16 autocast on CUDA")
    run.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    run.add_argument("--val-every", type=int, help="validate every K steps, 0 = never (default 500)")
    run.add_argument("--val-volumes", dest="val_limit", type=int, help="validation volumes, 0 = all (default 4)")
    run.add_argument("--val-stride", type=int, help="validate on every s-th voxel (default 1)")
    run.add_argument("--bn-batches", type=int,
                     help="training batches averaged into the BatchNorm statistics of the validated and exported "
                          "models (best/last.safetensors), 0 = the running ones (default 32)")
    run.add_argument("--checkpoint-every", type=int, help="default 1000 steps")
    run.add_argument("--log-every", type=int, help="default 10 steps")
    run.add_argument("--tensorboard", action="store_true", default=None, help="also log to RUN_DIR/tensorboard")


_ARG_FIELDS = {"config": "model"}  # argparse dest -> TrainConfig field where they differ


def config_from_args(args):
    """The TrainConfig of parsed ``train`` arguments (for --resume: the stored one with the run fields given)."""
    from .checkpoint import read_state
    from .loop import TrainConfig

    given = {}
    for f in dataclasses.fields(TrainConfig):
        dest = next((a for a, t in _ARG_FIELDS.items() if t == f.name), f.name)
        value = getattr(args, dest, None)
        if isinstance(value, list) and f.name in ("data", "val_data"):
            value = value[0] if len(value) == 1 else value  # one folder is stored as a plain path
        if value is not None:
            given[f.name] = value
    if given.get("val_limit") == 0:
        given["val_limit"] = None
    if args.resume:
        stored = TrainConfig.from_dict(read_state(args.out).config)
        fixed = sorted(k for k, v in given.items() if k not in TrainConfig.RUN_FIELDS + ("stage",)
                       and v != getattr(stored, k))
        if fixed:
            raise InputError(f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming "
                             f"{args.out}; start a new run with --init {args.out} instead")
        return dataclasses.replace(stored, **{k: v for k, v in given.items() if k in TrainConfig.RUN_FIELDS},
                                   stage=args.stage)
    if args.data is None:
        raise InputError("give the training data folder (--data)")
    return TrainConfig(**given)


def cmd_train(args) -> int:
    from .loop import train

    cfg = config_from_args(args)
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        val = result.val or {}
        summary = {"run": str(result.run_dir), "step": result.step, "steps_run": result.steps_run,
                   "seconds": round(result.seconds, 2), "loss": _finite(result.loss), "stopped": result.stopped,
                   "val_psnr": _finite(val.get("psnr")), "val_ssim": _finite(val.get("ssim")),
                   "best_val_psnr": _finite(result.best_val_psnr)}
        emit("result", **summary)
        psnr = "" if summary["val_psnr"] is None else f", validation PSNR {summary['val_psnr']:.2f} dB"
        print(f"{result.run_dir}: step {result.step} ({result.steps_run} steps in {result.seconds:.0f} s, "
              f"stopped by {result.stopped}), loss {result.loss:.4g}{psnr}", file=sys.stderr)
    return 0


def _finite(x):
    return x if isinstance(x, float) and math.isfinite(x) else None
