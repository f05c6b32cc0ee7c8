"""Action intervals from per-frame activations: runs above a threshold, reshaped to the
training action length. Used live by the detector plugin and offline by evaluation."""
from __future__ import annotations

import numpy as np


def shape_interval(start: int, end: int, mean_len: float, lo: float = 0.67, hi: float = 1.33,
                   last_frame: int | None = None) -> tuple[int, int]:
    """Stretch or trim [start, end] about its centre to lo..hi x mean_len (if mean_len > 0)."""
    if mean_len <= 0:
        return start, end
    length = end - start + 1
    target = float(np.clip(length, lo * mean_len, hi * mean_len))
    centre = 0.5 * (start + end)
    new_start = int(round(centre - 0.5 * (target - 1)))
    new_end = new_start + int(round(target)) - 1
    new_start = max(new_start, 0)
    if last_frame is not None:
        new_end = min(new_end, last_frame)
    return new_start, new_end


def runs_above(act: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Inclusive [start, end] of every maximal run of act > threshold."""
    above = np.concatenate([[False], act > threshold, [False]])
    edges = np.flatnonzero(above[1:] != above[:-1])
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def proposals(act: np.ndarray, mean_len: float, threshold: float = 0.2, min_len: int = 3,
              lo: float = 0.67, hi: float = 1.33) -> list[tuple[int, int, float]]:
    """(start, end, score): score = mean activation of the run before it is reshaped."""
    out = []
    for s, e in runs_above(act, threshold):
        if e - s + 1 < min_len:
            continue
        ns, ne = shape_interval(s, e, mean_len, lo, hi, last_frame=len(act) - 1)
        out.append((ns, ne, float(act[s:e + 1].mean())))
    return out
