"""Generated clips for tests: real encodes made with PyAV, small and quick."""
from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from vpd_stream.testing import encode_video


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
    options = {"libx264": {"preset": "ultrafast", "tune": "zerolatency"},
               "libx265": {"preset": "ultrafast", "x265-params": "log-level=none"},
               "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}.get(codec)
    encode_video(container, (pattern(i, width, height) for i in range(frames)), fps, (width, height), codec,
                 gop=gop, options=options, times=vfr_times)
