"""Video sources decoded with PyAV: files, network feeds and stdin.

A source yields ``Frame``s already resampled to the target rate. Files are decoded with
frame threading and never drop a frame; live feeds (URLs, stdin) decode with low latency,
reconnect with bounded exponential backoff when the feed fails or ends, and close the
container on every reconnect (PyAV leaks otherwise).
"""
from __future__ import annotations

import collections
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

import av
import numpy as np

from .config import SourceConfig
from .errors import InputError
from .frame import Frame
from .resample import RateResampler

log = logging.getLogger(__name__)
av.logging.set_level(av.logging.PANIC)  # FFmpeg's own chatter would bury our one-line errors

LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https"}
MAX_CONSECUTIVE_DECODE_ERRORS = 50


def is_url(spec: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec))


def source_kind(spec: str, live: str = "auto") -> str:
    """'file', 'live' or 'stdin'. ``live`` = auto|yes|no overrides URL detection."""
    if spec == "-":
        return "stdin"
    if live == "yes":
        return "live"
    if is_url(spec) and live != "no":
        scheme = urlparse(spec).scheme.lower()
        return "live" if scheme in LIVE_SCHEMES else "file"
    return "file"


def stream_names(specs: list[str]) -> list[str]:
    """Short unique names for the ``stream`` label: file stem, url host:port, 'stdin'."""
    names: list[str] = []
    for spec in specs:
        if spec == "-":
            base = "stdin"
        elif is_url(spec):
            parsed = urlparse(spec)
            base = f"{parsed.scheme}-{parsed.hostname or 'feed'}" + (f"-{parsed.port}" if parsed.port else "")
        else:
            base = Path(spec).stem or "video"
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[:48]
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


@dataclass
class SourceStatus:
    """What the watchdog and the summary read about a source (written by its thread)."""

    connected: bool = False
    last_packet: float = 0.0
    decoded: int = 0  # source-rate frames decoded
    emitted: int = 0  # frames emitted after resampling
    reconnects: int = 0
    decode_errors: int = 0
    stalls: int = 0
    stalled: bool = False
    fps: float | None = None
    width: int = 0
    height: int = 0
    codec: str = ""
    expected_frames: int = 0  # from the container, 0 if unknown


