"""crop: the athlete's 128×128 square crop, and the previous frame's crop at the same square.

The square is centred on the union of the track's box in this frame and the previous
one (so motion between the two stays inside), its side is the union's longer side plus
max(10 %, 25 px) on every side, and it is zero-padded where it leaves the image. The
previous crop is taken from ``frame.prev_rgb`` (the source-rate frame round(source_fps /
target_fps) frames earlier), or from the frame itself when there is none (first frame).
Only the square's region is read: a frame's pixels still decoded (a 60 fps source's skipped
previous frame) are converted there alone, the same pixels as converting the whole frame
(``Frame.rgb_region``). Once the crops are taken the frame lets go of the previous frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vpd_stream.annotations import Crop, Key
from vpd_stream.errors import ConfigError
from vpd_stream.frame import EndOfStream, Frame
from vpd_stream.plugin import Plugin


def square_box(box: np.ndarray, pad_frac: float = 0.10, pad_min: float = 25.0) -> np.ndarray:
    """The padded square (x1, y1, x2, y2) around a box, in image pixels."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0)
    side += 2.0 * max(pad_frac * side, pad_min)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def crop_square(image: np.ndarray, square: np.ndarray, size: int = 128) -> np.ndarray:
    """Resize ``image[square]`` to size×size, zeros where the square leaves the image.

    Only the part inside the image is resized (INTER_AREA: shrinking a 1,000 px athlete
    to 128 px needs it) and pasted at its place in the output.
    """
    h, w = image.shape[:2]
    return _crop(lambda x1, y1, x2, y2: image[y1:y2, x1:x2], h, w, image.shape[2], image.dtype, square, size)


def crop_frame_square(frame: Frame, square: np.ndarray, size: int = 128, previous: bool = False) -> np.ndarray:
    """``crop_square`` of the frame's pixels (``previous``: of the previous frame's, else of its
    own when there is none) reading only the square's region: a frame still decoded converts
    that region alone (``Frame.rgb_region``), the same pixels as converting it whole."""
    take = frame.rgb_region
    if previous and frame.has_previous:
        take = frame.prev_rgb_region  # type: ignore[assignment]
    return _crop(take, frame.height, frame.width, 3, np.dtype(np.uint8), square, size)


def _crop(take, h: int, w: int, channels: int, dtype, square: np.ndarray, size: int) -> np.ndarray:
    sx1, sy1, sx2, sy2 = (float(v) for v in square)
    scale = size / max(sx2 - sx1, 1e-6)
    out = np.zeros((size, size, channels), dtype=dtype)
    ix1, iy1 = max(0, int(np.floor(sx1))), max(0, int(np.floor(sy1)))
    ix2, iy2 = min(w, int(np.ceil(sx2))), min(h, int(np.ceil(sy2)))
    if ix2 <= ix1 or iy2 <= iy1:
        return out
    ox1, oy1 = round((ix1 - sx1) * scale), round((iy1 - sy1) * scale)
    ox2, oy2 = min(size, round((ix2 - sx1) * scale)), min(size, round((iy2 - sy1) * scale))
    ox1, oy1 = min(max(0, ox1), size - 1), min(max(0, oy1), size - 1)
    if ox2 <= ox1 or oy2 <= oy1:
        return out
    region = take(ix1, iy1, ix2, iy2)
    size_out = (ox2 - ox1, oy2 - oy1)
    if scale < 0.5:
        # Large reductions (a 1,000 px athlete → 128 px): a bilinear pass to twice the
        # output size, then INTER_AREA; 8x cheaper than INTER_AREA alone, same look.
        region = cv2.resize(region, (2 * size_out[0], 2 * size_out[1]), interpolation=cv2.INTER_LINEAR)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    out[oy1:oy2, ox1:ox2] = cv2.resize(region, size_out, interpolation=interp)
    return out


class CropPlugin(Plugin):
    name = "crop"
    requires = (Key.TRACKS,)
    provides = (Key.CROP,)
    description = "128×128 square crops of the athlete(s), current and previous frame"
    batch_size = 8

    @dataclass
    class Options:
        size: int = 128  # output side in pixels
        pad_frac: float = 0.10  # padding on each side, as a fraction of the box's longer side...
        pad_min: float = 25.0  # ...but at least this many pixels
        all_tracks: bool = False  # crop every track, not only the athletes

    def __init__(self, options: Any | None = None) -> None:
        super().__init__(options)
        if self.options.size < 8 or self.options.pad_frac < 0 or self.options.pad_min < 0:
            raise ConfigError("[plugins.crop] size must be ≥ 8, pad_frac and pad_min ≥ 0")
        self._last_box: dict[str, dict[int, np.ndarray]] = {}  # stream → track → previous box

    def process(self, batch: list[Frame]) -> None:
        o = self.options
        for frame in batch:
            tracks = frame.annotations.get("tracks", {})
            previous = self._last_box.get(frame.stream_id, {})
            crops: dict[int, Crop] = {}
            for tid, track in tracks.items():
                if not (track.is_athlete or o.all_tracks):
                    continue
                box = np.asarray(track.box, np.float32)
                prev = previous.get(tid)
                union = box if prev is None else np.concatenate([np.minimum(box[:2], prev[:2]),
                                                                  np.maximum(box[2:], prev[2:])])
                square = square_box(union, o.pad_frac, o.pad_min)
                crops[tid] = Crop(rgb=crop_frame_square(frame, square, o.size),
                                  prev_rgb=crop_frame_square(frame, square, o.size, previous=True), box=square)
            self._last_box[frame.stream_id] = {tid: np.asarray(t.box, np.float32).copy() for tid, t in tracks.items()}
            frame.annotations["crop"] = crops
            frame.release_previous()

    def end_stream(self, eos: EndOfStream) -> None:
        self._last_box.pop(eos.stream_id, None)

    def describe(self, frame: Frame) -> dict[str, Any]:
        crops = frame.annotations.get("crop", {})
        return {"tracks": {tid: {"crop_box": [round(float(v), 1) for v in c.box]} for tid, c in crops.items()}} if crops else {}
