"""box_speed: how fast each tracked box moves, in image pixels per second.

The worked example of docs/plugins.md. It needs the tracker's ``tracks`` and provides
``box_speed`` (track id -> ``BoxSpeed``); with ``alert_speed`` set it also emits a
``"fast"`` event for every run of frames a track spends above that speed, so it then
provides ``Key.EVENTS`` as well.

Speed is the distance the box's reference point moved since the track's previous frame,
divided by the time between the two frames' presentation times (so it is right at any
frame rate, resampled or not), smoothed exponentially.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vpd_stream.annotations import Key, Track
from vpd_stream.errors import ConfigError
from vpd_stream.frame import EndOfStream, Event, Frame
from vpd_stream.plugin import Plugin

BOX_SPEED = "box_speed"  # this plugin's annotation key (a plain string: it is not a core key)


@dataclass
class BoxSpeed:
    """One track's speed in one frame."""

    speed: float  # px/s, smoothed: the length of ``velocity``
    velocity: np.ndarray  # (2,) float32 px/s, x to the right, y down


@dataclass
class _Run:
    """A run of frames a track spends above ``alert_speed`` (an event once it closes)."""

    start_frame: int
    start_pts: float
    end_frame: int
    end_pts: float
    peak: float
    frames: int = 1


@dataclass
class _Stream:
    last: dict[int, tuple[float, np.ndarray]] = field(default_factory=dict)  # track -> (pts, point)
    velocity: dict[int, np.ndarray] = field(default_factory=dict)  # track -> smoothed velocity
    runs: dict[int, _Run] = field(default_factory=dict)  # track -> open run above alert_speed


