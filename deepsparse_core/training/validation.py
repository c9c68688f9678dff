"""Validation: full-volume reconstructions of held-out volumes at the stage's view count, PSNR / SSIM."""

from __future__ import annotations

import contextlib

import torch

from ..metrics import psnr, ssim
from ..model import DiCE
from .data import CandidateSet
from .stages import Stage


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
