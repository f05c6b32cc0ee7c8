"""Canonicalized 3D pose features: the reconstruction target of VIPE* and its pose distance.

3D poses are (N, 13, 3) float arrays of the COCO-13 joints (vpd_stream.skeleton order) in
a right-handed world frame with +y up (metres). A person facing +z has their left at +x.

Canonicalization (VPD supplement, section G): centre on the mid-hip and rotate about the
vertical axis so the torso normal faces the depth axis (+z). Features: for every bone the
unit offset from its parent, for every joint the unit offset from the hip centre, and the
cosine of the bone angle at every joint with a parent and a child. The target depends only
on the 3D pose, never on the camera, so two views of one pose share it.
"""
from __future__ import annotations

import numpy as np

from vpd_stream.skeleton import FLIP_PERM, JOINT, NUM_JOINTS

ROOT = NUM_JOINTS  # virtual joint 13: the mid-hip
NECK = NUM_JOINTS + 1  # virtual joint 14: the mid-shoulder

# (child, parent) over the 13 joints plus the two virtual ones.
BONES: tuple[tuple[int, int], ...] = (
    (NECK, ROOT),
    (JOINT["nose"], NECK),
    (JOINT["left_shoulder"], NECK), (JOINT["right_shoulder"], NECK),
    (JOINT["left_elbow"], JOINT["left_shoulder"]), (JOINT["right_elbow"], JOINT["right_shoulder"]),
    (JOINT["left_wrist"], JOINT["left_elbow"]), (JOINT["right_wrist"], JOINT["right_elbow"]),
    (JOINT["left_hip"], ROOT), (JOINT["right_hip"], ROOT),
    (JOINT["left_knee"], JOINT["left_hip"]), (JOINT["right_knee"], JOINT["right_hip"]),
    (JOINT["left_ankle"], JOINT["left_knee"]), (JOINT["right_ankle"], JOINT["right_knee"]),
)
NUM_BONES = len(BONES)

# (parent, joint, child): the bone angle at ``joint``.
ANGLES: tuple[tuple[int, int, int], ...] = (
    (ROOT, NECK, JOINT["nose"]),
    (NECK, JOINT["left_shoulder"], JOINT["left_elbow"]),
    (NECK, JOINT["right_shoulder"], JOINT["right_elbow"]),
    (JOINT["left_shoulder"], JOINT["left_elbow"], JOINT["left_wrist"]),
    (JOINT["right_shoulder"], JOINT["right_elbow"], JOINT["right_wrist"]),
    (ROOT, JOINT["left_hip"], JOINT["left_knee"]),
    (ROOT, JOINT["right_hip"], JOINT["right_knee"]),
    (JOINT["left_hip"], JOINT["left_knee"], JOINT["left_ankle"]),
    (JOINT["right_hip"], JOINT["right_knee"], JOINT["right_ankle"]),
)
FEATURE_DIM = NUM_BONES * 3 + NUM_JOINTS * 3 + len(ANGLES)  # 42 + 39 + 9 = 90
_EPS = 1e-8
_CHILD = np.array([c for c, _ in BONES])
_PARENT = np.array([p for _, p in BONES])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def with_virtual_joints(poses: np.ndarray) -> np.ndarray:
    """(N, 13, 3) → (N, 15, 3): the mid-hip and mid-shoulder appended."""
    p = np.asarray(poses, dtype=np.float64)
    root = 0.5 * (p[:, JOINT["left_hip"]] + p[:, JOINT["right_hip"]])
    neck = 0.5 * (p[:, JOINT["left_shoulder"]] + p[:, JOINT["right_shoulder"]])
    return np.concatenate([p, root[:, None], neck[:, None]], axis=1)


def torso_normal(poses: np.ndarray) -> np.ndarray:
    """(N, 3) unit normal of the torso quadrilateral, pointing where the person faces."""
    p = np.asarray(poses, dtype=np.float64)
    d1 = p[:, JOINT["left_shoulder"]] - p[:, JOINT["right_hip"]]
    d2 = p[:, JOINT["right_shoulder"]] - p[:, JOINT["left_hip"]]
    return _unit(np.cross(d1, d2))


def canonicalize(poses: np.ndarray) -> np.ndarray:
    """(N, 13, 3) → (N, 15, 3) hip-centred, rotated about +y so the torso normal faces +z.

    For a person lying flat the normal is nearly vertical and its heading is arbitrary;
    the hip line (left minus right hip, turned by 90°) decides then, so the rotation
    stays defined for every pose.
    """
    p = with_virtual_joints(poses)
    p = p - p[:, ROOT:ROOT + 1]
    n = torso_normal(p[:, :NUM_JOINTS])
    hip_line = p[:, JOINT["left_hip"]] - p[:, JOINT["right_hip"]]
    # Facing direction from the hip line: left × up-ish; for left = +x this is +z.
    hip_facing = np.stack([-hip_line[:, 2], np.zeros(len(p)), hip_line[:, 0]], axis=-1)
    horiz = np.stack([n[:, 0], np.zeros(len(p)), n[:, 2]], axis=-1)
    weak = np.linalg.norm(horiz, axis=-1) < 0.2
    horiz[weak] = hip_facing[weak]
    yaw = np.arctan2(horiz[:, 0], horiz[:, 2])  # angle from +z towards +x
    c, s = np.cos(-yaw), np.sin(-yaw)
    rot = np.zeros((len(p), 3, 3))
    rot[:, 0, 0], rot[:, 0, 2], rot[:, 1, 1], rot[:, 2, 0], rot[:, 2, 2] = c, s, 1.0, -s, c
    return np.einsum("nij,nkj->nki", rot, p)


def bone_directions(canonical: np.ndarray) -> np.ndarray:
    """(N, 15, 3) canonical joints → (N, 14, 3) unit bone vectors (child minus parent)."""
    return _unit(canonical[:, _CHILD] - canonical[:, _PARENT])


def canonical_features(poses: np.ndarray) -> np.ndarray:
    """(N, 13, 3) world poses → (N, 90) float32 reconstruction targets."""
    c = canonicalize(poses)
    bones = bone_directions(c)
    from_hip = _unit(c[:, :NUM_JOINTS])  # the root is the origin after canonicalization
    cosines = []
    for parent, joint, child in ANGLES:
        a = _unit(c[:, parent] - c[:, joint])
        b = _unit(c[:, child] - c[:, joint])
        cosines.append((a * b).sum(-1))
    feats = np.concatenate([bones.reshape(len(c), -1), from_hip.reshape(len(c), -1),
                            np.stack(cosines, axis=-1)], axis=-1)
    return feats.astype(np.float32)


def max_bone_angle_deg(bones_a: np.ndarray, bones_b: np.ndarray) -> np.ndarray:
    """(A, 14, 3), (B, 14, 3) canonical bone directions → (A, B) largest angle between
    corresponding bones, in degrees: the pose distance behind the contrastive negatives."""
    cos = np.einsum("akd,bkd->abk", bones_a, bones_b)
    return np.degrees(np.arccos(np.clip(cos.min(axis=-1), -1.0, 1.0)))


def mirror_poses(poses: np.ndarray) -> np.ndarray:
    """Mirror 3D poses through the x = 0 plane and swap left/right labels.

    The result is again a valid (correctly handed) human pose: a mirror image with its
    joints renamed is what a person doing the mirrored movement looks like.
    """
    p = np.asarray(poses)[:, FLIP_PERM].copy()
    p[..., 0] *= -1.0
    return p