class BoxSpeedPlugin(Plugin):
    name = "box_speed"
    requires = (Key.TRACKS,)
    provides = (BOX_SPEED, Key.EVENTS)  # the most it provides; an instance narrows it (see __init__)
    description = "speed of each tracked box in px/s (and 'fast' events above alert_speed)"
    batch_size = 8  # cheap per frame: take several at once

    @dataclass
    class Options:
        point: str = "centre"  # "centre" of the box, or "feet" (the middle of its bottom edge)
        smoothing: float = 0.5  # exponential smoothing of the velocity: 0 = none, below 1
        athletes_only: bool = False  # measure only the tracks the tracker marks as athletes
        alert_speed: float | None = None  # px/s: emit a "fast" event for each run above it
        min_frames: int = 3  # a run must last this many frames to become an event

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        o = self.options
        # Check every value here, with a message that names the key; vpd-stream adds the
        # "[plugins.box_speed]" prefix itself.
        if o.point not in ("centre", "feet"):
            raise ConfigError(f"point must be 'centre' or 'feet', got {o.point!r}")
        if not 0.0 <= o.smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {o.smoothing}")
        if o.alert_speed is not None and o.alert_speed <= 0:
            raise ConfigError(f"alert_speed must be positive (px/s), got {o.alert_speed}")
        if o.min_frames < 1:
            raise ConfigError(f"min_frames must be at least 1, got {o.min_frames}")
        # What this instance really provides: events only when it can emit them.
        self.provides = (BOX_SPEED, Key.EVENTS) if o.alert_speed is not None else (BOX_SPEED,)
        self._streams: dict[str, _Stream] = {}  # all per-stream state, keyed by frame.stream_id

    # -- processing ------------------------------------------------------------------
    def process(self, batch: list[Frame]) -> None:
        for frame in batch:  # frames of several streams may share a batch, each stream in order
            state = self._streams.setdefault(frame.stream_id, _Stream())
            tracks: dict[int, Track] = frame.annotations.get(Key.TRACKS, {})
            speeds: dict[int, BoxSpeed] = {}
            for tid, track in tracks.items():
                if self.options.athletes_only and not track.is_athlete:
                    continue
                value = self._measure(state, tid, frame.pts, self._point(track.box))
                if value is not None:
                    speeds[tid] = value
            # Tracks that ended: forget them (bounded state) and close their runs.
            for tid in set(state.last) - set(tracks):
                state.last.pop(tid, None)
                state.velocity.pop(tid, None)
            frame.annotations[BOX_SPEED] = speeds
            if self.options.alert_speed is not None:
                self._alerts(state, frame, speeds)

    def _point(self, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = (float(v) for v in box)
        y = y2 if self.options.point == "feet" else (y1 + y2) / 2.0
        return np.array([(x1 + x2) / 2.0, y], np.float64)

    def _measure(self, state: _Stream, tid: int, pts: float, point: np.ndarray) -> BoxSpeed | None:
        previous = state.last.get(tid)
        state.last[tid] = (pts, point)
        if previous is None or pts <= previous[0]:
            return None  # a track's first frame has no speed yet
        raw = (point - previous[1]) / (pts - previous[0])
        smoothed = state.velocity.get(tid)
        a = self.options.smoothing
        velocity = raw if smoothed is None else a * smoothed + (1.0 - a) * raw
        state.velocity[tid] = velocity
        return BoxSpeed(speed=float(np.hypot(*velocity)), velocity=velocity.astype(np.float32))

    def _alerts(self, state: _Stream, frame: Frame, speeds: dict[int, BoxSpeed]) -> None:
        limit = float(self.options.alert_speed)
        for tid, value in speeds.items():
            run = state.runs.get(tid)
            if value.speed >= limit:
                if run is None:
                    state.runs[tid] = _Run(frame.index, frame.pts, frame.index, frame.pts, value.speed)
                else:
                    run.end_frame, run.end_pts, run.frames = frame.index, frame.pts, run.frames + 1
                    run.peak = max(run.peak, value.speed)
        for tid in [t for t, v in state.runs.items() if t not in speeds or speeds[t].speed < limit]:
            event = self._close(frame.stream_id, tid, state.runs.pop(tid), frame.index)
            if event is not None:
                frame.events.append(event)  # reaches the sinks (and any labeller) with this frame

    def _close(self, stream_id: str, tid: int, run: _Run, emitted: int) -> Event | None:
        if run.frames < self.options.min_frames:
            return None
        return Event(stream_id=stream_id, track_id=tid, label="fast", score=1.0,  # a rule, not a model
                     start_frame=run.start_frame, end_frame=run.end_frame, start_pts=run.start_pts,
                     end_pts=run.end_pts, emitted_frame=emitted,
                     extra={"peak_speed_px_s": round(run.peak, 1)})

    def end_stream(self, eos: EndOfStream) -> None:
        """The stream is over: runs still open become events now, and its state goes."""
        state = self._streams.pop(eos.stream_id, None)
        if state is None:
            return
        for tid, run in sorted(state.runs.items()):
            event = self._close(eos.stream_id, tid, run, run.end_frame)
            if event is not None:
                eos.events.append(event)

    def close(self) -> None:
        self._streams.clear()

    # -- output ------------------------------------------------------------------------
    def describe(self, frame: Frame) -> dict[str, Any]:
        speeds: dict[int, BoxSpeed] = frame.annotations.get(BOX_SPEED, {})
        if not speeds:
            return {}
        return {"tracks": {tid: {"speed_px_s": round(v.speed, 1),
                                 "velocity_px_s": [round(float(c), 1) for c in v.velocity]}
                           for tid, v in speeds.items()}}

    def draw(self, frame: Frame, image: np.ndarray) -> None:
        import cv2  # only the annotated video needs OpenCV

        tracks = frame.annotations.get(Key.TRACKS, {})
        scale = max(1, round(max(image.shape[:2]) / 720))
        for tid, value in frame.annotations.get(BOX_SPEED, {}).items():
            track = tracks.get(tid)
            if track is None:
                continue
            x, y = (int(round(c)) for c in self._point(track.box))
            tip = (int(round(x + 0.25 * value.velocity[0])), int(round(y + 0.25 * value.velocity[1])))
            cv2.arrowedLine(image, (x, y), tip, (0, 200, 255), 2 * scale, cv2.LINE_AA, tipLength=0.25)
            # Below the box: the tracker writes its label above it.
            x1, y2 = int(round(track.box[0])), int(round(track.box[3]))
            at = (max(0, x1) + 3, min(image.shape[0] - 4, y2 + 16 * scale))
            for colour, thickness in (((0, 0, 0), 3 * scale), ((0, 200, 255), scale)):  # outlined: legible anywhere
                cv2.putText(image, f"{value.speed:.0f} px/s", at, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, colour,
                            thickness, cv2.LINE_AA)
