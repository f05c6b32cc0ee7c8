"""framerecord: a pass-through stage that records each frame's size and brightness.

It needs no model, so the path source → stages → sinks → metrics runs with nothing else.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from vpd_stream.frame import Frame
from vpd_stream.plugin import Plugin


class FrameRecordPlugin(Plugin):
    name = "framerecord"
    requires = ("rgb",)
    provides = ("record",)
    description = "per-frame size and mean brightness (no model: a light chain for testing the path)"
    batch_size = 8

    def process(self, batch: list[Frame]) -> None:
        for frame in batch:
            # A 4x subsampled mean is plenty for a brightness figure and 16x cheaper.
            luma = frame.rgb[::4, ::4].mean(dtype=np.float32)
            frame.annotations["record"] = {"width": frame.width, "height": frame.height,
                                           "brightness": round(float(luma), 2)}

    def describe(self, frame: Frame) -> dict[str, Any]:
        return dict(frame.annotations.get("record", {}))
