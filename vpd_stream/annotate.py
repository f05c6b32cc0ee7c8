"""The annotated video: each plugin draws its own overlay, PyAV encodes the result.

MP4 and MOV outputs are written fragmented (a fragment per keyframe, about every 2 s), so a
run that is killed or meets a full disk leaves a video that plays up to its last whole
fragment instead of one without an index. A write failure is one ``InputError`` naming the
file; closing after it does not raise again.
"""
from __future__ import annotations

import logging
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from .errors import InputError
from .frame import EndOfStream, Event, Frame
from .sinks import Sink, write_failure_reason

log = logging.getLogger(__name__)
EVENT_SHOW_SECONDS = 2.0
FRAGMENTED = {".mp4", ".mov", ".m4v"}


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

    reads_pixels = True  # it draws on frame.rgb: the pipeline keeps every frame's pixels

    def __init__(self, path: str, stream_id: str | None = None, fps: float | None = 25.0) -> None:
        self.path = path
        self.stream_id = stream_id  # None: the first stream seen
        self.fps = fps or 25.0
        self._container: Any = None
        self._stream: Any = None
        self._recent: list[Event] = []
        self.frames = 0
        self._failed = False
        self._file: _CheckedFile | None = None
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _open(self, width: int, height: int) -> None:
        import cv2  # noqa: F401  (fail here, early, if OpenCV is missing)

        options = {}
        if Path(self.path).suffix.lower() in FRAGMENTED:
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
        try:
            # Through a Python file: FFmpeg forgets a failed write when the container closes,
            # the wrapper remembers it.
            self._file = _CheckedFile(self.path)
            self._container = av.open(self._file, mode="w", options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"cannot write {self.path}: {write_failure_reason(exc)}") from None
        codec = _pick_codec()
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.gop_size = max(1, int(round(2 * self.fps)))  # a keyframe, hence a fragment, every 2 s
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23"}
        self._stream = stream

    def write_frame(self, frame: Frame, plugins: list) -> None:
        if self._failed:
            return
        if self.stream_id is None:
            self.stream_id = frame.stream_id
        if frame.stream_id != self.stream_id:
            return
        import cv2

        if self._container is None:
            self._open(frame.width, frame.height)
        image: np.ndarray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
        for plugin in plugins:
            plugin.draw(frame, image)
        self._recent = [e for e in self._recent if frame.pts - e.end_pts < EVENT_SHOW_SECONDS]
        self._header(image, frame, cv2)
        image = image[: self._stream.height, : self._stream.width]
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        out.pts = self.frames
        out.time_base = Fraction(1) / Fraction(self._stream.average_rate or self.fps)
        try:
            for packet in self._stream.encode(out):
                self._container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            self._fail(exc)
        self.frames += 1

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass  # the disk is still full
        exc = (self._file.error if self._file is not None else None) or exc
        kept = ""
        if self._file is not None:
            self._file.close()
            if Path(self.path).suffix.lower() in FRAGMENTED and cut_to_whole_boxes(self.path):
                kept = "; the video is cut back to its last whole fragment and plays up to there"
        raise InputError(f"cannot write {self.path}: {write_failure_reason(exc)}{kept}; free space or write elsewhere "
                         "(--annotate)") from None

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
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            except (av.FFmpegError, OSError) as exc:
                self._fail(exc)
            self._container = None
            if self._file is not None:
                self._file.close()
                if self._file.error is not None:  # a write failed while FFmpeg wrote the trailer
                    self._container = None
                    self._fail(self._file.error)


class _CheckedFile:
    """A binary file for PyAV to write through that remembers the first failed write."""

    def __init__(self, path: str) -> None:
        self._f = open(path, "wb", buffering=0)
        self.name = path  # PyAV picks the container format from the name
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def cut_to_whole_boxes(path: str) -> bool:
    """Truncate a fragmented MP4 after its last complete fragment; False if nothing whole is left."""
    try:
        size = os.path.getsize(path)
        cut = 0
        with open(path, "r+b") as f:
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                length, kind = struct.unpack(">I4s", f.read(8))
                if length == 1:
                    length = struct.unpack(">Q", f.read(8))[0]
                if length < 8 or pos + length > size:
                    break  # the torn box
                if kind != b"moof":  # a fragment header without its media is no use
                    cut = pos + length
                pos += length
            f.truncate(cut)
        return cut > 0
    except OSError:
        return False
