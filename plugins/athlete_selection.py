"""Athlete selection: which of the tracked people are the athletes.

Each track gets a score from its size (relative linear size in the frame), its age
(established tracks beat fresh ones), its detection support (the share of recent
detection passes that matched it: false detections and coasting ghosts score low), its
motion (athletes move; audience and judges mostly do not), how much of it is in view (a
line judge cut by the frame's edge is not the athlete), how central it stands (cameras
frame the play; officials and ball kids line the edges) and, when given, its overlap with
the region of play. Scores are smoothed
over time, and a challenger replaces an athlete only after outscoring it by
``hysteresis`` for ``switch_frames`` consecutive frames, so the choice does not flicker.
``reasons`` says, per track, why it is or is not an athlete (written to the frame record).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from vpd_stream.annotations import Track


MOTION_FRAMES = 10  # motion is the net displacement over this many frames: box jitter cancels out


@dataclass(frozen=True)
class SelectionParams:
    max_athletes: int = 1
    roi: tuple[float, float, float, float] | None = None  # fractions of the frame
    motion_weight: float = 0.5
    centre_weight: float = 0.8  # a track at the frame's left/right edge scores 1 - centre_weight of one at the centre
    age_frames: int = 25
    hysteresis: float = 1.5
    switch_frames: int = 25
    smoothing: float = 0.2  # EMA weight of the newest frame
    release_support: float = 0.15  # an athlete whose detection support falls below this is let go at once


@dataclass
class _TrackStats:
    score: float = 0.0
    motion: float = 0.0  # EMA of the net centre displacement per frame over the last frames, in box heights
    support: float = 0.5  # EMA over detection passes of "a detection matched this track"
    centres: collections.deque = field(default_factory=lambda: collections.deque(maxlen=MOTION_FRAMES + 1))


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
    reasons: dict[int, str] = field(default_factory=dict)  # track id → why it is / is not an athlete

    def factors(self, track: Track, stats: _TrackStats, width: int, height: int) -> dict[str, float]:
        """The parts of the instant score (their product, with motion as 1 + weight × motion)."""
        p = self.params
        w = max(0.0, float(track.box[2] - track.box[0]))
        h = max(0.0, float(track.box[3] - track.box[1]))
        out = {"size": float(np.sqrt(w * h / max(1.0, width * height))),
               "age": min(1.0, (track.age + 1) / max(1, p.age_frames)),
               "support": stats.support,
               "motion": min(1.0, stats.motion * 20.0),  # 5 % of the body height per frame counts as full motion
               "in_view": roi_overlap(track.box, (0.0, 0.0, 1.0, 1.0), width, height),
               # cameras frame the play: officials, ball kids and benches line the edges
               "centre": 1.0 - p.centre_weight * min(1.0, abs((track.box[0] + track.box[2]) / max(1.0, width) - 1.0))}
        if p.roi is not None:
            out["in_roi"] = roi_overlap(track.box, p.roi, width, height)
        return out

    def instant_score(self, f: dict[str, float]) -> float:
        """The instant score from a track's ``factors``."""
        # Age multiplies fully: a box that appeared a moment ago (often a false detection)
        # cannot outrank a person followed for a second. A person partly out of the frame
        # counts by the square of the share in view.
        score = (f["size"] * f["age"] * f["support"] ** 2 * (1.0 + self.params.motion_weight * f["motion"])
                 * f["in_view"] ** 2 * f["centre"])
        if "in_roi" in f:
            score *= f["in_roi"]
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
        factors: dict[int, dict[str, float]] = {}  # this frame's, for the scores and _explain
        for tid, track in tracks.items():
            stats = self._stats.setdefault(tid, _TrackStats())
            centre = np.array([(track.box[0] + track.box[2]) / 2, (track.box[1] + track.box[3]) / 2])
            stats.centres.append(centre)
            if len(stats.centres) > 1:
                span = len(stats.centres) - 1
                step = (float(np.linalg.norm(centre - stats.centres[0])) / span
                        / max(1.0, float(track.box[3] - track.box[1])))
                stats.motion += p.smoothing * (step - stats.motion)
            if matched is not None and tid in matched:  # a pass that looked where this track is
                stats.support += 0.3 * (float(matched[tid]) - stats.support)
            factors[tid] = f = self.factors(track, stats, width, height)
            instant = self.instant_score(f)
            stats.score = instant if stats.score == 0.0 else stats.score + p.smoothing * (instant - stats.score)

        # A ghost (a box coasting where the detector has found nobody for several passes)
        # stops being an athlete at once, whatever the hysteresis.
        self.athletes = [tid for tid in self.athletes
                         if tid in tracks and self._stats[tid].support >= p.release_support]
        self._challenge = {tid: n for tid, n in self._challenge.items() if tid in tracks}
        # Ties broken by the older (lower) id so the choice is deterministic.
        ranked = sorted((tid for tid in tracks if tid not in self.athletes),
                        key=lambda t: (-self._stats[t].score, t))
        ranked = [tid for tid in ranked if self._stats[tid].score > 0.0 and self._stats[tid].support >= p.release_support]
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
        self._explain(tracks, factors)
        return list(self.athletes)

    def _explain(self, tracks: dict[int, Track], factors: dict[int, dict[str, float]]) -> None:
        p = self.params
        order = sorted(tracks, key=lambda t: (-self._stats[t].score, t))
        cut = min((self._stats[t].score for t in self.athletes), default=0.0)
        self.reasons = {}
        for rank, tid in enumerate(order, 1):
            stats = self._stats[tid]
            f = factors[tid]
            parts = ", ".join(f"{k} {v:.2f}" for k, v in f.items())
            head = f"score {stats.score:.4f} (rank {rank} of {len(order)}: {parts})"
            if tid in self.athletes:
                why = f"athlete: {head}"
            elif stats.score <= 0.0:
                why = f"not an athlete: no score — {head}"
            elif stats.support < p.release_support:
                why = f"not an athlete: no detection in the last passes (support < {p.release_support}) — {head}"
            elif len(self.athletes) < p.max_athletes:
                why = f"not an athlete: {head}"
            elif tid in self._challenge:
                why = (f"not an athlete yet: outscores an athlete by > {p.hysteresis}x for "
                       f"{self._challenge[tid]} of {p.switch_frames} frames — {head}")
            else:
                lows = [k for k in ("in_roi", "in_view", "support", "age") if k in f and f[k] < 0.5]
                lows += ["motion"] if f["motion"] < 0.1 else []
                low = f"; low {', '.join(lows)}" if lows else ""
                why = f"not an athlete: below the {p.max_athletes} athlete(s) (least {cut:.4f}){low} — {head}"
            self.reasons[tid] = why

    def score_of(self, track_id: int) -> float:
        stats = self._stats.get(track_id)
        return stats.score if stats else 0.0
