"""HyViP view sampling: exactness of Eq. 8 against brute force, sampling rules, speed."""

import itertools
import math
import time

import numpy as np
import pytest

from deepsparse_core.data import view_selection as vs

ARCS = [math.pi, 2 * math.pi]


# ---------------------------------------------------------------- brute force reference

_PERMS = {m: np.array(list(itertools.permutations(range(m)))) for m in range(1, 6)}


def _brute_force(sparse, m_total, n_candidates, arc, rng):
    """min over auxiliary subsets, offsets phi and all bijections of the summed deviation.

    Makes no use of sorted matchings: every permutation is tried. phi runs over a dense grid
    (the cost breakpoints plus random values); the distance is circular only for a full turn.
    """
    angles = np.arange(n_candidates) * arc / n_candidates
    step = arc / m_total
    lcm = math.lcm(n_candidates, m_total)
    if math.isclose(arc, 2 * math.pi):
        phis = np.concatenate([np.arange(lcm // m_total) * arc / lcm, rng.uniform(0, step, 40)])
    else:
        phis = np.concatenate([np.arange(lcm // m_total + 1) * arc / lcm, rng.uniform(0, step, 40)])
    targets = phis[:, None] + step * np.arange(m_total)                        # (F, M)
    others = [k for k in range(n_candidates) if k not in set(sparse)]
    subsets = np.array([sorted(list(sparse) + list(a))
                        for a in itertools.combinations(others, m_total - len(sparse))])
    diff = np.abs(angles[subsets][:, None, :, None] - targets[None, :, None, :])  # (S, F, M, M)
    if math.isclose(arc, 2 * math.pi):
        diff = np.minimum(diff, 2 * math.pi - diff)
    perms = _PERMS[m_total]
    rows = np.arange(m_total)
    costs = diff[:, :, rows[None, :], perms].sum(-1)                           # (S, F, P)
    return costs.min()


def _cases(rng, n_cases):
    for _ in range(n_cases):
        k = int(rng.integers(2, 13))
        m = int(rng.integers(1, min(k, 5) + 1))
        n = int(rng.integers(1, m + 1))
        if rng.random() < 0.5:
            sparse = vs.uniform_sparse_indices(n, k, rng)
        else:
            sparse = np.sort(rng.choice(k, n, replace=False))
        yield sparse, m, k


@pytest.mark.parametrize("arc", ARCS, ids=["half-turn", "full-turn"])
def test_auxiliary_indices_are_optimal_against_brute_force(arc):
    rng = np.random.default_rng(7)
    for sparse, m, k in _cases(rng, 60):
        aux = vs.auxiliary_indices(sparse, m, k, arc)
        chosen = np.concatenate([sparse, aux])
        assert len(aux) == m - len(sparse)
        assert len(np.unique(chosen)) == m and not set(aux) & set(sparse)
        assert vs.view_deviation(chosen, k, arc) == pytest.approx(
            _brute_force(sparse, m, k, arc, rng), abs=1e-9), (sparse.tolist(), m, k)


@pytest.mark.parametrize("arc", ARCS, ids=["half-turn", "full-turn"])
def test_view_deviation_matches_brute_force_for_a_fixed_set(arc):
    rng = np.random.default_rng(8)
    for _ in range(40):
        k = int(rng.integers(2, 13))
        m = int(rng.integers(1, min(k, 5) + 1))
        chosen = np.sort(rng.choice(k, m, replace=False))
        assert vs.view_deviation(chosen, k, arc) == pytest.approx(
            _brute_force(chosen, m, k, arc, rng), abs=1e-9)


@pytest.mark.parametrize("arc", ARCS, ids=["half-turn", "full-turn"])
def test_dynamic_programme_cost_equals_closed_form_at_paper_size(arc):
    rng = np.random.default_rng(9)
    for _ in range(30):
        n = int(rng.integers(vs.N_MIN, vs.N_MAX))
        sparse = vs.uniform_sparse_indices(n, vs.N_CANDIDATES, rng)
        cost, _, chosen = vs._solve(sparse, vs.N_MAX, vs.N_CANDIDATES, arc)
        lcm = math.lcm(vs.N_CANDIDATES, vs.N_MAX)
        assert vs.view_deviation(chosen, vs.N_CANDIDATES, arc) == pytest.approx(cost * arc / lcm)


def test_half_turn_distance_does_not_wrap_around():
    # 0 and (K-1) pi / K are neighbours on a full turn's circle but opposite ends of a half turn.
    k = 12
    assert vs.view_deviation([0, k - 1], k, math.pi) == pytest.approx(math.pi / 2 - math.pi / k)
    assert vs.auxiliary_indices([0], 2, k, math.pi).tolist() == [6]      # pi / 2 away, cost 0
    # With candidates over a full turn the same pair is only one step apart around 0.
    assert vs.view_deviation([0, k - 1], k, 2 * math.pi) == pytest.approx(math.pi - 2 * math.pi / k)


# ---------------------------------------------------------------- the released greedy

def _released_greedy(sparse, m_total, n_candidates, offset):
    """The released reference heuristic: M uniform indices (floored) shifted by an integer offset;
    each sparse index, in increasing pair distance, takes the nearest unused one; the unused
    uniform indices become the auxiliary views."""
    uniform = np.linspace(0, n_candidates, m_total, endpoint=False).astype(int) + offset
    pairs = sorted((abs(int(a) - int(b)), i, j)
                   for i, a in enumerate(uniform) for j, b in enumerate(sparse))
    used_uniform, used_sparse = set(), set()
    for _, i, j in pairs:
        if i not in used_uniform and j not in used_sparse:
            used_uniform.add(i)
            used_sparse.add(j)
    return np.concatenate([sparse, np.delete(uniform, sorted(used_uniform))])


def test_never_worse_than_the_released_greedy_and_sometimes_strictly_better():
    rng = np.random.default_rng(10)
    k, m = vs.N_CANDIDATES, vs.N_MAX
    max_offset = k - int(np.linspace(0, k, m, endpoint=False).astype(int)[-1])
    gaps = []
    for _ in range(30):
        sparse, chosen = vs.select_hybrid_views(rng)
        if len(sparse) == m:
            continue
        ours = vs.view_deviation(chosen, k, math.pi)
        for offset in range(max_offset):                  # every offset the released code can draw
            greedy = _released_greedy(sparse, m, k, offset)
            assert len(np.unique(greedy)) == m
            gaps.append(vs.view_deviation(greedy, k, math.pi) - ours)
    gaps = np.array(gaps)
    assert gaps.min() >= -1e-12
    assert (gaps > 1e-9).mean() > 0.5                      # strictly better in most draws


def test_strictly_better_than_greedy_on_a_small_case():
    # K = 8 candidates over a half turn (pi/8 apart), M = 4, sparse {2, 6, 7}. Whatever its offset,
    # the greedy keeps a uniform index next to the sparse cluster: {0, 2, 6, 7} (3 pi/8 from
    # uniform) or {2, 3, 6, 7} (2 pi/8); the optimum fills the gap: {2, 4, 6, 7} (pi/8).
    sparse = np.array([2, 6, 7])
    greedy = [_released_greedy(sparse, 4, 8, offset) for offset in (0, 1)]
    assert [sorted(g.tolist()) for g in greedy] == [[0, 2, 6, 7], [2, 3, 6, 7]]
    assert vs.auxiliary_indices(sparse, 4, 8, math.pi).tolist() == [4]
    assert vs.view_deviation([2, 4, 6, 7], 8, math.pi) == pytest.approx(math.pi / 8)
    assert [vs.view_deviation(g, 8, math.pi) for g in greedy] == pytest.approx(
        [3 * math.pi / 8, 2 * math.pi / 8])


# ---------------------------------------------------------------- sampling rules

def test_candidate_angles_are_uniform_with_end_excluded():
    angles = vs.candidate_angles(200, math.pi)
    assert len(angles) == 200 and angles[0] == 0.0
    assert np.allclose(np.diff(angles), math.pi / 200) and angles[-1] < math.pi


@pytest.mark.parametrize("n,k", [(6, 200), (7, 200), (24, 200), (13, 13), (5, 12), (1, 10)])
def test_uniform_sparse_indices_are_distinct_and_evenly_spaced(n, k):
    rng = np.random.default_rng(11)
    for offset in [None] * 20 + [0.0, k / n - 1e-9, 0.5, k / n / 2]:
        idx = vs.uniform_sparse_indices(n, k, rng, offset)
        assert len(np.unique(idx)) == n and idx.min() >= 0 and idx.max() < k
        gaps = np.diff(np.concatenate([idx, [idx[0] + k]]))   # including the wrap-around gap
        assert set(gaps) <= {math.floor(k / n), math.ceil(k / n)}


def test_uniform_sparse_offset_is_in_candidate_spacings():
    assert vs.uniform_sparse_indices(6, 200, None, offset=0.0).tolist() == [0, 33, 67, 100, 133,
                                                                             167]
    assert vs.uniform_sparse_indices(4, 200, None, offset=10.4).tolist() == [10, 60, 110, 160]


def test_sampling_is_reproducible_from_the_seed_and_covers_the_range():
    a = [vs.select_hybrid_views(np.random.default_rng(3)) for _ in range(2)]
    assert all(np.array_equal(x, y) for x, y in zip(a[0], a[1]))
    rng = np.random.default_rng(4)
    draws = [vs.select_hybrid_views(rng) for _ in range(150)]
    counts = {len(sparse) for sparse, _ in draws}
    assert counts == set(range(vs.N_MIN, vs.N_MAX + 1))       # paper: n in [6, 24]
    assert len({int(sparse[0]) for sparse, _ in draws}) > 5   # random offsets
    for sparse, chosen in draws:
        assert len(chosen) == vs.N_MAX and len(np.unique(chosen)) == vs.N_MAX
        assert np.array_equal(chosen[:len(sparse)], sparse)   # sparse views come first
        assert chosen.min() >= 0 and chosen.max() < vs.N_CANDIDATES


@pytest.mark.parametrize("n", [6, 8, 10])                     # paper: 6, 8 and 10 views
def test_fixed_n_sampling_for_finetuning(n):
    rng = np.random.default_rng(n)
    sparse, chosen = vs.select_views(rng, n)
    assert len(sparse) == n and len(chosen) == vs.N_MAX and len(np.unique(chosen)) == vs.N_MAX
    sparse, chosen = vs.select_views(rng, n, m_total=n)
    assert np.array_equal(sparse, chosen)


def test_auxiliary_views_complete_a_uniform_set_when_one_exists():
    # K = 240, M = 24, n = 6 at offset 5: the sparse indices are 5 + 40 j, all on the uniform
    # 24-view grid 5 + 10 m, so the optimum is exactly that grid (deviation 0).
    sparse = vs.uniform_sparse_indices(6, 240, None, offset=5.0)
    chosen = np.sort(np.concatenate([sparse, vs.auxiliary_indices(sparse, 24, 240, math.pi)]))
    assert chosen.tolist() == list(range(5, 240, 10))
    assert vs.view_deviation(chosen, 240, math.pi) == 0.0


@pytest.mark.parametrize("bad", [
    dict(sparse=[1, 1], m_total=4, n_candidates=12, arc=math.pi),
    dict(sparse=[0, 1, 2], m_total=2, n_candidates=12, arc=math.pi),
    dict(sparse=[12], m_total=2, n_candidates=12, arc=math.pi),
    dict(sparse=[0], m_total=2, n_candidates=12, arc=3 * math.pi),
])
def test_invalid_arguments_raise_value_error(bad):
    with pytest.raises(ValueError):
        vs.auxiliary_indices(**bad)


@pytest.mark.parametrize("arc", ARCS, ids=["half-turn", "full-turn"])
def test_sampling_is_fast_enough_for_every_training_iteration(arc):
    rng = np.random.default_rng(12)
    vs.select_hybrid_views(rng, arc=arc)
    start = time.process_time()                            # CPU time: robust to a busy machine
    for _ in range(50):
        vs.select_hybrid_views(rng, arc=arc)
    per_call_ms = (time.process_time() - start) / 50 * 1e3
    assert per_call_ms < 10.0, per_call_ms


def test_evaluation_views_are_the_authors_floor():
    """Issue 17: floor(j * K / n) from candidate 0; equal to half-up rounding when n divides K."""
    import numpy as np

    from deepsparse_core.data.view_selection import evaluation_indices, uniform_sparse_indices

    assert evaluation_indices(6, 200).tolist() == [0, 33, 66, 100, 133, 166]
    assert uniform_sparse_indices(6, 200, rng=None, offset=0.0).tolist() == [0, 33, 67, 100, 133, 167]
    for n in (6, 8, 10):
        assert np.array_equal(evaluation_indices(n, 120), uniform_sparse_indices(n, 120, rng=None, offset=0.0))
    brute = [int(j * 50 // 7) for j in range(7)]
    assert evaluation_indices(7, 50).tolist() == brute
