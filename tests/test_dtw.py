"""The fast symmetricP2 DTW against dtw-python, the reference implementation."""
from __future__ import annotations

import numpy as np
import pytest

import numba

from vpd_stream import dtw as dtw_mod
from vpd_stream.dtw import LANES, DtwIndex, dtw_p2, dtw_p2_local, l2_normalize
from vpd_stream.errors import ConfigError

dtw_ref = pytest.importorskip("dtw", reason="dtw-python (the reference) is not installed")


def _reference(x: np.ndarray, y: np.ndarray) -> float:
    """dtw-python's normalized distance, or inf where it finds no warping path."""
    if len(x) == 1 or len(y) == 1:
        # dtw-python squeezes a 1-frame (1, d) input into a d-frame series, so it cannot be
        # asked; by the recurrence a single frame aligns only with a single frame.
        if len(x) == len(y):
            return float(np.linalg.norm(x[0] - y[0])) / 2
        return np.inf
    try:
        return dtw_ref.dtw(x, y, step_pattern="symmetricP2", distance_only=True).normalizedDistance
    except ValueError:
        return np.inf


def test_matches_dtw_python_on_unequal_lengths() -> None:
    rng = np.random.default_rng(0)
    checked_inf = checked_finite = 0
    for _ in range(150):
        n, m = rng.integers(1, 40, size=2)
        x, y = rng.normal(size=(n, 5)), rng.normal(size=(m, 5))
        ref = _reference(x, y)
        ours = dtw_p2(x, y, normalize=False)
        if np.isinf(ref):
            checked_inf += 1
            assert np.isinf(ours), (n, m)
        else:
            checked_finite += 1
            assert abs(ours - ref) < 1e-6, (n, m, ours, ref)
    # Both kinds of case must actually have been exercised.
    assert checked_inf > 10 and checked_finite > 10


def test_slope_boundary_cases() -> None:
    rng = np.random.default_rng(1)
    for n, m in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 4), (4, 3), (3, 5), (7, 10), (7, 11), (11, 7), (2, 3)]:
        x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
        ref, ours = _reference(x, y), dtw_p2(x, y, normalize=False)
        assert (np.isinf(ref) and np.isinf(ours)) or abs(ref - ours) < 1e-6, (n, m, ref, ours)


def test_index_matches_pairwise_with_normalization() -> None:
    rng = np.random.default_rng(2)
    index = [rng.normal(size=(int(rng.integers(5, 30)), 26)) for _ in range(20)]
    queries = [rng.normal(size=(int(rng.integers(5, 30)), 26)) for _ in range(4)]
    costs = DtwIndex(index).cost_matrix(queries)
    for qi, q in enumerate(queries):
        for ii, s in enumerate(index):
            ref = _reference(l2_normalize(q), l2_normalize(s))
            assert (np.isinf(ref) and np.isinf(costs[qi, ii])) or abs(costs[qi, ii] - ref) < 1e-6


def test_local_cost_entry_point() -> None:
    lm = np.arange(12, dtype=float).reshape(3, 4)
    # Only the diagonal steps fit a 3x3 block; its cost is d00 + 2 d11 + 2 d22 over n + m.
    assert dtw_p2_local(lm[:, :3]) == pytest.approx((0 + 2 * 5 + 2 * 10) / 6)


def _reference_matrix(queries, index) -> np.ndarray:
    return np.array([[_reference(l2_normalize(q), l2_normalize(s)) for s in index] for q in queries])


def _assert_matches(costs: np.ndarray, ref: np.ndarray) -> None:
    inf = np.isinf(ref)
    np.testing.assert_array_equal(np.isinf(costs), inf)
    assert np.abs(costs[~inf] - ref[~inf]).max() < 1e-6


