"""Benchmark: fast symmetricP2 DTW vs dtw-python (pairs/s, ratio) and detector windows/s.

    python -m offline_train.benchmarks.heads [--pairs 200] [--windows 32] [--penn-queries 3]
        [--penn-action DIR]

1. Same pairs: dtw-python on ``pairs`` (query, item) pairs of 50-70 frames, 26-d (every pair
   has a path); ``DtwIndex`` on all pairs x pairs combinations of the same sequences in one
   ``cost_matrix`` call, on 1 thread and on all numba threads. The diagonal must equal
   dtw-python's costs to 1e-6.
2. Penn-like: an index of 200 items of 40-150 frames (26-d); whole-index cost per query for
   dtw-python (``penn-queries`` queries, pairs without a path cost dtw-python its ValueError)
   and for ``DtwIndex`` (50 queries), results equal to 1e-6 including the infeasible pairs.
3. With ``--penn-action DIR`` (the real data set): the whole official test x train matrix of
   normalized 2D joints (25 fps) with ``DtwIndex``, and dtw-python on ``penn-queries`` test
   clips against the whole train split.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numba
import numpy as np
import torch


def _timed(fn, repeats: int = 3, cpu: list | None = None):
    """Best wall time of ``repeats`` runs (the machine is shared; both sides get the same
    number of runs) and the last result; the best CPU time of the calling thread is
    appended to ``cpu`` (what a single-threaded run costs, whatever else the machine runs)."""
    best, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.thread_time()
        out = fn()
        best_cpu = min(best_cpu, time.thread_time() - c)
        best = min(best, time.perf_counter() - t)
    if cpu is not None:
        cpu.append(best_cpu)
    return best, out


def _dtw_python(dtw_python, q: np.ndarray, x: np.ndarray) -> float:
    try:
        return dtw_python.dtw(q, x, step_pattern="symmetricP2", distance_only=True).normalizedDistance
    except ValueError:  # no warping path fits the slope constraint
        return np.inf


def _real_penn(root: Path, nq: int, dtw_python) -> None:
    from offline_train.penn_action import load_penn_action
    from offline_train.vipe.evaluate import pose2d_sequences
    from vpd_stream.dtw import DtwIndex, l2_normalize

    clips = load_penn_action(root)
    train = pose2d_sequences([c for c in clips if c.train]).seqs
    test = pose2d_sequences([c for c in clips if not c.train]).seqs
    t = time.perf_counter()
    idx = DtwIndex(train)
    t_build = time.perf_counter() - t
    t_ours, costs = _timed(lambda: idx.cost_matrix(test), 2)
    pick = np.linspace(0, len(test) - 1, nq).round().astype(int)
    t_ref, ref = _timed(lambda: np.array([[_dtw_python(dtw_python, l2_normalize(test[i]), l2_normalize(x)) for x in train]
                                          for i in pick]), 1)
    inf = np.isinf(ref)
    assert np.array_equal(np.isinf(costs[pick]), inf) and np.abs(costs[pick][~inf] - ref[~inf]).max() < 1e-6
    lengths = [len(s) for s in train + test]
    pairs = len(test) * len(train)
    print(f"real Penn Action (pose2d, 25 fps, {min(lengths)}-{max(lengths)} frames): test x train = {pairs} pairs "
          f"({np.isinf(costs).mean():.0%} without a path) in {t_ours:.2f} s = {pairs / t_ours:.0f} pairs/s "
          f"(index build {t_build:.2f} s); per query: dtw-python {t_ref / nq * 1e3:.0f} ms ({nq} queries), "
          f"fast DTW {t_ours / len(test) * 1e3:.2f} ms = {t_ref / nq / (t_ours / len(test)):.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--penn-queries", type=int, default=3)
    ap.add_argument("--penn-action", type=Path, default=None, help="real Penn Action root (optional)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import dtw as dtw_python

    from plugins.detector import run_windows
    from vpd_stream.dtw import DtwIndex, l2_normalize
    from vpd_stream.models.heads import Detector, HeadConfig

    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min); numba threads: {numba.get_num_threads()}")
    rng = np.random.default_rng(0)
    # 1. Same pairs. Penn-like lengths (25 fps), lengths within the slope limit so every pair has a path.
    qs = [l2_normalize(rng.normal(size=(int(rng.integers(50, 70)), 26))) for _ in range(args.pairs)]
    xs = [l2_normalize(rng.normal(size=(int(rng.integers(50, 70)), 26))) for _ in range(args.pairs)]
    cpu: list[float] = []
    t_ref, ref = _timed(lambda: [_dtw_python(dtw_python, q, x) for q, x in zip(qs, xs)], cpu=cpu)
    idx = DtwIndex(xs)
    idx.costs(qs[0])  # compile outside the timing
    threads = numba.get_num_threads()
    rates = {}
    for n in sorted({1, threads}):
        numba.set_num_threads(n)
        # every query against every item: pairs^2 pairs (1 thread: the kernel runs on this thread)
        t, ours = _timed(lambda: idx.cost_matrix(qs), cpu=cpu if n == 1 else None)
        assert np.abs(np.diag(ours) - ref).max() < 1e-6
        rates[n] = args.pairs ** 2 / t
    numba.set_num_threads(threads)
    ref_rate = args.pairs / t_ref
    print(f"same pairs (50-70 frames, 26-d): dtw-python {ref_rate:.0f} pairs/s (1 thread); "
          + "; ".join(f"fast DTW {n} thread{'s' * (n > 1)}: {r:.0f} pairs/s = {r / ref_rate:.0f}x"
                      for n, r in rates.items()))
    us_ref, us_ours = cpu[0] / args.pairs * 1e6, cpu[1] / args.pairs ** 2 * 1e6
    print(f"same pairs, CPU time of the calling thread: dtw-python {us_ref:.0f} us/pair, fast DTW (1 thread) "
          f"{us_ours:.2f} us/pair = {us_ref / us_ours:.0f}x")

    # 2. Penn-like index, whole-index query cost.
    index = [rng.normal(size=(int(rng.integers(40, 151)), 26)) for _ in range(200)]
    queries = [rng.normal(size=(int(rng.integers(40, 151)), 26)) for _ in range(50)]
    pidx = DtwIndex(index)
    t_ours, costs = _timed(lambda: pidx.cost_matrix(queries), 2)
    nq = args.penn_queries
    t_ref, ref = _timed(lambda: np.array([[_dtw_python(dtw_python, l2_normalize(q), l2_normalize(x)) for x in index]
                                          for q in queries[:nq]]), 2)
    inf = np.isinf(ref)
    assert np.array_equal(np.isinf(costs[:nq]), inf) and np.abs(costs[:nq][~inf] - ref[~inf]).max() < 1e-6
    per_q_ref, per_q_ours = t_ref / nq, t_ours / len(queries)
    print(f"Penn-like index (200 items of 40-150 frames, 26-d; {np.isinf(costs).mean():.0%} of pairs have no path): "
          f"whole-index query dtw-python {per_q_ref * 1e3:.0f} ms ({nq} queries), fast DTW {per_q_ours * 1e3:.2f} ms "
          f"({len(queries)} queries, {threads} threads) = {per_q_ref / per_q_ours:.0f}x")

    if args.penn_action is not None:
        _real_penn(args.penn_action, nq, dtw_python)

    model = Detector(HeadConfig("detector", 26)).eval()
    wins = [rng.normal(size=(100, 26)).astype(np.float32) for _ in range(args.windows)]
    run_windows([model], wins[:2])
    t = time.perf_counter()
    run_windows([model], wins)
    dt = time.perf_counter() - t
    print(f"BiGRU detector (1 model, 1 thread): {args.windows / dt:.1f} windows/s of 100 frames, batch {args.windows}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
