"""Span recognition: events for trimmed actions that are not what the detector looks for.

Penn Action's classes are trimmed clips (a squat, a clean and jerk, a bench press), not
swings, so the swing detector cannot find them. The recognizer plugin classifies spans of
each followed track itself: every ``stride`` frames the windows of each of ``lengths``
frames that end on that frame (full windows only), and the track's whole span when it
ends. A span is a candidate when its label is known (the recognizer's calibrated
``unknown`` bound); candidates of one class that overlap are one event, which closes at the
first evaluation that extends it no more (or at the track's end) and is emitted then.

The arithmetic here is what the plugin runs live; ``span_events`` is its offline
reference over one whole track (the plugin's events equal it, tested).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class SpanGroup:
    """Overlapping candidates of one class: positions [start, end] in the track's stream."""

    label: int
    start: int
    end: int
    score: float
    extended: bool = True  # extended at the latest evaluation


def windows_ending(n: int, lengths: tuple[int, ...], stride: int) -> list[tuple[int, int]]:
    """[start, end) of the full windows evaluated when the track's n-th feature arrives."""
    if n % stride:
        return []
    return [(n - length, n) for length in sorted(set(lengths)) if length <= n]


def merge_candidates(groups: list[SpanGroup], accepted: list[tuple[int, int, int, float]]) -> list[SpanGroup]:
    """Fold one evaluation's accepted (label, start, end_exclusive, score) into ``groups``;
    return the groups it closed (open groups it did not extend), in start order."""
    for g in groups:
        g.extended = False
    for label, s, e, score in sorted(accepted, key=lambda a: (a[1], a[2], a[0])):
        for g in groups:
            if g.label == label and s <= g.end and e - 1 >= g.start:
                g.start, g.end = min(g.start, s), max(g.end, e - 1)
                g.score = max(g.score, score)
                g.extended = True
                break
        else:
            groups.append(SpanGroup(label, s, e - 1, score))
    closed = [g for g in groups if not g.extended]
    groups[:] = [g for g in groups if g.extended]
    return sorted(closed, key=lambda g: (g.start, g.label))


def close_all(groups: list[SpanGroup], whole: tuple[int, int, int, float] | None) -> list[SpanGroup]:
    """The track ended: fold in the whole-span candidate (if accepted) and close every group."""
    if whole is not None:
        merge_candidates(groups, [whole])
        for g in groups:
            g.extended = True  # nothing was closed by the end itself
    out = sorted(groups, key=lambda g: (g.start, g.label))
    groups.clear()
    return out


Classify = Callable[[list[tuple[int, int]]], list[tuple[int, float, bool]]]


def span_events(n: int, lengths: tuple[int, ...], stride: int, classify: Classify,
                min_whole: int) -> list[tuple[SpanGroup, int]]:
    """Offline reference over one track of n features: (group, position it closed on).

    ``classify(spans)`` gives (label, score, unknown) per [start, end) span. The position a
    group closed on is the feature count at that evaluation (n at the track's end).
    """
    groups: list[SpanGroup] = []
    out: list[tuple[SpanGroup, int]] = []
    for k in range(1, n + 1):
        spans = windows_ending(k, lengths, stride)
        if not spans:
            continue
        accepted = [(c, s, e, p) for (s, e), (c, p, unk) in zip(spans, classify(spans)) if not unk]
        out += [(g, k) for g in merge_candidates(groups, accepted)]
    whole = None
    if n >= min_whole:
        c, p, unk = classify([(0, n)])[0]
        whole = None if unk else (c, 0, n, p)
    out += [(g, n) for g in close_all(groups, whole)]
    return out
