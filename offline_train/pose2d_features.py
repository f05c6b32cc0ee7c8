"""VPD normalization of 2D joints (COCO-13 order) into 26-d pose features.

Written here because ``vpd_stream/skeleton.py`` did not exist yet when the heads needed it;
it follows DESIGN.md exactly: centre on the mid-hip, scale by 0.5 / (largest pairwise
distance among shoulders and hips), 26-d = (x, y) of the 13 joints. The horizontal flip
swaps left/right joint pairs and negates x.
"""
from __future__ import annotations

import numpy as np

# COCO-13: nose, l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle.
L_SHOULDER, R_SHOULDER, L_HIP, R_HIP = 1, 2, 7, 8
TORSO = (L_SHOULDER, R_SHOULDER, L_HIP, R_HIP)
FLIP_ORDER = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11])
NUM_JOINTS = 13
FEATURE_DIM = 2 * NUM_JOINTS


def normalize_joints(xy: np.ndarray) -> np.ndarray:
    """(..., 13, 2) joint positions in pixels -> (..., 26) float32 normalized features."""
    xy = np.asarray(xy, dtype=np.float64)
    centre = 0.5 * (xy[..., L_HIP, :] + xy[..., R_HIP, :])
    torso = xy[..., TORSO, :]
    diff = torso[..., :, None, :] - torso[..., None, :, :]
    scale = np.sqrt((diff ** 2).sum(-1)).max(axis=(-1, -2))
    # A degenerate torso (all four points equal) would divide by zero: leave it unscaled.
    scale = np.where(scale > 1e-6, scale, 1.0)
    out = (xy - centre[..., None, :]) * (0.5 / scale)[..., None, None]
    return out.reshape(*xy.shape[:-2], FEATURE_DIM).astype(np.float32)


def flip_features(features: np.ndarray) -> np.ndarray:
    """Horizontally flip (..., 26) normalized features: swap left/right pairs, negate x."""
    f = np.asarray(features).reshape(*features.shape[:-1], NUM_JOINTS, 2)[..., FLIP_ORDER, :].copy()
    f[..., 0] = -f[..., 0]
    return f.reshape(features.shape)
