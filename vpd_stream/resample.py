"""Frame-rate resampling by presentation time (not by frame count).

Output frame k stands for time ``t0 + k / fps`` and carries the source frame whose
timestamp is nearest to it, so 60 fps and 10 fps sources (or a variable-rate one) all
come out at exactly ``fps`` timestamps. Nearest-neighbour needs the following source
frame to decide, so it holds one frame back; ``flush`` releases it at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Resampled(Generic[T]):
    index: int
    pts: float
    item: T


class RateResampler(Generic[T]):
    def __init__(self, fps: float | None) -> None:
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self._t0: float | None = None
        self._next = 0  # index of the next output frame
        self._held: tuple[float, T] | None = None
        self._last_gap = 0.0

    def push(self, pts: float, item: T) -> list[Resampled[T]]:
        """Offer a source frame with timestamp ``pts``; return the frames now decided."""
        if self.fps is None:
            self._next += 1
            return [Resampled(self._next - 1, pts, item)]
        if self._t0 is None:
            self._t0 = pts
        out: list[Resampled[T]] = []
        if self._held is not None:
            held_pts, held = self._held
            self._last_gap = pts - held_pts
            midpoint = (held_pts + pts) / 2.0
            # Every output time before the midpoint is nearer the held frame.
            while self._time(self._next) < midpoint - 1e-9:
                out.append(Resampled(self._next, self._time(self._next), held))
                self._next += 1
        self._held = (pts, item)
        return out

    def flush(self) -> list[Resampled[T]]:
        """Release the held frame for the output times within half a frame after it."""
        if self.fps is None or self._held is None:
            return []
        held_pts, held = self._held
        self._held = None
        gap = self._last_gap if self._last_gap > 0 else 1.0 / self.fps
        out = []
        while self._time(self._next) < held_pts + gap / 2.0 - 1e-9:
            out.append(Resampled(self._next, self._time(self._next), held))
            self._next += 1
        return out

    def _time(self, index: int) -> float:
        assert self._t0 is not None and self.fps is not None
        return self._t0 + index / self.fps
