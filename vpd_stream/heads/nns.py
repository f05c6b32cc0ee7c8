"""Nearest-neighbour search with DTW: every flip combination, the lowest cost wins.

Two protocols, one definition (the lowest cost over q/flip q against x/flip x):

* features whose flip is a signed permutation (normalized 2D joints): the flip is an
  isometry that commutes with L2 normalization, so cost(flip q, flip x) == cost(q, x) and
  two of the four combinations (q vs x, flip q vs x) give exactly the four-way minimum
  (``flip_min_costs``);
* learned embeddings (VIPE*, the distilled students): the flipped sequence is the
  embedding of the mirrored pose or crop, not a function of the features, and no two
  combinations are equal in general, so all four are computed (``exact_flip_min_costs``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from vpd_stream.dtw import DtwIndex


def as_index(index: list[np.ndarray] | DtwIndex) -> DtwIndex:
    """A built index as is (callers that search one index many times build it once)."""
    return index if isinstance(index, DtwIndex) else DtwIndex(index)


def flip_min_costs(queries: list[np.ndarray], index: list[np.ndarray] | DtwIndex,
                   flip: Callable | None) -> np.ndarray:
    """(Q, N) lowest DTW cost over flip combinations, for an isometric feature-space ``flip``."""
    idx = as_index(index)
    costs = idx.cost_matrix(queries)
    if flip is not None:
        costs = np.minimum(costs, idx.cost_matrix([flip(q) for q in queries]))
    return costs


def exact_flip_min_costs(queries: list[np.ndarray], queries_flipped: list[np.ndarray],
                         index: list[np.ndarray] | DtwIndex,
                         index_flipped: list[np.ndarray] | DtwIndex) -> np.ndarray:
    """(Q, N) lowest DTW cost over all four of (q | flip q) × (x | flip x), the flipped
    sequences given (for features whose flip is not an isometry of the feature space)."""
    plain_idx, mirrored_idx = as_index(index), as_index(index_flipped)
    if len(queries_flipped) != len(queries) or len(plain_idx.lengths) != len(mirrored_idx.lengths):
        raise ValueError("every query and index sequence needs its flipped counterpart")
    both = list(queries) + list(queries_flipped)
    q = len(queries)
    plain = plain_idx.cost_matrix(both)
    mirrored = mirrored_idx.cost_matrix(both)
    return np.minimum.reduce([plain[:q], plain[q:], mirrored[:q], mirrored[q:]])


def nns_predict(costs: np.ndarray, index_labels: np.ndarray) -> np.ndarray:
    """Label of the nearest index item per query (ties: the lower index)."""
    return np.asarray(index_labels)[np.argmin(costs, axis=1)]
