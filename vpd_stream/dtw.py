"""Fast DTW alignment cost with the symmetricP2 step pattern (Sakoe-Chiba, P = 2).

Matches ``dtw.dtw(x, y, step_pattern="symmetricP2", distance_only=True).normalizedDistance``
of dtw-python (cumulative cost / (n + m)); where no warping path satisfies the slope
constraint (dtw-python raises), the cost here is +inf, so such pairs simply never win.

The recurrence (g = cumulative cost, d = local cost, g[0, 0] = d[0, 0]):
    g[i, j] = min(g[i-2, j-3] + 2 d[i-1, j-2] + 2 d[i, j-1] + d[i, j],
                  g[i-1, j-1] + 2 d[i, j],
                  g[i-3, j-2] + 2 d[i-2, j-1] + 2 d[i-1, j] + d[i, j])
Local costs are Euclidean distances between (L2-normalized) feature vectors.

How ``DtwIndex`` is fast (each step measured, see BENCHMARKS.md "Heads (issue 5)"):

* Only the band of cells a slope-constrained path can visit is computed (about a fifth of
  a square matrix); pairs whose lengths admit no path cost nothing.
* Items are sorted by length and packed ``LANES`` (4) to a group; one query is aligned
  against the 4 items of a group in lock-step, lane l of every buffer holding item l.
  The cells of one band row of all 4 lanes are contiguous, so both inner loops (local
  costs, recurrence) run over (column, lane) with no branch and vectorize (AVX2: one
  register = one cell of 4 alignments). The group's band is the union of its lanes'
  bands: a cell outside a lane's own band is either unreachable from the start (it stays
  +inf) or cannot reach that lane's end, so the extra cells never change a lane's result,
  and columns past a shorter lane's end (zero frames, finite costs) lie after its end cell.
* Local costs are computed only for band cells and the cells the 3-cell steps pass through
  from a band cell, from exact differences, (q - f)^2 summed over the features 4 at a time
  (features zero-padded to a multiple of 4) in float64: no |a|^2 + |b|^2 - 2ab cancellation
  (that form, tried, was also slower here, as were 8-feature passes).
* Cumulative and local costs live in 4-row ring buffers allocated once per worker chunk;
  no per-pair Python or allocation. (query, group) tasks run in parallel over
  ``numba.get_num_threads()`` threads (the kernel releases the GIL).
"""
from __future__ import annotations

import itertools
import threading

import numba
import numpy as np
from numba import njit

from .errors import ConfigError

INF = np.inf
LANES = 4  # items aligned in lock-step: one AVX2 register of float64
_KB = 4  # features per pass of the local-cost loop (features are zero-padded to a multiple)
_PAD = 3  # columns left of column 0 in the buffers: the steps reach 3 columns back
_RING = 4  # rows kept: the steps reach 3 rows back
_MIN_PARALLEL_TASKS = 32  # fewer (query, group) tasks than this (< ~0.5 ms) run on the calling thread
_U = np.uint64  # unsigned indices: numba then emits no negative-index wraparound, which would block vectorization