class VideoSource:
    """One input. Iterate ``frames(stop)`` from a single thread."""

    def __init__(
        self,
        spec: str,
        stream_id: str,
        config: SourceConfig | None = None,
        target_fps: float | None = 25.0,
        on_reconnect: Callable[[str], None] | None = None,
        stdin=None,
        max_frames: int | None = None,
    ) -> None:
        self.spec = spec
        self.stream_id = stream_id
        self.config = config or SourceConfig()
        self.target_fps = target_fps
        self.kind = source_kind(spec, self.config.live)
        # A pipe has its own backpressure, so stdin is read like a file unless told it is live.
        self.is_live = self.kind == "live" or (self.kind == "stdin" and self.config.live == "yes")
        self.status = SourceStatus()
        self.on_reconnect = on_reconnect
        self._stdin = stdin
        self.max_frames = max_frames
        self._pts_offset = 0.0
        self._last_pts: float | None = None

    # -- opening --------------------------------------------------------------------

    def check(self) -> None:
        """Fail early, before any frame is decoded, on a file that cannot be a video."""
        if self.kind != "file" or is_url(self.spec):
            return
        path = Path(self.spec)
        if not path.exists():
            raise InputError(f"{self.spec}: no such file; check the path")
        if path.is_dir():
            raise InputError(f"{self.spec}: is a directory, not a video file")
        if path.stat().st_size == 0:
            raise InputError(f"{self.spec}: the file is empty (0 bytes); it is not a video")
        container = self._open()
        container.close()

    def _open(self):
        """Open the container and check it holds a decodable video stream."""
        options: dict[str, str] = {}
        kwargs: dict = {}
        if self.is_live:
            # Low latency: no input buffering, and probe 0.3 s of the feed, not five.
            options.update({"fflags": "nobuffer", "flags": "low_delay",
                            "analyzeduration": "300000", "probesize": "500000"})
            if self.spec.startswith("rtsp"):
                options["rtsp_transport"] = "tcp"
            kwargs["timeout"] = (self.config.open_timeout, self.config.read_timeout)
        target = self.spec
        if self.kind == "stdin":
            # FFmpeg's own pipe protocol keeps its probe buffer; a Python file object on a
            # pipe cannot seek back after probing and loses the first frames.
            target = self._stdin if self._stdin is not None else "pipe:0"
        try:
            container = av.open(target, mode="r", options=options, **kwargs)
        except av.error.FileNotFoundError:
            raise InputError(f"{self.spec}: no such file; check the path") from None
        except av.error.PermissionError:
            raise InputError(f"{self.spec}: permission denied") from None
        except av.error.InvalidDataError:
            if _mp4_without_index(self.spec):
                raise InputError(
                    f"{self.spec}: the MP4 index (moov atom) is missing: the file was cut before the "
                    "recording was finalized; re-export it (with -movflags faststart for streaming)"
                ) from None
            raise InputError(
                f"{self.spec}: not a video file FFmpeg can read (invalid data; the file may be "
                "truncated or not a video at all)"
            ) from None
        except (av.error.ExitError, av.error.TimeoutError):
            raise InputError(
                f"{self.spec}: no answer within {self.config.open_timeout:g} s; check the URL and "
                "that the feed is up"
            ) from None
        except (av.error.ConnectionRefusedError, av.error.ConnectionResetError):
            raise InputError(f"{self.spec}: connection refused; check the URL and that the feed is up") from None
        except av.error.HTTPError as exc:
            raise InputError(f"{self.spec}: the server answered {exc.strerror or 'an HTTP error'}") from None
        except av.error.ProtocolNotFoundError:
            raise InputError(f"{self.spec}: this URL scheme is not supported by FFmpeg") from None
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{self.spec}: cannot open ({_reason(exc)})") from None
        try:
            self._video_stream(container)
        except Exception:
            container.close()
            raise
        return container

    def _video_stream(self, container):
        if not container.streams.video:
            raise InputError(f"{self.spec}: contains no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or getattr(ctx, "codec", None) is None or ctx.name in ("none", ""):
            raise InputError(
                f"{self.spec}: unsupported or unknown video codec (no decoder in this FFmpeg build); "
                "convert it first, e.g. to H.264"
            )
        if ctx.width == 0 or ctx.height == 0:
            # A stream FFmpeg cannot size usually means it could not parse the codec headers.
            if not self.is_live:
                raise InputError(f"{self.spec}: the video stream has no readable frames (corrupt headers)")
        return stream

    # -- decoding -------------------------------------------------------------------

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Frames at the target rate until the source ends, fails, or ``stop`` is set."""
        for count, frame in enumerate(self._frames(stop), 1):
            yield frame
            if self.max_frames is not None and count >= self.max_frames:
                return

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        resampler: RateResampler = RateResampler(self.target_fps)
        history: collections.deque = collections.deque()
        attempts = 0
        while not stop.is_set():
            try:
                container = self._open()
            except InputError as exc:
                if not self.is_live or self.kind == "stdin":
                    raise
                attempts += 1
                if not self._backoff(attempts, str(exc), stop):
                    raise InputError(
                        f"{self.spec}: feed unreachable after {attempts} attempts ({exc}); "
                        "check the URL or raise source.reconnect_attempts"
                    ) from None
                continue
            failure: str | None = None
            try:
                for item in self._decode(container, stop, history):
                    attempts = 0  # a working connection resets the backoff
                    for out in resampler.push(item[0], item[1:]):
                        yield self._make_frame(out.index, out.pts, *out.item)
            except InputError as exc:
                failure = str(exc)
                if not self.is_live:
                    for out in resampler.flush():
                        yield self._make_frame(out.index, out.pts, *out.item)
                    raise
            finally:
                container.close()
                self.status.connected = False
            if not self.is_live or self.kind == "stdin" or stop.is_set():
                break
            # A live feed that ended or failed: reconnect with backoff.
            attempts += 1
            reason = failure or "the feed ended"
            if not self._backoff(attempts, reason, stop):
                raise InputError(
                    f"{self.spec}: feed lost and not back after {attempts} attempts ({reason}); "
                    "check the feed or raise source.reconnect_attempts"
                )
            # Timestamps restart on a new connection; continue the timeline instead.
            self._pts_offset = None  # type: ignore[assignment]
            history.clear()
        for out in resampler.flush():
            yield self._make_frame(out.index, out.pts, *out.item)

    def _backoff(self, attempts: int, reason: str, stop: threading.Event) -> bool:
        limit = self.config.reconnect_attempts
        if limit >= 0 and attempts > limit:
            return False
        delay = min(self.config.backoff_max, self.config.backoff_initial * (2 ** (attempts - 1)))
        log.warning("%s: %s; reconnecting in %.1f s (attempt %d)", self.stream_id, reason, delay, attempts)
        self.status.reconnects += 1
        if self.on_reconnect:
            self.on_reconnect(self.stream_id)
        stop.wait(delay)
        return not stop.is_set()

    def _decode(self, container, stop: threading.Event, history: collections.deque):
        """Yield (pts_seconds, frame, source_index, previous frame) at the source rate."""
        stream = container.streams.video[0]
        if self.is_live:
            stream.thread_type = "SLICE"  # frame threading would add a frame of delay per thread
        else:
            stream.thread_type = self.config.threads
        status = self.status
        status.connected = True
        status.last_packet = time.monotonic()
        status.codec = stream.codec_context.name
        status.width, status.height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else None
        status.fps = fps
        status.expected_frames = int(stream.frames or 0)
        step = self._prev_step(fps)
        consecutive_errors = 0
        packets = container.demux(stream)
        while not stop.is_set():
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.ExitError, av.error.TimeoutError):
                raise InputError(f"no data for {self.config.read_timeout:g} s") from None
            except av.FFmpegError as exc:
                if self.is_live:
                    raise InputError(f"read failed ({_reason(exc)})") from None
                raise InputError(
                    f"{self.spec}: the file is corrupt or truncated after frame {status.decoded} "
                    f"({_reason(exc)}); frames before it were processed"
                ) from None
            status.last_packet = time.monotonic()
            status.stalled = False
            try:
                decoded = packet.decode()
                consecutive_errors = 0
            except av.FFmpegError:
                status.decode_errors += 1
                consecutive_errors += 1
                if consecutive_errors > MAX_CONSECUTIVE_DECODE_ERRORS:
                    raise InputError(
                        f"{self.spec}: {consecutive_errors} packets in a row failed to decode after "
                        f"frame {status.decoded}; the stream is corrupt"
                    ) from None
                continue
            for vf in decoded:
                item = self._stamp(vf, stream, fps)
                if item is None:
                    continue
                lazy = _Lazy(vf)
                history.append(lazy)
                while len(history) > step + 1:
                    history.popleft()
                prev = history[0] if len(history) == step + 1 else None
                yield item, lazy, status.decoded, prev, step
                status.decoded += 1
        if not self.is_live and not stop.is_set():
            self._check_complete()

    def _stamp(self, vf, stream, fps: float | None) -> float | None:
        """The frame's presentation time in seconds on a timeline continuous across reconnects."""
        if vf.pts is not None and vf.time_base is not None:
            pts = float(vf.pts * vf.time_base)
        elif vf.pts is not None and stream.time_base is not None:
            pts = float(vf.pts * stream.time_base)
        else:
            pts = self.status.decoded / (fps or 25.0)
        gap = 1.0 / (fps or 25.0)
        if self._pts_offset is None:  # first frame after a reconnect
            self._pts_offset = (self._last_pts + gap - pts) if self._last_pts is not None else 0.0
        elif self._last_pts is not None and not (
            self._last_pts - 1.0 < pts + self._pts_offset < self._last_pts + 10.0
        ):
            # A timestamp discontinuity (a looping feed, a 33-bit MPEG-TS wrap, spliced
            # streams): continue the timeline from where it was.
            self._pts_offset = self._last_pts + gap - pts
        pts += self._pts_offset
        if self._last_pts is not None and pts <= self._last_pts:
            return None  # a repeated or backwards timestamp: keep the timeline monotonic
        self._last_pts = pts
        return pts

    def _check_complete(self) -> None:
        expected = self.status.expected_frames
        if expected > 0 and self.status.decoded < expected * 0.98 - 1:
            raise InputError(
                f"{self.spec}: the file is truncated: decoded {self.status.decoded} of {expected} "
                "frames; frames before the cut were processed"
            )
        if self.status.decoded == 0:
            raise InputError(f"{self.spec}: no frame could be decoded; the file is corrupt or truncated")

    def _prev_step(self, fps: float | None) -> int:
        if fps is None or self.target_fps is None:
            return 1
        return max(1, round(fps / self.target_fps))

    def _make_frame(self, index: int, pts: float, lazy: "_Lazy", source_index: int,
                    prev: "_Lazy | None", step: int) -> Frame:
        self.status.emitted += 1
        rgb = lazy.rgb()
        return Frame(
            stream_id=self.stream_id,
            index=index,
            pts=pts,
            rgb=rgb,
            source_index=source_index,
            source_fps=self.status.fps,
            target_fps=self.target_fps,
            prev_rgb=prev.rgb() if prev is not None else None,
            prev_step=step,
        )


class _Lazy:
    """A decoded frame converted to RGB only if (and only once) it is used."""

    __slots__ = ("frame", "_rgb")

    def __init__(self, frame) -> None:
        self.frame = frame
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self.frame.to_ndarray(format="rgb24")
        return self._rgb


def _mp4_without_index(spec: str) -> bool:
    """An MP4/MOV file whose 'moov' box never made it to disk (a cut recording)."""
    try:
        with open(spec, "rb") as f:
            head = f.read(12)
            if head[4:8] != b"ftyp":
                return False
            import mmap

            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return data.find(b"moov") < 0
    except (OSError, ValueError):
        return False


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return re.sub(r"\s+", " ", str(text)).strip()
