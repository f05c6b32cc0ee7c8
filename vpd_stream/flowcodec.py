"""Optical-flow post-processing as VPD: median subtraction, clip to ±20 px, 8 bits.

The same numbers are used on both sides (flow plugin and the student), so keep them
exact: q = round((flow + 20) / 40 * 255) as uint8; flow = q / 255 * 40 - 20; the student
sees q / 255 - 0.5. The round-trip error is at most 40 / 255 / 2 ≈ 0.078 px.
"""
from __future__ import annotations

import numpy as np

FLOW_CLIP = 20.0
_RANGE = 2.0 * FLOW_CLIP


def subtract_median(flow_2hw: np.ndarray) -> np.ndarray:
    """Remove the crop's dominant motion (camera pan, athlete drift) per channel."""
    flow = np.asarray(flow_2hw, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"expected flow of shape (2, H, W), got {flow.shape}")
    median = np.median(flow.reshape(2, -1), axis=1).astype(np.float32)
    return flow - median[:, None, None]


def quantize_flow(flow_2hw: np.ndarray) -> np.ndarray:
    """Flow in pixels → uint8, clipping to ±FLOW_CLIP first."""
    flow = np.clip(np.asarray(flow_2hw, dtype=np.float32), -FLOW_CLIP, FLOW_CLIP)
    return np.round((flow + FLOW_CLIP) / _RANGE * 255.0).astype(np.uint8)


def dequantize_flow(q: np.ndarray) -> np.ndarray:
    """uint8 → flow in pixels (float32)."""
    return (np.asarray(q, dtype=np.float32) / 255.0 * _RANGE - FLOW_CLIP).astype(np.float32)


def student_input(q: np.ndarray) -> np.ndarray:
    """What the student network sees: flow / 40, centred, in [-0.5, 0.5]."""
    return (np.asarray(q, dtype=np.float32) / 255.0 - 0.5).astype(np.float32)


def encode_flow(flow_2hw: np.ndarray) -> np.ndarray:
    """The full VPD post-processing: minus the median, clip ±20 px, quantize to uint8."""
    return quantize_flow(subtract_median(flow_2hw))
