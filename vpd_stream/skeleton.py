"""The 13-joint COCO skeleton VPD uses, and its normalization (pure numpy).

Shared by the pose plugin (serving) and corpus preparation / distillation (training), so
both sides compute the very same 26-d pose feature.

Normalization (VPD): centre on the mid-hip, scale by 0.5 / (largest pairwise distance
among the shoulders and hips). A left/right flip swaps the paired joints and negates x.
"""
from __future__ import annotations

import numpy as np

COCO13_NAMES: tuple[str, ...] = (
    "nose",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)
NUM_JOINTS = len(COCO13_NAMES)
FEATURE_DIM = 2 * NUM_JOINTS
JOINT = {name: i for i, name in enumerate(COCO13_NAMES)}

# BlazePose's 33 landmarks that are the 13 COCO joints, in COCO-13 order.
BLAZEPOSE_TO_COCO13: tuple[int, ...] = (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

# The left/right pairs a mirror image exchanges.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12))


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_JOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


FLIP_PERM: np.ndarray = _flip_permutation()

# Bones for drawing: (joint a, joint b).
EDGES: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 3), (3, 5), (2, 4), (4, 6),  # shoulders and arms
    (1, 7), (2, 8), (7, 8),  # torso
    (7, 9), (9, 11), (8, 10), (10, 12),  # legs
    (0, 1), (0, 2),  # head to shoulders
)

TORSO = (JOINT["left_shoulder"], JOINT["right_shoulder"], JOINT["left_hip"], JOINT["right_hip"])
_EPS = 1e-6


def normalize_pose(keypoints: np.ndarray) -> np.ndarray:
    """(13, ≥2) joints in any units → (13, 2) float32 normalized joints.

    A degenerate torso (all four torso joints at one point) gives all zeros: there is no
    scale to normalize by, and zeros are what a mean-score filter would discard anyway.
    """
    xy = np.asarray(keypoints, dtype=np.float32)[:, :2]
    if xy.shape != (NUM_JOINTS, 2):
        raise ValueError(f"expected {NUM_JOINTS} joints, got shape {np.shape(keypoints)}")
    centre = 0.5 * (xy[JOINT["left_hip"]] + xy[JOINT["right_hip"]])
    torso = xy[list(TORSO)]
    dists = np.linalg.norm(torso[:, None, :] - torso[None, :, :], axis=-1)
    largest = float(dists.max())
    if largest < _EPS:
        return np.zeros((NUM_JOINTS, 2), dtype=np.float32)
    return ((xy - centre) * (0.5 / largest)).astype(np.float32)


def normalize_joints(xy: np.ndarray) -> np.ndarray:
    """Batched ``pose_features``: (…, 13, ≥2) joints → (…, 26) float32 features.

    Same rule as ``normalize_pose`` (a degenerate torso gives zeros), for whole sequences
    and data sets at once.
    """
    xy = np.asarray(xy, dtype=np.float32)[..., :2]
    if xy.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"expected (..., {NUM_JOINTS}, 2) joints, got shape {xy.shape}")
    centre = 0.5 * (xy[..., JOINT["left_hip"], :] + xy[..., JOINT["right_hip"], :])
    torso = xy[..., list(TORSO), :]
    dists = np.linalg.norm(torso[..., :, None, :] - torso[..., None, :, :], axis=-1)
    largest = dists.max(axis=(-1, -2))
    scale = np.where(largest < _EPS, 0.0, 0.5 / np.maximum(largest, _EPS))
    out = (xy - centre[..., None, :]) * scale[..., None, None]
    return out.reshape(*xy.shape[:-2], FEATURE_DIM).astype(np.float32)


def flip_normalized(joints: np.ndarray) -> np.ndarray:
    """Mirror normalized joints: swap left/right and negate x (its own inverse)."""
    flipped = np.asarray(joints, dtype=np.float32)[FLIP_PERM].copy()
    flipped[:, 0] *= -1.0
    return flipped


def flip_features(features: np.ndarray) -> np.ndarray:
    """Mirror a (…, 26) feature vector (or a batch of them)."""
    arr = np.asarray(features, dtype=np.float32)
    joints = arr.reshape(*arr.shape[:-1], NUM_JOINTS, 2)[..., FLIP_PERM, :].copy()
    joints[..., 0] *= -1.0
    return joints.reshape(arr.shape)


def flip_keypoints_image(keypoints: np.ndarray, width: int) -> np.ndarray:
    """Keypoints (13, 2|3) of an image mirrored horizontally (pixel centres map x → w-1-x)."""
    kp = np.asarray(keypoints, dtype=np.float32)[FLIP_PERM].copy()
    kp[:, 0] = (width - 1) - kp[:, 0]
    return kp


def pose_features(keypoints: np.ndarray) -> np.ndarray:
    """The 26-d VPD pose feature: normalized joints, (x, y) per joint, flattened."""
    return normalize_pose(keypoints).reshape(FEATURE_DIM)


def mean_score(keypoints: np.ndarray) -> float:
    """Mean per-joint confidence of (13, 3) keypoints."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape != (NUM_JOINTS, 3):
        raise ValueError(f"expected ({NUM_JOINTS}, 3) keypoints with scores, got {kp.shape}")
    return float(kp[:, 2].mean())
