"""Generated clips for tests: real encodes made with PyAV, small and quick."""
from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern(index: int, width: int, height: int) -> np.ndarray:
    """A textured frame with a bright square moving left to right (so frames differ)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 3 + index) % 256, (y * 2) % 256, ((x + y) // 4) % 256], axis=-1).astype(np.uint8)
    side = max(8, height // 4)
    left = (index * 4) % max(1, width - side)
    image[height // 3: height // 3 + side, left: left + side] = 255
    return image


def make_clip(path: str | Path, codec: str = "libx264", fps: float = 25, frames: int = 50,
              size: tuple[int, int] = (160, 120), gop: int = 10, vfr_times: list[float] | None = None,
              container_format: str | None = None) -> Path:
    """Encode a clip. ``vfr_times`` gives explicit presentation times (seconds) per frame."""
    path = Path(path)
    width, height = size
    with av.open(str(path), mode="w", format=container_format) as container:
        _encode(container, codec, fps, frames, width, height, gop, vfr_times)
    return path


def make_ts_bytes(fps: float = 25, frames: int = 100, size: tuple[int, int] = (160, 120), gop: int = 5) -> bytes:
    """An H.264 MPEG-TS stream in memory (what a live feed carries)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mpegts") as container:
        _encode(container, "libx264", fps, frames, size[0], size[1], gop, None)
    return buffer.getvalue()


def _encode(container, codec, fps, frames, width, height, gop, vfr_times) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.gop_size = gop
    if codec == "libx264":
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
    elif codec == "libx265":
        stream.options = {"preset": "ultrafast", "x265-params": "log-level=none"}
    elif codec == "libvpx-vp9":
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
    time_base = Fraction(1, 1000) if vfr_times else 1 / rate
    stream.codec_context.time_base = time_base
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(pattern(i, width, height), format="rgb24")
        frame.pts = int(round(vfr_times[i] * 1000)) if vfr_times else i
        frame.time_base = time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
