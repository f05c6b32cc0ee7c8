"""The online detector's window arithmetic: which windows run, how their activations are
weighted and when a frame is final (see plugins/detector.py for the reasoning)."""
from __future__ import annotations

import numpy as np

WEIGHTINGS = ("taper", "mean")
TAPER_POWER = 4


def window_spans(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) of every window that has run once n frames arrived.

    Windows end every ``stride`` frames on the grid of starts 0, stride, 2 * stride, ...
    extended to negative starts, clipped at the stream start: the first windows are the
    head windows [0, e) for e < window, then full windows [e - window, e).
    """
    first_end = (window - 1) % stride + 1
    return [(max(0, e - window), e) for e in range(first_end, n + 1, stride)]


def tail_span(n: int, window: int, stride: int) -> tuple[int, int] | None:
    """The window run when the stream ends: the last ``window`` frames, if not covered yet."""
    spans = window_spans(n, window, stride)
    return (max(0, n - window), n) if n and (not spans or spans[-1][1] < n) else None


def window_weights(length: int, window: int, weighting: str, first: bool, last: bool) -> np.ndarray:
    """Per-frame weights of one window's activations in the mean over covering windows.

    ``mean``: 1 everywhere (the plain mean). ``taper``: ((c + 1) / window) ** 4, where c is
    the frame's context inside the window, the fewer of the frames before and after it
    (capped at window - 1). A BiGRU has little context near a window's edges, so the window
    in which a frame is most central dominates. A window edge at the stream's own start
    (``first``) or end (``last``, the tail window) is no edge: the offline single pass has no
    more context there either.
    """
    if weighting == "mean":
        return np.ones(length)
    k = np.arange(length)
    before = np.full(length, window) if first else k
    after = np.full(length, window) if last else length - 1 - k
    c = np.minimum(np.minimum(before, after), window - 1)
    return ((c + 1.0) / window) ** TAPER_POWER


def final_after(n: int, window: int, stride: int, lookahead: int) -> np.ndarray:
    """For each of n frames, how many frames must have arrived before it is final."""
    f = np.arange(n)
    return np.minimum((f // stride) * stride + window, f + lookahead + 1)


def combine_windows(n: int, acts: list[np.ndarray], tail_act: np.ndarray | None, window: int, stride: int,
                    lookahead: int = -1, weighting: str = "mean") -> np.ndarray:
    """Per-frame activations from the activations of ``window_spans(n, ...)`` and the tail window.

    A frame counts the windows that had run when it became final: all windows covering it,
    or with ``lookahead`` L < window - 1 those that ended within L frames after it. Frames
    still open when the stream ends also count the tail window.
    """
    lookahead = window - 1 if lookahead < 0 else min(lookahead, window - 1)
    spans = window_spans(n, window, stride)
    tail = tail_span(n, window, stride)
    if len(acts) != len(spans) or (tail is None) != (tail_act is None):
        raise ValueError("combine_windows: need one activation per window span and the tail's if there is one")
    total, weight = np.zeros(n), np.zeros(n)
    need = final_after(n, window, stride, lookahead)
    at_end = need > n  # still open when the stream ended
    for i, ((s, e), a) in enumerate(zip(spans + ([tail] if tail else []), list(acts) + [tail_act])):
        is_tail = i == len(spans)
        use = at_end[s:e] if is_tail else (e <= need[s:e]) | at_end[s:e]
        w = window_weights(e - s, window, weighting, first=s == 0, last=is_tail)
        total[s:e] += np.where(use, w * a, 0.0)
        weight[s:e] += np.where(use, w, 0.0)
    return np.divide(total, weight, out=np.zeros(n), where=weight > 0)