def test_lock_step_groups_of_mixed_lengths_match_dtw_python() -> None:
    """Items are packed LANES to a group by length; a group whose lanes differ in length,
    with some lanes infeasible for a query and others not, an index that does not fill its
    last group, and a feature count that is not a multiple of 4 must all give each pair's
    own dtw-python cost."""
    rng = np.random.default_rng(3)
    lengths = [4, 5, 6, 7, 9, 12, 13, 20, 21, 22, 30, 31, 45, 46, 47, 60, 61, 90, 2, 3, 8, 15, 33]
    assert len(lengths) % LANES != 0
    index = [rng.normal(size=(t, 7)) for t in lengths]
    queries = [rng.normal(size=(t, 7)) for t in (2, 3, 5, 9, 14, 21, 30, 40, 61)]
    idx = DtwIndex(index)
    # the groups really mix feasible and infeasible lanes for some query
    mixed = 0
    for q in queries:
        for g in range(len(idx._g_offsets)):
            ok = [dtw_mod._feasible(len(q), int(m)) for m, it in zip(idx._g_lengths[g], idx._g_items[g]) if it >= 0]
            mixed += any(ok) and not all(ok)
    assert mixed > 5
    ref = _reference_matrix(queries, index)
    assert np.isinf(ref).sum() > 20 and np.isfinite(ref).sum() > 20
    _assert_matches(idx.cost_matrix(queries), ref)


def test_threaded_chunks_equal_the_single_thread_result() -> None:
    """Enough (query, group) tasks to take the threaded path: every cell equal to the
    one-thread result (and to dtw-python on a sample)."""
    rng = np.random.default_rng(4)
    index = [rng.normal(size=(int(rng.integers(10, 60)), 26)) for _ in range(41)]
    queries = [rng.normal(size=(int(rng.integers(10, 60)), 26)) for _ in range(9)]
    idx = DtwIndex(index)
    assert len(queries) * len(idx._g_offsets) >= dtw_mod._MIN_PARALLEL_TASKS
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = idx.cost_matrix(queries)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        many = idx.cost_matrix(queries)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, many)
    _assert_matches(many[:3], _reference_matrix(queries[:3], index))


def test_costs_do_not_depend_on_the_other_items_or_queries() -> None:
    """A pair's cost is the same alone (its own group) as inside a larger index: the union
    band of a group never changes a lane's result, and ring buffers reused across pairs hold
    nothing that leaks into the next one."""
    rng = np.random.default_rng(5)
    index = [rng.normal(size=(int(rng.integers(5, 50)), 12)) for _ in range(17)]
    queries = [rng.normal(size=(int(rng.integers(5, 50)), 12)) for _ in range(6)]
    full = DtwIndex(index).cost_matrix(queries)
    for qi, q in enumerate(queries):
        for ii, s in enumerate(index):
            assert DtwIndex([s]).costs(q)[0] == full[qi, ii]


def test_bad_input_is_a_config_error() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(ConfigError, match="at least one"):
        DtwIndex([])
    with pytest.raises(ConfigError, match="features"):
        DtwIndex([rng.normal(size=(5, 3)), rng.normal(size=(5, 4))])
    idx = DtwIndex([rng.normal(size=(5, 3))])
    with pytest.raises(ConfigError, match="3 were expected"):
        idx.cost_matrix([rng.normal(size=(5, 4))])
    with pytest.raises(ConfigError, match="non-empty"):
        idx.cost_matrix([np.zeros((0, 3))])
    with pytest.raises(ConfigError, match="NaN"):
        idx.cost_matrix([np.full((4, 3), np.nan)])
    assert idx.cost_matrix([]).shape == (0, 1)


def test_a_failing_chunk_raises_instead_of_returning_a_partial_matrix(monkeypatch) -> None:
    rng = np.random.default_rng(7)
    idx = DtwIndex([rng.normal(size=(20, 4)) for _ in range(40)])
    queries = [rng.normal(size=(20, 4)) for _ in range(8)]
    real = dtw_mod._costs_chunk

    def flaky(*args):
        if args[-2] == args[-1] - 1:  # the last chunk (first, step) fails
            raise RuntimeError("last chunk failed")
        return real(*args)

    monkeypatch.setattr(dtw_mod, "_costs_chunk", flaky)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        with pytest.raises(RuntimeError, match="last chunk"):
            idx.cost_matrix(queries)
    finally:
        numba.set_num_threads(before)
