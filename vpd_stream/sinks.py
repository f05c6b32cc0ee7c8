"""Where results go: JSONL records, readable event lines, an annotated video.

Every JSONL line is written whole with one ``write`` and flushed at once, so a killed run
leaves only complete lines behind.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .errors import InputError
from .frame import EndOfStream, Event, Frame


def frame_record(frame: Frame, plugins: list) -> dict[str, Any]:
    """The JSONL record of a frame: every plugin's ``describe``, tracks merged by id."""
    record: dict[str, Any] = {"type": "frame", "stream": frame.stream_id, "frame": frame.index,
                              "pts": round(frame.pts, 6)}
    tracks: dict[Any, dict[str, Any]] = {}
    for plugin in plugins:
        fields = plugin.describe(frame)
        for track_id, values in (fields.pop("tracks", None) or {}).items():
            tracks.setdefault(track_id, {"track_id": int(track_id)}).update(values)
        record.update(fields)
    if tracks:
        record["tracks"] = list(tracks.values())
    return record


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Sink:
    def write_frame(self, frame: Frame, plugins: list) -> None: ...
    def write_event(self, event: Event) -> None: ...
    def end_stream(self, eos: EndOfStream) -> None: ...
    def close(self) -> None: ...


class JsonlSink(Sink):
    """JSONL to a file (appending nothing partial) or to stdout with ``-``."""

    def __init__(self, path: str, frames: bool = True, events: bool = True) -> None:
        self.path = path
        self.frames = frames
        self.events = events
        self.lines = 0
        if path == "-":
            self._out: TextIO = sys.stdout
            self._owned = False
        else:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._out = open(path, "w", encoding="utf-8", buffering=1)
            except OSError as exc:
                raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
            self._owned = True

    def _line(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, default=_default, separators=(",", ":")) + "\n")
        self._out.flush()
        self.lines += 1

    def write_frame(self, frame: Frame, plugins: list) -> None:
        if self.frames:
            self._line(frame_record(frame, plugins))

    def write_event(self, event: Event) -> None:
        if self.events:
            self._line(event.to_record())

    def end_stream(self, eos: EndOfStream) -> None:
        record = {"type": "end", "stream": eos.stream_id, "frames": eos.frames}
        if eos.error:
            record["error"] = eos.error
        if self.frames or self.events:
            self._line(record)

    def close(self) -> None:
        if self._owned and not self._out.closed:
            self._out.close()


class EventPrinter(Sink):
    """Human-readable detections on stdout (what you see without ``-o``)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def write_event(self, event: Event) -> None:
        who = f"track {event.track_id}" if event.track_id is not None else "scene"
        what = f"{event.label} score {event.score:.2f}"
        if "label_score" in event.extra:  # a recognizer named the class: both stages' confidence
            what = (f"{event.label} {event.extra['label_score']:.2f} "
                    f"({event.extra.get('detector_label', 'detected')} score {event.score:.2f})")
        self.out.write(
            f"[{event.stream_id}] {_clock(event.start_pts)}–{_clock(event.end_pts)} "
            f"(frames {event.start_frame}–{event.end_frame}) {who}: {what}\n"
        )
        self.out.flush()


def _clock(seconds: float) -> str:
    minutes, sec = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes):02d}:{sec:05.2f}"
