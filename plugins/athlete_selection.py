"""Athlete selection: which of the tracked people are the athletes.

Each track gets a score from its size (relative linear size in the frame), its age
(established tracks beat fresh ones), its detection support (the share of recent
detection passes that matched it: false detections and coasting ghosts score low), its
motion (athletes move; audience and judges mostly do not) and, when given, its overlap
with the region of play. Scores are smoothed
over time, and a challenger replaces an athlete only after outscoring it by
``hysteresis`` for ``switch_frames`` consecutive frames, so the choice does not flicker.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vpd_stream.annotations import Track


@dataclass(frozen=True)
class SelectionParams:
    max_athletes: int = 1
    roi: tuple[float, float, float, float] | None = None  # fractions of the frame
    motion_weight: float = 0.5
    age_frames: int = 25
    hysteresis: float = 1.5
    switch_frames: int = 10
    smoothing: float = 0.2  # EMA weight of the newest frame


@dataclass
class _TrackStats:
    score: float = 0.0
    motion: float = 0.0  # EMA of centre displacement per frame, in box heights
    support: float = 0.5  # EMA over detection passes of "a detection matched this track"
    centre: np.ndarray | None = None


def roi_overlap(box: np.ndarray, roi: tuple[float, float, float, float], width: int, height: int) -> float:
    """Fraction of the box's area inside the region of interest."""
    rx1, ry1, rx2, ry2 = roi[0] * width, roi[1] * height, roi[2] * width, roi[3] * height
    ix = max(0.0, min(box[2], rx2) - max(box[0], rx1))
    iy = max(0.0, min(box[3], ry2) - max(box[1], ry1))
    area = max(1e-6, float((box[2] - box[0]) * (box[3] - box[1])))
    return float(ix * iy / area)


@dataclass
class AthleteSelector:
    params: SelectionParams
    athletes: list[int] = field(default_factory=list)
    _stats: dict[int, _TrackStats] = field(default_factory=dict)
    _challenge: dict[int, int] = field(default_factory=dict)  # challenger id → consecutive wins

    def instant_score(self, track: Track, stats: _TrackStats, width: int, height: int) -> float:
        p = self.params
        w = max(0.0, float(track.box[2] - track.box[0]))
        h = max(0.0, float(track.box[3] - track.box[1]))
        size = float(np.sqrt(w * h / max(1.0, width * height)))
        age = min(1.0, (track.age + 1) / max(1, p.age_frames))
        motion = min(1.0, stats.motion * 20.0)  # 5 % of the body height per frame counts as full motion
        # Age multiplies fully: a box that appeared a moment ago (often a false detection)
        # cannot outrank a person followed for a second.
        score = size * age * stats.support ** 2 * (1.0 + p.motion_weight * motion)
        if p.roi is not None:
            score *= roi_overlap(track.box, p.roi, width, height)
        return score

    def update(self, tracks: dict[int, Track], width: int, height: int,
               matched: dict[int, bool] | None = None) -> list[int]:
        """Update scores with this frame's tracks; return the athlete track ids.

        ``matched`` (on frames where the detector ran) says which tracks a detection matched.
        """
        p = self.params
        for tid in list(self._stats):
            if tid not in tracks:
                del self._stats[tid]
        for tid, track in tracks.items():
            stats = self._stats.setdefault(tid, _TrackStats())
            centre = np.array([(track.box[0] + track.box[2]) / 2, (track.box[1] + track.box[3]) / 2])
            if stats.centre is not None:
                step = float(np.linalg.norm(centre - stats.centre)) / max(1.0, float(track.box[3] - track.box[1]))
                stats.motion += p.smoothing * (step - stats.motion)
            stats.centre = centre
            if matched is not None:
                stats.support += 0.3 * (float(matched.get(tid, False)) - stats.support)
            instant = self.instant_score(track, stats, width, height)
            stats.score = instant if stats.score == 0.0 else stats.score + p.smoothing * (instant - stats.score)

        self.athletes = [tid for tid in self.athletes if tid in tracks]
        self._challenge = {tid: n for tid, n in self._challenge.items() if tid in tracks}
        # Ties broken by the older (lower) id so the choice is deterministic.
        ranked = sorted((tid for tid in tracks if tid not in self.athletes),
                        key=lambda t: (-self._stats[t].score, t))
        ranked = [tid for tid in ranked if self._stats[tid].score > 0.0]
        while len(self.athletes) < p.max_athletes and ranked:
            self.athletes.append(ranked.pop(0))
        if ranked and self.athletes:
            challenger = ranked[0]
            weakest = min(self.athletes, key=lambda t: (self._stats[t].score, -t))
            if self._stats[challenger].score > p.hysteresis * self._stats[weakest].score:
                self._challenge[challenger] = self._challenge.get(challenger, 0) + 1
                if self._challenge[challenger] >= p.switch_frames:
                    self.athletes[self.athletes.index(weakest)] = challenger
                    self._challenge.clear()
            else:
                self._challenge.pop(challenger, None)
        return list(self.athletes)

    def score_of(self, track_id: int) -> float:
        stats = self._stats.get(track_id)
        return stats.score if stats else 0.0
