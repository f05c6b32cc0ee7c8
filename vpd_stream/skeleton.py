"""The 13-joint COCO skeleton VPD uses, and its normalization (pure numpy).

Shared by the pose plugin (serving) and corpus preparation / distillation (training), so
both sides compute the very same 26-d pose feature.

Normalization (VPD): centre on the mid-hip, scale by 0.5 / (largest pairwise distance
among the shoulders and hips). A left/right flip swaps the paired joints and negates x.

Missing joints (one rule for every place poses enter: Penn Action labels, the BlazePose
teacher, VIPE* inputs, JMRN heatmaps). A joint is *missing* when its score is below
``MIN_JOINT_SCORE`` or its coordinates are not finite; Penn's ``visibility == 0`` joints
arrive as score 0 (their stale x, y may be anything, NaN included). A missing joint's
normalized position is the origin of the normalized frame: the hip centre for the VPD
26-d feature (after the paper's normalization, which stays as defined), the centre of
the box-normalized feature (made of present joints only). Measured on Penn Action NNS-DTW
(RESULTS.md, issue 15): the fixed position beats leaving the joint out of the distance by
~50 points, and lifts the VPD feature from 88.6 % (stale coordinates used) to 92.9 %.

Box-normalized feature (``box_features``): centre on the mean of the present joints,
divide by the larger side of the person's box — the extent of the joints that are present
(or a given box, such as Penn's annotated box or the tracker's). 95.3 % NNS-DTW top-1 on
Penn Action (the box centre as origin: 94.8 %; Penn's annotated box: 94.7 %).
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
HIPS = (JOINT["left_hip"], JOINT["right_hip"])
_EPS = 1e-6

# A joint whose score is below this counts as missing. Penn Action's scores are its 0/1
# visibility flags, so any threshold in (0, 1] gives the same Penn features; for BlazePose
# (visibility in [0, 1]) the value was chosen on real clips (RESULTS.md, issue 15).
MIN_JOINT_SCORE = 0.5


def missing_joints(keypoints: np.ndarray, min_score: float = MIN_JOINT_SCORE) -> np.ndarray:
    """(…, 13) bool: joints that count as missing in (…, 13, 2|3) keypoints.

    Missing: a score below ``min_score`` (3-column input) or non-finite coordinates.
    Joints of 2-column input (no scores) are missing only when not finite.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim < 2 or kp.shape[-2] != NUM_JOINTS or kp.shape[-1] not in (2, 3):
        raise ValueError(f"expected (..., {NUM_JOINTS}, 2|3) keypoints, got shape {kp.shape}")
    missing = ~np.isfinite(kp[..., :2]).all(axis=-1)
    if kp.shape[-1] == 3:
        missing |= ~(kp[..., 2] >= min_score)  # NaN scores count as missing too
    return missing