@njit(cache=True, nogil=True, inline="always")
def _band(i: int, n: int, m: int) -> tuple[int, int]:
    """Columns of row i that a symmetricP2 path can visit (slopes between 2/3 and 3/2,
    from the start and towards the end): a fifth of a square matrix."""
    lo = max((2 * i + 2) // 3, m - 1 - (3 * (n - 1 - i)) // 2)
    hi = min((3 * i) // 2, m - 1 - (2 * (n - 1 - i) + 2) // 3)
    return max(lo, 0), hi


@njit(cache=True, nogil=True, inline="always")
def _feasible(n: int, m: int) -> bool:
    """Whether any symmetricP2 path joins (0, 0) and (n-1, m-1): both overall slopes fit."""
    return not (2 * (n - 1) > 3 * (m - 1) or 2 * (m - 1) > 3 * (n - 1))


# ---------------------------------------------------------------------------------------
# One query against one group of LANES items, in lock-step.
# Buffers are flat float64 arrays; element (row slot s, column j, lane l) of D (local costs)
# and G (cumulative costs) is at (s * W + _PAD + j) * LANES + l. Row r uses slot r % 4 in D
# and (r + 3) % 4 in G, so G's slots for rows -3..-1 are 0..2.
# Group frames F: block of shape (K4, Mg, LANES) at F[gfo:], element (k, j, l).
# ---------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _passed(blo, bhi, n: int, end: int, start: int, cols: int, back: int,
            dlo: int, dhi: int) -> tuple[int, int]:
    """Widen row i's local-cost range [dlo, dhi] by the cells a 3-cell step passes through:
    the step leaves a band cell of row ``start`` and lands ``cols`` columns on, in a band
    cell of row ``end``, passing row i ``back`` columns before its landing column."""
    if start < 0 or end >= n:
        return dlo, dhi
    a = max(blo[end], blo[start] + cols)
    b = min(bhi[end], bhi[start] + cols)
    if a > b:
        return dlo, dhi
    return min(dlo, a - back), max(dhi, b - back)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _group_cost(q: np.ndarray, qo: int, n: int, K: int, F: np.ndarray, gfo: int, Mg: int,
                ms: np.ndarray, D: np.ndarray, G: np.ndarray, W: int, blo: np.ndarray,
                bhi: np.ndarray, res: np.ndarray) -> None:
    """res[l] <- normalized cost of query rows q[qo:qo+n] (flat, K columns) vs lane l."""
    L = LANES
    mlo = 1 << 40
    mhi = -1
    for l in range(L):
        m = ms[l]
        if _feasible(n, m):
            mlo = min(mlo, m)
            mhi = max(mhi, m)
    if mhi < 0:
        for l in range(L):
            res[l] = INF
        return
    WL = W * L
    ML = Mg * L
    # Rows 1 and 2 read "rows -2 and -1" (G slots 1, 2) only at columns < 2; those hold +inf
    # from the allocation or a pad, never a finite cost: every row >= 2 starts at column >= 2.
    for i in range(n):
        blo[i] = _band(i, n, mlo)[0]
        bhi[i] = _band(i, n, mhi)[1]
    nkb = K // _KB
    for i in range(n):
        lo = blo[i]
        hi = bhi[i]
        # Local costs this row must hold: its band, and the cells the two 3-cell steps pass
        # through on their way from a band cell (a finite g) to a band cell of row i, i+1
        # or i+2. Every other cell a step reads is paired with +inf (an earlier value of the
        # ring buffer is left there: always finite, so the sum stays +inf).
        dlo, dhi = _passed(blo, bhi, n, i, i - 2, 3, 1, lo, hi)  # (-2, -3) ending in row i: (i, j-1)
        dlo, dhi = _passed(blo, bhi, n, i + 1, i - 1, 3, 2, dlo, dhi)  # (-2, -3) ending in row i+1: (i, j-2)
        dlo, dhi = _passed(blo, bhi, n, i + 1, i - 2, 2, 0, dlo, dhi)  # (-3, -2) ending in row i+1: (i, j)
        dlo, dhi = _passed(blo, bhi, n, i + 2, i - 1, 2, 1, dlo, dhi)  # (-3, -2) ending in row i+2: (i, j-1)
        drow = (i % _RING) * WL + _PAD * L
        # an even number of columns: the vectorized loop (8 doubles a turn) leaves no scalar remainder
        nx = _U(((dhi + 2 - dlo) // 2) * 2 * L)
        pd = _U(drow + dlo * L)
        qb = (qo + i) * K
        for kb in range(nkb):
            k = kb * _KB
            q0 = q[qb + k]
            q1 = q[qb + k + 1]
            q2 = q[qb + k + 2]
            q3 = q[qb + k + 3]
            f0 = _U(gfo + k * ML + dlo * L)
            f1 = f0 + _U(ML)
            f2 = f1 + _U(ML)
            f3 = f2 + _U(ML)
            # first pass stores, last pass takes the square root: no separate sweeps
            if kb == 0 and nkb == 1:
                for x in range(nx):
                    t0 = q0 - F[f0 + x]
                    t1 = q1 - F[f1 + x]
                    t2 = q2 - F[f2 + x]
                    t3 = q3 - F[f3 + x]
                    D[pd + x] = np.sqrt(t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3)
            elif kb == 0:
                for x in range(nx):
                    t0 = q0 - F[f0 + x]
                    t1 = q1 - F[f1 + x]
                    t2 = q2 - F[f2 + x]
                    t3 = q3 - F[f3 + x]
                    D[pd + x] = t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3
            elif kb == nkb - 1:
                for x in range(nx):
                    t0 = q0 - F[f0 + x]
                    t1 = q1 - F[f1 + x]
                    t2 = q2 - F[f2 + x]
                    t3 = q3 - F[f3 + x]
                    D[pd + x] = np.sqrt(D[pd + x] + (t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3))
            else:
                for x in range(nx):
                    t0 = q0 - F[f0 + x]
                    t1 = q1 - F[f1 + x]
                    t2 = q2 - F[f2 + x]
                    t3 = q3 - F[f3 + x]
                    D[pd + x] += t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3
        g0 = ((i + 3) % _RING) * WL + _PAD * L
        # the steps read up to 3 columns either side of a row's band: +inf there
        for x in range(g0 + (lo - 3) * L, g0 + lo * L):
            G[x] = INF
        if i == 0:  # the band of row 0 is the start cell alone
            for l in range(L):
                G[g0 + l] = D[drow + l]
            for x in range(g0 + (hi + 1) * L, g0 + (hi + 4) * L):
                G[x] = INF
            continue
        d1 = ((i - 1) % _RING) * WL + _PAD * L
        d2 = ((i - 2) % _RING) * WL + _PAD * L if i >= 2 else drow  # row -2: meets +inf only
        pg0 = _U(g0 + lo * L)
        pg1 = _U(((i + 2) % _RING) * WL + (_PAD + lo - 1) * L)  # g[i-1, j-1]
        pg2 = _U(((i + 1) % _RING) * WL + (_PAD + lo - 3) * L)  # g[i-2, j-3]
        pg3 = _U((i % _RING) * WL + (_PAD + lo - 2) * L)  # g[i-3, j-2]
        pd0 = _U(drow + lo * L)  # d[i, j]
        pd0m = _U(drow + (lo - 1) * L)  # d[i, j-1]
        pd1a = _U(d1 + (lo - 2) * L)  # d[i-1, j-2]
        pd1b = _U(d1 + lo * L)  # d[i-1, j]
        pd2 = _U(d2 + (lo - 1) * L)  # d[i-2, j-1]
        # even column count again; a surplus column hi + 1 (finite inputs) is then set to +inf
        for x in range(_U(((hi + 2 - lo) // 2) * 2 * L)):
            dd = D[pd0 + x]
            a = G[pg1 + x] + 2.0 * dd
            b = G[pg2 + x] + 2.0 * D[pd1a + x] + 2.0 * D[pd0m + x] + dd
            c = G[pg3 + x] + 2.0 * D[pd2 + x] + 2.0 * D[pd1b + x] + dd
            a = a if a < b else b
            G[pg0 + x] = a if a < c else c
        for x in range(g0 + (hi + 1) * L, g0 + (hi + 4) * L):
            G[x] = INF
    gl = ((n + 2) % _RING) * WL + _PAD * L
    for l in range(L):
        m = ms[l]
        res[l] = G[gl + (m - 1) * L + l] / (n + m) if _feasible(n, m) else INF


@njit(cache=True, nogil=True)
def _costs_chunk(q: np.ndarray, q_offsets: np.ndarray, q_lengths: np.ndarray, K: int,
                 F: np.ndarray, g_offsets: np.ndarray, g_frames: np.ndarray, g_lengths: np.ndarray,
                 g_items: np.ndarray, out: np.ndarray, W: int, first: int, step: int) -> None:
    """Fill out[query, item] for the (query, group) tasks first, first + step, ... with one
    set of ring buffers; releases the GIL, so chunks run in parallel from Python threads."""
    ng = g_offsets.shape[0]
    n_tasks = q_lengths.shape[0] * ng
    D = np.zeros(_RING * W * LANES)
    G = np.full(_RING * W * LANES, INF)
    res = np.empty(LANES)
    blo = np.empty(q_lengths.max(), dtype=np.int64)  # band of each row (union over the lanes)
    bhi = np.empty(q_lengths.max(), dtype=np.int64)
    for t in range(first, n_tasks, step):
        qi = t // ng
        g = t - qi * ng
        _group_cost(q, q_offsets[qi], q_lengths[qi], K, F, g_offsets[g], g_frames[g],
                    g_lengths[g], D, G, W, blo, bhi, res)
        for l in range(LANES):
            item = g_items[g, l]
            if item >= 0:
                out[qi, item] = res[l]


# ---------------------------------------------------------------------------------------
# One pair from a given local-cost matrix (scalar; for dtw_p2_local).
# ---------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _p2_local(lm: np.ndarray) -> float:
    n, m = lm.shape
    if not _feasible(n, m):
        return INF
    g = np.full((n, m), INF)
    g[0, 0] = lm[0, 0]
    for i in range(1, n):
        lo, hi = _band(i, n, m)
        for j in range(lo, hi + 1):
            d = lm[i, j]
            best = INF
            if j >= 1:
                best = min(best, g[i - 1, j - 1] + 2.0 * d)
            if i >= 2 and j >= 3:
                best = min(best, g[i - 2, j - 3] + 2.0 * lm[i - 1, j - 2] + 2.0 * lm[i, j - 1] + d)
            if i >= 3 and j >= 2:
                best = min(best, g[i - 3, j - 2] + 2.0 * lm[i - 2, j - 1] + 2.0 * lm[i - 1, j] + d)
            g[i, j] = best
    return g[n - 1, m - 1] / (n + m)


def dtw_p2_local(local_cost: np.ndarray) -> float:
    """Normalized symmetricP2 DTW cost of one (n, m) local-cost matrix (inf if no path)."""
    lm = np.ascontiguousarray(local_cost, dtype=np.float64)
    if lm.ndim != 2 or lm.size == 0:
        raise ConfigError(f"dtw_p2_local needs a non-empty (n, m) matrix, got shape {lm.shape}")
    return float(_p2_local(lm))


def l2_normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def dtw_p2(x: np.ndarray, y: np.ndarray, normalize: bool = True) -> float:
    """DTW cost between two (T, d) sequences, Euclidean local cost (the DtwIndex kernel)."""
    return float(DtwIndex([y], normalize=normalize).cost_matrix([x])[0, 0])


def _check(seqs: list, what: str, dim: int | None = None) -> list[np.ndarray]:
    out = []
    for s in seqs:
        a = np.asarray(s, dtype=np.float64)
        if a.ndim != 2 or len(a) == 0 or a.shape[1] == 0:
            raise ConfigError(f"DTW {what} must be non-empty (frames, features) arrays, got shape {a.shape}")
        if dim is None:
            dim = a.shape[1]
        if a.shape[1] != dim:
            raise ConfigError(f"DTW {what} have {a.shape[1]} features where {dim} were expected")
        if not np.isfinite(a).all():
            raise ConfigError(f"DTW {what} contain NaN or infinite values")
        out.append(a)
    return out


def _pad_features(x: np.ndarray, k4: int) -> np.ndarray:
    out = np.zeros((len(x), k4))
    out[:, :x.shape[1]] = x
    return out


class DtwIndex:
    """A set of sequences to align queries against: L2-normalized once, sorted by length
    and packed LANES to a group (see the module docstring)."""

    def __init__(self, sequences: list[np.ndarray], normalize: bool = True) -> None:
        if len(sequences) == 0:
            raise ConfigError("DtwIndex needs at least one sequence")
        seqs = _check(sequences, "index sequences")
        if normalize:
            seqs = [l2_normalize(s) for s in seqs]
        self.normalize = normalize
        self.dim = seqs[0].shape[1]
        self.lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        k4 = -(-self.dim // _KB) * _KB
        order = np.argsort(self.lengths, kind="stable")
        ng = -(-len(seqs) // LANES)
        self._g_items = np.full((ng, LANES), -1, dtype=np.int64)
        self._g_lengths = np.full((ng, LANES), 1 << 30, dtype=np.int64)  # empty lane: no path
        self._g_frames = np.zeros(ng, dtype=np.int64)
        self._g_offsets = np.zeros(ng, dtype=np.int64)
        blocks, total = [], 0
        for g in range(ng):
            ids = order[g * LANES:(g + 1) * LANES]
            mg = int(self.lengths[ids].max())
            block = np.zeros((k4, mg, LANES))
            for lane, item in enumerate(ids):
                block[:self.dim, :len(seqs[item]), lane] = seqs[item].T
            self._g_items[g, :len(ids)] = ids
            self._g_lengths[g, :len(ids)] = self.lengths[ids]
            self._g_frames[g] = mg
            self._g_offsets[g] = total
            total += block.size
            blocks.append(block.ravel())
        # + zeros: the surplus column after the last group's last feature row
        self._frames = np.ascontiguousarray(np.concatenate(blocks + [np.zeros(2 * LANES)]))
        self._k4 = k4

    def __len__(self) -> int:
        return len(self.lengths)

    def costs(self, query: np.ndarray) -> np.ndarray:
        """(len(index),) normalized DTW costs of one (n, d) query against every item."""
        return self.cost_matrix([query])[0]

    def cost_matrix(self, queries: list[np.ndarray]) -> np.ndarray:
        """(len(queries), len(index)) normalized DTW costs (+inf where no path exists)."""
        if len(queries) == 0:
            return np.zeros((0, len(self)))
        block = _check(queries, "queries", self.dim)
        if self.normalize:
            block = [l2_normalize(q) for q in block]
        q_lengths = np.array([len(q) for q in block], dtype=np.int64)
        q_offsets = np.concatenate([[0], np.cumsum(q_lengths)[:-1]]).astype(np.int64)
        q_flat = _pad_features(np.concatenate(block, axis=0), self._k4).ravel()
        out = np.empty((len(block), len(self)))
        args = (q_flat, q_offsets, q_lengths, self._k4, self._frames, self._g_offsets, self._g_frames,
                self._g_lengths, self._g_items, out, int(self._g_frames.max()) + 2 * _PAD + 1)
        n_tasks = len(block) * len(self._g_offsets)
        threads = numba.get_num_threads() if n_tasks >= _MIN_PARALLEL_TASKS else 1
        if threads <= 1:
            _costs_chunk(*args, 0, 1)
            return out
        # Dynamic scheduling over many small interleaved chunks: a worker that the OS
        # deschedules on a busy machine just takes fewer chunks (a numba prange region
        # would make the others wait for it at its barrier).
        n_chunks = min(n_tasks, 8 * threads)
        next_chunk = itertools.count()
        failures: list[BaseException] = []

        def work() -> None:
            try:
                for c in next_chunk:
                    if c >= n_chunks or failures:
                        return
                    _costs_chunk(*args, c, n_chunks)
            except BaseException as e:  # re-raised below: never a half-filled matrix
                failures.append(e)

        helpers = [threading.Thread(target=work, daemon=True) for _ in range(threads - 1)]
        for h in helpers:
            h.start()
        work()
        for h in helpers:
            h.join()
        if failures:
            raise failures[0]
        return out
