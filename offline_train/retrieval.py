"""Retrieval by DTW alignment cost: precision@k averaged over queries."""
from __future__ import annotations

import numpy as np


def precision_at_k(costs: np.ndarray, query_labels: np.ndarray, index_labels: np.ndarray,
                   ks: tuple[int, ...] = (1, 10, 50), exclude_self: np.ndarray | None = None) -> dict[int, float]:
    """Mean over queries of the fraction of the k lowest-cost items sharing the query's label.

    ``exclude_self`` (Q, N) bool marks pairs to leave out (a query retrieving itself).
    """
    costs = np.array(costs, dtype=np.float64)
    if exclude_self is not None:
        costs[exclude_self] = np.inf
    # Stable sort: equal costs keep index order, so results are deterministic.
    order = np.argsort(costs, axis=1, kind="stable")
    hits = np.asarray(index_labels)[order] == np.asarray(query_labels)[:, None]
    return {k: float(hits[:, :k].mean()) for k in ks if k <= costs.shape[1]}
