"""Per-joint heatmap clips for JMRN (Shah et al., WACV 2022; PoTion-style aggregation).

A clip of 2D keypoints (T, J, 2|3) becomes one (J, 3, H, W) float32 array:

1. crop to the athlete: the box around every joint of every frame, padded, fitted into
   the H×W grid with its aspect ratio kept (centred);
2. a Gaussian blob (peak 1, σ in grid pixels) per joint and frame;
3. aggregation over time with the 3-channel piecewise-linear time encoding: with
   t ∈ [0, 1] the clip's relative time, channel 0 ramps down over the first half,
   channel 1 ramps up then down (peak at t = 0.5), channel 2 ramps up over the second half;
4. normalization: ``"area"`` divides each channel by the most a joint can accumulate
   (Σ_t w_c(t): a joint that never moves), ``"max"`` divides each joint map by its maximum.

The Gaussian is separable, so the aggregate is one einsum over (time, joint, y, x) — no
T×J×H×W array is ever built. Works on COCO-13 (teacher poses in the stream, Penn Action
labels) and COCO-17 input (mapped to COCO-13: eyes and ears dropped).

Missing joints follow ``vpd_stream.skeleton.missing_joints`` (score below
``MIN_JOINT_SCORE`` — Penn's ``visibility == 0`` arrives as score 0 — or non-finite):
a missing joint adds nothing to its channel in that frame, and the crop box is the box of
the present joints. The same function renders Penn Action clips for training
(``offline_train.jmrn.evaluate``) and the teacher's poses in the stream
(``plugins.jmrn_recognizer``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import FLIP_PERM, MIN_JOINT_SCORE, NUM_JOINTS, missing_joints

NORMALIZATIONS = ("area", "max", "none")
# COCO-17 keypoints that are the COCO-13 joints (nose, shoulders … ankles), in order.
COCO17_TO_COCO13: tuple[int, ...] = (0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)


@dataclass(frozen=True)
class HeatmapConfig:
    height: int = 64
    width: int = 64
    sigma: float = 2.0  # Gaussian σ in grid pixels
    pad: float = 0.1  # crop margin, fraction of the athlete box's larger side
    normalization: str = "area"
    # Missing joints (skeleton.missing_joints, the project's one rule: a score below this,
    # or non-finite coordinates) are not drawn and take no part in the crop box: their
    # channel stays empty in the frames where they are missing. 0.0 draws every finite
    # joint (Penn's invisible ones with their stale coordinates too): the weights trained
    # before issue 15 record it in their sidecar and keep it.
    min_score: float = MIN_JOINT_SCORE

    def validate(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.height < 4 or self.width < 4 or self.sigma <= 0:
            raise ValueError(f"heatmap grid {self.height}x{self.width} with sigma {self.sigma} is not usable")


def to_coco13(keypoints: np.ndarray) -> np.ndarray:
    """(T, 13|17, C) keypoints → (T, 13, C) in COCO-13 order."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 3:
        raise ValueError(f"expected (T, joints, 2|3) keypoints, got shape {kp.shape}")
    if kp.shape[1] == 17:
        return kp[:, list(COCO17_TO_COCO13)]
    if kp.shape[1] != NUM_JOINTS:
        raise ValueError(f"expected 13 (COCO-13) or 17 (COCO-17) joints, got {kp.shape[1]}")
    return kp


def time_encoding(num_frames: int) -> np.ndarray:
    """(T, 3) piecewise-linear weights; each frame's weights sum to 1."""
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    t = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.array([0.5])
    anchors = np.array([0.0, 0.5, 1.0])
    return np.clip(1.0 - 2.0 * np.abs(t[:, None] - anchors[None, :]), 0.0, None).astype(np.float32)


def athlete_box(xy: np.ndarray, valid: np.ndarray, pad: float) -> np.ndarray:
    """x1, y1, x2, y2 around every valid joint of the clip, padded; a 1-pixel box if none."""
    pts = xy[valid]
    if len(pts) == 0:
        return np.array([0.0, 0.0, 1.0, 1.0], dtype=np.float32)
    lo, hi = pts.min(0), pts.max(0)
    side = float(max(hi[0] - lo[0], hi[1] - lo[1], 1.0))
    m = pad * side
    return np.array([lo[0] - m, lo[1] - m, hi[0] + m, hi[1] + m], dtype=np.float32)


def to_grid(xy: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """Map pixel coordinates into the H×W grid: the box fitted with its aspect ratio kept."""
    bw, bh = max(box[2] - box[0], 1e-3), max(box[3] - box[1], 1e-3)
    scale = min((width - 1) / bw, (height - 1) / bh)
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)
    grid_centre = np.array([(width - 1) / 2, (height - 1) / 2], dtype=np.float32)
    return ((xy - centre) * scale + grid_centre).astype(np.float32)


def aggregate(grid_xy: np.ndarray, weight: np.ndarray, cfg: HeatmapConfig) -> np.ndarray:
    """Grid coordinates (T, J, 2) and per-joint weights (T, J) → (J, 3, H, W) float32."""
    t = len(grid_xy)
    enc = time_encoding(t)  # (T, 3)
    xs = np.arange(cfg.width, dtype=np.float32)
    ys = np.arange(cfg.height, dtype=np.float32)
    inv = 1.0 / (2.0 * cfg.sigma ** 2)
    gx = np.exp(-((xs[None, None, :] - grid_xy[..., 0:1]) ** 2) * inv)  # (T, J, W)
    gy = np.exp(-((ys[None, None, :] - grid_xy[..., 1:2]) ** 2) * inv)  # (T, J, H)
    gy = gy * weight[..., None]
    # (J, C, H, T) @ (J, 1, T, W): one batched BLAS matmul over time.
    gyw = np.ascontiguousarray((enc.T[:, :, None, None] * gy[None]).transpose(2, 0, 3, 1))
    maps = np.matmul(gyw, gx.transpose(1, 0, 2)[:, None]).astype(np.float32)
    if cfg.normalization == "area":
        maps /= np.maximum(enc.sum(0), 1e-6)[None, :, None, None]
    elif cfg.normalization == "max":
        peak = maps.max(axis=(2, 3), keepdims=True)
        maps = np.where(peak > 1e-6, maps / np.maximum(peak, 1e-6), 0.0).astype(np.float32)
    return maps


def clip_heatmaps(keypoints: np.ndarray, cfg: HeatmapConfig = HeatmapConfig()) -> np.ndarray:
    """(T, 13|17, 2|3) keypoints in pixels → (13, 3, H, W) aggregated, normalized heatmaps.

    A third column is a per-joint score: joints below ``cfg.min_score`` are left out (of
    the crop box too); non-finite coordinates are always left out.
    """
    cfg.validate()
    kp = to_coco13(keypoints)
    xy = kp[..., :2]
    valid = ~missing_joints(kp[..., :3], cfg.min_score)
    xy = np.where(valid[..., None], xy, 0.0).astype(np.float32)
    box = athlete_box(xy, valid, cfg.pad)
    grid = to_grid(xy, box, cfg.height, cfg.width)
    return aggregate(grid, valid.astype(np.float32), cfg)


def flip_heatmaps(maps: np.ndarray) -> np.ndarray:
    """Mirror (…, 13, C, H, W) heatmaps: swap left/right joints and flip x."""
    arr = np.asarray(maps)
    return np.ascontiguousarray(arr[..., list(FLIP_PERM), :, :, ::-1])
