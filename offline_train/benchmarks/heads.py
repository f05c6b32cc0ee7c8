"""Benchmark: fast symmetricP2 DTW vs dtw-python (pairs/s, ratio) and detector windows/s.

    python -m offline_train.benchmarks.heads [--pairs 200] [--windows 32]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--windows", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import dtw as dtw_python

    from plugins.detector import run_windows
    from vpd_stream.dtw import DtwIndex, l2_normalize
    from vpd_stream.models.heads import Detector, HeadConfig

    rng = np.random.default_rng(0)
    # Penn-like lengths (25 fps): 40-80 frames, 26-d; lengths within the slope limit so every pair has a path.
    qs = [l2_normalize(rng.normal(size=(int(rng.integers(50, 70)), 26))) for _ in range(args.pairs)]
    xs = [l2_normalize(rng.normal(size=(int(rng.integers(50, 70)), 26))) for _ in range(args.pairs)]
    t = time.perf_counter()
    ref = [dtw_python.dtw(q, x, step_pattern="symmetricP2", distance_only=True).normalizedDistance for q, x in zip(qs, xs)]
    t_ref = time.perf_counter() - t
    idx = DtwIndex(xs)
    idx.costs(qs[0])  # compile outside the timing
    t = time.perf_counter()
    ours = np.stack([idx.costs(q) for q in qs])  # every query against every item: pairs^2 pairs
    t_ours = time.perf_counter() - t
    assert np.allclose(np.diag(ours), ref, atol=1e-6)
    ref_rate, our_rate = args.pairs / t_ref, args.pairs ** 2 / t_ours
    print(f"dtw-python: {ref_rate:.0f} pairs/s; fast DTW: {our_rate:.0f} pairs/s; ratio {our_rate / ref_rate:.0f}x")
    model = Detector(HeadConfig("detector", 26)).eval()
    wins = [rng.normal(size=(100, 26)).astype(np.float32) for _ in range(args.windows)]
    run_windows([model], wins[:2])
    t = time.perf_counter()
    run_windows([model], wins)
    dt = time.perf_counter() - t
    print(f"BiGRU detector (1 model, 1 thread): {args.windows / dt:.1f} windows/s of 100 frames, batch {args.windows}")


if __name__ == "__main__":
    main()
