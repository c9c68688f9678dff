"""Validation: full-volume reconstructions of held-out volumes at the stage's view count, PSNR / SSIM,
and the BatchNorm recalibration of the weights that are validated and exported."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from ..evaluation.metrics import psnr, ssim
from ..model import DiCE
from .data import CandidateSet
from .stages import Stage

BN_BATCHES = 32  # training batches averaged into the exported BatchNorm statistics (our choice)


@torch.no_grad()
def calibrated_copy(model: DiCE, train_set: CandidateSet, sampler, batches: int = BN_BATCHES,
                    batch_size: int = 2, points: int = 8000, seed: int = 0,
                    autocast: contextlib.AbstractContextManager | None = None) -> DiCE:
    """A copy of ``model`` (eval mode) whose BatchNorm running statistics are the plain average over
    ``batches`` fresh training batches ("precise BN"); ``model`` and the training streams are untouched.

    Why: at batch 2 (two volumes of a mixed corpus) the running statistics (momentum 0.1) follow the
    last ~10 batches, so a checkpoint's eval-mode output depends on which volumes came last; measured
    here as validation swings of several dB between neighbouring checkpoints. The average over many
    batches is a property of the weights. Frozen groups (eval mode) keep their statistics and the
    codebooks do not move. ``batches`` = 0, or no BatchNorm left to recalibrate (all frozen, e.g.
    ``DiCE.freeze_statistics``), returns ``model`` itself without running a batch.
    """
    if batches <= 0:
        return model
    from ..model.vq import EMAVectorQuantizer

    clone = copy.deepcopy(model).train()
    norms = [m for m in clone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not norms:
        return model
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    for m in clone.modules():
        if isinstance(m, EMAVectorQuantizer):
            m.eval()
    rng = np.random.default_rng([seed, 0x5EED])
    device = next(clone.parameters()).device
    for _ in range(batches):
        b = train_set.batch(rng, batch_size, sampler, points).to(device)
        with autocast or contextlib.nullcontext():
            clone(b.projections, train_set.geometry, b.points, b.view_mask_2d, b.view_mask_3d, b.angles)
    for m in norms:
        m.momentum = 0.1
    return clone.eval()


@torch.no_grad()
def validate(model: DiCE, volumes: CandidateSet, stage: Stage, stride: int = 1, limit: int | None = None,
             autocast: contextlib.AbstractContextManager | None = None, chunk_size: int = 65536) -> dict:
    """Mean PSNR / SSIM (dB / [0, 1]) over the first ``limit`` volumes of ``volumes``.

    Views: ``stage.validation_views`` (``val_views`` uniform views from candidate 0, plus the auxiliary
    views to M for the 3D features of pretrain / step-1 models). The prediction is evaluated at every
    ``stride``-th voxel centre of the cache grid against the reference at exactly those voxels
    (stride 2 = 1/8 of the points, the released code evaluates at half resolution too).
    ``model`` is put in eval mode and restored to its previous mode.
    """
    geometry = volumes.geometry
    sparse, dense = stage.validation_views(volumes.n_candidates, geometry.arc)
    views = sparse if dense is None else dense
    dev = volumes.device
    index = torch.as_tensor(views, device=dev)
    mask_2d = torch.zeros(1, len(views), dtype=torch.bool, device=dev)
    mask_2d[0, :len(sparse)] = True
    mask_3d = None if dense is None else torch.ones_like(mask_2d)
    angles = volumes.candidate_angles[index][None]
    points = geometry.voxel_centres(stride=stride, device=dev).reshape(-1, 3)
    was_training = model.training
    model.eval()
    scores = []
    try:
        for i in range(len(volumes) if limit is None else min(limit, len(volumes))):
            projections, reference = volumes.volume(i)
            with autocast or contextlib.nullcontext():
                features = model.encode(projections[index][None], geometry, mask_2d, mask_3d, angles)
                pred = model.decode_points(features, points, chunk_size)
            gt = reference[::stride, ::stride, ::stride]
            pred = pred.float().reshape(gt.shape)
            scores.append((psnr(pred, gt), ssim(pred, gt)))
    finally:
        model.train(was_training)
    n = len(scores)
    return {"psnr": sum(s[0] for s in scores) / max(n, 1), "ssim": sum(s[1] for s in scores) / max(n, 1),
            "volumes": n, "views": len(sparse), "views_3d": len(views)}
