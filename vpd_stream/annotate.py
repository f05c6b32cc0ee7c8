"""The annotated video: each plugin draws its own overlay, PyAV encodes the result."""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError
from .frame import EndOfStream, Event, Frame
from .sinks import Sink

log = logging.getLogger(__name__)
EVENT_SHOW_SECONDS = 2.0


def _pick_codec() -> str:
    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise InputError("no H.264 or MPEG-4 encoder in this PyAV build; cannot write --annotate")


class AnnotatedVideoSink(Sink):
    """Writes one stream's frames with overlays to ``path`` (mp4/mkv by extension)."""

    def __init__(self, path: str, stream_id: str | None = None, fps: float | None = 25.0) -> None:
        self.path = path
        self.stream_id = stream_id  # None: the first stream seen
        self.fps = fps or 25.0
        self._container = None
        self._stream = None
        self._recent: list[Event] = []
        self.frames = 0
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _open(self, width: int, height: int) -> None:
        import cv2  # noqa: F401  (fail here, early, if OpenCV is missing)

        try:
            self._container = av.open(self.path, mode="w")
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot write {self.path}: {exc}") from None
        codec = _pick_codec()
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        self._stream = stream

    def write_frame(self, frame: Frame, plugins: list) -> None:
        if self.stream_id is None:
            self.stream_id = frame.stream_id
        if frame.stream_id != self.stream_id:
            return
        import cv2

        if self._container is None:
            self._open(frame.width, frame.height)
        image = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
        for plugin in plugins:
            plugin.draw(frame, image)
        self._recent = [e for e in self._recent if frame.pts - e.end_pts < EVENT_SHOW_SECONDS]
        self._header(image, frame, cv2)
        image = image[: self._stream.height, : self._stream.width]
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        out.pts = self.frames
        out.time_base = Fraction(1) / Fraction(self._stream.average_rate or self.fps)
        for packet in self._stream.encode(out):
            self._container.mux(packet)
        self.frames += 1

    def _header(self, image: np.ndarray, frame: Frame, cv2) -> None:
        scale = max(0.5, image.shape[1] / 1280.0)
        lines = [f"{frame.stream_id}  #{frame.index}  {frame.pts:7.2f}s"]
        for event in self._recent[-3:]:
            lines.append(f"{event.label} {event.score:.2f} (track {event.track_id})")
        y = int(28 * scale)
        for text in lines:
            cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0), int(4 * scale), cv2.LINE_AA)
            cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255), max(1, int(1.5 * scale)), cv2.LINE_AA)
            y += int(30 * scale)

    def write_event(self, event: Event) -> None:
        if event.stream_id == self.stream_id:
            self._recent.append(event)

    def end_stream(self, eos: EndOfStream) -> None:
        if eos.stream_id == self.stream_id:
            self.close()

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None
