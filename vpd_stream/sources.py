"""Video sources decoded with PyAV: files, network feeds and stdin.

A source yields ``Frame``s already resampled to the target rate. Files are decoded with
frame threading and never drop a frame; live feeds decode with low latency, reconnect with
bounded exponential backoff when the feed fails or ends, and close the container on every
reconnect (PyAV leaks otherwise).

Whether an ``http(s)://`` URL is live is decided from what it serves, not from its scheme:
a file with a length (an MP4 on a web server) and an HLS playlist that is complete
(``#EXT-X-ENDLIST``) are read like files; a live HLS playlist or an endless stream is a
feed. A live HLS feed ends, without an error, when its playlist gets ``#EXT-X-ENDLIST``; a
reconnect never replays segments already emitted. Permanent failures (a scheme this FFmpeg
build lacks, HTTP/RTSP 4xx answers: not found, unauthorized, forbidden) fail at once instead
of being retried. After an outage the first new frame carries a gap mark (``GAP_KEY``) that
the JSONL sink writes as a ``gap`` record; ``status.reconnects`` counts reconnections that
delivered frames again, ``status.reconnect_attempts`` every attempt.
"""
from __future__ import annotations

import collections
import logging
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urljoin, urlparse

import av
import numpy as np

from .config import SourceConfig
from .errors import InputError
from .frame import Frame
from .memory import release_frame_buffers
from .queues import GAP_KEY
from .resample import RateResampler

log = logging.getLogger(__name__)
# No log callback at all (not even at PANIC): FFmpeg's chatter would bury our one-line
# errors, and with a callback installed an FFmpeg frame thread that logs needs the GIL
# while container.close() holds it waiting for that thread: a deadlock (PyAV #909, #751).
av.logging.set_level(None)

LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp", "http", "https"}
MAX_CONSECUTIVE_DECODE_ERRORS = 50
HTTP_SCHEMES = {"http", "https"}
HLS_REPLAY_WINDOW_S = 600.0  # an HLS timestamp this far behind the last one is a restart, not a replay
PLAYLIST_TYPES = ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl", "audio/x-mpegurl")
# Schemes PyAV's own FFmpeg build (the wheel) cannot open, with what to do instead.
SCHEME_HINTS = {
    "srt": "PyAV's FFmpeg has no libsrt; relay the feed, e.g. `ffmpeg -i srt://... -c copy -f mpegts "
           "tcp://127.0.0.1:5000?listen` and run on tcp://127.0.0.1:5000",
    "rist": "PyAV's FFmpeg has no librist; relay the feed to RTSP, UDP or MPEG-TS over TCP",
}


class FeedRefusedError(InputError):
    """A failure no retry can fix (unsupported scheme, 4xx answer): the stream ends at once."""


def is_url(spec: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec))


def source_kind(spec: str, live: str = "auto") -> str:
    """'file', 'live' or 'stdin' from the spec alone. ``live`` = auto|yes|no overrides URL detection.

    ``VideoSource.resolve`` refines an http(s) URL from what the server sends."""
    if spec == "-":
        return "stdin"
    if live == "yes":
        return "live"
    if is_url(spec) and live != "no":
        scheme = urlparse(spec).scheme.lower()
        return "live" if scheme in LIVE_SCHEMES else "file"
    return "file"


