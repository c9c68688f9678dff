"""Vector quantization of the low-resolution 3D features, one codebook per scale (paper Eq. 3, 10).

EMA codebook updates as in VQ-VAE (van den Oord et al. 2017, appendix) and the released
``ema_codebook.py``: decay 0.99, Laplace-smoothed cluster sizes (eps 1e-5), commitment loss
``beta * ||sg[z_q] - z||^2`` with beta = 1, straight-through gradients. The codebook is state, not a
trained parameter: it lives in buffers (saved in the state dict) and moves only in training mode.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


CODEBOOK_STATE = ("codebook", "cluster_size", "embed_sum")  # the quantizer's buffers (state dict name tails)


class EMAVectorQuantizer(nn.Module):
    """Nearest-code quantization of (B, D, *spatial) features with an EMA-updated codebook."""

    def __init__(self, n_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5, beta: float = 1.0,
                 restart: float = 0.0):
        super().__init__()
        self.decay, self.eps, self.beta, self.restart = decay, eps, beta, restart
        codebook = torch.randn(n_codes, dim)  # released init
        self.register_buffer("codebook", codebook)            # (K, D) current codes
        # EMA statistics. Released starts cluster_size at 0, which divides never-used codes by ~eps
        # on the first update (codes jump to ~1e5); starting at 1 keeps codebook = embed_sum / size.
        self.register_buffer("cluster_size", torch.ones(n_codes))  # (K,) EMA of assignment counts
        self.register_buffer("embed_sum", codebook.clone())         # (K, D) EMA of assigned-vector sums

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, *spatial) -> (quantized with straight-through gradient, commitment loss, code indices)."""
        b, d, *spatial = z.shape
        flat = z.movedim(1, -1).reshape(-1, d)                               # (P, D)
        with torch.no_grad():  # nearest code: argmin_k |z|^2 - 2 z.e_k + |e_k|^2, |z|^2 is the same for all k
            distance = torch.addmm(self.codebook.pow(2).sum(1), flat, self.codebook.t().to(flat.dtype), alpha=-2)
            idx = distance.argmin(dim=1)                                         # (P,)
        z_q = self.codebook[idx].to(flat.dtype)                              # codes before this step's update
        if self.training:
            self._ema_update(flat.detach(), idx)
        loss = self.beta * F.mse_loss(flat, z_q.detach())                    # commitment (Eq. 10)
        z_q = flat + (z_q - flat).detach()                                   # straight-through estimator
        z_q = z_q.reshape(b, *spatial, d).movedim(-1, 1)
        return z_q, loss, idx.reshape(b, *spatial)

    @torch.no_grad()
    def perplexity(self) -> float:
        """exp(entropy) of the EMA assignment counts: how many codes are in effective use, from 1 (one
        code takes every vector) to the codebook size (even use; also a fresh codebook)."""
        p = self.cluster_size.double().clamp_min(0)
        p = p[p > 0] / p.sum()
        return float(torch.exp(-(p * p.log()).sum()))

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=len(self.codebook)).to(self.cluster_size.dtype)  # (K,)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat.to(self.embed_sum.dtype))  # (K, D)
        if dist.is_available() and dist.is_initialized():  # one codebook for all ranks
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + len(self.cluster_size) * self.eps) * n  # Laplace
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        if self.restart > 0:
            self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        """Codes whose EMA count fell below ``restart`` move to random features of this batch, with a
        count of ``restart`` (dead-code restart, Dhariwal et al. 2020, Jukebox). Without it EMA codebooks
        collapse: the bundled CPU model of 2026-12-03 had 13-35 of its 256 codes per scale with an EMA
        count of at least one vector per step (9.5-19.7 codes in effective use, :meth:`perplexity`).
        Under DDP rank 0's candidates are broadcast; the call has the same shape on every rank whatever
        the counts, so ranks cannot wait on each other, and nothing is synchronized with a GPU."""
        candidates = flat[torch.randint(len(flat), (len(self.codebook),), device=flat.device)].to(self.codebook.dtype)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(candidates, 0)
        dead = self.cluster_size < self.restart                                # (K,)
        self.codebook.copy_(torch.where(dead.unsqueeze(1), candidates, self.codebook))
        self.cluster_size.masked_fill_(dead, self.restart)
        self.embed_sum.copy_(torch.where(dead.unsqueeze(1), candidates * self.restart, self.embed_sum))


class QuantizationLayer(nn.Module):
    """pre 1x1x1 conv -> EMA quantizer -> post 1x1x1 conv (paper: pre-/post-quantization linear layers)."""

    def __init__(self, ch: int, n_codes: int, decay: float, eps: float, beta: float, restart: float = 0.0):
        super().__init__()
        self.pre = nn.Conv3d(ch, ch, kernel_size=1)
        self.quantizer = EMAVectorQuantizer(n_codes, ch, decay, eps, beta, restart)
        self.post = nn.Conv3d(ch, ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, M, M, M) -> (quantized features (B, C, M, M, M), commitment loss)."""
        z_q, loss, _ = self.quantizer(self.pre(x))
        return self.post(z_q), loss
