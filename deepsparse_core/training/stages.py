"""The four training stages: which views feed which features, what trains, what the loss weighs.

View sampling in the paper's notation [n | M] (Sec. 3.4): n sparse views feed the 2D point features,
M views (the n sparse + M - n auxiliary ones, Eq. 8) feed the 3D features.

=========  ===============================  ==============  ===============================  ==========
stage      views                            trains          loss                             paper
=========  ===============================  ==============  ===============================  ==========
scratch    [n | n], n fixed (or random)      everything      MSE + lambda_q VQ                Table 6
pretrain   [6~24 | 24] (HyViP)               everything      MSE + lambda_q VQ                Sec. 3.3
step1      [n | 24], n = 6, 8 or 10          everything      MSE + lambda_q VQ                Sec. 3.4
step2      [n | n] + dense [n | 24] targets  all but encoder MSE + lambda_d denoise L1 (Eq.13) Sec. 3.4
                                             + quantization
=========  ===============================  ==============  ===============================  ==========

Released weights: lambda_q = 0.1 (scripts/pretrain.sh, finetune_s1.sh ``--vq_w 0.1``); lambda_d = 1.0
(finetune_s2.sh ``--vq_w 1.0`` times the denoise L1, model_v7). Step 2 has no VQ term: encoder and
codebooks are frozen (paper Eq. 13).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..data.view_selection import (N_MAX, N_MIN, auxiliary_indices, evaluation_indices, select_hybrid_views,
                                   select_views)
from ..errors import InputError
from .data import ViewSampler

STAGES = ("scratch", "pretrain", "step1", "step2")
LAMBDA_Q = 0.1        # released --vq_w for pretraining and step 1
LAMBDA_D = 1.0        # released --vq_w for step 2 (weighs the denoise L1)
STEP2_FROZEN = ("encoder", "quantization")  # paper Table 1: 2D encoder and codebooks fixed in step 2


@dataclass(frozen=True)
class Stage:
    """How one stage samples views, what it freezes and how it weighs the loss terms."""

    name: str
    n_min: int                 # sparse views per sample (2D point features): n uniform in [n_min, n_max]
    n_max: int
    m_total: int | None        # views for the 3D features, sparse + auxiliary (None: the sparse views only)
    val_views: int             # n used for validation
    denoise: bool = False      # step 2: denoise layers on, dense views only give the denoise targets
    frozen: tuple[str, ...] = ()
    lambda_q: float = LAMBDA_Q
    lambda_d: float = 0.0
    n_weights: tuple[float, ...] | None = None  # relative weights of n = n_min..n_max (None: uniform)

    @property
    def fixed_views(self) -> int | None:
        """n when the stage trains for one view count (step 1, step 2, scratch with --views)."""
        return self.n_min if self.n_min == self.n_max else None

    def view_sampler(self, n_candidates: int, arc: float) -> ViewSampler:
        """rng -> (sparse candidate indices, all candidate indices with the sparse first)."""
        lo, hi, m = self.n_min, self.n_max, self.m_total
        need = max(hi, m or 0)
        if need > n_candidates:
            raise InputError(f"stage {self.name} needs {need} views but the caches hold {n_candidates} candidates")
        if m == hi and lo < hi:  # HyViP [n_min~n_max | n_max]
            return lambda rng: select_hybrid_views(rng, n_candidates, lo, hi, arc)

        counts = np.arange(lo, hi + 1)
        p = None if self.n_weights is None else np.asarray(self.n_weights, float) / sum(self.n_weights)

        def sample(rng: np.random.Generator):
            n = lo if lo == hi else int(rng.integers(lo, hi + 1)) if p is None else int(rng.choice(counts, p=p))
            return select_views(rng, n, m or n, n_candidates, arc)
        return sample

    def validation_views(self, n_candidates: int, arc: float) -> tuple[np.ndarray, np.ndarray | None]:
        """Fixed views for validation: the ``val_views`` evaluation views (``evaluation_indices``, as the
        held-out scores), and the views of the 3D features when the model needs more than those
        (pretrain / step 1: + auxiliary to M), else None. A step-2 model uses the n sparse views alone."""
        sparse = evaluation_indices(self.val_views, n_candidates)
        if self.m_total is None or self.denoise or self.m_total == self.val_views:
            return sparse, None
        return sparse, np.concatenate([sparse, auxiliary_indices(sparse, self.m_total, n_candidates, arc)])

    def loss(self, out: dict, targets):
        """(total loss, MSE) of a model output (``DiCE.forward``) against the (B, N) targets."""
        import torch.nn.functional as F

        mse = F.mse_loss(out["pred"].float(), targets)                            # Eq. 9
        loss = mse
        if self.lambda_q:
            loss = loss + self.lambda_q * out["vq_loss"].float()                 # Eq. 10
        if self.denoise:
            loss = loss + self.lambda_d * out["denoise_loss"].float()            # Eq. 12-13
        return loss, mse

    def describe(self) -> str:
        n = f"{self.n_min}" if self.n_min == self.n_max else f"{self.n_min}~{self.n_max}"
        views = f"[{n} | {self.m_total or n}]"
        if self.n_weights is not None:
            views += " with n weighted " + ":".join(f"{w:g}" for w in self.n_weights)
        extra = f", frozen: {', '.join(self.frozen)}" if self.frozen else ""
        loss = "MSE" + (f" + {self.lambda_q:g} VQ" if self.lambda_q else "") + \
               (f" + {self.lambda_d:g} denoise" if self.denoise else "")
        return f"stage {self.name}: views {views}, loss {loss}{extra}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["frozen"] = list(self.frozen)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Stage":
        weights = d.get("n_weights")
        return cls(**{**d, "frozen": tuple(d.get("frozen", ())),
                      "n_weights": None if weights is None else tuple(weights)})


def make_stage(name: str, views: int | None = None, min_views: int = N_MIN, max_views: int = N_MAX,
               lambda_q: float = LAMBDA_Q, lambda_d: float = LAMBDA_D, view_weights=None) -> Stage:
    """The :class:`Stage` ``name`` (one of ``STAGES``).

    Args:
        views: n, the target number of sparse views. Required for step1 and step2; for scratch it fixes n
            (else n is uniform in [min_views, max_views], no auxiliary views); for pretrain it only sets
            the validation n (default min_views).
        min_views, max_views: n_min and n_max = M (paper: 6 and 24).
        view_weights: relative weights of n = min_views, ..., max_views for the scratch stage's random
            n (None: uniform, as released). Its draws differ from the uniform default's even when the
            weights are equal (another generator call).
    """
    if name not in STAGES:
        raise InputError(f"unknown training stage {name!r}; choose one of {', '.join(STAGES)}")
    if name in ("step1", "step2") and views is None:
        raise InputError(f"stage {name} finetunes for a target number of views: give --views (paper: 6, 8 or 10)")
    if view_weights is not None and (name != "scratch" or views):
        raise InputError("--view-weights weighs the random n of the scratch stage (without --views)")
    if name == "scratch" and views:  # [n | n]: the view range is not used
        return Stage(name, views, views, None, views, lambda_q=lambda_q)
    if not 1 <= min_views <= max_views:
        raise InputError(f"need 1 <= min_views <= max_views, got {min_views} and {max_views}")
    if views is not None and not 1 <= views <= max_views:
        raise InputError(f"--views must be in [1, {max_views}] (--max-views, M), got {views}")
    if name == "scratch":
        return Stage(name, min_views, max_views, None, min_views, lambda_q=lambda_q,
                     n_weights=_view_weights(view_weights, min_views, max_views))
    if name == "pretrain":
        return Stage(name, min_views, max_views, max_views, views or min_views, lambda_q=lambda_q)
    if name == "step1":
        return Stage(name, views, views, max_views, views, lambda_q=lambda_q)
    return Stage(name, views, views, max_views, views, denoise=True, frozen=STEP2_FROZEN,
                 lambda_q=0.0, lambda_d=lambda_d)


def _view_weights(weights, min_views: int, max_views: int) -> tuple[float, ...] | None:
    """``weights`` checked: one finite weight >= 0 per n in [min_views, max_views], both ends > 0."""
    if weights is None:
        return None
    k = max_views - min_views + 1
    try:
        w = tuple(float(x) for x in weights)
    except (TypeError, ValueError):
        raise InputError(f"--view-weights takes numbers, got {weights!r}") from None
    if len(w) != k:
        raise InputError(f"--view-weights needs one weight per n from {min_views} to {max_views} ({k}), got {len(w)}")
    if not all(math.isfinite(x) and x >= 0 for x in w) or not 0 < sum(w) < math.inf:
        raise InputError(f"--view-weights must be finite numbers >= 0, not all 0; got {' '.join(f'{x:g}' for x in w)}")
    if w[0] == 0 or w[-1] == 0:   # the card says the model serves [min, max]: it must have trained on both ends
        raise InputError(f"--view-weights: n = {min_views if w[0] == 0 else max_views} has weight 0; narrow "
                         "--min-views / --max-views instead (the model is said to serve the whole range)")
    return w
