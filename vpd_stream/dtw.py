"""Fast DTW alignment cost with the symmetricP2 step pattern (Sakoe-Chiba, P = 2).

Matches ``dtw.dtw(x, y, step_pattern="symmetricP2", distance_only=True).normalizedDistance``
of dtw-python (cumulative cost / (n + m)); where no warping path satisfies the slope
constraint (dtw-python raises), the cost here is +inf, so such pairs simply never win.

The recurrence (g = cumulative cost, d = local cost, g[0, 0] = d[0, 0]):
    g[i, j] = min(g[i-2, j-3] + 2 d[i-1, j-2] + 2 d[i, j-1] + d[i, j],
                  g[i-1, j-1] + 2 d[i, j],
                  g[i-3, j-2] + 2 d[i-2, j-1] + 2 d[i-1, j] + d[i, j])
Local costs are Euclidean distances between L2-normalized feature vectors. A query is
aligned against a whole index at once in numba, in parallel over index items; pairs whose
length ratio admits no path are skipped before any local cost is computed.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

INF = np.inf


@njit(cache=True, fastmath=False, nogil=True)
def _p2_cost(lm: np.ndarray, r0: int, c0: int, n: int, m: int, g: np.ndarray) -> float:
    """Normalized symmetricP2 cost of the block lm[r0:r0+n, c0:c0+m]; g is (n, m) scratch."""
    # The steps have slopes 2/3, 1 and 3/2, so a path exists only if both overall slopes fit.
    if 2 * (n - 1) > 3 * (m - 1) or 2 * (m - 1) > 3 * (n - 1):
        return INF
    for i in range(n):
        for j in range(m):
            d = lm[r0 + i, c0 + j]
            if i == 0 and j == 0:
                g[i, j] = d
                continue
            best = INF
            if i >= 1 and j >= 1:
                v = g[i - 1, j - 1] + 2.0 * d
                if v < best:
                    best = v
            if i >= 2 and j >= 3:
                v = g[i - 2, j - 3] + 2.0 * lm[r0 + i - 1, c0 + j - 2] + 2.0 * lm[r0 + i, c0 + j - 1] + d
                if v < best:
                    best = v
            if i >= 3 and j >= 2:
                v = g[i - 3, j - 2] + 2.0 * lm[r0 + i - 2, c0 + j - 1] + 2.0 * lm[r0 + i - 1, c0 + j] + d
                if v < best:
                    best = v
            g[i, j] = best
    return g[n - 1, m - 1] / (n + m)


@njit(cache=True, nogil=True, fastmath=True)  # lets the d-loop vectorize (reassociation only)
def _local_block(q: np.ndarray, frames: np.ndarray, c0: int, m: int, lm: np.ndarray) -> None:
    """lm[i, j] = |q[i] - frames[c0 + j]| (computed only for pairs whose DTW can finish)."""
    n, d = q.shape
    for i in range(n):
        for j in range(m):
            acc = 0.0
            for k in range(d):
                t = q[i, k] - frames[c0 + j, k]
                acc += t * t
            lm[i, j] = np.sqrt(acc)


@njit(cache=True, parallel=True)
def _costs_against_index(q: np.ndarray, frames: np.ndarray, offsets: np.ndarray,
                         lengths: np.ndarray) -> np.ndarray:
    """Costs of one (n, d) query against every item of the concatenated index frames."""
    n = q.shape[0]
    k = lengths.shape[0]
    out = np.empty(k, dtype=np.float64)
    for t in prange(k):
        m = lengths[t]
        if 2 * (n - 1) > 3 * (m - 1) or 2 * (m - 1) > 3 * (n - 1):
            out[t] = INF  # no path: skip the local costs too
            continue
        lm = np.empty((n, m), dtype=np.float64)
        g = np.empty((n, m), dtype=np.float64)
        _local_block(q, frames, offsets[t], m, lm)
        out[t] = _p2_cost(lm, 0, 0, n, m, g)
    return out


def dtw_p2_local(local_cost: np.ndarray) -> float:
    """Normalized symmetricP2 DTW cost of one (n, m) local-cost matrix (inf if no path)."""
    lm = np.ascontiguousarray(local_cost, dtype=np.float64)
    n, m = lm.shape
    return float(_p2_cost(lm, 0, 0, n, m, np.empty((n, m))))


def l2_normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def dtw_p2(x: np.ndarray, y: np.ndarray, normalize: bool = True) -> float:
    """DTW cost between two (T, d) sequences, Euclidean local cost."""
    if normalize:
        x, y = l2_normalize(x), l2_normalize(y)
    lm = np.sqrt(np.maximum(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1), 0.0))
    return dtw_p2_local(lm)


class DtwIndex:
    """A set of sequences to align queries against, L2-normalized and concatenated once."""

    def __init__(self, sequences: list[np.ndarray], normalize: bool = True) -> None:
        if not sequences:
            raise ValueError("DtwIndex needs at least one sequence")
        seqs = [l2_normalize(s) if normalize else np.asarray(s, np.float64) for s in sequences]
        self.normalize = normalize
        self.lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.frames = np.ascontiguousarray(np.concatenate(seqs, axis=0))  # (M, d)

    def __len__(self) -> int:
        return len(self.lengths)

    def costs(self, query: np.ndarray) -> np.ndarray:
        """(len(index),) normalized DTW costs of one (n, d) query against every item."""
        q = l2_normalize(query) if self.normalize else np.asarray(query, np.float64)
        return _costs_against_index(np.ascontiguousarray(q), self.frames, self.offsets, self.lengths)

    def cost_matrix(self, queries: list[np.ndarray]) -> np.ndarray:
        return np.stack([self.costs(q) for q in queries]) if queries else np.zeros((0, len(self)))
