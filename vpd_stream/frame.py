"""The unit of data that flows through the pipeline."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One decoded (and resampled) video frame with the annotations the stages add.

    ``annotations`` maps what a plugin *provides* (e.g. ``"tracks"``, ``"pose"``) to its
    value; per-track values are dicts keyed by track id. ``prev_rgb`` is the source-rate
    frame ``prev_step`` frames earlier (the frame optical flow is computed against).
    """

    stream_id: str
    index: int
    pts: float
    rgb: np.ndarray
    source_index: int = 0
    source_fps: float | None = None
    target_fps: float | None = None
    prev_rgb: np.ndarray | None = None
    prev_step: int = 1
    decoded_at: float = field(default_factory=time.monotonic)
    annotations: dict[str, Any] = field(default_factory=dict)
    events: list["Event"] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass
class Event:
    """A detection: an interval of frames on one track with a label and a score."""

    stream_id: str
    track_id: int | None
    label: str
    score: float
    start_frame: int
    end_frame: int
    start_pts: float
    end_pts: float
    emitted_frame: int | None = None
    # Set by a labeller (the recognizer): the label the detector gave and the labeller's own
    # confidence in ``label``. An event whose ``label_score`` is set is not labelled again.
    detector_label: str | None = None
    label_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # a plugin's own fields, written as they are

    @property
    def labelled(self) -> bool:
        return self.label_score is not None

    def relabel(self, label: str, score: float) -> None:
        """A labeller names the class: the detector's label is kept beside it."""
        if self.detector_label is None:
            self.detector_label = self.label
        self.label = label
        self.label_score = round(float(score), 6)

    def to_record(self) -> dict[str, Any]:
        record = {
            "type": "event",
            "stream": self.stream_id,
            "track_id": self.track_id,
            "label": self.label,
            "score": round(float(self.score), 6),
            "start": self.start_frame,
            "end": self.end_frame,
            "start_pts": round(self.start_pts, 6),
            "end_pts": round(self.end_pts, 6),
        }
        if self.emitted_frame is not None:
            record["emitted_frame"] = self.emitted_frame
        record.update(self.extra)
        if self.detector_label is not None:
            record["detector_label"] = self.detector_label
        if self.label_score is not None:
            record["label_score"] = self.label_score
        return record


@dataclass
class EndOfStream:
    """Marker that follows a stream's last frame through every stage.

    Stages call ``plugin.end_stream(stream_id)`` when it passes, so stateful plugins can
    flush (a detector closes its open interval) and drop the stream's state.
    """

    stream_id: str
    frames: int = 0
    error: str | None = None
    events: list[Event] = field(default_factory=list)
