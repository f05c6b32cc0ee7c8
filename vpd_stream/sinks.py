"""Where results go: JSONL records, readable event lines, an annotated video.

Every JSONL line is written whole and unbuffered, so a killed run leaves only complete lines
behind, and a full disk leaves the file cut back to its last whole line.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .errors import InputError
from .frame import EndOfStream, Event, Frame
from .queues import GAP_KEY  # a live source's mark on the first frame after an outage


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
    reads_pixels = True  # whether write_frame reads frame.rgb (False lets frames drop them earlier)

    def write_frame(self, frame: Frame, plugins: list) -> None: ...
    def write_event(self, event: Event) -> None: ...
    def end_stream(self, eos: EndOfStream) -> None: ...
    def close(self) -> None: ...


class JsonlSink(Sink):
    """JSONL to a file or to stdout with ``-``: whole lines only, even when the disk fills.

    Each record is encoded first and written with unbuffered ``os.write`` calls; if a write
    fails (disk full, file-size limit, I/O error), the file is truncated back to its last
    whole line and one ``InputError`` names the file. The ``end`` record of a stream says how
    many frames reached this sink (``frames``), how many the source decoded and how many were
    dropped on the way; a ``gap`` record marks where a live feed was lost and came back.
    """

    reads_pixels = False

    def __init__(self, path: str, frames: bool = True, events: bool = True) -> None:
        self.path = path
        self.frames = frames
        self.events = events
        self.lines = 0
        self._written: dict[str, int] = {}  # frames per stream that reached this sink
        self._good = 0  # bytes of whole lines in the file
        if path == "-":
            self._fd = sys.stdout.fileno() if _has_fileno(sys.stdout) else None
            self._owned = False
            self._name = "standard output"
        else:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            except OSError as exc:
                raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
            self._owned = True
            self._name = path

    def _line(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, default=_default, separators=(",", ":")) + "\n").encode("utf-8")
        if self._fd is None:  # stdout replaced by something without a descriptor (tests, embedding)
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            self.lines += 1
            return
        if not self._owned:
            sys.stdout.flush()  # whatever Python buffered for stdout goes first
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._fail(exc)
        self._good += len(data)
        self.lines += 1

    def _fail(self, exc: OSError) -> None:
        """Cut the torn line off and say what happened, naming the file."""
        kept = f"; it holds the {self.lines} whole records written before" if self.lines else ""
        if self._owned and self._fd is not None:
            try:
                os.ftruncate(self._fd, self._good)
            except OSError:
                kept = "; its last line may be incomplete" if self.lines else ""
        raise InputError(f"cannot write {self._name}: {write_failure_reason(exc)}{kept}; free space or write "
                         "elsewhere (-o)") from None

    def write_frame(self, frame: Frame, plugins: list) -> None:
        self._written[frame.stream_id] = self._written.get(frame.stream_id, 0) + 1
        gap = frame.annotations.get(GAP_KEY)
        if gap is not None and (self.frames or self.events):
            self._line({"type": "gap", "stream": frame.stream_id, "before_frame": frame.index,
                        "pts": round(frame.pts, 6), **gap})
        if self.frames:
            self._line(frame_record(frame, plugins))

    def write_event(self, event: Event) -> None:
        if self.events:
            self._line(event.to_record())

    def end_stream(self, eos: EndOfStream) -> None:
        written = self._written.pop(eos.stream_id, 0)
        record: dict[str, Any] = {"type": "end", "stream": eos.stream_id, "frames": written}
        if eos.frames > written:  # decoded but not processed: dropped (live) or cut short by a failure
            record.update(decoded=eos.frames, dropped=eos.frames - written)
        if eos.error:
            record["error"] = eos.error
        if self.frames or self.events:
            self._line(record)

    def close(self) -> None:
        if self._owned and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


_WRITE_FAILURES = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "the file size limit was reached",
                   errno.EDQUOT: "the disk quota is exhausted"}


def write_failure_reason(exc: BaseException) -> str:
    """Why writing an output failed, in words: a full disk, size limit or quota named, else the system's message."""
    return _WRITE_FAILURES.get(getattr(exc, "errno", None) or 0) or str(getattr(exc, "strerror", None) or exc)


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


class EventPrinter(Sink):
    """Human-readable detections on stdout (what you see without ``-o``)."""

    reads_pixels = False

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def write_event(self, event: Event) -> None:
        who = f"track {event.track_id}" if event.track_id is not None else "scene"
        what = f"{event.label} score {event.score:.2f}"
        if event.label_score is not None:  # a recognizer named the class: both stages' confidence
            what = (f"{event.label} {event.label_score:.2f} "
                    f"({event.detector_label or 'detected'} score {event.score:.2f})")
        self.out.write(
            f"[{event.stream_id}] {_clock(event.start_pts)}–{_clock(event.end_pts)} "
            f"(frames {event.start_frame}–{event.end_frame}) {who}: {what}\n"
        )
        self.out.flush()


def _clock(seconds: float) -> str:
    minutes, sec = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes):02d}:{sec:05.2f}"
