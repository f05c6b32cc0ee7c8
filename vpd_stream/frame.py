"""The unit of data that flows through the pipeline."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Picture(Protocol):
    """Decoded pixels not yet turned into an RGB array (``vpd_stream.sources`` makes them).

    ``rgb()`` converts on its first call and returns the same array afterwards; ``shape`` is
    the upright (height, width) without converting; ``nbytes`` what it holds now.
    """

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def nbytes(self) -> int: ...

    def rgb(self) -> np.ndarray: ...


def _region(picture: Any, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    region = getattr(picture, "region", None)
    return region(x1, y1, x2, y2) if region is not None else picture.rgb()[y1:y2, x1:x2]


class FramePixels:
    """Process-wide count of the frames whose pixels are alive (decoded or RGB), and bytes.

    Every ``Frame`` built from a ``Picture`` registers it until its pixels are released or the
    frame is collected, so a benchmark or a test can see what is in flight.
    """

    _lock = threading.Lock()
    live = 0
    peak = 0

    @classmethod
    def add(cls, n: int) -> None:
        with cls._lock:
            cls.live += n
            cls.peak = max(cls.peak, cls.live)

    @classmethod
    def reset_peak(cls) -> None:
        with cls._lock:
            cls.peak = cls.live


@dataclass
class Frame:
    """One decoded (and resampled) video frame with the annotations the stages add.

    ``annotations`` maps what a plugin *provides* (e.g. ``"tracks"``, ``"pose"``) to its
    value; per-track values are dicts keyed by track id. ``prev_rgb`` is the source-rate
    frame ``prev_step`` frames earlier (the frame optical flow is computed against).

    Pixels are lazy: a source gives ``picture`` (and ``prev_picture``), the decoded frame
    still in FFmpeg's YUV (half the bytes of RGB at 4:2:0), and ``rgb`` / ``prev_rgb`` convert
    on first use, once, shared by every plugin that reads them (and by the next frame, whose
    previous frame this is). ``rgb`` may also be given (or assigned) as an array, as before.
    ``release_previous()`` drops this frame's hold on the previous frame once its crops are
    taken; ``release_pixels()`` drops everything (``rgb`` is then None).
    """

    stream_id: str
    index: int
    pts: float
    rgb: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    source_index: int = 0
    source_fps: float | None = None
    target_fps: float | None = None
    prev_rgb: np.ndarray | None = field(default=None, repr=False)
    prev_step: int = 1
    decoded_at: float = field(default_factory=time.monotonic)
    annotations: dict[str, Any] = field(default_factory=dict)
    events: list["Event"] = field(default_factory=list)
    picture: Picture | None = field(default=None, repr=False)
    prev_picture: Picture | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.picture is not None:
            FramePixels.add(1)
            self._counted = True

    @property
    def height(self) -> int:
        return self._shape()[0]

    @property
    def width(self) -> int:
        return self._shape()[1]

    def _shape(self) -> tuple[int, int]:
        rgb = self.__dict__.get("_rgb")
        if rgb is not None:
            return int(rgb.shape[0]), int(rgb.shape[1])
        if self.picture is not None:
            return int(self.picture.shape[0]), int(self.picture.shape[1])
        released = self.__dict__.get("_released_shape")
        if released is not None:
            return released
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    @property
    def pixel_nbytes(self) -> int:
        """Bytes of this frame's own pixels now: its RGB array, else its decoded picture."""
        rgb = self.__dict__.get("_rgb")
        if rgb is not None:
            return int(rgb.nbytes)
        return int(self.picture.nbytes) if self.picture is not None else 0

    @property
    def rgb_nbytes(self) -> int:
        """Bytes of this frame's RGB pixels, converted or not yet (a decoded picture converts on
        first use); 0 once released. What a stage reading them holds at most."""
        rgb = self.__dict__.get("_rgb")
        if rgb is not None:
            return int(rgb.nbytes)
        if self.picture is None:
            return 0
        height, width = self.picture.shape
        return 3 * int(height) * int(width)

    @property
    def pixels_converted(self) -> bool:
        """Whether ``rgb`` exists as an array now (False while it is still a decoded picture)."""
        return self.__dict__.get("_rgb") is not None

    @property
    def has_previous(self) -> bool:
        """Whether there is a previous frame (``prev_rgb`` would not be None), without converting it."""
        return self.__dict__.get("_prev_rgb") is not None or self.__dict__.get("prev_picture") is not None

    def rgb_region(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        """``rgb[y1:y2, x1:x2]`` (inside the frame); converts only that region while the frame
        is still a decoded picture (a source's pictures do, bit for bit; see sources._Lazy)."""
        rgb = self.__dict__.get("_rgb")
        if rgb is None and self.picture is not None:
            return _region(self.picture, x1, y1, x2, y2)
        return self.rgb[y1:y2, x1:x2]

    def prev_rgb_region(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray | None:
        """``prev_rgb[y1:y2, x1:x2]`` the same way (a 60 fps source's skipped previous frame is
        converted only where its crop is); None without a previous frame."""
        prev = self.__dict__.get("_prev_rgb")
        if prev is None and self.__dict__.get("prev_picture") is not None:
            return _region(self.prev_picture, x1, y1, x2, y2)
        return prev[y1:y2, x1:x2] if prev is not None else None

    def release_previous(self) -> None:
        """Forget the previous frame's pixels (after the last stage that needs them: crop)."""
        self.__dict__["_prev_rgb"] = None
        self.prev_picture = None

    def release_pixels(self) -> None:
        """Forget every pixel this frame holds; ``rgb`` and ``prev_rgb`` are None afterwards
        (``width`` and ``height`` still answer). The pipeline calls it after the last stage that
        reads pixels when no sink draws on them (``reads_pixels``)."""
        if self.picture is not None or self.__dict__.get("_rgb") is not None:
            self.__dict__["_released_shape"] = self._shape()
        self.release_previous()
        self.__dict__["_rgb"] = None
        self.picture = None
        self._uncount()

    def _uncount(self) -> None:
        if self.__dict__.pop("_counted", False):
            FramePixels.add(-1)

    def __del__(self) -> None:
        try:
            self._uncount()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _get_rgb(self: Frame) -> np.ndarray:
    rgb = self.__dict__.get("_rgb")
    if rgb is None and self.picture is not None:
        rgb = self.picture.rgb()
        self.__dict__["_rgb"] = rgb
    return rgb  # type: ignore[return-value]


def _set_rgb(self: Frame, value: np.ndarray | None) -> None:
    self.__dict__["_rgb"] = value


def _get_prev_rgb(self: Frame) -> np.ndarray | None:
    prev = self.__dict__.get("_prev_rgb")
    if prev is None and self.__dict__.get("prev_picture") is not None:
        prev = self.prev_picture.rgb()  # type: ignore[union-attr]
        self.__dict__["_prev_rgb"] = prev
    return prev


def _set_prev_rgb(self: Frame, value: np.ndarray | None) -> None:
    self.__dict__["_prev_rgb"] = value


# Properties over the dataclass fields: the generated __init__ (and dataclasses.replace)
# assign through them, so ``Frame(..., rgb=array)`` and ``frame.rgb = array`` work as before.
Frame.rgb = property(_get_rgb, _set_rgb)  # type: ignore[assignment]
Frame.prev_rgb = property(_get_prev_rgb, _set_prev_rgb)  # type: ignore[assignment]


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
