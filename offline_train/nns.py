"""Nearest-neighbour search with DTW: every flip combination, the lowest cost wins.

Flipping is a signed permutation of the features, an isometry that commutes with L2
normalization, so cost(flip q, flip x) == cost(q, x): two of the four combinations
suffice (q vs x, flip q vs x) and give exactly the four-way minimum.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from vpd_stream.dtw import DtwIndex


def flip_min_costs(queries: list[np.ndarray], index: list[np.ndarray],
                   flip: Callable | None) -> np.ndarray:
    """(Q, N) lowest DTW cost over flip combinations."""
    idx = DtwIndex(index)
    costs = idx.cost_matrix(queries)
    if flip is not None:
        costs = np.minimum(costs, idx.cost_matrix([flip(q) for q in queries]))
    return costs


def nns_predict(costs: np.ndarray, index_labels: np.ndarray) -> np.ndarray:
    """Label of the nearest index item per query (ties: the lower index)."""
    return np.asarray(index_labels)[np.argmin(costs, axis=1)]
