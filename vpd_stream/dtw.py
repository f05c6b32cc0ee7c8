"""Fast DTW alignment cost with the symmetricP2 step pattern (Sakoe-Chiba, P = 2).

Matches ``dtw.dtw(x, y, step_pattern="symmetricP2", distance_only=True).normalizedDistance``
of dtw-python (cumulative cost / (n + m)); where no warping path satisfies the slope
constraint (dtw-python raises), the cost here is +inf, so such pairs simply never win.

The recurrence (g = cumulative cost, d = local cost, g[0, 0] = d[0, 0]):
    g[i, j] = min(g[i-2, j-3] + 2 d[i-1, j-2] + 2 d[i, j-1] + d[i, j],
                  g[i-1, j-1] + 2 d[i, j],
                  g[i-3, j-2] + 2 d[i-2, j-1] + 2 d[i-1, j] + d[i, j])
Local costs are Euclidean distances between L2-normalized feature vectors. Queries are
aligned against a whole index at once in numba, in parallel over (query, item) pairs, and
each pair computes local costs and the recurrence only inside the band of cells the slope
constraint allows (about a fifth of a square matrix).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

INF = np.inf


@njit(cache=True, nogil=True, inline="always")
def _band(i: int, n: int, m: int) -> tuple[int, int]:
    """Columns of row i that a symmetricP2 path can visit (slopes between 2/3 and 3/2,
    from the start and towards the end): a fifth of a square matrix."""
    lo = max((2 * i + 2) // 3, m - 1 - (3 * (n - 1 - i)) // 2)
    hi = min((3 * i) // 2, m - 1 - (2 * (n - 1 - i) + 2) // 3)
    return max(lo, 0), hi


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _distance(a: np.ndarray, ia: int, b: np.ndarray, ib: int) -> float:
    """Euclidean distance of rows a[ia] and b[ib]; reassociation lets the sum vectorize
    (no other fast-math flag: the recurrence relies on +inf)."""
    acc = 0.0
    for k in range(a.shape[1]):
        t = a[ia, k] - b[ib, k]
        acc += t * t
    return np.sqrt(acc)


@njit(cache=True, nogil=True)
def _p2_rows(lm: np.ndarray, r0: int, c0: int, n: int, m: int, g: np.ndarray,
             q: np.ndarray, frames: np.ndarray, lazy: bool) -> float:
    """Normalized symmetricP2 cost of block lm[r0:r0+n, c0:c0+m] (g is (n, m) scratch).

    Only the band is computed; the steps read at most 3 columns outside a row's band, so
    g is set to +inf there. With ``lazy`` the local costs are computed on the way (Euclidean
    distance of q[r0+i] and frames[c0+j]) for just those cells instead of read from lm.
    """
    if 2 * (n - 1) > 3 * (m - 1) or 2 * (m - 1) > 3 * (n - 1):
        return INF  # no path: both overall slopes must fit
    for i in range(n):
        lo, hi = _band(i, n, m)
        a = max(lo - 3, 0)
        b = min(hi + 3, m - 1)
        for j in range(a, b + 1):
            g[i, j] = INF
            if lazy:
                lm[i, j] = _distance(q, r0 + i, frames, c0 + j)
        for j in range(lo, hi + 1):
            if lazy:
                d = lm[i, j]
            else:
                d = lm[r0 + i, c0 + j]
            if i == 0:
                g[i, j] = d  # the band of row 0 is the start cell alone
                continue
            best = INF
            if j >= 1:
                v = g[i - 1, j - 1] + 2.0 * d
                if v < best:
                    best = v
            if lazy:
                if i >= 2 and j >= 3:
                    v = g[i - 2, j - 3] + 2.0 * lm[i - 1, j - 2] + 2.0 * lm[i, j - 1] + d
                    if v < best:
                        best = v
                if i >= 3 and j >= 2:
                    v = g[i - 3, j - 2] + 2.0 * lm[i - 2, j - 1] + 2.0 * lm[i - 1, j] + d
                    if v < best:
                        best = v
            else:
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


_EMPTY = np.zeros((1, 1))


def _p2_cost(lm: np.ndarray, r0: int, c0: int, n: int, m: int, g: np.ndarray) -> float:
    return _p2_rows(lm, r0, c0, n, m, g, _EMPTY, _EMPTY, False)


@njit(cache=True, parallel=True)
def _costs_pairs(queries: np.ndarray, q_offsets: np.ndarray, q_lengths: np.ndarray,
                 frames: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Costs of every query against every index item, in parallel over (query, item) pairs,
    so a few queries against a large index and many against a small one both use all cores."""
    nq = q_lengths.shape[0]
    k = lengths.shape[0]
    out = np.empty(nq * k, dtype=np.float64)
    for p in prange(nq * k):
        qi = p // k
        t = p - qi * k
        n = q_lengths[qi]
        m = lengths[t]
        if 2 * (n - 1) > 3 * (m - 1) or 2 * (m - 1) > 3 * (n - 1):
            out[p] = INF
            continue
        lm = np.empty((n, m), dtype=np.float64)
        g = np.empty((n, m), dtype=np.float64)
        out[p] = _p2_rows(lm, q_offsets[qi], offsets[t], n, m, g, queries, frames, True)
    return out.reshape(nq, k)


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
        return self.cost_matrix([query])[0]

    def cost_matrix(self, queries: list[np.ndarray]) -> np.ndarray:
        """(len(queries), len(index)) normalized DTW costs."""
        if not queries:
            return np.zeros((0, len(self)))
        block = [l2_normalize(q) if self.normalize else np.asarray(q, np.float64) for q in queries]
        q_lengths = np.array([len(q) for q in block], dtype=np.int64)
        q_offsets = np.concatenate([[0], np.cumsum(q_lengths)[:-1]]).astype(np.int64)
        q_frames = np.ascontiguousarray(np.concatenate(block, axis=0))
        return _costs_pairs(q_frames, q_offsets, q_lengths, self.frames, self.offsets, self.lengths)
