"""The fast symmetricP2 DTW against dtw-python, the reference implementation."""
from __future__ import annotations

import numpy as np
import pytest

from vpd_stream.dtw import DtwIndex, dtw_p2, dtw_p2_local, l2_normalize

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