def redact_url(spec: str) -> str:
    """``spec`` with the password of a ``user:password@`` URL replaced by ``***``."""
    if not is_url(spec):
        return spec
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", spec)


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
    reconnects: int = 0  # reconnections that delivered new frames after an outage
    reconnect_attempts: int = 0  # every attempt (several per outage while the feed is down)
    replayed: int = 0  # frames a reconnect delivered again (HLS), skipped
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
        release_frame_buffers()  # decoded frames are megabytes each: freed ones leave the process
        self.spec = spec
        self.shown = redact_url(spec)  # what messages show: the URL without its password
        self.stream_id = stream_id
        self.config = config or SourceConfig()
        self.target_fps = target_fps
        self.kind = source_kind(spec, self.config.live)
        # A pipe has its own backpressure, so stdin is read like a file unless told it is live.
        self.is_live = self.kind == "live" or (self.kind == "stdin" and self.config.live == "yes")
        self.is_hls = is_url(spec) and urlparse(spec).path.lower().endswith(".m3u8")
        self.is_pipe = False  # a named pipe or device given as a path: read once, like stdin
        self.status = SourceStatus()
        self.on_reconnect = on_reconnect  # called with the stream id when a feed is back
        self.on_reconnect_attempt: Callable[[str], None] | None = None  # ... on every attempt
        self._stdin = stdin
        self.max_frames = max_frames
        self._resolved = False
        self._pts_offset = 0.0
        self._last_pts: float | None = None
        self._raw_last: float | None = None  # the newest source timestamp emitted (HLS replay guard)
        self._outage: dict | None = None  # while a live feed is down: since when, why, attempts
        self._pending_gap: tuple[int, dict] | None = None  # (first source index after it, record)

    # -- opening --------------------------------------------------------------------

    def check(self) -> None:
        """Fail early, before any frame is decoded, on a file that cannot be a video."""
        self.resolve()
        if self.kind != "file":
            return
        if is_url(self.spec):  # an http(s) file: open it once, like a local one
            container = self._open()
            container.close()
            return
        path = Path(self.spec)
        if not path.exists():
            raise InputError(f"{self.shown}: no such file; check the path")
        if path.is_dir():
            raise InputError(f"{self.shown}: is a directory, not a video file")
        mode = path.stat().st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
            self.is_pipe = True  # probing would consume what the writer sends: read it once, later
            return
        if path.stat().st_size == 0:
            raise InputError(f"{self.shown}: the file is empty (0 bytes); it is not a video")
        container = self._open()
        container.close()

    def resolve(self) -> None:
        """Decide live or file for an http(s) URL from what it serves (once; auto mode only)."""
        if self._resolved:
            return
        self._resolved = True
        if self.config.live != "auto" or not is_url(self.spec):
            return
        if urlparse(self.spec).scheme.lower() not in HTTP_SCHEMES:
            return
        served = _probe_http(self.spec, self.config.open_timeout)
        if served in ("hls-vod", "hls-live"):
            self.is_hls = True
        if served in ("file", "hls-vod"):
            self.kind, self.is_live = "file", False
        else:  # a live playlist, an endless stream, or a server that is down right now
            self.kind, self.is_live = "live", True
        log.info("%s: %s is served as %s", self.stream_id, self.shown, served)

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
        if self.is_live or is_url(self.spec):
            kwargs["timeout"] = (self.config.open_timeout, self.config.read_timeout)
        target = self.spec
        if self.kind == "stdin":
            # FFmpeg's own pipe protocol keeps its probe buffer; a Python file object on a
            # pipe cannot seek back after probing and loses the first frames.
            target = self._stdin if self._stdin is not None else "pipe:0"
        try:
            container = av.open(target, mode="r", options=options, **kwargs)
        except av.error.FileNotFoundError:
            raise InputError(f"{self.shown}: no such file; check the path") from None
        except av.error.PermissionError:
            raise InputError(f"{self.shown}: permission denied") from None
        except av.error.InvalidDataError:
            if not self.is_pipe and _mp4_without_index(self.spec):
                raise InputError(
                    f"{self.shown}: the MP4 index (moov atom) is missing: the file was cut before the "
                    "recording was finalized; re-export it (with -movflags faststart for streaming)"
                ) from None
            raise InputError(
                f"{self.shown}: not a video file FFmpeg can read (invalid data; the file may be "
                "truncated or not a video at all)"
            ) from None
        except (av.error.ExitError, av.error.TimeoutError):
            raise InputError(
                f"{self.shown}: no answer within {self.config.open_timeout:g} s; check the URL and "
                "that the feed is up"
            ) from None
        except (av.error.ConnectionRefusedError, av.error.ConnectionResetError):
            raise InputError(f"{self.shown}: connection refused; check the URL and that the feed is up") from None
        except (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError) as exc:
            raise FeedRefusedError(f"{self.shown}: access refused ({_reason(exc)}); "
                                   "check the credentials in the URL") from None
        except av.error.HTTPNotFoundError:
            raise FeedRefusedError(f"{self.shown}: not found (the server answered 404); check the URL's path") from None
        except av.error.HTTPTooManyRequestsError as exc:
            raise InputError(f"{self.shown}: the server answered {_reason(exc)}") from None
        except av.error.HTTPClientError as exc:
            raise FeedRefusedError(f"{self.shown}: the server refused the request ({_reason(exc)}); check the URL") from None
        except av.error.HTTPError as exc:
            raise InputError(f"{self.shown}: the server answered {exc.strerror or 'an HTTP error'}") from None
        except av.error.ProtocolNotFoundError:
            scheme = urlparse(self.spec).scheme.lower()
            hint = SCHEME_HINTS.get(scheme, "use rtsp, rtmp, udp, tcp or http(s)")
            raise FeedRefusedError(f"{self.shown}: the {scheme}:// scheme is not supported by this FFmpeg "
                                   f"build; {hint}") from None
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{self.shown}: cannot open ({_reason(exc)})") from None
        try:
            self._video_stream(container)
        except Exception:
            container.close()
            raise
        return container

    def _video_stream(self, container):
        if not container.streams.video:
            raise InputError(f"{self.shown}: contains no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or getattr(ctx, "codec", None) is None or ctx.name in ("none", ""):
            raise InputError(
                f"{self.shown}: unsupported or unknown video codec (no decoder in this FFmpeg build); "
                "convert it first, e.g. to H.264"
            )
        if ctx.width == 0 or ctx.height == 0:
            # A stream FFmpeg cannot size usually means it could not parse the codec headers.
            if not self.is_live:
                raise InputError(f"{self.shown}: the video stream has no readable frames (corrupt headers)")
        return stream

    # -- decoding -------------------------------------------------------------------

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Frames at the target rate until the source ends, fails, or ``stop`` is set."""
        for count, frame in enumerate(self._frames(stop), 1):
            yield frame
            if self.max_frames is not None and count >= self.max_frames:
                return

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        self.resolve()
        resampler: RateResampler = RateResampler(self.target_fps)
        history: collections.deque = collections.deque()
        attempts = 0
        while not stop.is_set():
            try:
                container = self._open()
            except FeedRefusedError:
                raise  # no retry can fix it
            except InputError as exc:
                if not self.is_live or self.kind == "stdin":
                    raise
                attempts += 1
                self._lost(str(exc), attempts)
                if not self._backoff(attempts, str(exc), stop):
                    if stop.is_set():
                        break  # asked to stop while waiting to retry: end the stream, not an error
                    raise InputError(
                        f"{self.shown}: feed unreachable ({exc}); gave up after {attempts - 1} reconnect "
                        f"attempts (source.reconnect_attempts = {self.config.reconnect_attempts})"
                    ) from None
                continue
            failure: str | None = None
            try:
                for item in self._decode(container, stop, history):
                    attempts = 0  # a connection that delivers new frames resets the backoff
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
            if failure is None and self.is_hls and _playlist_ended(self.spec, self.config.open_timeout):
                log.info("%s: the broadcast ended (the playlist says #EXT-X-ENDLIST)", self.stream_id)
                break
            # A live feed that ended or failed: reconnect with backoff.
            attempts += 1
            reason = failure or "the feed ended"
            self._lost(reason, attempts)
            if not self._backoff(attempts, reason, stop):
                if stop.is_set():
                    break
                raise InputError(
                    f"{self.shown}: feed lost ({reason}) and not back after {attempts - 1} reconnect attempts "
                    f"(source.reconnect_attempts = {self.config.reconnect_attempts}); check the feed"
                )
            # Timestamps restart on a new connection; continue the timeline instead.
            self._pts_offset = None  # type: ignore[assignment]
            history.clear()
        for out in resampler.flush():
            yield self._make_frame(out.index, out.pts, *out.item)

    def _lost(self, reason: str, attempts: int) -> None:
        """Remember an outage (from the last packet received) until the feed delivers again."""
        if self._outage is None:
            since = self.status.last_packet or time.monotonic()
            self._outage = {"since": since, "reason": reason, "attempts": 0}
        self._outage["attempts"] = attempts

    def _back(self, source_index: int) -> None:
        """The first new frame after an outage: count the reconnect and mark the gap."""
        outage, self._outage = self._outage, None
        if outage is None:
            return
        if self._last_pts is None:  # nothing was emitted before: a late start, not a gap
            return
        self.status.reconnects += 1
        if self.on_reconnect:
            self.on_reconnect(self.stream_id)
        lost = max(0.0, time.monotonic() - outage["since"])
        self._pending_gap = (source_index, {"lost_seconds": round(lost, 3), "reason": outage["reason"],
                                            "reconnect_attempts": outage["attempts"]})
        log.warning("%s: feed back after %.1f s (%s)", self.stream_id, lost, outage["reason"])

    def _backoff(self, attempts: int, reason: str, stop: threading.Event) -> bool:
        """Wait before attempt ``attempts``; False when the limit is reached or ``stop`` is set."""
        limit = self.config.reconnect_attempts
        if stop.is_set() or (limit >= 0 and attempts > limit):
            return False
        delay = min(self.config.backoff_max, self.config.backoff_initial * (2 ** (attempts - 1)))
        log.warning("%s: %s; reconnecting in %.1f s (attempt %d of %s)", self.stream_id, reason, delay, attempts,
                    limit if limit >= 0 else "unlimited")
        self.status.reconnect_attempts += 1
        if self.on_reconnect_attempt:
            self.on_reconnect_attempt(self.stream_id)
        stop.wait(delay)
        return not stop.is_set()

    def _decode(self, container, stop: threading.Event, history: collections.deque):
        """Yield (pts_seconds, frame, source_index, previous frame) at the source rate."""
        stream = container.streams.video[0]
        if self.is_live:
            stream.thread_type = "SLICE"  # frame threading would add a frame of delay per thread
        else:
            stream.thread_type = self.config.threads.upper()
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
                if is_url(self.spec) and status.decoded == 0:
                    raise InputError(
                        f"{self.shown}: reading over HTTP failed before the first frame ({_reason(exc)}); an MP4 "
                        "whose index is at the end needs a server that answers range requests, or re-export "
                        "it with -movflags faststart"
                    ) from None
                raise InputError(
                    f"{self.shown}: the file is corrupt or truncated after frame {status.decoded} "
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
                        f"{self.shown}: {consecutive_errors} packets in a row failed to decode after "
                        f"frame {status.decoded}; the stream is corrupt"
                    ) from None
                continue
            for vf in decoded:
                item = self._stamp(vf, stream, fps)
                if item is None:
                    continue
                if self._outage is not None:
                    self._back(status.decoded)
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
        if self.is_hls and self._raw_last is not None:
            if self._raw_last - HLS_REPLAY_WINDOW_S < pts <= self._raw_last:
                self.status.replayed += 1  # a segment this feed already delivered (a reopened playlist)
                return None
        raw = pts
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
        self._raw_last = raw
        return pts

    def _check_complete(self) -> None:
        expected = self.status.expected_frames
        if expected > 0 and self.status.decoded < expected * 0.98 - 1:
            raise InputError(
                f"{self.shown}: the file is truncated: decoded {self.status.decoded} of {expected} "
                "frames; frames before the cut were processed"
            )
        if self.status.decoded == 0:
            raise InputError(f"{self.shown}: no frame could be decoded; the file is corrupt or truncated")

    def _prev_step(self, fps: float | None) -> int:
        if fps is None or self.target_fps is None:
            return 1
        return max(1, round(fps / self.target_fps))

    def _make_frame(self, index: int, pts: float, lazy: "_Lazy", source_index: int,
                    prev: "_Lazy | None", step: int) -> Frame:
        # Pixels stay decoded (YUV) until a plugin reads frame.rgb: frames queued for a busy
        # stage hold half the bytes of RGB, and the previous frame is converted only if used.
        frame = Frame(
            stream_id=self.stream_id,
            index=index,
            pts=pts,
            source_index=source_index,
            source_fps=self.status.fps,
            target_fps=self.target_fps,
            prev_step=step,
            picture=lazy,
            prev_picture=prev,
        )
        if self._pending_gap is not None and source_index >= self._pending_gap[0]:
            frame.annotations[GAP_KEY] = self._pending_gap[1]
            self._pending_gap = None
        return frame


class _Lazy:
    """A decoded frame converted to RGB only if (and only once) it is used, turned upright
    when the stream says it is displayed rotated (a phone's portrait video: the MP4 display
    matrix, or ``rotate`` metadata, which FFmpeg turns into one).

    Implements ``vpd_stream.frame.Picture``. The conversion is libswscale's (PyAV
    ``to_ndarray``), the same pixels as converting at once; after it the decoded frame is let
    go, so a picture holds either the YUV frame or its RGB array, never both. It may be
    converted from any thread (a lock makes it happen once)."""

    __slots__ = ("frame", "_rgb", "_lock", "_shape", "_turns", "_region_area")

    def __init__(self, frame) -> None:
        self.frame = frame
        self._rgb: np.ndarray | None = None
        self._lock = threading.Lock()
        self._turns = display_quarter_turns(frame)
        self._region_area = 0  # pixels converted region by region so far
        h, w = int(frame.height), int(frame.width)
        self._shape = (w, h) if self._turns % 2 else (h, w)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def nbytes(self) -> int:
        if self._rgb is not None:
            return int(self._rgb.nbytes)
        frame = self.frame
        return sum(int(p.buffer_size) for p in frame.planes) if frame is not None else 0

    def region(self, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
        """RGB of rows y1:y2, columns x1:x2 (upright, inside the picture), converting only that
        region when the whole picture is not converted yet: the same pixels as ``rgb()[y1:y2,
        x1:x2]`` (libswscale works pixel by pixel; the region starts on even rows and columns,
        so 4:2:0 chroma lines up). Rotated or non-4:2:0 pictures convert whole, and so does a
        picture asked for a region over a quarter of it, or for regions adding up to half of it
        (a close view: the tracker's window, pose's square and the crops overlap; converting
        them one by one would cost more than the whole frame once)."""
        rgb = self._rgb
        frame = self.frame
        if rgb is not None or frame is None or self._turns or frame.format.name not in _REGION_FORMATS:
            return self.rgb()[y1:y2, x1:x2]
        h, w = self._shape
        area = max(0, x2 - x1) * max(0, y2 - y1)
        if 4 * area > h * w or 2 * (self._region_area + area) > h * w:
            return self.rgb()[y1:y2, x1:x2]
        self._region_area += area
        box = _even_box(x1, y1, x2, y2, w, h)
        if box is None:
            return self.rgb()[y1:y2, x1:x2]
        ex1, ey1, ex2, ey2 = box
        planes = [np.frombuffer(p, np.uint8).reshape(-1, p.line_size) for p in frame.planes[:3]]
        rw, rh = ex2 - ex1, ey2 - ey1
        packed = np.empty((rh * 3 // 2, rw), np.uint8)  # PyAV's yuv420p layout: Y, then U and V two lines a row
        packed[:rh] = planes[0][ey1:ey2, ex1:ex2]
        for k, plane in enumerate(planes[1:]):
            packed[rh + k * rh // 4:rh + (k + 1) * rh // 4] = \
                plane[ey1 // 2:ey2 // 2, ex1 // 2:ex2 // 2].reshape(rh // 4, rw)
        sub = av.VideoFrame.from_ndarray(packed, format=frame.format.name)
        sub.colorspace, sub.color_range = frame.colorspace, frame.color_range
        return sub.to_ndarray(format="rgb24")[y1 - ey1:y2 - ey1, x1 - ex1:x2 - ex1]

    def rgb(self) -> np.ndarray:
        rgb = self._rgb
        if rgb is not None:
            return rgb
        with self._lock:
            if self._rgb is None:
                rgb = self.frame.to_ndarray(format="rgb24")
                self._rgb = np.ascontiguousarray(np.rot90(rgb, self._turns)) if self._turns else rgb
                self.frame = None  # the YUV frame goes back to FFmpeg's pool
            return self._rgb


_REGION_FORMATS = ("yuv420p", "yuvj420p")


def _even_box(x1: int, y1: int, x2: int, y2: int, w: int, h: int) -> tuple[int, int, int, int] | None:
    """The region grown to even columns and a height of 4k rows (4:2:0 packing), inside w×h."""
    ex1, ey1 = x1 & ~1, y1 & ~1
    ex2 = min(w, x2 + (x2 & 1))
    ey2 = min(h, y2 + (-(y2 - ey1)) % 4)
    if (ex2 - ex1) % 2 or ex2 - ex1 < 2:
        return None
    while (ey2 - ey1) % 4 and ey1 >= 2:
        ey1 -= 2
    if (ey2 - ey1) % 4 or ey2 - ey1 < 4:
        return None
    return ex1, ey1, ex2, ey2


def display_quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that make ``frame`` upright (0 to 3)."""
    try:
        angle = frame.rotation  # degrees counter-clockwise, from the display matrix
    except (AttributeError, ValueError):
        return 0
    if not angle:
        return 0
    return int(round(angle / 90.0)) % 4