def _torso_normalize(xy: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """VPD normalization of (N, 13, 2) with (N, 13) missing flags → (N, 13, 2) float32.

    The centre (mid-hip) and scale (0.5 / the largest distance among shoulders and hips)
    are the paper's, from every torso joint with finite coordinates — a low-score joint's
    coordinates included: Penn's stale hips are near the true ones, and leaving them out
    (the one present hip as centre) measured 90.3 % against 92.9 %. Without finite hips
    the centre is the mean of the finite torso joints. Missing joints → (0, 0) after
    normalization. Fewer than two finite torso joints, or all at one point: all zeros.
    """
    finite = np.isfinite(xy).all(axis=-1)
    x = np.where(finite[..., None], xy, 0.0).astype(np.float64)
    hv = finite[:, list(HIPS)]
    hips = x[:, list(HIPS)]
    tv = finite[:, list(TORSO)]
    torso = x[:, list(TORSO)]
    n_h = hv.sum(1)
    centre = np.where((n_h > 0)[:, None], hips.sum(1) / np.maximum(n_h, 1)[:, None],
                      torso.sum(1) / np.maximum(tv.sum(1), 1)[:, None])
    pair = tv[:, :, None] & tv[:, None, :]
    dists = np.where(pair, np.linalg.norm(torso[:, :, None] - torso[:, None, :], axis=-1), 0.0)
    largest = dists.max(axis=(1, 2))
    scale = np.where(largest < _EPS, 0.0, 0.5 / np.maximum(largest, _EPS))
    out = (x - centre[:, None]) * scale[:, None, None]
    return np.where(missing[..., None], 0.0, out).astype(np.float32)


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


def normalize_keypoints(keypoints: np.ndarray, min_score: float = MIN_JOINT_SCORE) -> np.ndarray:
    """(…, 13, 2|3) keypoints → (…, 26) float32 VPD features with the missing-joint rule.

    Where every joint is present this equals ``normalize_joints``; missing joints (score
    below ``min_score`` or non-finite) are put at the hip centre (0, 0) after the paper's
    normalization (non-finite coordinates take no part in the centre or scale).
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    missing = missing_joints(kp, min_score)
    lead = kp.shape[:-2]
    out = _torso_normalize(kp[..., :2].reshape(-1, NUM_JOINTS, 2), missing.reshape(-1, NUM_JOINTS))
    return out.reshape(*lead, FEATURE_DIM)


def box_features(keypoints: np.ndarray, box: np.ndarray | None = None,
                 min_score: float = MIN_JOINT_SCORE, centre: str = "mean") -> np.ndarray:
    """(…, 13, 2|3) keypoints → (…, 26) float32 box-normalized joints.

    Each frame: subtract the centre, divide by the box's larger side; missing joints
    (``missing_joints``) → (0, 0), the centre. ``box`` (…, 4) x1, y1, x2, y2 in the
    keypoints' units (Penn's annotated box, the tracker's); None: the extent of the
    frame's present joints. ``centre``: "mean" (default), the mean of the present joints
    (95.3 % NNS-DTW top-1 on Penn Action), or "box", the box centre (94.8 %). A frame with
    no present joints, or a box of zero size, gives all zeros. Mirrored like the VPD
    feature (``flip_features``: the centre maps to itself).
    """
    if centre not in ("mean", "box"):
        raise ValueError(f"centre must be 'mean' or 'box', not {centre!r}")
    kp = np.asarray(keypoints, dtype=np.float32)
    missing = missing_joints(kp, min_score)
    lead = kp.shape[:-2]
    xy = kp[..., :2].reshape(-1, NUM_JOINTS, 2).astype(np.float64)
    valid = ~missing.reshape(-1, NUM_JOINTS)
    x = np.where(valid[..., None], xy, 0.0)
    if box is None:
        b = np.concatenate([np.where(valid[..., None], xy, np.inf).min(1),
                            np.where(valid[..., None], xy, -np.inf).max(1)], axis=1)
    else:
        b = np.asarray(box, dtype=np.float64).reshape(-1, 4)
        if len(b) != len(xy):
            raise ValueError(f"box shape {np.shape(box)} does not match keypoints {kp.shape}")
    ok = np.isfinite(b).all(1) & valid.any(1)
    b = np.where(ok[:, None], b, 0.0)
    if centre == "box":
        c = 0.5 * (b[:, :2] + b[:, 2:])
    else:
        c = x.sum(1) / np.maximum(valid.sum(1), 1)[:, None]
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    scale = np.where(ok & (side > _EPS), 1.0 / np.maximum(side, _EPS), 0.0)
    out = (x - c[:, None]) * scale[:, None, None]
    out = np.where(valid[..., None], out, 0.0).astype(np.float32)
    return out.reshape(*lead, FEATURE_DIM)


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


def pose_features(keypoints: np.ndarray, min_score: float = MIN_JOINT_SCORE) -> np.ndarray:
    """The 26-d VPD pose feature: normalized joints, (x, y) per joint, flattened.

    With scores ((13, 3) keypoints) missing joints follow the module's rule (hip centre);
    (13, 2) keypoints are normalized as they are (``normalize_pose``).
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape == (NUM_JOINTS, 3) or not np.isfinite(kp[..., :2]).all():
        return normalize_keypoints(kp, min_score)
    return normalize_pose(kp).reshape(FEATURE_DIM)


def mean_score(keypoints: np.ndarray) -> float:
    """Mean per-joint confidence of (13, 3) keypoints."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape != (NUM_JOINTS, 3):
        raise ValueError(f"expected ({NUM_JOINTS}, 3) keypoints with scores, got {kp.shape}")
    return float(kp[:, 2].mean())
