"""HyViP hybrid view sampling (paper Sec. 3.3, Eq. 8; finetuning views in Sec. 3.4).

Projections are pre-generated at ``K`` candidate angles ``theta_k = k * arc / K``, k = 0..K-1
(paper, Sec. 4.1: K = 200 over a half rotation, arc = pi, end excluded). Each training
iteration draws

* ``n`` sparse views (paper, Sec. 3.5: n uniform in [n_min, n_max] = [6, 24] for pretraining,
  n fixed for finetuning), spread uniformly with a random offset; they feed the 2D features;
* ``M - n`` auxiliary views (paper: M = n_max = 24) such that the M views together are as
  close as possible to M uniform views; all M feed the 3D features.

Eq. 8 minimizes the deviation of the M chosen angles from M uniform angles under a bijection (the
formula itself is lost in our text copy of the paper). Our precise reading: let S be the n sparse angles and C the other candidates.
Choose A (|A| = M - n, A in C), an offset phi and a bijection pi from S u A to the targets
``t_m = phi + m * arc / M`` (m = 0..M-1) that minimize

    D(S u A) = sum_{a in S u A} d(a, pi(a)),

where d is the absolute angular difference |a - t| on the line [0, arc) when arc < 2 pi (0 and
179 degrees are far apart: a half rotation does not wrap around), and the arc length on the circle
when arc == 2 pi. phi ranges over [0, arc/M] on the line, over all reals (mod arc/M) on the circle.
The paper draws the offset of its uniform M angles at random; optimizing it as well brings the M
views closer to uniform and makes the result a deterministic function of the sparse views.

Why absolute deviations (L1) rather than squared: it is the plain sum of angular deviations, in
radians, so a total of 0.1 rad means the same whether spread or concentrated; it is convex, so sorted (monotone) matchings remain optimal; and it is piecewise linear in
phi, which lets us optimize phi *exactly* over a finite set (below), in exact integer arithmetic.

Exact solution (``auxiliary_indices``):

1. Units. With L = lcm(K, M), candidate k sits at k * (L/K) and target m at s + m * (L/M) in
   units of arc / L; every breakpoint of the cost in phi is an integer s, so all costs are integers.
2. Fixed set, fixed phi: on a line, for a convex cost of the difference, the sorted matching
   (i-th smallest angle to i-th smallest target) is optimal (exchange argument: uncrossing two
   crossed pairs never increases the cost).
3. Fixed phi: hence min over A of D is a dynamic programme over the targets in increasing
   angle: best[m, i] = least cost with target m matched to candidate i and targets 0..m-1 to
   earlier candidates, none of the sparse candidates before i skipped. The predecessor of i lies
   between the last sparse candidate before i and i - 1. O(K M), vectorized over phi.
4. phi: for every (set, sorted matching) the cost is linear in phi between consecutive integers
   s, so min over sets and matchings is concave there and its minimum over each unit interval is
   at an integer endpoint. On the line, trying s = 0..L/M (both ends of [0, arc/M]) is exact.
5. Circle: lift the circle to the line, cut at angle 0. Matching the sorted angles to M
   *consecutive* lattice targets s + m * (L/M), s in Z, with line distances, has the circular
   optimum as its minimum: line distances are >= arc lengths, and conversely an optimal circular
   matching is a cyclic shift of the sorted matching whose lifted cost equals it (the equal-mass
   case of optimal transport on the circle, e.g. Rabin, Delon & Gousseau 2011; also checked
   against brute force in the tests). The optimal s of a set is a median of
   ``pos_(i) - i * L/M``, so s in [-(L - L/M), L - L/K] suffices. We run step 3 on s in [0, L/M] for an upper bound, then
   only on the s whose lower bound (each sparse angle alone to its nearest admissible target,
   auxiliaries free) is below it: exact branch and bound.

The released reference code instead takes uniform M angles at a random offset and greedily swaps
in the sparse angles by nearest distance; it is never better than this optimum (see the tests).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..physics.geometry import uniform_angles

N_CANDIDATES = 200        # paper (Sec. 4.1): 200 pre-generated candidate projections
ARC = math.pi             # paper (Sec. 4.1): candidate angles uniform over a half rotation
N_MIN, N_MAX = 6, 24      # paper (Sec. 3.5): n_min = 6, n_max = 24; M = n_max

_INF = np.int64(1) << np.int64(40)   # 'infeasible'; feasible costs are < 2 M lcm(K, M)


def _is_circle(arc: float) -> bool:
    if not 0 < arc <= 2 * math.pi + 1e-12:
        raise ValueError(f"arc must be in (0, 2 pi], got {arc}")
    return math.isclose(arc, 2 * math.pi)


def candidate_angles(n_candidates: int = N_CANDIDATES, arc: float = ARC) -> np.ndarray:
    """Angles (radians) of the candidate projections, ``k * arc / n_candidates``."""
    return np.asarray(uniform_angles(n_candidates, arc))


def evaluation_indices(n: int, n_candidates: int) -> np.ndarray:
    """The ``n`` evaluation views of ``n_candidates``: ``floor(j * K / n)``, j = 0 .. n-1, from candidate
    0, as the DeepSparse authors' evaluation code takes them (xmed-lab/DeepSparse). For K a
    multiple of n (120 candidates, 6, 8 or 10 views) this equals the half-up rounding of
    :func:`uniform_sparse_indices` at offset 0; otherwise it can differ by one candidate."""
    if not 1 <= n <= n_candidates:
        raise ValueError(f"need 1 <= n <= n_candidates, got n={n}, n_candidates={n_candidates}")
    return (np.arange(n, dtype=np.int64) * n_candidates) // n


def uniform_sparse_indices(n: int, n_candidates: int, rng: np.random.Generator,
                           offset: float | None = None) -> np.ndarray:
    """``n`` candidate indices spread uniformly, sorted: ``round(offset + j * K / n) mod K``.

    ``offset`` is in candidate spacings (arc / K), drawn uniformly in [0, K / n) from ``rng``
    when None (``rng`` is unused otherwise). Rounding is half-up. The indices are distinct: consecutive values differ by K / n >= 1 so
    they round to distinct integers, and the last one reaches K (wrapping to 0) only if the first
    one is >= 1 (the two conditions need K / n < 1).
    """
    if not 1 <= n <= n_candidates:
        raise ValueError(f"need 1 <= n <= n_candidates, got n={n}, n_candidates={n_candidates}")
    step = n_candidates / n
    if offset is None:
        offset = rng.uniform(0.0, step)
    idx = np.floor(offset + step * np.arange(n) + 0.5).astype(np.int64) % n_candidates
    return np.sort(idx)


@lru_cache(maxsize=64)
def _units(n_candidates: int, m_total: int) -> tuple[int, int, int]:
    """(L, candidate spacing, target spacing) in the integer units of arc / L, L = lcm(K, M)."""
    lcm = math.lcm(n_candidates, m_total)
    return lcm, lcm // n_candidates, lcm // m_total


def _assign(sparse_mask: np.ndarray, cand_pos: np.ndarray, shifts: np.ndarray,
            target_step: int, m_total: int) -> tuple[int, int, np.ndarray]:
    """Step 3 for every target shift s in ``shifts`` at once.

    Targets are ``s + m * target_step``. ``best[p, i]`` = least cost with target m matched to
    candidate i, targets before m to candidates before i, and no sparse candidate before i left
    out; so the previous target's candidate lies in [last sparse before i, i - 1]. That window
    minimum is a prefix minimum restarted at every sparse candidate: subtracting ``segment * BIG``
    (segment = number of sparse candidates up to there) makes older segments lose exactly,
    in integers. Returns (cost, shift, chosen candidate indices); ties go to the first shift and
    to the earliest candidate.
    """
    n_cand = len(cand_pos)
    big = _INF                                              # > any feasible cost: infeasible
    segment = np.cumsum(sparse_mask).astype(np.int64)       # sparse candidates in [0, i]
    restart = segment * big
    first_sparse = int(np.argmax(sparse_mask))
    last_sparse = n_cand - 1 - int(np.argmax(sparse_mask[::-1]))
    rel = cand_pos[None, :] - shifts[:, None]               # (P, K): candidate - target 0
    best = np.full((m_total, len(shifts), n_cand), big, dtype=np.int64)
    best[0, :, :first_sparse + 1] = np.abs(rel[:, :first_sparse + 1])
    for m in range(1, m_total):
        window_min = np.minimum.accumulate(best[m - 1] - restart, axis=1) + restart
        dist = np.abs(rel[:, 1:] - m * target_step)
        best[m, :, 1:] = np.minimum(window_min[:, :-1] + dist, big)
    final = best[m_total - 1, :, last_sparse:]
    p = int(np.argmin(final.min(axis=1)))
    i = last_sparse + int(np.argmin(final[p]))
    chosen = [i]
    for m in range(m_total - 2, -1, -1):
        start = int(np.flatnonzero(sparse_mask[:i])[-1]) if segment[i] - sparse_mask[i] > 0 else 0
        i = start + int(np.argmin(best[m, p, start:i]))
        chosen.append(i)
    return int(final[p].min()), int(shifts[p]), np.array(chosen[::-1], dtype=np.int64)


def _sparse_lower_bound(sparse_pos: np.ndarray, shifts: np.ndarray, target_step: int,
                        m_total: int) -> np.ndarray:
    """Lower bound on the cost at each shift: the q-th sparse angle has rank q..q+M-n among the
    M chosen angles, so it pays at least its distance to the nearest of those targets."""
    n = len(sparse_pos)
    q = np.arange(n)
    rel = sparse_pos[None, :] - shifts[:, None]                                 # (P, n)
    rank = np.clip(np.floor(rel / target_step + 0.5), q, q + m_total - n)
    return np.abs(rel - rank * target_step).sum(axis=1).astype(np.int64)


def _solve(sparse: np.ndarray, m_total: int, n_candidates: int, arc: float):
    """Exact Eq. 8: (cost in arc / L units, shift s, chosen candidate indices incl. sparse)."""
    circle = _is_circle(arc)
    given = np.asarray(sparse, dtype=np.int64).ravel()
    sparse = np.unique(given)
    if len(sparse) != len(given):
        raise ValueError(f"sparse indices must be distinct, got {given.tolist()}")
    if not 1 <= len(sparse) <= m_total <= n_candidates:
        raise ValueError(f"need 1 <= n_sparse <= m_total <= n_candidates, got {len(sparse)}, "
                         f"{m_total}, {n_candidates}")
    if sparse[0] < 0 or sparse[-1] >= n_candidates:
        raise ValueError(f"sparse indices must lie in [0, {n_candidates}), got {sparse.tolist()}")
    lcm, cand_step, target_step = _units(n_candidates, m_total)
    cand_pos = cand_step * np.arange(n_candidates, dtype=np.int64)
    sparse_mask = np.zeros(n_candidates, dtype=bool)
    sparse_mask[sparse] = True
    primary = np.arange(0, target_step + 1, dtype=np.int64)            # phi in [0, arc / M]
    best = _assign(sparse_mask, cand_pos, primary, target_step, m_total)
    if circle:
        shifts = np.arange(-(lcm - target_step), lcm - cand_step + 1, dtype=np.int64)
        shifts = shifts[(shifts < 0) | (shifts > target_step)]
        bound = _sparse_lower_bound(cand_pos[sparse], shifts, target_step, m_total)
        shifts = shifts[bound < best[0]]
        if len(shifts):
            other = _assign(sparse_mask, cand_pos, shifts, target_step, m_total)
            if other[0] < best[0]:
                best = other
    return best


def auxiliary_indices(sparse, m_total: int = N_MAX, n_candidates: int = N_CANDIDATES,
                      arc: float = ARC) -> np.ndarray:
    """The ``m_total - n`` auxiliary candidate indices (sorted) solving Eq. 8 exactly.

    Deterministic: ties go to the smallest target offset. Runs in O(K M) numpy steps
    (about 2 ms for K = 200, M = 24, arc = pi).
    """
    _, _, chosen = _solve(sparse, m_total, n_candidates, arc)
    return np.setdiff1d(chosen, sparse)


def view_deviation(indices, n_candidates: int = N_CANDIDATES, arc: float = ARC) -> float:
    """Eq. 8 objective (radians) of a given set of M distinct candidate indices.

    Minimum over phi and bijections of the summed deviation from M uniform targets. Closed form:
    with the sorted matching, the cost is sum_i |pos_(i) - i * arc/M - phi|, minimized by a median
    (clipped to [0, arc/M] on the line). Independent of the dynamic programme; used to check it.
    """
    circle = _is_circle(arc)
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if len(idx) != len(np.asarray(indices)):
        raise ValueError("indices must be distinct")
    m_total = len(idx)
    lcm, cand_step, target_step = _units(n_candidates, m_total)
    values = np.sort(cand_step * idx - target_step * np.arange(m_total))
    shift = values[(m_total - 1) // 2]
    if not circle:
        shift = min(max(shift, 0), target_step)
    return float(np.abs(values - shift).sum()) * arc / lcm


def select_views(rng: np.random.Generator, n: int, m_total: int = N_MAX,
                 n_candidates: int = N_CANDIDATES,
                 arc: float = ARC) -> tuple[np.ndarray, np.ndarray]:
    """[n | M] view sampling with a fixed n (finetuning, Sec. 3.4).

    Returns ``(sparse_idx, all_idx)``: n sorted sparse candidate indices, and the M indices of
    all views whose first n entries are ``sparse_idx`` followed by the sorted auxiliary ones.
    """
    if not 1 <= n <= m_total <= n_candidates:
        raise ValueError(f"need 1 <= n <= m_total <= n_candidates, got {n}, {m_total}, "
                         f"{n_candidates}")
    sparse = uniform_sparse_indices(n, n_candidates, rng)
    aux = auxiliary_indices(sparse, m_total, n_candidates, arc) if n < m_total else sparse[:0]
    return sparse, np.concatenate([sparse, aux])


def select_hybrid_views(rng: np.random.Generator, n_candidates: int = N_CANDIDATES,
                        n_min: int = N_MIN, n_max: int = N_MAX,
                        arc: float = ARC) -> tuple[np.ndarray, np.ndarray]:
    """HyViP pretraining sampling [n_min~n_max | n_max]: n uniform in [n_min, n_max], M = n_max.

    Returns ``(sparse_idx, all_idx)`` as :func:`select_views`.
    """
    if not 1 <= n_min <= n_max:
        raise ValueError(f"need 1 <= n_min <= n_max, got {n_min}, {n_max}")
    n = int(rng.integers(n_min, n_max + 1))
    return select_views(rng, n, n_max, n_candidates, arc)