def _probe_http(url: str, timeout: float) -> str:
    """What an http(s) URL serves: 'file', 'hls-vod', 'hls-live', 'stream' or 'unknown'.

    A 4xx answer (not found, unauthorized, forbidden) is a ``FeedRefusedError`` at once; a
    server that does not answer or fails (5xx) is 'unknown', treated as a feed to retry."""
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "vpd-stream"}),
                                          timeout=timeout)
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            what = {401: "access refused", 403: "access refused", 404: "not found"}.get(exc.code, "refused")
            raise FeedRefusedError(f"{redact_url(url)}: {what} (the server answered {exc.code} {exc.reason}); check the URL"
                                   + (" and its credentials" if exc.code in (401, 403) else "")) from None
        return "unknown"
    except (urllib.error.URLError, OSError, ValueError):
        return "unknown"
    with response:
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        head = response.read(7)
        if head == b"#EXTM3U" or kind in PLAYLIST_TYPES:
            text = (head + response.read(1 << 20)).decode("utf-8", "replace")
            ended = _playlist_text_ended(text, response.geturl(), timeout)
            return "hls-vod" if ended else "hls-live"
        if response.headers.get("Content-Length") and "chunked" not in (response.headers.get("Transfer-Encoding") or ""):
            return "file"
        return "stream"


def _playlist_text_ended(text: str, base: str, timeout: float) -> bool:
    """Whether an HLS playlist (or the first variant of a master playlist) is complete."""
    if "#EXT-X-ENDLIST" in text:
        return True
    if "#EXT-X-STREAM-INF" not in text:
        return False
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF"):
            variant = next((v.strip() for v in lines[i + 1:] if v.strip() and not v.startswith("#")), None)
            if variant:
                return _playlist_ended(urljoin(base, variant), timeout)
    return False


def _playlist_ended(url: str, timeout: float) -> bool:
    """Fetch an HLS playlist now: has the publisher ended it (``#EXT-X-ENDLIST``)?"""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "vpd-stream"}),
                                    timeout=timeout) as response:
            text = response.read(1 << 20).decode("utf-8", "replace")
            return _playlist_text_ended(text, response.geturl(), timeout)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _mp4_without_index(spec: str) -> bool:
    """An MP4/MOV file whose 'moov' box never made it to disk (a cut recording)."""
    try:
        if not stat.S_ISREG(os.stat(spec).st_mode):
            return False
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
